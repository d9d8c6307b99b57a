"""σ/θ in the optimizer: out of weight decay, never in the warm-up-bias group, and logged per epoch.

``BaseTrainer.build_optimizer`` (wrapped by :func:`wrap_build_optimizer`) builds the stock groups, then σ
(``sigma_raw``) and θ of every ``GaussianShapedConv2d`` leave the weight-decayed group (:func:`exclude_from_decay`):
they are shape parameters, and decay would pull σ_raw towards 0 (σ → softplus(0) ≈ 0.69 taps) and θ towards 0
(the PConv angle). They join the group that holds the weights of the normalisation layers (no decay, same
learning rate), found by what it holds, not by its position or tag (:func:`norm_weight_group`):

==================  =====================================================  ===================================
Ultralytics         groups built by ``build_optimizer``                    warm-up of ``warmup_bias_lr``
==================  =====================================================  ===================================
8.3                 untagged: 0 biases, 1 decayed weights, 2 norm weights  group index 0
8.4                 tagged: ``weight``, ``bn`` (norm weights), ``bias``    the group tagged ``bias``
                    (MuSGD: each split in two, plus ``muon`` groups)
==================  =====================================================  ===================================

so σ/θ never warm up from ``warmup_bias_lr`` (0.1 for SGD) on either. Done before the scheduler is built, so every
group is scheduled and ``resume`` rebuilds the same groups. The model-YAML key ``shape_lr_mult: m`` (default 1,
read by :mod:`.keys`) gives them a group of their own with ``m`` times the learning rate instead. The same wrapper
adds an ``on_fit_epoch_end`` callback that appends σ and θ per layer (mean, min, max) to ``gauss_shape.csv``
next to ``results.csv``.

Ultralytics internals used: ``BaseTrainer.build_optimizer`` (wrapped), ``BaseTrainer.add_callback``,
``utils.RANK``, ``torch_utils.unwrap_model``, ``tasks.LOGGER`` (listed in :mod:`.internals`).
"""
from __future__ import annotations

import csv
import functools
from pathlib import Path

import torch
import torch.nn as nn

from ultralytics.nn import tasks

from ..conv import GaussianShapedConv2d
from .internals import mark
from .keys import shape_lr_mult

__all__ = [
    "SHAPE_LOG",
    "exclude_from_decay",
    "norm_weight_group",
    "shape_param_stats",
    "shape_params",
    "wrap_build_optimizer",
]

SHAPE_LOG = "gauss_shape.csv"  # written next to Ultralytics' results.csv

#: the layers whose weights Ultralytics keeps out of weight decay (its own definition in build_optimizer)
_NORMS = tuple(v for k, v in nn.__dict__.items() if "Norm" in k)


def shape_params(model: nn.Module) -> list[nn.Parameter]:
    """``σ_raw`` and ``θ`` of every :class:`GaussianShapedConv2d` in ``model`` (shape parameters, not weights)."""
    out = []
    for m in model.modules():
        if isinstance(m, GaussianShapedConv2d):
            out += [m.sigma_raw, m.theta]
    return out


def norm_weight_group(optimizer: torch.optim.Optimizer, model: nn.Module | None, lr=None) -> dict | None:
    """The param group of ``optimizer`` that holds the weights of ``model``'s normalisation layers, else None.

    A group qualifies when it has no weight decay, is not a Muon group, is not tagged ``param_group='bias'``,
    holds no parameter whose name contains ``bias`` (Ultralytics' test for its bias group) and holds at least
    one weight of a normalisation layer (``BatchNorm2d`` …, Ultralytics' own ``"Norm" in name`` test); with
    ``lr`` given, its learning rate must be ``lr``. That is the ``bn`` group of Ultralytics 8.4 and the untagged
    third group of 8.3; never the bias group, which warms up from ``warmup_bias_lr``. Without ``model`` only a
    group tagged ``param_group='bn'`` (8.4's name for it) qualifies."""
    norm_w, bias = set(), set()
    if model is not None:
        norm_w = {id(m.weight) for m in model.modules()
                  if isinstance(m, _NORMS) and isinstance(getattr(m, "weight", None), nn.Parameter)}
        bias = {id(p) for n, p in model.named_parameters() if "bias" in n}
    for g in optimizer.param_groups:
        if g.get("weight_decay") or g.get("use_muon") or g.get("param_group") == "bias":
            continue
        if lr is not None and g.get("lr") != lr:
            continue
        ids = {id(p) for p in g["params"]}
        if model is None:
            if g.get("param_group") == "bn":
                return g
        elif ids & norm_w and not ids & bias:
            return g
    return None


