"""Scale-loss family: geometry of α, empty masks, autocast, the vectorised location loss, errors."""
import math

import pytest
import torch

from gaussconv_plugin import SCALE_MODES, ScaleIoULoss, location_loss, scale_iou_loss, scale_weight, soft_iou


def _alpha_curve(mode, t=100.0, lo=0.01, hi=400.0, n=4000):
    p = torch.linspace(lo, hi, n, dtype=torch.float64)
    return p, scale_weight(p, torch.tensor(t), mode).double()


@pytest.mark.parametrize("mode", ["diff", "ratio", "sqrt"])
@pytest.mark.parametrize("t", [1.0, 9.0, 100.0, 2500.0])
def test_monotone_modes_peak_at_target(mode, t):
    p, a = _alpha_curve(mode, t, lo=t / 100, hi=t * 4)
    below, above = p < t, p > t
    assert bool((a[below].diff() > 0).all()), "alpha must strictly increase on (0, T)"
    assert bool((a[above].diff() < 0).all()), "alpha must strictly decrease on (T, inf)"
    assert float(scale_weight(torch.tensor(t), torch.tensor(t), mode)) == pytest.approx(1.0)
    assert bool(((a >= 0) & (a <= 1)).all())


def test_var_is_not_monotone():
    p, a = _alpha_curve("var", 100.0)
    below = p < 100
    assert not bool((a[below].diff() > 0).all())
    t = torch.tensor(100.0)
    # the numbers quoted in docs/method.md (scale-loss table, var row: α(1) = 0.961 > α(80) = 0.900)
    assert float(scale_weight(torch.tensor(1.0), t, "var")) == pytest.approx(0.9612, abs=1e-4)
    assert float(scale_weight(torch.tensor(80.0), t, "var")) == pytest.approx(0.90, abs=1e-6)


def test_diff_formula_and_signed_coefficients():
    p, t = torch.tensor([50.0, 150.0]), torch.tensor(100.0)
    torch.testing.assert_close(scale_weight(p, t, "diff"), torch.tensor([1 - 50 / 150, 1 - 50 / 250]))
    a = scale_weight(p, t, "diff", lambda_over=0.5, lambda_under=1.0)
    torch.testing.assert_close(a, torch.tensor([1 - 50 / 150, 1 - 0.5 * 50 / 250]))
    # over-segmentation punished less than under-segmentation of the same |D| with λ+ < λ-
    a = scale_weight(torch.tensor([80.0, 120.0]), t, "diff", lambda_over=0.3, lambda_under=1.0)
    assert a[1] > a[0]


@pytest.mark.parametrize("mode", SCALE_MODES)
def test_empty_cases_are_finite_and_documented(mode):
    p = torch.tensor([0.0, 0.0, 7.0])
    t = torch.tensor([0.0, 7.0, 0.0])
    a = scale_weight(p, t, mode)
    assert bool(torch.isfinite(a).all())
    assert float(a[0]) == 1.0  # both empty: agreement
    # P = 0 < T (miss) and T = 0 < P (false alarm): the documented values (module docstring), both symmetric here
    expected = {"diff": 0.0, "ratio": 0.0, "sqrt": 0.0, "none": 1.0, "var": (49 / 4) / (7 + 49 / 4)}
    assert float(a[1]) == pytest.approx(expected[mode], abs=1e-6)
    assert float(a[2]) == pytest.approx(expected[mode], abs=1e-6)


def test_false_alarm_uses_lambda_over_and_miss_lambda_under():
    """diff: T = 0 < P gives 1 − λ₊, P = 0 < T gives 1 − λ₋ (the two empty cases are told apart)."""
    a = scale_weight(torch.tensor([7.0, 0.0]), torch.tensor([0.0, 7.0]), "diff", lambda_over=0.3, lambda_under=0.8)
    assert float(a[0]) == pytest.approx(0.7, abs=1e-6) and float(a[1]) == pytest.approx(0.2, abs=1e-6)
    # and the loss of a false alarm is 1 − α·IoU with IoU = 0: exactly 1 for every mode
    logits = torch.full((1, 1, 8, 8), -100.0)
    logits[..., 2:4, 2:4] = 100.0  # P = 4, T = 0
    for mode in SCALE_MODES:
        loss = scale_iou_loss(logits, torch.zeros(1, 1, 8, 8), mode, with_location=False)
        assert float(loss) == pytest.approx(1.0, abs=1e-6), mode


