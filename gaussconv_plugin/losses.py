"""The scale-loss family: scale weights α(P, T), the scale IoU mask loss and MSHNet's location loss.

Notation: ``P`` predicted area (``Σ sigmoid(logits)`` for a mask, ``w·h`` for a box), ``T`` target area,
``D = P − T`` (signed area difference). The mask loss is ``1 − α(P, T) · IoU`` (+ location term); the box loss
(:func:`scale_box_loss`) adds the scale term to the host's, in the form ``add`` or ``mul``.

==========  ==============================================================  =====================================
mode        α(P, T)                                                         property
==========  ==============================================================  =====================================
``var``     (min(P,T) + (D/2)²) / (max(P,T) + (D/2)²)                       MSHNet's SLS; not monotonic in P
``diff``    1 − λ_± · |D| / (P + T),  λ₊ for D > 0, λ₋ for D < 0            proposed; = 2·min/(P+T) for λ± = 1
``ratio``   min(P,T) / max(P,T)                                             monotonic, no signed term
``sqrt``    1 − |√P − √T| / (√P + √T)                                       ``diff`` on linear size (√area)
``none``    1                                                               plain IoU loss
==========  ==============================================================  =====================================

For fixed T > 0 (and λ± > 0 for ``diff``), ``diff``, ``ratio`` and ``sqrt`` strictly increase on P ∈ (0, T) and
strictly decrease on P > T (α = 1 iff P = T); ``var`` does not (T = 100: α(1) ≈ 0.961 > α(80) = 0.90).
With λ± ∈ [0, 1], α ∈ [0, 1]. ``diff`` punishes over-segmentation (D > 0) with λ₊ and under-segmentation (D < 0) with λ₋.

Empty cases (frequent: IR frames without a target). Areas are clamped at 0; every ratio ``x / y`` is
evaluated as ``x / max(y, eps)``, and where the denominator is below ``eps`` the weight is defined:

- P = T = 0: α = 1 for every mode (prediction and target agree).
- T = 0 < P (false alarm): ``diff``/``ratio``/``sqrt`` → 1 − λ₊ / 0 / 0; ``var`` → P²/4 / (P + P²/4).
- P = 0 < T (miss): ``diff`` → 1 − λ₋, ``ratio``/``sqrt`` → 0; ``var`` → T²/4 / (T + T²/4).

Boxes. For a host's box loss ``1 − IoU*`` (IoU* = CIoU in YOLOv8, GIoU or IoU in RetinaNet), the scale term must
only ever *add* loss, add none when P = T and never reward a mismatch. ``1 − α·IoU*`` breaks that: IoU* < 0
for disjoint boxes (frequent with 1–4 px targets), where α < 1 would *lower* the loss. Two forms keep it
(:func:`scale_box_loss`, per box):

==========  ===========================================  ====================================================
form        loss                                          scale term (loss − stock ``1 − IoU*``)
==========  ===========================================  ====================================================
``add``     1 − IoU* + λ · (1 − α(P, T))                  λ·(1 − α) ≥ 0: leaves the IoU gradient whole
``mul``     1 − α(P, T) · IoU + (IoU − IoU*)              (1 − α)·IoU ≥ 0: scales the IoU gradient by α
==========  ===========================================  ====================================================

``add`` (default) is chosen by docs/ablation/screen_v2_train_val: ``mul`` shrinks the IoU gradient by α, which is
smallest for exactly the tiniest, worst-sized boxes.

The soft IoU of an image is ``I / U`` with ``I = Σ p·t``, ``U = Σ p + Σ t − I``; where ``U < eps`` (both
empty) it is 1, so the loss is 0 there. All losses are computed in float32 (also under autocast).

Masks: which pixels the area term moves (``area_grad`` of :func:`scale_iou_loss`). ``P = Σ p`` gives every pixel
the same ``∂α/∂p``, so the scale factor of ``1 − α·IoU`` pushes *all* pixels the same way: up while the prediction
is too small (D < 0: background too, towards false alarms), down while it is too large (D > 0: target pixels too).
The soft-IoU factor alone always pushes target pixels up and background down, but its background push is only
``α·I/U²``, nearly nothing while the target is missed (I ≈ 0), so with ``area_grad='all'`` (the default, what every
published run used) a prediction smaller than its target has its background *raised*. ``area_grad='directed'``
keeps the loss value and routes the area gradient by the sign of D: ``P = I + sg(B)`` for D < 0 (only target pixels
grow) and ``P = sg(I) + B`` for D > 0 (only background shrinks), ``B = Σ p·(1 − t)``, ``sg`` = stop-gradient. Then
no term ever lowers a target pixel or raises a background pixel. It needs a weight monotonic in P (``diff``,
``ratio``, ``sqrt``, ``none``): for ``var`` the direction of ``α`` in P is not the sign of D.
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn

__all__ = [
    "SCALE_MODES",
    "scale_weight",
    "soft_iou",
    "location_loss",
    "scale_iou_loss",
    "ScaleIoULoss",
    "box_area",
    "BOX_FORMS",
    "scale_box_loss",
    "AREA_GRADS",
]

SCALE_MODES = ("diff", "var", "ratio", "sqrt", "none")
BOX_FORMS = ("add", "mul")
AREA_GRADS = ("all", "directed")


def check_mode(mode: str) -> str:
    if mode not in SCALE_MODES:
        raise ValueError(f"unknown scale-loss mode {mode!r}; use one of {', '.join(SCALE_MODES)}")
    return mode


def _check_lambda(name: str, lam: float) -> float:
    if not 0.0 <= float(lam) <= 1.0:
        raise ValueError(f"{name} must lie in [0, 1] so that alpha stays in [0, 1] (got {lam!r}); pass e.g. {name}=1.0")
    return float(lam)


def _safe_div(num: torch.Tensor, den: torch.Tensor, empty: torch.Tensor | float, eps: float) -> torch.Tensor:
    """``num / den`` where ``den ≥ eps``, ``empty`` elsewhere; gradient-safe (no NaN in either branch)."""
    ok = den >= eps
    return torch.where(ok, num / den.clamp_min(eps), torch.as_tensor(empty, dtype=num.dtype, device=num.device))


def scale_weight(
    pred_area: torch.Tensor,
    target_area: torch.Tensor,
    mode: str = "diff",
    lambda_over: float = 1.0,
    lambda_under: float = 1.0,
    eps: float = 1e-6,
) -> torch.Tensor:
    """Scale weight α(P, T) ∈ [0, 1], elementwise (see the module docstring for the formulas).

    Args:
        pred_area: ``(*)`` predicted areas P (any non-negative values; differentiable).
        target_area: ``(*)`` target areas T, broadcastable with ``pred_area``.
        mode: one of ``diff`` (default), ``var``, ``ratio``, ``sqrt``, ``none``.
        lambda_over, lambda_under: ``diff`` only: λ₊ (P > T) and λ₋ (P < T), in [0, 1].
        eps: areas below it count as empty.

    Returns:
        ``(*)`` float32 tensor (broadcast shape).
    """
    check_mode(mode)
    lo, lu = _check_lambda("lambda_over", lambda_over), _check_lambda("lambda_under", lambda_under)
    p = torch.as_tensor(pred_area).float().clamp_min(0)
    t = torch.as_tensor(target_area, device=p.device).float().clamp_min(0)
    p, t = torch.broadcast_tensors(p, t)
    if mode == "none":
        return torch.ones_like(p)
    d = p - t
    mn, mx = torch.minimum(p, t), torch.maximum(p, t)
    if mode == "var":
        q = (d / 2) ** 2
        return _safe_div(mn + q, mx + q, 1.0, eps)
    if mode == "ratio":
        return _safe_div(mn, mx, 1.0, eps)
    if mode == "sqrt":
        sp, st = torch.sqrt(p + eps * eps), torch.sqrt(t + eps * eps)  # smooth at 0
        return 1.0 - _safe_div((sp - st).abs(), sp + st, 0.0, eps)
    lam = torch.where(d > 0, torch.full_like(d, lo), torch.full_like(d, lu))
    return 1.0 - lam * _safe_div(d.abs(), p + t, 0.0, eps)


def soft_iou(prob: torch.Tensor, target: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """Soft IoU per image: ``(N, C, H, W)`` probabilities and targets → ``(N,)`` (1 where both are empty)."""
    inter, psum, tsum = _overlap_sums(prob, target)
    return _safe_div(inter, psum + tsum - inter, 1.0, eps)


def _overlap_sums(prob: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per image ``(Σ p·t, Σ p, Σ t)``, each ``(N,)``."""
    dims = tuple(range(1, prob.dim()))
    return (prob * target).sum(dims), prob.sum(dims), target.sum(dims)


