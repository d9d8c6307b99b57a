"""Contract of the scale box loss (losses.scale_box_loss, both forms): the scale term only ever adds loss, adds
none when the areas match, and (for the monotone modes) the total grows with the size mismatch; the old
``1 − α·CIoU`` breaks it for disjoint boxes. Plus YOLO's ScaleBboxLoss against Ultralytics' stock BboxLoss."""
from __future__ import annotations

import os
import tempfile

import pytest
import torch

# offline before ultralytics is imported anywhere in this process (no-ops where the Makefile already set them)
for _k, _v in {"YOLO_OFFLINE": "1", "YOLO_AUTOINSTALL": "false", "MPLBACKEND": "Agg", "HF_HUB_OFFLINE": "1"}.items():
    os.environ.setdefault(_k, _v)
os.environ.setdefault("YOLO_CONFIG_DIR", tempfile.mkdtemp(prefix="gaussconv_yolo_cfg_"))

from gaussconv_plugin.losses import BOX_FORMS, box_area, scale_box_loss, scale_weight  # noqa: E402

MODES = ("diff", "sqrt", "ratio", "var")
MONOTONE = ("diff", "sqrt", "ratio")


@pytest.fixture(scope="module")
def bbox_iou():
    pytest.importorskip("ultralytics", reason="ultralytics not installed: make setup")
    from ultralytics.utils.metrics import bbox_iou

    return bbox_iou


def _xyxy(cx, cy, w, h) -> list[float]:
    return [cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2]


def _pairs():
    """(pred, target, kind) xyxy pixel boxes: tiny (1–4 px) and large targets/predictions, same centre,
    partly overlapping and far apart (disjoint); kind ∈ {'overlap', 'disjoint'}."""
    sizes = [(1, 1), (2, 2), (1, 3), (4, 4), (3, 2), (40, 60), (100, 80), (24, 24)]
    preds, tgts, kinds = [], [], []
    for tw, th in sizes:
        for pw, ph in sizes:
            t = _xyxy(100, 100, tw, th)
            for dx, kind in [(0.0, "overlap"), (0.25 * min(tw, pw), "overlap"), (150.0 + pw + tw, "disjoint")]:
                preds.append(_xyxy(100 + dx, 100 + dx / 2, pw, ph))
                tgts.append(t)
                kinds.append(kind)
    return torch.tensor(preds), torch.tensor(tgts), kinds


def _iou_giou(p, t):
    """Plain IoU and GIoU of aligned xyxy boxes (inline, no host library)."""
    ap, at = box_area(p), box_area(t)
    wh = (torch.min(p[:, 2:], t[:, 2:]) - torch.max(p[:, :2], t[:, :2])).clamp(min=0)
    inter = wh[:, 0] * wh[:, 1]
    union = ap + at - inter
    ewh = torch.max(p[:, 2:], t[:, 2:]) - torch.min(p[:, :2], t[:, :2])
    enclose = ewh[:, 0] * ewh[:, 1]
    iou = inter / union
    return iou, iou - (enclose - union) / enclose


def _hosts(p, t, bbox_iou):
    iou, giou = _iou_giou(p, t)
    ciou = bbox_iou(p, t, xywh=False, CIoU=True).squeeze(-1)
    torch.testing.assert_close(bbox_iou(p, t, xywh=False).squeeze(-1), iou)  # same IoU definition
    return iou, {"ciou": ciou, "giou": giou, "iou": iou}


