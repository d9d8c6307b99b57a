"""DiffScaleIoULoss forms against MMDetection's own GIoULoss: add/none = GIoULoss, add/diff = GIoULoss + λ(1 − α)
per box, mul = the old 1 − α·IoU + GIoU penalty; the add form never rewards a size mismatch of disjoint boxes."""
from __future__ import annotations

import pytest
import torch

pytest.importorskip("mmdet", reason="mmdet not installed: make setup")

from mmdet.models.losses import GIoULoss, IoULoss  # noqa: E402
from mmdet.structures.bbox import bbox_overlaps  # noqa: E402

from gaussconv_plugin.losses import box_area, scale_weight  # noqa: E402
from gaussconv_plugin.mmdet.detection import DiffScaleIoULoss, diff_scale_iou_loss  # noqa: E402


def _boxes(n, g, lo=1.0, hi=80.0):
    xy = torch.rand(n, 2, generator=g) * 200
    wh = torch.rand(n, 2, generator=g) * (hi - lo) + lo
    return torch.cat([xy, xy + wh], 1)


@pytest.fixture(scope="module")
def boxes():
    """64 pairs: tiny (1–4 px) and large boxes, overlapping, identical-size, and disjoint."""
    g = torch.Generator().manual_seed(0)
    pred = torch.cat([_boxes(24, g), _boxes(24, g, 1.0, 4.0), _boxes(16, g)])
    target = torch.cat([_boxes(24, g), _boxes(24, g, 1.0, 4.0), _boxes(16, g)])
    target[:16] = pred[:16] + torch.randn(16, 4, generator=g) * 3  # overlapping, different size
    target[:16] = torch.cat([torch.min(target[:16, :2], target[:16, 2:] - 1), torch.max(target[:16, 2:], target[:16, :2] + 1)], 1)
    pred[48:56] = torch.round(pred[48:56] * 4) / 4  # quarter pixels: the shifted copy has exactly the same area
    target[48:56] = pred[48:56] + 5.0  # same size, shifted: α = 1
    target[56:] = pred[56:] * 0.5 + 300.0  # far away, other size: disjoint
    return pred, target


def _giou_iou(pred, target):
    return bbox_overlaps(pred, target, mode="giou", is_aligned=True, eps=1e-6), bbox_overlaps(
        pred, target, mode="iou", is_aligned=True, eps=1e-6)


def test_add_none_equals_giou_loss(boxes):
    pred, target = boxes
    g = torch.Generator().manual_seed(1)
    weight = (torch.rand(len(pred), 4, generator=g) > 0.3).float()
    ours = DiffScaleIoULoss(mode="none", form="add", lam=3.0, loss_weight=2.0)
    host = GIoULoss(loss_weight=2.0)
    for kw in (dict(), dict(weight=weight), dict(weight=weight, avg_factor=11.0),
               dict(weight=weight[:, 0], reduction_override="sum"), dict(reduction_override="none")):
        torch.testing.assert_close(ours(pred, target, **kw), host(pred, target, **kw), rtol=1e-5, atol=1e-6)
    # IoU host too
    torch.testing.assert_close(DiffScaleIoULoss(mode="none", iou_mode="iou")(pred, target),
                               IoULoss(mode="linear")(pred, target), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("lam", [1.0, 0.5])
@pytest.mark.parametrize("mode", ["diff", "sqrt", "ratio", "var"])
def test_add_is_giou_loss_plus_scale_term_per_box(boxes, mode, lam):
    pred, target = boxes
    alpha = scale_weight(box_area(pred), box_area(target), mode)
    assert float(alpha.min()) < 0.9 and bool((alpha[48:56] == 1).all())
    host = GIoULoss(reduction="none")(pred, target)
    got = DiffScaleIoULoss(mode=mode, form="add", lam=lam, reduction="none")(pred, target)
    torch.testing.assert_close(got, host + lam * (1 - alpha), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(got[48:56], host[48:56], rtol=0, atol=1e-6)  # equal areas: nothing added
    assert bool((got >= host - 1e-6).all())
    # reductions and weights act on the per-box loss exactly as mmdet's
    w = torch.linspace(0.1, 1.0, len(pred))
    torch.testing.assert_close(DiffScaleIoULoss(mode=mode, form="add", lam=lam)(pred, target, w, avg_factor=7.0),
                               (got * w).sum() / 7.0, rtol=1e-5, atol=1e-6)


def test_default_form_is_add_with_lambda_one(boxes):
    pred, target = boxes
    d = DiffScaleIoULoss()
    assert (d.mode, d.form, d.lam, d.iou_mode) == ("diff", "add", 1.0, "giou")
    torch.testing.assert_close(d(pred, target, reduction_override="none"),
                               diff_scale_iou_loss(pred, target, "diff", "giou", form="add", lam=1.0))


def test_mul_keeps_the_old_behaviour(boxes):
    """form='mul': 1 − α·IoU + (IoU − GIoU), i.e. the old loss with α on the IoU and the GIoU penalty unscaled."""
    pred, target = boxes
    giou, iou = _giou_iou(pred, target)
    alpha = scale_weight(box_area(pred), box_area(target), "diff")
    got = DiffScaleIoULoss(mode="diff", form="mul", reduction="none")(pred, target)
    torch.testing.assert_close(got, 1 - alpha * iou + (iou - giou), rtol=1e-5, atol=1e-6)
    # lam does not enter the mul form
    torch.testing.assert_close(DiffScaleIoULoss(mode="diff", form="mul", lam=5.0, reduction="none")(pred, target), got)
    # iou_mode='iou': exactly 1 − α·IoU
    torch.testing.assert_close(diff_scale_iou_loss(pred, target, "diff", "iou", form="mul"), 1 - alpha * iou,
                               rtol=1e-5, atol=1e-6)
    # disjoint pairs: IoU = 0, so mul adds nothing there; add does
    host = GIoULoss(reduction="none")(pred, target)
    torch.testing.assert_close(got[56:], host[56:], rtol=1e-5, atol=1e-6)
    add = DiffScaleIoULoss(mode="diff", reduction="none")(pred, target)
    assert bool((add[56:] > host[56:] + 1e-3).all())


def test_old_whole_giou_scaling_would_reward_disjoint_mismatch(boxes):
    """Control: 1 − α·GIoU (α on the whole GIoU) drops below GIoULoss for disjoint boxes of another size."""
    pred, target = boxes
    giou, _ = _giou_iou(pred, target)
    alpha = scale_weight(box_area(pred), box_area(target), "diff")
    host = GIoULoss(reduction="none")(pred, target)
    old = 1 - alpha * giou
    assert bool((giou[56:] < 0).all()) and bool((alpha[56:] < 1).all())
    assert bool((old[56:] < host[56:]).all())
    for form in ("add", "mul"):
        new = DiffScaleIoULoss(mode="diff", form=form, reduction="none")(pred, target)
        assert bool((new >= host - 1e-6).all()), form


def test_form_and_lam_errors_are_one_line():
    with pytest.raises(ValueError, match="unknown box scale-loss form 'prod'; use one of add, mul") as e:
        DiffScaleIoULoss(form="prod")
    assert "\n" not in str(e.value)
    with pytest.raises(ValueError, match="lam must be >= 0") as e:
        DiffScaleIoULoss(lam=-1.0)
    assert "\n" not in str(e.value)
    assert "form='add'" in repr(DiffScaleIoULoss()) and "lam=1.0" in repr(DiffScaleIoULoss())