def location_loss(pred: torch.Tensor, target: torch.Tensor, smooth: float = 1e-8) -> torch.Tensor:
    """MSHNet's location loss, vectorised over the batch (the reference loops over images in Python).

    For an image with mass ``m(y, x)`` on an ``H×W`` grid, MSHNet's "centre" is the first moment over the
    normalised grid ``cx = mean(m · x/W)``, ``cy = mean(m · y/H)`` (a mean over all pixels, not divided by
    the mass). With polar length ``ℓ = √(cx² + cy² + s)`` and ``s = smooth``, per image::

        L_loc = 1 − min(ℓ_p, ℓ_t) / (max(ℓ_p, ℓ_t) + s) + (4/π²) · (atan(cy_p / (cx_p + s)) − atan(cy_t / (cx_t + s)))²

    Computed for the whole batch with one matrix–vector product over the flattened maps (one pass). Empty masks give finite values
    (ℓ = √s, angle 0).

    Args:
        pred: ``(N, 1, H, W)`` probabilities (not logits).
        target: ``(N, 1, H, W)`` binary mask.

    Returns:
        scalar: the batch mean of ``L_loc`` (as in MSHNet).
    """
    if pred.shape != target.shape:
        raise ValueError(
            f"location_loss: pred shape {tuple(pred.shape)} != target shape {tuple(target.shape)}; "
            "resize the target to the prediction's size"
        )
    with torch.autocast(device_type=pred.device.type, enabled=False):  # keep the moments in float32
        pcx, pcy = _first_moments(pred.float()).unbind(1)
        tcx, tcy = _first_moments(target.float()).unbind(1)
    angle = (4 / math.pi**2) * (torch.atan(pcy / (pcx + smooth)) - torch.atan(tcy / (tcx + smooth))) ** 2
    pl = torch.sqrt(pcx * pcx + pcy * pcy + smooth)
    tl = torch.sqrt(tcx * tcx + tcy * tcy + smooth)
    length = torch.minimum(pl, tl) / (torch.maximum(pl, tl) + smooth)
    return (1 - length + angle).mean()