# --------------------------------------------------------------------------------------------------- contract
@pytest.mark.parametrize("form", BOX_FORMS)
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("lam", [1.0, 0.5])
def test_scale_term_is_nonnegative_and_zero_when_areas_match(form, mode, lam, bbox_iou):
    p, t, kinds = _pairs()
    iou, hosts = _hosts(p, t, bbox_iou)
    disjoint = torch.tensor([k == "disjoint" for k in kinds])
    assert bool((iou[disjoint] == 0).all()) and bool((iou[~disjoint] > 0).all())
    assert bool((hosts["ciou"][disjoint] < 0).all()) and bool((hosts["giou"][disjoint] < 0).all())
    ap, at = box_area(p), box_area(t)
    same = ap == at
    assert 0 < int(same.sum()) < len(same) and int((same & disjoint).sum()) > 0
    for name, host in hosts.items():
        loss = scale_box_loss(iou, host, ap, at, mode, form, lam)
        assert loss.dtype == torch.float32 and loss.shape == iou.shape
        term = loss - (1 - host)
        assert float(term.min()) >= -1e-6, (name, float(term.min()))
        torch.testing.assert_close(term[same], torch.zeros(int(same.sum())), rtol=0, atol=1e-6)
        alpha = scale_weight(ap, at, mode)
        want = lam * (1 - alpha) if form == "add" else (1 - alpha) * iou
        torch.testing.assert_close(term, want, rtol=1e-5, atol=1e-6)
        # where the areas differ the term is strictly positive (add: always; mul: only where the boxes overlap)
        pos = ~same if form == "add" else (~same & ~disjoint)
        assert bool((term[pos] > 0).all()), name


@pytest.mark.parametrize("form", BOX_FORMS)
def test_mode_none_is_the_host_loss(form, bbox_iou):
    p, t, _ = _pairs()
    iou, hosts = _hosts(p, t, bbox_iou)
    for host in hosts.values():
        got = scale_box_loss(iou, host, box_area(p), box_area(t), "none", form, 1.0)
        if form == "add":  # 1 − host + λ·0: bit-identical to the host loss
            assert torch.equal(got, 1 - host)
        else:  # 1 − iou + (iou − host): equal up to float rounding
            torch.testing.assert_close(got, 1 - host, rtol=0, atol=1e-6)


def _centred(t_side: float, sides: torch.Tensor, aspect=1.0):
    """Target t_side × t_side·aspect and predictions side × side·aspect, all centred at (50, 50)."""
    c = 50.0
    tb = torch.tensor([_xyxy(c, c, t_side, t_side * aspect)]).expand(len(sides), 4)
    pb = torch.stack([c - sides / 2, c - sides * aspect / 2, c + sides / 2, c + sides * aspect / 2], 1)
    return pb, tb


@pytest.mark.parametrize("form", BOX_FORMS)
@pytest.mark.parametrize("mode", MONOTONE)
@pytest.mark.parametrize("t_side", [1.0, 2.0, 4.0, 32.0])
def test_total_loss_grows_with_the_size_mismatch(form, mode, t_side, bbox_iou):
    """Centred boxes: as the predicted box shrinks below or grows beyond the target the loss never decreases, and
    is smallest (= 0) at the target size."""
    for sides in (torch.linspace(t_side, t_side * 0.05, 120), torch.linspace(t_side, t_side * 10, 120)):
        for aspect in (1.0, 0.5):
            pb, tb = _centred(t_side, sides, aspect)
            ciou = bbox_iou(pb, tb, xywh=False, CIoU=True).squeeze(-1)
            iou = bbox_iou(pb, tb, xywh=False).squeeze(-1)
            loss = scale_box_loss(iou, ciou, box_area(pb), box_area(tb), mode, form)
            assert float(loss[0]) == pytest.approx(0.0, abs=1e-5)
            d = loss.diff()
            assert float(d.min()) >= -1e-6, (mode, form, t_side, float(d.min()))
            assert float(loss[-1] - loss[0]) > 0.5  # the mismatch is actually punished
            # ... and more than by the host alone (add: by λ(1 − α); mul: by (1 − α)·IoU)
            assert bool((loss[1:] > 1 - ciou[1:]).all())


def test_var_mode_is_not_monotone_for_tiny_boxes(bbox_iou):
    """MSHNet's 'var' weight is documented as non-monotone in P; in the add form it shows: for a 1-px target, a
    100-px² prediction costs less than a 4-px² one. (Why the monotonicity test above leaves 'var' out.)"""
    pb, tb = _centred(1.0, torch.tensor([2.0, 10.0]))
    ciou = bbox_iou(pb, tb, xywh=False, CIoU=True).squeeze(-1)
    loss = scale_box_loss(ciou, ciou, box_area(pb), box_area(tb), "var", "add")
    assert float(loss[1]) < float(loss[0])
    loss_diff = scale_box_loss(ciou, ciou, box_area(pb), box_area(tb), "diff", "add")
    assert float(loss_diff[1]) > float(loss_diff[0])


