"""The P2-only twins of ``yolo_cfgs/`` (``*-p2only-{gauss,base}.yaml``, issue 33): each is its family's P2 twin with
``Detect`` on the P2 output alone and the layers that only fed P3–P5 dropped; they build, resolve by bare name, and
are the very models the out-of-distribution evidence trained (``tools/evidence`` variants ``*-finest``)."""
from __future__ import annotations

import os
import tempfile

import pytest

for _k, _v in {"YOLO_OFFLINE": "1", "YOLO_AUTOINSTALL": "false", "MPLBACKEND": "Agg", "HF_HUB_OFFLINE": "1"}.items():
    os.environ.setdefault(_k, _v)
os.environ.setdefault("YOLO_CONFIG_DIR", tempfile.mkdtemp(prefix="gaussconv_yolo_cfg_"))

import torch  # noqa: E402

pytest.importorskip("ultralytics", reason="ultralytics not installed: make setup")
import yaml  # noqa: E402
from ultralytics.nn import tasks  # noqa: E402

from gaussconv_plugin import GaussianShapedConv  # noqa: E402
from gaussconv_plugin.yolo import cfgs_dir, list_cfgs  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_thread")

FAMILIES = ("yolov8", "yolo11", "yolo26")


def _load(name: str) -> dict:
    return yaml.safe_load((cfgs_dir() / name).read_text())


@pytest.mark.parametrize("fam", FAMILIES)
@pytest.mark.parametrize("kind", ("gauss", "base"))
def test_p2only_is_the_p2_twin_cut_after_its_p2_block(fam, kind):
    assert f"{fam}-p2only-{kind}.yaml" in list_cfgs()
    full, cut = _load(f"{fam}-p2-{kind}.yaml"), _load(f"{fam}-p2only-{kind}.yaml")
    det = full["head"][-1]
    p2 = det[0][0]  # the finest input of the 4-level Detect
    keep = p2 - len(full["backbone"]) + 1
    assert cut["head"] == full["head"][:keep] + [[[p2], *det[1:]]]
    assert {k: v for k, v in cut.items() if k != "head"} == {k: v for k, v in full.items() if k != "head"}


@pytest.mark.parametrize("fam", FAMILIES)
def test_p2only_twins_build_with_one_stride_4_level_and_differ_only_in_the_conv(fam, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # bare names resolve from anywhere
    n = fam[:6] + "n" + fam[6:]
    torch.manual_seed(0)
    g = tasks.DetectionModel(f"{n}-p2only-gauss.yaml", nc=1, verbose=False)
    torch.manual_seed(0)
    b = tasks.DetectionModel(f"{n}-p2only-base.yaml", nc=1, verbose=False)
    torch.manual_seed(0)
    full = tasks.DetectionModel(f"{n}-p2-base.yaml", nc=1, verbose=False)
    assert g.model[-1].stride.tolist() == b.model[-1].stride.tolist() == [4.0]
    assert [type(g.model[i]) for i in (0, 1)] == [GaussianShapedConv] * 2
    extra = 2 * (g.model[0].conv.out_channels + g.model[1].conv.out_channels)  # σ and θ per output channel
    assert sum(p.numel() for p in g.parameters()) == sum(p.numel() for p in b.parameters()) + extra
    assert sum(p.numel() for p in b.parameters()) < sum(p.numel() for p in full.parameters())
    with torch.no_grad():
        y = b.eval()(torch.zeros(1, 3, 64, 64))
    y = y[0] if isinstance(y, (list, tuple)) else y
    assert y.shape[-1] == (64 // 4) ** 2  # one prediction per stride-4 cell, nothing coarser


def test_the_evidence_trained_the_packaged_p2only_models(tmp_path):
    """The ablation's ``stock-finest`` / ``gsconv-finest`` variants (docs/ablation/ood_yolo_finest_train_val) build
    the same layers as the packaged YOLOv8 P2-only twins, so their tables speak for these files."""
    from tools.evidence import yolo_part
    from tools.evidence.core import Run

    for variant, kind in (("stock-finest", "base"), ("gsconv-finest", "gauss")):
        run = Run("yolo", variant, 0, 1, tmp_path / variant, {"yolo_arch": "p2"})
        run.dir.mkdir()
        made = yaml.safe_load(yolo_part.model_yaml(run).read_text())
        packaged = _load(f"yolov8-p2only-{kind}.yaml")
        assert made["backbone"] == packaged["backbone"] and made["head"] == packaged["head"], variant
