"""MMDetection 3.x side of the adapter: the ``GaussResNet`` backbone and the ``DiffScaleIoULoss`` box loss.

Both are registered in ``mmdet.registry.MODELS`` (``@register_once(MODELS)``) when this module is imported, which
``custom_imports=dict(imports=['gaussconv_plugin.mmdet'], allow_failed_imports=False)`` does in every
process that reads the config (each distributed worker included).

``GaussResNet``
    MMDetection's ``ResNet`` in which the stem conv (``conv1``, or the three convs of a ``deep_stem``) and every
    k×k (k > 1) conv of the chosen stages are rebuilt with ``gauss_conv_cfg`` through MMCV's
    ``build_conv_layer`` (default ``dict(type='GaussianShapedConv2d')``). 1×1 convs (bottleneck
    reductions/expansions, downsample shortcuts) stay plain ``nn.Conv2d``. Geometry (stride, padding, dilation,
    groups, bias) is copied, so a twin config differs only in these layers and in 2 scalars (σ, θ) per output
    channel of each swapped conv. Plain ``ResNet(conv_cfg=dict(type='GaussianShapedConv2d'))`` also works but
    applies the conv to *every* conv, 1×1 included, in all stages.

``DiffScaleIoULoss``
    Box loss on decoded ``xyxy`` boxes (the head needs ``reg_decoded_bbox=True``); per box, with IoU* = GIoU
    (``iou_mode='giou'``) or IoU (``'iou'``), ``P``/``T`` the predicted/target box areas (pixels) and ``α`` the
    scale weight of :func:`gaussconv_plugin.losses.scale_weight` (``mode`` ``diff``/``var``/``ratio``/``sqrt``/``none``)::

        form='add' (default):  L = 1 − IoU* + λ·(1 − α)
        form='mul':            L = 1 − α·IoU + (IoU − IoU*)

    the same two forms as YOLO's ``ScaleBboxLoss`` (:func:`gaussconv_plugin.losses.scale_box_loss`). With
    ``mode='none'`` (α = 1) the loss equals MMDetection's ``IoULoss(mode='linear')`` resp. ``GIoULoss``, so a
    baseline/twin pair differs only in the scale term. Neither form multiplies the whole GIoU by α: GIoU < 0 for
    disjoint boxes, where ``1 − α·GIoU`` would *shrink* as the mismatch grows. Both add ≥ 0 to the host loss and
    nothing when P = T; ``add`` keeps the IoU gradient whole, ``mul`` scales it by α. The gradient flows through α
    (it depends on the predicted area), as in the mask form of the loss.
"""
from __future__ import annotations

from typing import Optional, Sequence

import torch
import torch.nn as nn
from mmcv.cnn import build_conv_layer
from mmdet.models.backbones.resnet import ResNet
from mmdet.models.losses.utils import weight_reduce_loss
from mmdet.registry import MODELS

from ..losses import _check_lambda, box_area, check_form, check_mode, scale_box_loss
from ..masks import PINNED_THETA_INIT
from .conv_layer import GaussianShapedConv2d, conv_type_registered
from .registry import register_once

__all__ = ["GaussResNet", "DiffScaleIoULoss", "diff_scale_iou_loss", "IOU_MODES"]

IOU_MODES = ("iou", "giou")
_REDUCTIONS = ("none", "mean", "sum")