@pytest.mark.parametrize("mode", MODES)
def test_old_multiplicative_ciou_form_rewards_disjoint_mismatch(mode, bbox_iou):
    """Control: the old ``1 − α·CIoU`` has a *negative* scale term for disjoint boxes of different size, i.e. a
    size mismatch lowers the loss there; both current forms do not."""
    p, t, kinds = _pairs()
    iou, hosts = _hosts(p, t, bbox_iou)
    ciou = hosts["ciou"]
    ap, at = box_area(p), box_area(t)
    alpha = scale_weight(ap, at, mode)
    disjoint = torch.tensor([k == "disjoint" for k in kinds])
    old = 1 - alpha * ciou
    old_term = old - (1 - ciou)
    sel = disjoint & (alpha < 1)
    assert int(sel.sum()) > 10
    assert bool((old_term[sel] < 0).all()), "control: the old form should lower the loss for disjoint mismatches"
    for form in BOX_FORMS:
        new_term = scale_box_loss(iou, ciou, ap, at, mode, form) - (1 - ciou)
        assert float(new_term[sel].min()) >= -1e-6


def test_old_form_grows_smaller_with_mismatch_for_disjoint_boxes(bbox_iou):
    """Control on the monotonicity: far-apart boxes, target 2×2 px, prediction growing. The old form's loss falls
    (it rewards the mismatch); the add form's rises."""
    sides = torch.tensor([2.0, 3.0, 4.0, 6.0])
    t = torch.tensor([_xyxy(10, 10, 2, 2)]).expand(4, 4)
    p = torch.stack([80 - sides / 2, 10 - sides / 2, 80 + sides / 2, 10 + sides / 2], 1)
    ciou = bbox_iou(p, t, xywh=False, CIoU=True).squeeze(-1)
    iou = bbox_iou(p, t, xywh=False).squeeze(-1)
    alpha = scale_weight(box_area(p), box_area(t), "diff")
    old = 1 - alpha * ciou
    new = scale_box_loss(iou, ciou, box_area(p), box_area(t), "diff", "add")
    # host alone grows by at most the tiny change of the distance/diagonal penalty; the old α-scaling shrinks it
    assert float(old[-1]) < float(old[0])
    assert bool((new.diff() > 0).all())


def test_scale_box_loss_errors():
    one = torch.ones(2)
    with pytest.raises(ValueError, match="unknown box scale-loss form 'muls'; use one of add, mul") as e:
        scale_box_loss(one, one, one, one, "diff", "muls")
    assert "\n" not in str(e.value)
    with pytest.raises(ValueError, match="lam must be >= 0"):
        scale_box_loss(one, one, one, one, "diff", "add", -0.5)
    with pytest.raises(ValueError, match="use one of diff, var, ratio, sqrt, none"):
        scale_box_loss(one, one, one, one, "dif", "add")


# --------------------------------------------------------------------------------------------------- YOLO
def _bbox_args(seed=0):
    """Inputs of BboxLoss.forward for a P2 head: strides 4, 8, 16; tiny (≤ 1 grid unit) and larger grid boxes."""
    g = torch.Generator().manual_seed(seed)
    B, A = 2, 12
    stride = torch.tensor([4.0] * 4 + [8.0] * 4 + [16.0] * 4).view(A, 1)
    c = torch.rand(B, A, 2, generator=g) * 10 + 2
    wh_t = torch.rand(B, A, 2, generator=g) * 3 + 0.25  # 0.25 grid units at stride 4 = 1 px
    wh_p = wh_t * (torch.rand(B, A, 2, generator=g) * 1.6 + 0.4)  # 0.4–2× the target's sides
    shift = torch.rand(B, A, 2, generator=g) * 2 - 1
    shift[:, ::3] *= 8  # some predictions far away: disjoint
    tgt = torch.cat([c - wh_t / 2, c + wh_t / 2], -1)
    pred = torch.cat([c + shift - wh_p / 2, c + shift + wh_p / 2], -1)
    pred[0, 5] = tgt[0, 5]  # one exact match (α = 1)
    fg = torch.rand(B, A, generator=g) > 0.25
    fg[0, 5] = True
    scores = torch.rand(B, A, 1, generator=g) * fg.unsqueeze(-1)
    tss = scores.sum().clamp(min=1)
    anchors = torch.rand(A, 2, generator=g) * 10
    dist = torch.randn(B, A, 4 * 16, generator=g)
    return (dist, pred, anchors, tgt, scores, tss, fg, torch.tensor([64.0, 64.0]), stride)