_GRID_CACHE: dict = {}


def _moment_weights(h: int, w: int, device, dtype) -> torch.Tensor:
    """``(H·W, 2)`` weights ``[x/W, y/H] / (H·W)`` of the flattened grid (cached per size/device)."""
    key = (h, w, str(device), dtype)
    wts = _GRID_CACHE.get(key)
    if wts is None:
        ys, xs = torch.meshgrid(torch.arange(h, device=device, dtype=dtype) / h,
                                torch.arange(w, device=device, dtype=dtype) / w, indexing="ij")
        wts = torch.stack([xs.reshape(-1), ys.reshape(-1)], 1) / (h * w)
        if len(_GRID_CACHE) > 32:
            _GRID_CACHE.clear()
        _GRID_CACHE[key] = wts
    return wts


def _first_moments(m: torch.Tensor) -> torch.Tensor:
    """MSHNet's ``(cx, cy)`` per image, ``(N, C, H, W)`` → ``(N, 2)``: one matrix-vector pass over the data."""
    n, c, h, w = m.shape
    flat = m.reshape(n, h * w) if c == 1 else m.sum(1).reshape(n, h * w)
    return flat @ _moment_weights(h, w, m.device, m.dtype)


def check_area_grad(area_grad: str, mode: str) -> str:
    if area_grad not in AREA_GRADS:
        raise ValueError(f"unknown area_grad {area_grad!r}; use one of {', '.join(AREA_GRADS)}")
    if area_grad == "directed" and mode == "var":
        raise ValueError("area_grad='directed' needs a scale weight monotonic in the predicted area; 'var' is not: "
                         "use mode='diff' (or ratio, sqrt), or area_grad='all'")
    return area_grad


