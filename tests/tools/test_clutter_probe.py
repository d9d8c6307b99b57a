"""tools.evidence.clutter_probe: per-layer activation growth and the BatchNorm re-estimation it checks."""
import cv2
import numpy as np
import pytest
import torch

from tools.evidence.clutter_probe import LAYERS, _files, bn_recalibrated, layer_growth, load_images


@pytest.fixture(scope="module")
def model():
    from ultralytics.nn.tasks import DetectionModel

    import gaussconv_plugin.yolo  # noqa: F401

    torch.manual_seed(0)
    return DetectionModel("yolov8n-p2-gauss.yaml", nc=1, verbose=False).eval()


def test_growth_is_one_on_the_same_images_and_grows_with_contrast(model):
    torch.manual_seed(1)
    x = torch.rand(4, 3, 64, 64) * 0.2
    same = layer_growth(model, x, x.clone(), batch=2)
    assert [r["layer"] for r in same] == list(LAYERS)
    assert all(r["ratio"] == pytest.approx(1.0, rel=1e-5) for r in same)
    clutter = x.clone()
    clutter[:, :, ::4, :] = 1.0  # thin bright lines: high-frequency clutter
    grown = layer_growth(model, x, clutter, batch=2)
    assert grown[0]["ratio"] > 1.5  # the stem sees the lines
    assert not any(h for m in model.modules() for h in m._forward_hooks.values())  # hooks removed


def test_bn_recalibration_restores_corrupted_statistics_and_leaves_the_model(model):
    torch.manual_seed(2)
    x = torch.rand(8, 3, 64, 64)
    ref = model(x)[0].detach()
    broken = bn_recalibrated(model, x)  # a copy, statistics from x
    bn = broken.model[0].bn
    bn.running_mean.add_(5.0)  # corrupted
    assert not torch.allclose(broken(x)[0], ref, atol=1e-3)
    fixed = bn_recalibrated(broken, x)
    assert torch.allclose(fixed.model[0].bn.running_mean, bn.running_mean - 5.0, atol=1e-4)
    assert not fixed.training and fixed.model[0].bn.momentum == 0.03
    assert torch.equal(model(x)[0].detach(), ref)  # the original untouched


def test_images_letterboxed_and_bad_folders_are_one_line_errors(tmp_path):
    cv2.imwrite(str(tmp_path / "a.png"), np.full((30, 60), 200, np.uint8))
    x = load_images(_files(str(tmp_path)), 64)
    assert x.shape == (1, 3, 64, 64) and float(x.max()) == pytest.approx(200 / 255)
    with pytest.raises(SystemExit, match="not a folder of images"):
        _files(str(tmp_path / "nope"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(SystemExit, match="no images in"):
        _files(str(tmp_path / "empty"))