@pytest.mark.parametrize("mode", SCALE_MODES)
@pytest.mark.parametrize("autocast", [False, True])
def test_loss_finite_for_empty_target_and_prediction(mode, autocast):
    n = 4
    logits = torch.randn(n, 1, 32, 32) * 3
    logits[1] = -60.0  # prediction ~ empty
    logits[2] = -60.0
    target = (torch.rand(n, 1, 32, 32) > 0.97).float()
    target[0] = 0  # empty target
    target[2] = 0  # both empty
    logits.requires_grad_(True)
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
        loss = ScaleIoULoss(mode)(logits, target)
        per = ScaleIoULoss(mode, reduction="none")(logits, target)
    assert loss.dtype == torch.float32 and bool(torch.isfinite(loss))
    assert per.shape == (n,) and bool(torch.isfinite(per).all())
    loss.backward()
    assert bool(torch.isfinite(logits.grad).all())


def test_both_empty_image_gives_zero_iou_loss():
    logits = torch.full((1, 1, 8, 8), -100.0)
    target = torch.zeros(1, 1, 8, 8)
    assert float(soft_iou(torch.sigmoid(logits), target)) == 1.0
    assert float(scale_iou_loss(logits, target, "diff", with_location=False)) == pytest.approx(0.0, abs=1e-6)


def test_every_weight_and_the_mask_loss_at_hand_computed_values():
    """α(25, 100) of every mode from the module docstring's formulas, and the soft IoU / mask loss of a case worked
    by hand: two pixels at p = 0.5 (P = 1), a 2-pixel target over one of them (T = 2, I = 0.5, U = 2.5)."""
    p, t = torch.tensor(25.0), torch.tensor(100.0)
    q = (75 / 2) ** 2
    hand = {"diff": 1 - 75 / 125, "ratio": 25 / 100, "sqrt": 1 - (10 - 5) / (10 + 5), "var": (25 + q) / (100 + q),
            "none": 1.0}
    for mode, a in hand.items():
        assert float(scale_weight(p, t, mode)) == pytest.approx(a, abs=1e-6), mode
    logits = torch.full((1, 1, 4, 4), -100.0)
    logits[0, 0, 0, :2] = 0.0  # sigmoid 0.5 on two pixels
    target = torch.zeros(1, 1, 4, 4)
    target[0, 0, 0, 1:3] = 1.0
    assert float(soft_iou(torch.sigmoid(logits), target)) == pytest.approx(0.5 / 2.5, abs=1e-6)
    alpha = {"none": 1.0, "diff": 1 - 1 / 3, "ratio": 1 / 2, "sqrt": 1 - (2 ** 0.5 - 1) / (2 ** 0.5 + 1),
             "var": (1 + 0.25) / (2 + 0.25)}
    for mode, a in alpha.items():
        loss = scale_iou_loss(logits, target, mode, with_location=False)
        assert float(loss) == pytest.approx(1 - a * 0.2, abs=1e-6), mode


def test_warmup_is_plain_soft_iou_and_modes_differ():
    torch.manual_seed(0)
    logits = torch.randn(3, 1, 16, 16)
    target = (torch.rand(3, 1, 16, 16) > 0.9).float()
    iou = soft_iou(torch.sigmoid(logits), target)
    torch.testing.assert_close(ScaleIoULoss("var")(logits, target, warmup=True), (1 - iou).mean())
    vals = {m: float(ScaleIoULoss(m, with_location=False)(logits, target)) for m in SCALE_MODES}
    assert len({round(v, 6) for v in vals.values()}) == len(SCALE_MODES)


def _location_loss_reference(pred, target):
    """MSHNet's LLoss, transcribed as a per-sample loop."""
    loss = torch.tensor(0.0)
    b, _, h, w = pred.shape
    x_index = torch.arange(0, w, 1).view(1, 1, w).repeat((1, h, 1)).to(pred) / w
    y_index = torch.arange(0, h, 1).view(1, h, 1).repeat((1, 1, w)).to(pred) / h
    smooth = 1e-8
    for i in range(b):
        pcx, pcy = (x_index * pred[i]).mean(), (y_index * pred[i]).mean()
        tcx, tcy = (x_index * target[i]).mean(), (y_index * target[i]).mean()
        angle = (4 / (math.pi**2)) * torch.square(torch.arctan(pcy / (pcx + smooth))
                                                  - torch.arctan(tcy / (tcx + smooth)))
        pl = torch.sqrt(pcx * pcx + pcy * pcy + smooth)
        tl = torch.sqrt(tcx * tcx + tcy * tcy + smooth)
        length = torch.min(pl, tl) / (torch.max(pl, tl) + smooth)
        loss = loss + (1 - length + angle) / b
    return loss


def test_location_loss_matches_reference_loop():
    torch.manual_seed(0)
    pred = torch.rand(6, 1, 24, 40)
    target = (torch.rand(6, 1, 24, 40) > 0.95).float()
    target[0] = 0
    pred[1] = 0
    torch.testing.assert_close(location_loss(pred, target), _location_loss_reference(pred, target),
                               atol=1e-6, rtol=1e-6)
    # and the gradient
    p1 = pred.clone().requires_grad_(True)
    p2 = pred.clone().requires_grad_(True)
    location_loss(p1, target).backward()
    _location_loss_reference(p2, target).backward()
    torch.testing.assert_close(p1.grad, p2.grad, atol=1e-6, rtol=1e-5)


