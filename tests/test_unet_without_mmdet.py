"""The U-Net task needs MMEngine alone: with MMDetection, MMCV and Ultralytics unimportable (a GPU machine where only
``pip install mmengine pyirstdmetrics`` is possible, say), ``gaussconv_plugin.mmdet`` still imports and registers the
conv and the U-Net task, ``tools/train.py`` trains the U-Net config, and the detection names raise one
``ImportError`` that names the fix. Each check runs in a child process whose ``sitecustomize`` hides those hosts."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("mmengine")
pytest.importorskip("py_irstd_metrics")

REPO = Path(__file__).resolve().parents[1]
HIDDEN = ("mmdet", "mmcv", "ultralytics")
BLOCKER = f'''import sys
class _Hide:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {HIDDEN!r}:
            raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)
sys.meta_path.insert(0, _Hide())
'''


def _run(tmp_path: Path, *args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    hide = tmp_path / "hide"
    hide.mkdir(exist_ok=True)
    (hide / "sitecustomize.py").write_text(BLOCKER)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(hide), str(REPO)]), OMP_NUM_THREADS="1")
    return subprocess.run([sys.executable, *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)


def test_adapter_imports_and_names_the_fix(tmp_path):
    code = """
import sys
import gaussconv_plugin.mmdet as m
from mmengine.registry import MODELS, DATASETS, METRICS
assert not any(k.split('.')[0] in ('mmdet', 'mmcv', 'ultralytics') for k in sys.modules), 'a host was imported'
assert MODELS.get('GaussianShapedConv2d') is not None and MODELS.get('IRSTDSegmentor') is not None
assert DATASETS.get('SIRSTSegDataset') is not None and METRICS.get('IRSTDMetric') is not None
assert m.conv_type_registered('GaussianShapedConv2d') and not m.conv_type_registered('NoSuchConv')
try:
    m.GaussResNet
except ImportError as e:
    print('ERR', e)
else:
    raise AssertionError('GaussResNet resolved without mmdet')
"""
    p = _run(tmp_path, "-c", code)
    assert p.returncode == 0, p.stderr[-2000:]
    err = p.stdout.strip().splitlines()[-1]
    assert err.startswith("ERR GaussResNet and DiffScaleIoULoss need MMDetection") and "tools/setup_env.sh" in err
    assert "\n" not in err


def test_unet_config_trains_without_mmdet(tmp_path):
    work = tmp_path / "work"
    opts = ["train_dataloader.dataset.max_images=4", "train_dataloader.dataset.crop_size=64",
            "train_dataloader.dataset.base_size=128", "train_dataloader.batch_size=4",
            "val_dataloader.dataset.max_images=2", "train_cfg.max_epochs=1", "train_cfg.val_interval=1",
            "default_hooks.logger.interval=1", "model.warmup_epochs=0", "model.loss.mode=diff",
            "model.net.gauss_conv=both"]
    for d in ("train_dataloader", "val_dataloader", "test_dataloader"):
        opts += [f"{d}.num_workers=0", f"{d}.persistent_workers=False"]
    p = _run(tmp_path, "tools/train.py", "mmdet_cfgs/unet_mshnet_base_cpu.py", "--work-dir", str(work),
             "--cfg-options", *opts)
    assert p.returncode == 0, (p.stdout + p.stderr)[-3000:]
    rows = [json.loads(line) for f in work.glob("*/vis_data/scalars.json") for line in f.read_text().splitlines()]
    assert any("loss_seg" in r for r in rows)
    val = [r for r in rows if "irstd/mIoU" in r]
    assert len(val) == 1 and 0.0 <= val[0]["irstd/mIoU"] <= 1.0
    assert (work / "epoch_1.pth").is_file()