# ----------------------------------------------------------------------------------------------- loss
def diff_scale_iou_loss(
    pred: torch.Tensor,
    target: torch.Tensor,
    mode: str = "diff",
    iou_mode: str = "giou",
    lambda_over: float = 1.0,
    lambda_under: float = 1.0,
    eps: float = 1e-6,
    form: str = "add",
    lam: float = 1.0,
) -> torch.Tensor:
    """Element-wise scale-weighted (G)IoU loss of aligned ``xyxy`` boxes (formulas in the module docstring).

    IoU, union and enclosing area follow ``mmdet.structures.bbox.bbox_overlaps(is_aligned=True)`` exactly
    (``U`` and ``C`` clamped at ``eps``), so ``mode='none'`` reproduces MMDetection's losses. Computed in float32
    (also under autocast); finite for empty/degenerate boxes (negative anchors carry all-zero targets).

    Args:
        pred, target: ``(n, 4)`` decoded boxes ``(x1, y1, x2, y2)`` in pixels.
        mode, lambda_over, lambda_under, eps: see :func:`gaussconv_plugin.losses.scale_weight`.
        iou_mode: ``'iou'`` or ``'giou'``.
        form, lam: ``'add'`` (default) or ``'mul'``, and λ of ``add`` (:func:`gaussconv_plugin.losses.scale_box_loss`).

    Returns:
        ``(n,)`` float32 loss per box.
    """
    if pred.shape[-1] != 4 or target.shape[-1] != 4:
        raise ValueError(
            f"DiffScaleIoULoss needs decoded (n, 4) xyxy boxes (got pred {tuple(pred.shape)}, target "
            f"{tuple(target.shape)}); set reg_decoded_bbox=True in the bbox head"
        )
    p, t = pred.float(), target.float()
    area_p, area_t = box_area(p), box_area(t)
    lt = torch.max(p[..., :2], t[..., :2])
    rb = torch.min(p[..., 2:], t[..., 2:])
    wh = (rb - lt).clamp(min=0)
    overlap = wh[..., 0] * wh[..., 1]
    union = torch.clamp(area_p + area_t - overlap, min=eps)
    iou = overlap / union
    host_iou = iou
    if iou_mode == "giou":
        elt = torch.min(p[..., :2], t[..., :2])
        erb = torch.max(p[..., 2:], t[..., 2:])
        ewh = (erb - elt).clamp(min=0)
        enclose = torch.clamp(ewh[..., 0] * ewh[..., 1], min=eps)
        host_iou = iou - (enclose - union) / enclose
    elif iou_mode != "iou":
        raise ValueError(f"unknown iou_mode {iou_mode!r}; use one of {', '.join(IOU_MODES)}")
    return scale_box_loss(iou, host_iou, area_p, area_t, mode, form, lam, lambda_over, lambda_under, eps)


