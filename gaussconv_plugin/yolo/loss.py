"""The scale box loss in Ultralytics: :class:`ScaleBboxLoss`, :func:`install_scale_loss` and the criterion wrap.

``DetectionModel.init_criterion`` (wrapped by :func:`wrap_init_criterion`) builds the stock criterion and, when
``model.yaml['scale_loss']`` is not ``none``, replaces its ``bbox_loss`` (also inside each branch of ``E2ELoss``)
by :class:`ScaleBboxLoss`: stock ``1 − CIoU`` plus ``λ·(1 − α(P, T))`` (``scale_loss_form: add``, default) or
``(1 − α)·IoU`` (``scale_loss_form: mul``), with ``α = scale_weight(P, T, mode)``, P and T the predicted /
assigned target box areas **in input pixels** (grid-unit boxes times stride²), λ = ``scale_loss_lambda`` (1).
DFL/L1 terms are untouched; ``none`` leaves the stock criterion object as is. Detection models only:
segment/pose/OBB criteria are built by their own ``init_criterion`` and ignore the key. The keys are read by
:mod:`.keys`.

Ultralytics internals used: ``BboxLoss`` (subclassed; its ``forward`` signature), ``metrics.bbox_iou``, the
``bbox_loss`` attribute of ``v8DetectionLoss`` / ``E2ELoss``, ``DetectionModel.init_criterion`` (listed in
:mod:`.internals`).
"""
from __future__ import annotations

import functools

import torch

from ultralytics.utils import loss as ul_loss
from ultralytics.utils.metrics import bbox_iou

from ..losses import box_area, check_form, check_mode, scale_box_loss
from .internals import mark
from .keys import scale_loss_mode, scale_loss_options

__all__ = ["ScaleBboxLoss", "install_scale_loss", "wrap_init_criterion"]