def exclude_from_decay(optimizer: torch.optim.Optimizer, params, lr_mult: float = 1.0,
                       model: nn.Module | None = None) -> int:
    """Move ``params`` out of every weight-decayed param group into a group without decay; returns how many moved.

    With ``lr_mult == 1`` the target is :func:`norm_weight_group` (the no-decay group holding ``model``'s
    normalisation weights, with the source group's learning rate), else a new group. With ``lr_mult != 1``, or
    when there is no such group, they get a new decay-0 group ``param_group='gauss_shape'`` copying the source
    group's options with ``lr × lr_mult``. Pass ``model`` (the wrapped ``build_optimizer`` does): without it only
    a group tagged ``bn`` is recognised. Call it before the LR scheduler is built (as the wrapped
    ``build_optimizer`` does), so that every group is scheduled (Ultralytics' warm-up and LambdaLR scale each
    group's own initial lr) and a resumed run rebuilds the same groups."""
    ids = {id(p) for p in params}
    moved = 0
    for src in list(optimizer.param_groups):
        if not src.get("weight_decay") or src.get("use_muon"):
            continue
        take = [p for p in src["params"] if id(p) in ids]
        if not take:
            continue
        src["params"] = [p for p in src["params"] if id(p) not in ids]
        dst = norm_weight_group(optimizer, model, lr=src.get("lr")) if lr_mult == 1 else None
        if dst is None:
            optimizer.add_param_group({**{k: v for k, v in src.items() if k not in ("params", "initial_lr")},
                                       "params": take, "weight_decay": 0.0, "lr": src["lr"] * lr_mult,
                                       "param_group": "gauss_shape"})
        else:
            dst["params"].extend(take)
        moved += len(take)
    return moved


def shape_param_stats(model: nn.Module) -> list[dict]:
    """Per :class:`GaussianShapedConv2d` of ``model``: name, k, stride, and mean/min/max of σ (taps) and θ (deg)."""
    rows = []
    for name, m in model.named_modules():
        if isinstance(m, GaussianShapedConv2d):
            sg, th = m.sigma.detach().float(), torch.rad2deg(m.theta.detach().float())
            rows.append({"layer": name, "k": m.kernel_size[0], "stride": m.stride[0], "mask_floor": m.mask_floor,
                         "sigma_mean": sg.mean().item(), "sigma_min": sg.min().item(), "sigma_max": sg.max().item(),
                         "theta_mean_deg": th.mean().item(), "theta_min_deg": th.min().item(),
                         "theta_max_deg": th.max().item()})
    return rows


def _log_shape_params(trainer) -> None:
    """``on_fit_epoch_end`` callback: append σ/θ per layer to ``<save_dir>/gauss_shape.csv`` (rank 0 only)."""
    from ultralytics.utils import RANK
    from ultralytics.utils.torch_utils import unwrap_model

    if RANK not in {-1, 0} or trainer.epoch + 1 > trainer.epochs:  # final_eval re-fires it with epoch + 1
        return
    rows = shape_param_stats(unwrap_model(trainer.model))
    if not rows:
        return
    path = Path(trainer.save_dir) / SHAPE_LOG
    new = not path.exists()
    with path.open("a", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=["epoch", *rows[0]])
        if new:
            w.writeheader()
        for r in rows:
            w.writerow({"epoch": trainer.epoch + 1, **{k: round(v, 6) if isinstance(v, float) else v
                                                       for k, v in r.items()}})


def wrap_build_optimizer(orig):
    """``BaseTrainer.build_optimizer`` → the same, with σ/θ in a no-decay group and the σ/θ log callback."""

    @functools.wraps(orig)
    def build_optimizer(self, model, *args, **kwargs):
        """``BaseTrainer.build_optimizer`` with σ/θ of Gaussian-shaped convs in a no-decay group (+ σ/θ log)."""
        optimizer = orig(self, model, *args, **kwargs)
        inner = getattr(model, "module", model)  # DDP
        mult = shape_lr_mult(inner)
        n = exclude_from_decay(optimizer, shape_params(model), mult, model=model)
        if n:
            tasks.LOGGER.info(f"gaussconv_plugin: {n} σ/θ shape parameter tensors moved to a no-decay group"
                              + (f" with lr × {mult:g}" if mult != 1 else "")
                              + f"; σ/θ per epoch in {Path(self.save_dir) / SHAPE_LOG}")
            if not getattr(self, "_gaussconv_shape_log", False):
                self.add_callback("on_fit_epoch_end", _log_shape_params)
                self._gaussconv_shape_log = True
        return optimizer

    return mark(build_optimizer, orig)