def _directed_area(inter: torch.Tensor, psum: torch.Tensor, tsum: torch.Tensor) -> torch.Tensor:
    """``P`` (same values) whose gradient reaches only target pixels where ``P < T`` and only background where
    ``P ≥ T`` (module docstring, "Masks"). All ``(N,)``."""
    bg = psum - inter
    return torch.where(psum < tsum, inter + bg.detach(), inter.detach() + bg)


def _reduce(x: torch.Tensor, reduction: str) -> torch.Tensor:
    if reduction == "mean":
        return x.mean()
    if reduction == "sum":
        return x.sum()
    if reduction == "none":
        return x
    raise ValueError(f"unknown reduction {reduction!r}; use 'mean', 'sum' or 'none'")


def scale_iou_loss(
    logits: torch.Tensor,
    target: torch.Tensor,
    mode: str = "diff",
    *,
    with_location: bool = True,
    location_weight: float = 1.0,
    lambda_over: float = 1.0,
    lambda_under: float = 1.0,
    warmup: bool = False,
    area_grad: str = "all",
    reduction: str = "mean",
    eps: float = 1e-6,
) -> torch.Tensor:
    """``1 − α(P, T)·softIoU`` per image, plus ``location_weight · location_loss``.

    Args:
        logits: ``(N, 1, H, W)`` raw network outputs (sigmoid is applied here).
        target: ``(N, 1, H, W)`` binary mask (0/1, any dtype).
        mode: scale-weight mode (see :func:`scale_weight`).
        with_location: add MSHNet's location loss (a batch-level term, added to every image's loss).
        warmup: MSHNet's warm-up: plain soft-IoU loss (α = 1, no location term).
        area_grad: ``all`` (every pixel gets α's area gradient) | ``directed`` (only the pixels that move the
            area the right way: target pixels when too small, background when too large; module docstring).
        reduction: ``mean`` | ``sum`` | ``none`` (``(N,)``).

    Returns:
        scalar, or ``(N,)`` for ``reduction='none'``; float32.
    """
    check_mode(mode)
    check_area_grad(area_grad, mode)
    if logits.shape != target.shape:
        raise ValueError(
            f"ScaleIoULoss: logits shape {tuple(logits.shape)} != target shape {tuple(target.shape)}; resize the mask "
            "to the logits' size, e.g. F.interpolate(target, size=logits.shape[-2:], mode='nearest')"
        )
    prob = torch.sigmoid(logits.float())
    tgt = target.float()
    inter, psum, tsum = _overlap_sums(prob, tgt)  # once: for the IoU and for α's areas
    iou = _safe_div(inter, psum + tsum - inter, 1.0, eps)
    if warmup:
        return _reduce(1.0 - iou, reduction)
    parea = psum if area_grad == "all" else _directed_area(inter, psum, tsum)
    alpha = scale_weight(parea, tsum, mode, lambda_over, lambda_under, eps)
    loss = 1.0 - alpha * iou
    if with_location and location_weight:
        loss = loss + location_weight * location_loss(prob, tgt)
    return _reduce(loss, reduction)