class ScaleBboxLoss(ul_loss.BboxLoss):
    """YOLOv8's ``BboxLoss`` plus the scale term of :func:`gaussconv_plugin.losses.scale_box_loss`.

    Per foreground anchor, with ``CIoU``/``IoU`` of the decoded predicted box and its assigned target box and
    ``α = scale_weight(P, T, mode)`` (P, T the two areas **in input pixels**: grid-unit boxes times stride²)::

        form='add' (default):  1 − CIoU + λ·(1 − α)          stock CIoU loss + a penalty that only adds loss
        form='mul':            1 − α·IoU + (IoU − CIoU)      stock CIoU loss + (1 − α)·IoU

    ``loss_iou = Σ loss·w / target_scores_sum`` (``w`` the summed target scores of each anchor), as the stock loss.
    ``balance=True`` (YAML ``scale_loss_balance: true``) rescales it to the stock ``1 − CIoU`` loss's value each step
    (a detached factor), so the scale term reshapes the box gradient without raising the box loss against cls/DFL.
    Both forms add ≥ 0 to the stock CIoU loss, nothing when P = T, and, for the monotone modes diff/ratio/sqrt,
    grow with the mismatch (var is not monotone). ``add`` keeps the IoU gradient whole (``mul`` scales it by α,
    smallest for the tiniest boxes); it is the default because the SIRST train → val screen chose it
    (``docs/ablation/screen_v2_train_val``). The MMDetection twin ``DiffScaleIoULoss`` uses the same two forms on
    (G)IoU. The DFL (or L1) term is the stock one.

    Shapes (as ``BboxLoss.forward``): ``pred_dist (B, A, 4·reg_max)``, ``pred_bboxes (B, A, 4)`` and
    ``target_bboxes (B, A, 4)`` xyxy in grid units, ``anchor_points (A, 2)``, ``target_scores (B, A, nc)``,
    ``fg_mask (B, A)`` bool, ``stride (A, 1)``. Returns ``(loss_iou, loss_dfl)`` scalars.
    """

    def __init__(self, reg_max: int = 16, mode: str = "diff", form: str = "add", lam: float = 1.0,
                 balance: bool = False):
        super().__init__(reg_max)
        self.mode = check_mode(mode)
        self.form = check_form(form)
        if not float(lam) >= 0:
            raise ValueError(f"ScaleBboxLoss lam must be >= 0 (got {lam!r}); use e.g. scale_loss_lambda: 1.0")
        self.lam = float(lam)
        self.balance = bool(balance)

    def forward(
        self, pred_dist, pred_bboxes, anchor_points, target_bboxes, target_scores, target_scores_sum, fg_mask,
        imgsz, stride,
    ):
        _, loss_dfl = super().forward(
            pred_dist, pred_bboxes, anchor_points, target_bboxes, target_scores, target_scores_sum, fg_mask,
            imgsz, stride,
        )
        idx = fg_mask.nonzero(as_tuple=True)
        weight = target_scores[idx].sum(-1, keepdim=True)  # (K, 1)
        pb, tb = pred_bboxes[idx], target_bboxes[idx]  # (K, 4) grid units
        ciou = bbox_iou(pb, tb, xywh=False, CIoU=True)  # (K, 1)
        iou = bbox_iou(pb, tb, xywh=False) if self.form == "mul" else ciou  # plain IoU only where used
        s = torch.as_tensor(stride, device=pb.device, dtype=torch.float32)
        s2 = (s.reshape(-1)[idx[-1]] if s.numel() > 1 else s.reshape(1).expand(len(pb))) ** 2  # (K,)
        per_box = scale_box_loss(iou.squeeze(-1), ciou.squeeze(-1), box_area(pb.float()) * s2,
                                 box_area(tb.float()) * s2, self.mode, self.form, self.lam)
        loss_iou = (per_box.unsqueeze(-1).to(ciou.dtype) * weight).sum() / target_scores_sum
        if self.balance:  # the stock box loss's size, the scale term's share of its gradient (class docstring)
            stock = ((1.0 - ciou) * weight).sum() / target_scores_sum
            loss_iou = loss_iou * (stock / loss_iou.clamp_min(1e-12)).detach()
        return loss_iou, loss_dfl

    def extra_repr(self) -> str:
        return f"mode={self.mode!r}, form={self.form!r}, lam={self.lam}, balance={self.balance}"


def install_scale_loss(criterion, mode: str, form: str = "add", lam: float = 1.0, balance: bool = False) -> int:
    """Replace the ``bbox_loss`` of ``criterion`` (a ``v8DetectionLoss``, or each branch of an ``E2ELoss``) by
    :class:`ScaleBboxLoss`; returns how many were replaced (0 for ``mode='none'``)."""
    check_mode(mode)
    if mode == "none":
        return 0
    n = 0
    for obj in [criterion, *vars(criterion).values()]:
        bl = getattr(obj, "bbox_loss", None)
        if type(bl) is ul_loss.BboxLoss or isinstance(bl, ScaleBboxLoss):
            dev = next(iter(bl.buffers()), None)
            new = ScaleBboxLoss(obj.reg_max, mode, form, lam, balance)
            device = getattr(obj, "device", None) or (dev.device if dev is not None else None)
            obj.bbox_loss = new.to(device) if device is not None else new
            n += 1
    return n


def wrap_init_criterion(orig):
    """``DetectionModel.init_criterion`` → the same, with :class:`ScaleBboxLoss` where the YAML asks for it."""

    @functools.wraps(orig)
    def init_criterion(self):
        """Stock detection criterion, with :class:`ScaleBboxLoss` when ``yaml['scale_loss']`` is not ``none``."""
        crit = orig(self)
        mode = scale_loss_mode(self)
        if mode != "none" and install_scale_loss(crit, mode, **scale_loss_options(self)) == 0:
            raise RuntimeError(
                f"scale_loss: {mode} needs a criterion with a BboxLoss (got {type(crit).__name__}); "
                "use scale_loss: none for this model"
            )
        return crit

    return mark(init_criterion, orig)