def test_errors_are_one_line_and_name_the_fix():
    with pytest.raises(ValueError, match="use one of diff, var, ratio, sqrt, none") as e:
        scale_weight(torch.ones(1), torch.ones(1), "dif")
    assert "\n" not in str(e.value)
    with pytest.raises(ValueError, match="use one of"):
        ScaleIoULoss("variance")
    with pytest.raises(ValueError, match=r"resize the mask to the logits' size"):
        ScaleIoULoss()(torch.zeros(2, 1, 16, 16), torch.zeros(2, 1, 32, 32))
    with pytest.raises(ValueError, match="lambda_over must lie in"):
        scale_weight(torch.ones(1), torch.ones(1), "diff", lambda_over=2.0)
    with pytest.raises(ValueError, match="reduction"):
        ScaleIoULoss(reduction="avg")
    mask = torch.zeros(1, 1, 8, 8)
    mask[..., 2:4, 2:4] = 255.0  # as read from a PNG
    loss = ScaleIoULoss("diff")
    with pytest.raises(ValueError, match=r"target values span \[0, 255\]; pass a 0/1 mask \(divide a 0/255 mask"):
        loss(torch.zeros(1, 1, 8, 8), mask)
    assert torch.isfinite(loss(torch.zeros(1, 1, 8, 8), mask / 255))  # checked once, then as before


def _pixel_grads(g: float, mode: str, area_grad: str, size: int = 32):
    """Gradient of the mask loss (no location term) w.r.t. the logits of a uniform map of probability ``g`` with a
    4×4 target: ``(grad at a target pixel, grad at a background pixel, loss)``."""
    t = torch.zeros(1, 1, size, size)
    t[..., 14:18, 14:18] = 1
    logit = torch.full((1, 1, size, size), math.log(g / (1 - g)), requires_grad=True)
    loss = scale_iou_loss(logit, t, mode, with_location=False, area_grad=area_grad)
    loss.backward()
    return float(logit.grad[0, 0, 15, 15]), float(logit.grad[0, 0, 0, 0]), float(loss.detach())


def test_area_gradient_raises_background_when_the_prediction_is_too_small():
    """The defect ``area_grad='directed'`` removes: with P = Σ p, a map smaller than its target (P = 5 < T = 16)
    has its background pushed *up* by diff's scale factor (descent raises a pixel whose gradient is < 0), while the
    plain soft-IoU loss pushes it down."""
    _, bg_all, _ = _pixel_grads(0.005, "diff", "all")
    _, bg_iou, _ = _pixel_grads(0.005, "none", "all")
    assert bg_all < 0 < bg_iou


@pytest.mark.parametrize("mode", ["diff", "ratio", "sqrt", "none"])
def test_directed_area_gradient_only_pushes_the_right_way(mode):
    """Same loss value as ``all``; every target pixel's gradient ≤ 0 (descent raises it) and every background
    pixel's ≥ 0, for maps from far too small (P ≪ T) to far too large (P ≫ T), and for random maps."""
    for g in (0.001, 0.005, 0.02, 0.1, 0.5, 0.9):
        tg, bg, loss = _pixel_grads(g, mode, "directed")
        assert tg <= 0 <= bg, (g, tg, bg)
        assert loss == pytest.approx(_pixel_grads(g, mode, "all")[2], rel=1e-6)
    gen = torch.Generator().manual_seed(0)
    logits = (torch.randn(8, 1, 24, 24, generator=gen) * 3 - 2).requires_grad_(True)
    target = (torch.rand(8, 1, 24, 24, generator=gen) < torch.linspace(0.0, 0.3, 8).view(8, 1, 1, 1)).float()
    loss = scale_iou_loss(logits, target, mode, with_location=False, area_grad="directed", reduction="none")
    torch.testing.assert_close(loss, scale_iou_loss(logits, target, mode, with_location=False, reduction="none"))
    loss.sum().backward()
    assert bool((logits.grad[target > 0] <= 0).all()) and bool((logits.grad[target == 0] >= 0).all())


def test_area_grad_errors_name_the_fix():
    with pytest.raises(ValueError, match="use one of all, directed"):
        ScaleIoULoss(area_grad="routed")
    with pytest.raises(ValueError, match="'var' is not: use mode='diff'") as e:
        ScaleIoULoss("var", area_grad="directed")
    assert "\n" not in str(e.value)
    assert "area_grad='directed'" in repr(ScaleIoULoss(area_grad="directed"))