@register_once(MODELS)
class DiffScaleIoULoss(nn.Module):
    """Scale-weighted IoU/GIoU box loss for MMDetection heads with ``reg_decoded_bbox=True``.

    Drop-in for ``loss_bbox=dict(type='GIoULoss', ...)`` / ``IoULoss``: same ``forward`` signature and the same
    handling of ``weight`` (``(n,)`` or ``(n, 4)``, averaged over the last dim), ``avg_factor`` and
    ``reduction_override``. Per-box formula in the module docstring.

    Args:
        mode: scale weight α: ``diff`` (proposed, default), ``var`` (MSHNet), ``ratio``, ``sqrt`` or ``none``
            (α = 1: plain IoU/GIoU loss).
        iou_mode: ``'giou'`` (default; = ``GIoULoss`` for ``mode='none'``) or ``'iou'``
            (= ``IoULoss(mode='linear')`` for ``mode='none'``).
        lambda_over, lambda_under: ``diff`` only: weights λ₊ (predicted box too large) and λ₋ (too small), in [0, 1].
        form: ``'add'`` (default: host loss + λ·(1 − α)) or ``'mul'`` (1 − α·IoU + GIoU penalty); same forms as
            YOLO's ``ScaleBboxLoss``.
        lam: λ ≥ 0 of the ``add`` form.
        eps: clamp of union/enclosing areas, and the "empty area" threshold of α.
        reduction: ``'none'`` | ``'mean'`` | ``'sum'``.
        loss_weight: multiplier of the loss.

    Shapes:
        ``pred``, ``target``: ``(n, 4)`` xyxy; ``weight``: ``(n,)`` or ``(n, 4)``; output: scalar or ``(n,)``.

    Example config::

        model = dict(bbox_head=dict(reg_decoded_bbox=True,
                                    loss_bbox=dict(type='DiffScaleIoULoss', mode='diff', iou_mode='giou',
                                                   loss_weight=2.0)))
    """

    def __init__(
        self,
        mode: str = "diff",
        iou_mode: str = "giou",
        lambda_over: float = 1.0,
        lambda_under: float = 1.0,
        eps: float = 1e-6,
        reduction: str = "mean",
        loss_weight: float = 1.0,
        form: str = "add",
        lam: float = 1.0,
    ):
        super().__init__()
        self.mode = check_mode(mode)
        self.form = check_form(form)
        if not float(lam) >= 0:
            raise ValueError(f"DiffScaleIoULoss lam must be >= 0 (got {lam!r}); use e.g. lam=1.0")
        self.lam = float(lam)
        if iou_mode not in IOU_MODES:
            raise ValueError(f"unknown iou_mode {iou_mode!r}; use one of {', '.join(IOU_MODES)}")
        if reduction not in _REDUCTIONS:
            raise ValueError(f"unknown reduction {reduction!r}; use one of {', '.join(_REDUCTIONS)}")
        self.iou_mode = iou_mode
        self.lambda_over = _check_lambda("lambda_over", lambda_over)
        self.lambda_under = _check_lambda("lambda_under", lambda_under)
        self.eps = float(eps)
        self.reduction = reduction
        self.loss_weight = float(loss_weight)

    def forward(
        self,
        pred: torch.Tensor,
        target: torch.Tensor,
        weight: Optional[torch.Tensor] = None,
        avg_factor: Optional[float] = None,
        reduction_override: Optional[str] = None,
        **kwargs,
    ) -> torch.Tensor:
        """Loss of ``(n, 4)`` decoded boxes; ``weight`` zero everywhere gives an exact 0 that keeps the graph."""
        if reduction_override not in (None,) + _REDUCTIONS:
            raise ValueError(f"unknown reduction_override {reduction_override!r}; use None or one of {_REDUCTIONS}")
        reduction = reduction_override or self.reduction
        if weight is not None and not torch.any(weight > 0) and reduction != "none":
            if pred.dim() == weight.dim() + 1:
                weight = weight.unsqueeze(1)
            return (pred * weight).sum()  # 0, as mmdet's IoU losses
        if weight is not None and weight.dim() > 1:
            if weight.shape != pred.shape:
                raise ValueError(f"weight shape {tuple(weight.shape)} must be (n,) or pred's {tuple(pred.shape)}")
            weight = weight.mean(-1)
        loss = diff_scale_iou_loss(
            pred, target, self.mode, self.iou_mode, self.lambda_over, self.lambda_under, self.eps, self.form, self.lam
        )
        return self.loss_weight * weight_reduce_loss(
            loss, None if weight is None else weight.float(), reduction, avg_factor
        )

    def extra_repr(self) -> str:
        return (
            f"mode={self.mode!r}, form={self.form!r}, lam={self.lam}, iou_mode={self.iou_mode!r}, lambda_over={self.lambda_over}, "
            f"lambda_under={self.lambda_under}, loss_weight={self.loss_weight}"
        )