class ScaleIoULoss(nn.Module):
    """Module form of :func:`scale_iou_loss` (mask loss on logits). ``forward(logits, target, warmup=False)``.

    Shapes: logits and target ``(N, 1, H, W)`` → scalar (or ``(N,)`` with ``reduction='none'``).
    ``mode='var'`` with the location term reproduces MSHNet's SLS loss; ``mode='diff'`` is the proposed loss.
    The first call checks that ``target`` lies in [0, 1] (a 0/255 mask read from disk gives a wrong loss without
    any error; one check, not one GPU synchronisation per step).
    """

    def __init__(
        self,
        mode: str = "diff",
        with_location: bool = True,
        location_weight: float = 1.0,
        lambda_over: float = 1.0,
        lambda_under: float = 1.0,
        area_grad: str = "all",
        reduction: str = "mean",
        eps: float = 1e-6,
    ):
        super().__init__()
        self.mode = check_mode(mode)
        self.area_grad = check_area_grad(area_grad, mode)
        _check_lambda("lambda_over", lambda_over)
        _check_lambda("lambda_under", lambda_under)
        _reduce(torch.zeros(1), reduction)
        self.with_location, self.location_weight = with_location, location_weight
        self.lambda_over, self.lambda_under = lambda_over, lambda_under
        self.reduction, self.eps = reduction, eps
        self._target_checked = False

    def forward(self, logits: torch.Tensor, target: torch.Tensor, warmup: bool = False) -> torch.Tensor:
        if not self.__dict__.get("_target_checked", True) and target.numel():
            lo, hi = float(target.detach().min()), float(target.detach().max())
            if lo < 0 or hi > 1:
                raise ValueError(f"ScaleIoULoss: target values span [{lo:g}, {hi:g}]; pass a 0/1 mask "
                                 "(divide a 0/255 mask by 255)")
            self._target_checked = True
        return scale_iou_loss(
            logits, target, self.mode, with_location=self.with_location, location_weight=self.location_weight,
            lambda_over=self.lambda_over, lambda_under=self.lambda_under, warmup=warmup, area_grad=self.area_grad,
            reduction=self.reduction, eps=self.eps,
        )

    def extra_repr(self) -> str:
        return (f"mode={self.mode!r}, with_location={self.with_location}, area_grad={self.area_grad!r}, "
                f"reduction={self.reduction!r}")


def box_area(boxes: torch.Tensor) -> torch.Tensor:
    """Area of ``(*, 4)`` xyxy boxes → ``(*)`` (negative extents clamped to 0)."""
    return (boxes[..., 2] - boxes[..., 0]).clamp_min(0) * (boxes[..., 3] - boxes[..., 1]).clamp_min(0)


def check_form(form: str) -> str:
    if form not in BOX_FORMS:
        raise ValueError(f"unknown box scale-loss form {form!r}; use one of {', '.join(BOX_FORMS)}")
    return form


def scale_box_loss(
    iou: torch.Tensor,
    host_iou: torch.Tensor,
    pred_area: torch.Tensor,
    target_area: torch.Tensor,
    mode: str = "diff",
    form: str = "add",
    lam: float = 1.0,
    lambda_over: float = 1.0,
    lambda_under: float = 1.0,
    eps: float = 1e-6,
) -> torch.Tensor:
    """Per-box scale loss on top of a host's IoU-based box loss (module docstring, "Boxes").

    ``add``: ``1 − host_iou + lam·(1 − α)``;  ``mul``: ``1 − α·iou + (iou − host_iou)``. With ``mode='none'``
    (α = 1) both are the host's ``1 − host_iou``. The scale term is ≥ 0 and 0 iff α = 1 (for ``mul``: or
    IoU = 0), so it never lowers the host's loss.

    Args:
        iou: ``(*)`` plain IoU of each predicted/target pair.
        host_iou: ``(*)`` the host's penalised IoU (CIoU, GIoU; or ``iou`` itself).
        pred_area, target_area: ``(*)`` box areas in pixels (differentiable through ``pred_area``).
        mode: scale-weight mode of :func:`scale_weight`; form: ``add`` | ``mul``; lam: λ ≥ 0 of ``add``.

    Returns:
        ``(*)`` float32 loss per box.
    """
    check_form(form)
    if not float(lam) >= 0.0:
        raise ValueError(f"lam must be >= 0 (got {lam!r}); pass e.g. lam=1.0")
    alpha = scale_weight(pred_area, target_area, mode, lambda_over, lambda_under, eps)
    iou, host_iou = iou.float(), host_iou.float()
    if form == "add":
        return 1.0 - host_iou + float(lam) * (1.0 - alpha)
    return 1.0 - alpha * iou + (iou - host_iou)
