"""PConv (pinwheel-shaped conv of Yang et al., AAAI 2025): geometry, errors, and the Ultralytics YAML row."""
from __future__ import annotations

import os
import re
import tempfile

import pytest
import torch
import torch.nn as nn

for _k, _v in {"YOLO_OFFLINE": "1", "YOLO_AUTOINSTALL": "false", "MPLBACKEND": "Agg", "HF_HUB_OFFLINE": "1"}.items():
    os.environ.setdefault(_k, _v)
os.environ.setdefault("YOLO_CONFIG_DIR", tempfile.mkdtemp(prefix="gaussconv_yolo_cfg_"))

from gaussconv_plugin.pconv import PConv  # noqa: E402


pytestmark = pytest.mark.usefixtures("one_thread")


# ---------------------------------------------------------------------------------------------- module
@pytest.mark.parametrize("k", [3, 5])
@pytest.mark.parametrize("s", [1, 2])
@pytest.mark.parametrize("hw", [(16, 20), (32, 32), (24, 8)])
def test_output_shape_equals_a_same_padded_conv(k, s, hw):
    torch.manual_seed(0)
    x = torch.randn(2, 3, *hw)
    y = PConv(3, 8, k, s)(x)
    ref = nn.Conv2d(3, 8, k, s, k // 2)(x)
    assert y.shape == ref.shape
    assert bool(torch.isfinite(y).all())


@pytest.mark.parametrize("k", [3, 5])
def test_stride1_any_size_and_stride2_odd_size_geometry(k):
    """Stride 1: same size for any input. Stride 2 with odd sides: the paper's geometry gives ⌊H/2⌋ (a 'same'
    conv gives ⌈H/2⌉); YOLO inputs are multiples of 32, where the two agree."""
    x = torch.randn(1, 3, 17, 21)
    assert PConv(3, 8, k, 1)(x).shape[-2:] == (17, 21)
    assert PConv(3, 8, k, 2)(x).shape[-2:] == (8, 10)


@pytest.mark.parametrize("k", [3, 5])
def test_structure_parameters_and_receptive_field(k):
    c1, c2 = 5, 12
    m = PConv(c1, c2, k, 1)
    q = c2 // 4
    assert m.cw[0].weight.shape == (q, c1, 1, k) and m.ch[0].weight.shape == (q, c1, k, 1)
    assert m.cat[0].weight.shape == (c2, c2, 2, 2)
    n = sum(p.numel() for p in m.parameters())
    assert n == 2 * (c1 * q * k + 2 * q) + c2 * c2 * 4 + 2 * c2
    assert [p.padding for p in m.pad] == [(k, 0, 1, 0), (0, k, 0, 1), (0, 1, k, 0), (1, 0, 0, k)]
    # an output pixel reads a pinwheel: four 2-wide arms reaching k pixels out, 8k + 1 pixels, 90° symmetric
    m.eval()
    x = torch.zeros(1, c1, 17, 17, requires_grad=True)
    m(x)[0, :, 8, 8].sum().backward()
    reach = x.grad.abs().sum(1)[0] != 0
    assert bool(reach[8, 8]) and int(reach.sum()) == 8 * k + 1
    rows, cols = reach.nonzero(as_tuple=True)
    assert int(rows.max() - rows.min()) == int(cols.max() - cols.min()) == 2 * k
    assert torch.equal(reach, torch.rot90(reach, 1, (0, 1)))
    assert not torch.equal(reach, reach.flip(1))  # a windmill, not a cross: no mirror symmetry


def test_act_argument_like_ultralytics_conv():
    assert isinstance(PConv(3, 8).cat[2], nn.SiLU)
    assert isinstance(PConv(3, 8, act=False).cat[2], nn.Identity)
    relu = nn.ReLU()
    assert PConv(3, 8, act=relu).cw[2] is relu


@pytest.mark.parametrize("c2", [6, 10, 3])
def test_c2_not_divisible_by_4_is_a_one_line_error(c2):
    with pytest.raises(ValueError, match=rf"PConv needs c2 divisible by 4 \(got {c2}\)") as e:
        PConv(3, c2)
    msg = str(e.value)
    assert "\n" not in msg
    suggested = int(re.search(r"such as (\d+)", msg).group(1))
    assert suggested % 4 == 0 and suggested > c2


# ---------------------------------------------------------------------------------------------- YOLO YAML
@pytest.fixture(scope="module")
def tasks():
    pytest.importorskip("ultralytics", reason="ultralytics not installed: make setup")
    from gaussconv_plugin.yolo.offline import ensure_fonts

    ensure_fonts(os.environ["YOLO_CONFIG_DIR"])
    from ultralytics.nn import tasks

    from gaussconv_plugin.yolo import adapter

    adapter.register()
    return tasks


def _pconv_yaml(tmp_path, rows=(0, 1)):
    from gaussconv_plugin.yolo import cfgs_dir

    lines = (cfgs_dir() / "yolov8-p2-base.yaml").read_text().splitlines()
    for i in rows:
        (j,) = [n for n, ln in enumerate(lines) if re.search(rf"# {i}-P", ln)]
        assert "Conv, [" in lines[j]
        lines[j] = lines[j].replace("Conv, [", "PConv, [")
    f = tmp_path / "yolov8-p2-pconv.yaml"
    f.write_text("\n".join(lines) + "\n")
    return tmp_path / "yolov8n-p2-pconv.yaml"  # scale 'n' from the name, as for stock configs


def test_yaml_pconv_rows_build_and_run(tasks, tmp_path):
    path = _pconv_yaml(tmp_path)
    assert "- [-1, 1, PConv, [64, 3, 2]]" in (tmp_path / "yolov8-p2-pconv.yaml").read_text()
    assert tasks.PConv is PConv
    torch.manual_seed(0)
    m = tasks.DetectionModel(str(path), nc=1, verbose=False)
    assert isinstance(m.model[0], PConv) and isinstance(m.model[1], PConv)
    assert not any(isinstance(x, PConv) for x in m.model[2:])
    assert m.model[0].cat[0].out_channels == 16 and m.model[1].cat[0].out_channels == 32  # width 0.25
    assert m.model[0].cw[0].in_channels == 3 and m.model[1].cw[0].in_channels == 16
    assert m.model[0].cw[0].stride == (2, 2) and m.model[1].ch[0].stride == (2, 2)
    assert m.model[0].cw[0].kernel_size == (1, 3) and m.model[0].ch[0].kernel_size == (3, 1)
    assert (m.model[0].i, m.model[0].f, m.model[1].i) == (0, -1, 1)
    assert m.model[0].type == "gaussconv_plugin.pconv.PConv"
    assert m.model[0].np == sum(p.numel() for p in m.model[0].parameters())
    assert isinstance(m.model[0].cw[2], nn.SiLU)
    # same feature-map plan as the stock base twin
    base = tasks.DetectionModel("yolov8n-p2-base.yaml", nc=1, verbose=False)
    x = torch.rand(1, 3, 64, 64)
    shapes = []
    hooks = [m.model[i].register_forward_hook(lambda mod, i, o: shapes.append(tuple(o.shape))) for i in (0, 1)]
    m.eval(), base.eval()
    with torch.no_grad():
        y, yb = m(x), base(x)
    for h in hooks:
        h.remove()
    assert shapes == [(1, 16, 32, 32), (1, 32, 16, 16)]
    y0, yb0 = (v[0] if isinstance(v, (tuple, list)) else v for v in (y, yb))
    assert y0.shape == yb0.shape and bool(torch.isfinite(y0).all())
    # a training forward/backward reaches the PConv weights
    m.train()
    out = m(x)
    leaves = [t for t in (out if isinstance(out, (list, tuple)) else [out]) if isinstance(t, torch.Tensor)]
    if not leaves:  # newer heads return a dict of tensors
        leaves = [t for v in out.values() for t in (v if isinstance(v, (list, tuple)) else [v])
                  if isinstance(t, torch.Tensor)]
    sum(t.float().mean() for t in leaves).backward()
    assert m.model[0].cw[0].weight.grad.abs().sum() > 0 and m.model[1].cat[0].weight.grad.abs().sum() > 0


def test_yaml_pconv_keeps_the_rng_stream_of_the_stock_twin(tasks, tmp_path):
    path = _pconv_yaml(tmp_path)
    torch.manual_seed(0)
    m = tasks.DetectionModel(str(path), nc=1, verbose=False)
    torch.manual_seed(0)
    b = tasks.DetectionModel("yolov8n-p2-base.yaml", nc=1, verbose=False)
    sm, sb = m.state_dict(), b.state_dict()
    later = [k for k in sb if not k.startswith(("model.0.", "model.1."))]
    assert later and all(torch.equal(sm[k], sb[k]) for k in later)


def test_yaml_pconv_verbose_row_shows_its_parameter_count(tasks, tmp_path, ultralytics_log):
    path = _pconv_yaml(tmp_path, rows=(0,))
    m = tasks.DetectionModel(str(path), nc=1, verbose=True)
    (row0,) = [ln for ln in ultralytics_log if ln[:3].strip() == "0" and "[" in ln]
    assert "gaussconv_plugin.PConv" in row0
    n = sum(p.numel() for p in m.model[0].parameters())
    assert re.search(rf"\s{n}\s", row0), (n, row0)
    assert isinstance(m.model[0], PConv) and not isinstance(m.model[1], PConv)


def test_yaml_pconv_row_rejects_options(tasks, tmp_path):
    d = tasks.yaml_model_load("yolov8n-p2-base.yaml")
    d["backbone"][0] = [-1, 1, "PConv", [64, 3, 2, {"sigma_init": 1.0}]]
    with pytest.raises(ValueError, match="PConv rows take no options dict") as e:
        tasks.DetectionModel(d, nc=1, verbose=False)
    assert "\n" not in str(e.value)


def test_packaged_pconv_twin_builds(tasks):
    """The packaged peer twin yolov8-p2-pconv.yaml resolves by bare name and has PConv exactly in layers 0-1."""
    m = tasks.DetectionModel("yolov8n-p2-pconv.yaml", nc=1, verbose=False)
    assert [isinstance(x, PConv) for x in m.model[:3]] == [True, True, False]
    assert m.yaml["scale_loss"] == "none"
    with torch.no_grad():
        m.eval()(torch.rand(1, 3, 64, 64))