@pytest.fixture(scope="module")
def ul():
    pytest.importorskip("ultralytics", reason="ultralytics not installed: make setup")
    from ultralytics.utils import loss as ul_loss
    from ultralytics.utils.metrics import bbox_iou

    from gaussconv_plugin.yolo import adapter

    return ul_loss, bbox_iou, adapter


def _per_box_terms(args, bbox_iou, mode):
    _, pred, _, tgt, scores, tss, fg, _, stride = args
    idx = fg.nonzero(as_tuple=True)
    w = scores[idx].sum(-1)
    s2 = stride[idx[1], 0] ** 2
    pb, tb = pred[idx], tgt[idx]
    alpha = scale_weight(box_area(pb) * s2, box_area(tb) * s2, mode)  # pixel areas
    iou = bbox_iou(pb, tb, xywh=False).squeeze(-1)
    ciou = bbox_iou(pb, tb, xywh=False, CIoU=True).squeeze(-1)
    return alpha, iou, ciou, w, tss


@pytest.mark.parametrize("lam", [1.0, 0.5, 0.0])
def test_yolo_add_form_is_stock_plus_weighted_scale_term(ul, lam):
    ul_loss, bbox_iou, adapter = ul
    args = _bbox_args()
    stock_iou, stock_dfl = ul_loss.BboxLoss(16)(*args)
    alpha, iou, ciou, w, tss = _per_box_terms(args, bbox_iou, "diff")
    assert 0.0 < float(alpha.min()) and float(alpha.min()) < 0.9 and float(alpha.max()) == 1.0
    assert float(ciou.min()) < 0  # disjoint pairs present
    got_iou, got_dfl = adapter.ScaleBboxLoss(16, "diff", "add", lam)(*args)
    want = stock_iou + (lam * (1 - alpha) * w).sum() / tss
    torch.testing.assert_close(got_iou, want, rtol=1e-6, atol=1e-6)
    assert torch.equal(got_dfl, stock_dfl)
    if lam:
        assert float(got_iou - stock_iou) > 1e-3
    # the grid-unit areas would give another value for a scale-dependent mode: pixel units are observable
    a_grid = scale_weight(box_area(args[1][args[6]]), box_area(args[3][args[6]]), "var")
    a_px = _per_box_terms(args, bbox_iou, "var")[0]
    assert not torch.allclose(a_grid, a_px)
    var_iou, _ = adapter.ScaleBboxLoss(16, "var", "add", 1.0)(*args)
    torch.testing.assert_close(var_iou, stock_iou + ((1 - a_px) * w).sum() / tss, rtol=1e-6, atol=1e-6)


def test_yolo_default_is_diff_add_lambda_one(ul):
    ul_loss, bbox_iou, adapter = ul
    args = _bbox_args(seed=3)
    d = adapter.ScaleBboxLoss()
    assert (d.mode, d.form, d.lam) == ("diff", "add", 1.0)
    torch.testing.assert_close(d(*args)[0], adapter.ScaleBboxLoss(16, "diff", "add", 1.0)(*args)[0], rtol=0, atol=0)