# ------------------------------------------------------------------------------------------- backbone
@register_once(MODELS)
class GaussResNet(ResNet):
    """MMDetection ``ResNet`` whose stem and chosen stages use a Gaussian-shaped (or any other) k×k conv.

    All ``ResNet`` arguments are accepted unchanged (``depth``, ``frozen_stages``, ``init_cfg`` …). After the
    plain network is built, every ``nn.Conv2d`` with kernel > 1 in the stem (``gauss_stem``) and in stage ``i``
    (``gauss_stages[i]``) is replaced by ``build_conv_layer(gauss_conv_cfg, in, out, k, stride, padding,
    dilation, groups, bias)``; 1×1 convs stay plain. Names and ``.weight`` shapes do not change, so torchvision /
    MMDetection ResNet checkpoints load (σ/θ are reported as missing keys and keep their initial values), and
    ``init_cfg`` Kaiming init still applies (MMEngine matches the ``Conv2d`` base class).

    Args:
        gauss_conv_cfg: conv config for the swapped layers; extra keys go to the conv
            (e.g. ``dict(type='GaussianShapedConv2d', sigma_init=1.0, tau=0.5)``). A ``GaussianShapedConv2d``
            without ``theta_init`` starts at θ₀ = 0 (:data:`~gaussconv_plugin.masks.PINNED_THETA_INIT`, what the
            published RetinaNet runs trained with; ``'mid'``, the package default, is not yet screened here).
        gauss_stem: swap the stem conv(s).
        gauss_stages: one bool per stage (length ``num_stages``); default: first stage only.
        *args, **kwargs: ``mmdet.models.backbones.ResNet`` arguments.

    Attributes:
        gauss_conv_names: qualified names of the swapped convs, in module order.

    Freezing: ``frozen_stages ≥ 0`` freezes the stem (and ``frozen_stages ≥ 1`` layer1) *including* σ and θ;
    use ``frozen_stages=-1`` to train the Gaussian layers.
    """

    def __init__(
        self,
        *args,
        gauss_conv_cfg: dict = dict(type="GaussianShapedConv2d"),  # noqa: B006 (never mutated)
        gauss_stem: bool = True,
        gauss_stages: Sequence[bool] = (True, False, False, False),
        **kwargs,
    ):
        if not isinstance(gauss_conv_cfg, dict) or "type" not in gauss_conv_cfg:
            raise TypeError(
                f"GaussResNet: gauss_conv_cfg must be a dict with a 'type' (got {gauss_conv_cfg!r}); "
                "use gauss_conv_cfg=dict(type='GaussianShapedConv2d')"
            )
        if not conv_type_registered(gauss_conv_cfg["type"]):
            raise ValueError(
                f"GaussResNet: conv type {gauss_conv_cfg['type']!r} in gauss_conv_cfg is not registered; use "
                "type='GaussianShapedConv2d' (registered by custom_imports=dict(imports=['gaussconv_plugin.mmdet']))"
                " or another conv type of MMCV's build_conv_layer"
            )
        super().__init__(*args, **kwargs)
        gauss_stages = tuple(bool(s) for s in gauss_stages)
        if len(gauss_stages) != self.num_stages:
            raise ValueError(
                f"GaussResNet: gauss_stages has {len(gauss_stages)} entries but num_stages={self.num_stages}; "
                f"give one bool per stage, e.g. {(True,) + (False,) * (self.num_stages - 1)}"
            )
        self.gauss_conv_cfg = dict(gauss_conv_cfg)
        if self.gauss_conv_cfg["type"] in ("GaussianShapedConv2d", GaussianShapedConv2d):
            self.gauss_conv_cfg.setdefault("theta_init", PINNED_THETA_INIT)
        self.gauss_stem = bool(gauss_stem)
        self.gauss_stages = gauss_stages

        prefixes = []
        if self.gauss_stem:
            prefixes.append("stem." if self.deep_stem else "conv1")
        prefixes += [f"{name}." for name, on in zip(self.res_layers, gauss_stages) if on]
        self.gauss_conv_names: list[str] = []
        for name, m in list(self.named_modules()):
            if type(m) is not nn.Conv2d or max(m.kernel_size) == 1:
                continue
            if not any(name == p or name.startswith(p) for p in prefixes):
                continue
            self._swap(name, m)
            self.gauss_conv_names.append(name)
        self._freeze_stages()  # re-apply to the new modules

    def _swap(self, name: str, m: nn.Conv2d) -> None:
        new = build_conv_layer(
            self.gauss_conv_cfg, m.in_channels, m.out_channels, m.kernel_size, stride=m.stride,
            padding=m.padding, dilation=m.dilation, groups=m.groups, bias=m.bias is not None,
        )
        with torch.no_grad():
            new.weight.copy_(m.weight)
            if m.bias is not None:
                new.bias.copy_(m.bias)
        parent_name, _, child = name.rpartition(".")
        setattr(self.get_submodule(parent_name) if parent_name else self, child, new)