def test_yolo_mul_form_is_stock_plus_weighted_iou_term(ul):
    ul_loss, bbox_iou, adapter = ul
    args = _bbox_args(seed=1)
    stock_iou, _ = ul_loss.BboxLoss(16)(*args)
    alpha, iou, ciou, w, tss = _per_box_terms(args, bbox_iou, "diff")
    got, _ = adapter.ScaleBboxLoss(16, "diff", "mul")(*args)
    torch.testing.assert_close(got, stock_iou + ((1 - alpha) * iou * w).sum() / tss, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(got, ((1 - alpha * iou + (iou - ciou)) * w).sum() / tss, rtol=1e-6, atol=1e-6)
    assert float(got) >= float(stock_iou)


@pytest.mark.parametrize("form", BOX_FORMS)
def test_yolo_mode_none_equals_stock_exactly(ul, form):
    ul_loss, _, adapter = ul
    for seed in (0, 1, 2):
        args = _bbox_args(seed)
        stock = ul_loss.BboxLoss(16)(*args)
        got = adapter.ScaleBboxLoss(16, "none", form, 2.0)(*args)
        assert torch.equal(got[1], stock[1])
        if form == "add":  # the default form: bit-identical to Ultralytics' loss
            assert torch.equal(got[0], stock[0])
        else:
            torch.testing.assert_close(got[0], stock[0], rtol=0, atol=1e-6)


def test_yolo_gradient_of_add_form_keeps_the_ciou_gradient(ul):
    """add: ∂/∂pred of the loss = stock ∂(1 − CIoU) + ∂λ(1 − α); with λ = 0 it is exactly the stock gradient."""
    ul_loss, _, adapter = ul
    args = list(_bbox_args(seed=2))
    grads = []
    for crit in (ul_loss.BboxLoss(16), adapter.ScaleBboxLoss(16, "diff", "add", 0.0),
                 adapter.ScaleBboxLoss(16, "diff", "add", 1.0)):
        pred = args[1].clone().requires_grad_(True)
        a = list(args)
        a[1] = pred
        crit(*a)[0].backward()
        grads.append(pred.grad)
    torch.testing.assert_close(grads[1], grads[0], rtol=1e-6, atol=1e-7)
    assert not torch.allclose(grads[2], grads[0])
    assert bool(torch.isfinite(grads[2]).all())


def test_yolo_bad_options_one_line(ul):
    _, _, adapter = ul
    with pytest.raises(ValueError, match="lam must be >= 0") as e:
        adapter.ScaleBboxLoss(16, "diff", "add", -1.0)
    assert "\n" not in str(e.value)
    with pytest.raises(ValueError, match="use one of add, mul"):
        adapter.ScaleBboxLoss(16, "diff", "product")
    for bad, match in [({"scale_loss_form": "prod"}, "scale_loss_form: 'prod'; use one of add, mul"),
                       ({"scale_loss_lambda": -0.1}, "scale_loss_lambda: -0.1; use a number >= 0"),
                       ({"scale_loss_lambda": "1"}, "scale_loss_lambda: '1'"),
                       ({"scale_loss_lambda": True}, "scale_loss_lambda: True")]:
        with pytest.raises(ValueError, match=match) as e:
            adapter.scale_loss_options(bad)
        assert "\n" not in str(e.value)
    with pytest.raises(ValueError, match="scale_loss_balance: 'yes'; use true or false"):
        adapter.scale_loss_options({"scale_loss_balance": "yes"})
    assert adapter.scale_loss_options({}) == {"form": "add", "lam": 1.0, "balance": False}
    assert adapter.scale_loss_options({"scale_loss_form": "mul", "scale_loss_lambda": 2, "scale_loss_balance": True}) \
        == {"form": "mul", "lam": 2.0, "balance": True}


def test_yolo_balanced_scale_term_keeps_the_stock_loss_value_and_moves_the_gradient(ul):
    """balance=True: the box loss has the stock value, its gradient is the unbalanced one times c = stock / total
    (c < 1 where the areas mismatch) — neither the stock gradient nor the unbalanced one."""
    ul_loss, _, adapter = ul
    args = _bbox_args()
    losses, grads = [], []
    for crit in (ul_loss.BboxLoss(16), adapter.ScaleBboxLoss(16, "diff", "add", 1.0),
                 adapter.ScaleBboxLoss(16, "diff", "add", 1.0, balance=True)):
        pred = args[1].clone().requires_grad_(True)
        a = list(args)
        a[1] = pred
        li = crit(*a)[0]
        li.backward()
        losses.append(li.detach())
        grads.append(pred.grad)
    stock, plain, bal = losses
    torch.testing.assert_close(bal, stock, rtol=1e-5, atol=1e-7)
    assert plain > stock * 1.05  # the fixture's boxes mismatch in area: the unbalanced term adds loss
    c = stock / plain
    torch.testing.assert_close(grads[2], grads[1] * c, rtol=1e-5, atol=1e-7)
    assert not torch.allclose(grads[2], grads[0], rtol=1e-3)
    assert "balance=True" in repr(adapter.ScaleBboxLoss(16, balance=True))
