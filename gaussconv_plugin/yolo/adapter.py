"""The one place where gaussconv_plugin touches Ultralytics internals (written against ultralytics 8.4.190).

:func:`register` (idempotent; called by the auto-hook once ``ultralytics.nn.tasks`` and again once
``ultralytics.engine.trainer`` is imported) makes six changes: five in ``ultralytics.nn.tasks`` plus torch's
weights-only allow-list, one in ``ultralytics.engine.trainer``. No Ultralytics file is edited.

1. **Name.** ``tasks.GaussianShapedConv`` (and ``tasks.PConv``, the pinwheel conv of Yang et al., this project's
   peer row) is set, so ``globals()[m]`` in ``parse_model`` resolves the YAML name.
2. **Channel inference.** ``parse_model`` decides Conv-style channel inference (``c1 = ch[f]``,
   ``c2 = make_divisible(min(c2, max_channels) · width, 8)``) by membership in a set that is local to the
   function, so a new class cannot be added to it. The wrapper therefore hands Ultralytics the same YAML with
   ``GaussianShapedConv`` rows renamed to ``Conv`` (exactly Conv's inference and n/s/m/l/x scaling), then replaces
   each of those ``Conv`` layers by a :class:`~gaussconv_plugin.GaussianShapedConv` with the same geometry
   (c1, c2, k, s, p, g, d, activation) and the *same* initial conv weight and BN state. The replacement is built
   under ``torch.random.fork_rng``, so the global RNG stream — and thus the initialisation of every later
   layer — is the one the stock twin gets for the same seed. The per-layer log line is relabelled.
   A YAML row may end with a dict of :class:`~gaussconv_plugin.GaussianShapedConv2d` options
   (``[64, 3, 2, {sigma_init: 1.0}]``); if ``k`` is omitted it is 3 (GaussianShapedConv's default).
   The top-level key ``scale_loss`` is validated here (``diff|var|ratio|sqrt|none``, absent = ``none``).
3. **Fusing.** ``BaseModel.fuse`` first calls :func:`gaussconv_plugin.fuse_gaussian_convs`: every
   ``GaussianShapedConv`` becomes one plain ``nn.Conv2d`` holding ``W·G·M`` with its BN folded in, and any bare
   ``GaussianShapedConv2d`` (e.g. put into a stock ``Conv`` by :func:`~gaussconv_plugin.swap_convs`) becomes a
   plain conv *before* Ultralytics' ``fuse_conv_and_bn`` reads ``.weight`` (which is not the effective kernel).
4. **Scale box loss.** ``DetectionModel.init_criterion`` builds the stock criterion and, when
   ``model.yaml['scale_loss']`` is not ``none``, replaces its ``bbox_loss`` (also inside ``E2ELoss``) by
   :class:`ScaleBboxLoss`: stock ``1 − CIoU`` plus ``λ·(1 − α(P, T))`` (``scale_loss_form: add``, default) or
   ``(1 − α)·IoU`` (``scale_loss_form: mul``), with ``α = scale_weight(P, T, mode)``, P and T the predicted /
   assigned target box areas **in input pixels** (grid-unit boxes times stride²), λ = ``scale_loss_lambda`` (1). DFL/L1 terms are untouched; ``none`` leaves the stock criterion object as is.
   Detection models only: segment/pose/OBB criteria are built by their own ``init_criterion`` and ignore the key.
5. **Loading.** ``GaussianShapedConv`` and ``GaussianShapedConv2d`` are added to torch's weights-only allow-list
   (``torch.serialization.add_safe_globals``), so ``ULTRALYTICS_SAFE_LOAD=1`` can load checkpoints that hold them.
   ``check_yaml`` (as used by ``yaml_model_load``) falls back to the packaged configs for bare file names that
   Ultralytics does not find itself (cwd and its own cfg folder win).
6. **Optimizer** (``ultralytics.engine.trainer``, patched once that module is imported). ``BaseTrainer.build_optimizer``
   builds the stock groups, then σ (``sigma_raw``) and θ of every ``GaussianShapedConv2d`` leave the weight-decayed
   group for the no-decay ``bn`` group (:func:`exclude_from_decay`): they are shape parameters, and decay would pull
   σ_raw towards 0 (σ → softplus(0) ≈ 0.69 taps) and θ towards 0 (the PConv angle). Done before the scheduler is built, so every group is
   scheduled and ``resume`` rebuilds the same groups. The model-YAML key ``shape_lr_mult: m`` (default 1) gives them
   a group of their own with ``m`` times the learning rate instead. The same wrapper adds an ``on_fit_epoch_end`` callback that
   appends σ and θ per layer (mean, min, max) to ``gauss_shape.csv`` next to ``results.csv``.

:func:`check_internals` lists every internal name/signature relied on; ``register`` refuses to patch (one-line
``RuntimeError``) when one is missing, and ``tests/test_yolo_adapter.py`` fails loudly on an Ultralytics update.
"""
from __future__ import annotations

import ast
import csv
import functools
import inspect
import logging
import re
import sys
import threading
from pathlib import Path

import torch
import torch.nn as nn

from ..conv import GaussianShapedConv, GaussianShapedConv2d
from ..pconv import PConv
from ..losses import BOX_FORMS, SCALE_MODES, box_area, check_form, check_mode, scale_box_loss
from ..swap import fuse_gaussian_convs
from . import packaged_cfg
from .._autohook import disabled as _autohook_disabled

import ultralytics
from ultralytics.nn import tasks
from ultralytics.nn.modules import Conv
from ultralytics.utils import loss as ul_loss
from ultralytics.utils import metrics as ul_metrics
from ultralytics.utils.metrics import bbox_iou

__all__ = [
    "GS_NAME",
    "ScaleBboxLoss",
    "check_internals",
    "is_registered",
    "register",
    "scale_loss_mode",
    "scale_loss_options",
    "install_scale_loss",
    "shape_params",
    "shape_param_stats",
    "exclude_from_decay",
    "shape_lr_mult",
    "check_trainer_internals",
    "SHAPE_LOG",
]

GS_NAME = "GaussianShapedConv"
_MARK = "_gaussconv_registered"  # attribute set on ultralytics.nn.tasks once patched
_lock = threading.Lock()

# Everything this module relies on: (object path, required parameter names or None for "exists").
_REQUIRED = (
    ("ultralytics.nn.tasks.parse_model", ("d", "ch", "verbose")),
    ("ultralytics.nn.tasks.yaml_model_load", ("path",)),
    ("ultralytics.nn.tasks.check_yaml", ("file", "suffix", "hard")),
    ("ultralytics.nn.tasks.LOGGER", None),
    ("ultralytics.nn.tasks.BaseModel.fuse", ("self", "verbose")),
    ("ultralytics.nn.tasks.DetectionModel.init_criterion", ("self",)),
    ("ultralytics.nn.tasks.Conv", ("c1", "c2", "k", "s", "p", "g", "d", "act")),
    ("ultralytics.utils.loss.v8DetectionLoss.__init__", ("self", "model")),
    ("ultralytics.utils.loss.E2ELoss.__init__", ("self", "model")),
    (
        "ultralytics.utils.loss.BboxLoss.forward",
        ("self", "pred_dist", "pred_bboxes", "anchor_points", "target_bboxes", "target_scores",
         "target_scores_sum", "fg_mask", "imgsz", "stride"),
    ),
    ("ultralytics.utils.metrics.bbox_iou", ("box1", "box2", "xywh", "CIoU")),
)


def _resolve(path: str):
    mod = {"ultralytics.nn.tasks": tasks, "ultralytics.utils.loss": ul_loss, "ultralytics.utils.metrics": ul_metrics}
    for prefix, m in mod.items():
        if path.startswith(prefix + "."):
            obj = m
            for part in path[len(prefix) + 1 :].split("."):
                obj = getattr(obj, part)
            return obj
    raise KeyError(path)


def check_internals() -> list[str]:
    """Problems with the Ultralytics internals this adapter needs (empty list: all present).

    Checks that each name in ``_REQUIRED`` exists and that callables accept the listed parameter names, that
    ``Conv`` still builds ``.conv``/``.bn``/``.act`` and that ``v8DetectionLoss`` instances carry ``bbox_loss``."""
    problems = []
    for path, params in _REQUIRED:
        obj = _resolve_original(path)
        if obj is None:
            problems.append(f"{path} is missing")
            continue
        if params:
            try:
                sig = inspect.signature(obj)
            except (TypeError, ValueError):
                problems.append(f"{path}: signature unreadable")
                continue
            missing = [p for p in params if p not in sig.parameters]
            if missing:
                problems.append(f"{path} lacks parameter(s) {missing}")
    try:
        c = Conv(4, 8, 3, 2)
        if not (isinstance(c.conv, nn.Conv2d) and isinstance(c.bn, nn.BatchNorm2d) and isinstance(c.act, nn.Module)):
            problems.append("Conv no longer has .conv/.bn/.act")
    except Exception as e:  # pragma: no cover - only on a broken Ultralytics
        problems.append(f"Conv(4, 8, 3, 2) fails: {e}")
    try:
        if "self.bbox_loss" not in inspect.getsource(ul_loss.v8DetectionLoss.__init__):
            problems.append("v8DetectionLoss no longer sets self.bbox_loss")
    except (OSError, TypeError):  # no source shipped: install_scale_loss still checks at run time
        pass
    return problems


def _resolve_original(path: str):
    try:
        return _resolve(path)
    except (AttributeError, KeyError):
        return None


def is_registered() -> bool:
    """Whether :func:`register` has patched ``ultralytics.nn.tasks`` in this process (and it was not reloaded)."""
    return bool(getattr(tasks, _MARK, False)) and all(
        getattr(f, "_gaussconv", False)
        for f in (tasks.parse_model, tasks.check_yaml, tasks.BaseModel.fuse, tasks.DetectionModel.init_criterion)
    )


# --------------------------------------------------------------------------------------------- parse_model
class _RelabelRows(logging.Filter):
    """Rewrites parse_model's per-layer log rows of the swapped layers (module name and parameter count).

    Ultralytics logs ``f"{i:>3}{f!s:>20}{n_:>3}{np:10.0f}  {t:<45}{args!s:<30}"`` with ``args = [c1, c2, k, s, ...]``
    (those of the ``Conv`` that was built); ``rows`` maps a swapped layer index to ``(label, count)`` where
    ``count(conv_args, n_conv_params)`` gives the swapped layer's parameter count."""

    _row = re.compile(r"^(?P<pre>.{3}.{20}.{3})(?P<np>.{10})  (?P<t>.{45})(?P<args>\[.*\])\s*$", re.S)

    def __init__(self, rows: dict[int, tuple[str, object]]):
        super().__init__()
        self.rows = rows

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            m = self._row.match(record.getMessage())
            i = int(m["pre"][:3]) if m else -1
            if i in self.rows and m["t"].rstrip().endswith(".Conv"):
                label, count = self.rows[i]
                np_ = count(ast.literal_eval(m["args"]), int(float(m["np"])))
                record.msg, record.args = f"{m['pre']}{np_:10.0f}  {label:<45}{m['args']}", ()
        except Exception:  # cosmetic only: never break model building
            pass
        return True


def _label(cls) -> str:
    return f"{cls.__module__.partition('.')[0]}.{cls.__qualname__}"


def _gs_count(opts: dict):
    """Parameters of a GaussianShapedConv row: the Conv's plus σ, θ per output channel (2 per layer if not)."""
    return lambda args, n: n + (2 * int(args[1]) if opts.get("per_channel", True) else 2)


def _pconv_count(opts: dict):
    """Parameters of a PConv row (``[c1, c2, k, s]``): two c2/4-channel strips (1×k, k×1) + the 2×2 merge, with BN."""
    def count(args, n):
        c1, c2, k = int(args[0]), int(args[1]), int(args[2]) if len(args) > 2 else 3
        q = c2 // 4
        return 2 * (c1 * q * k + 2 * q) + c2 * c2 * 4 + 2 * c2
    return count


def _split_row_args(args: list) -> tuple[list, dict]:
    """YAML args of a GaussianShapedConv row → (Conv args, GaussianShapedConv2d options)."""
    args = list(args)
    opts = {}
    if args and isinstance(args[-1], dict):
        opts = dict(args.pop())
    if len(args) == 1:
        args.append(3)  # GaussianShapedConv's default kernel (Conv's default would be 1)
    return args, opts


def _gs_from_conv(conv: nn.Module, opts: dict) -> GaussianShapedConv:
    """A GaussianShapedConv with ``conv``'s geometry, activation, initial weight and BN state (RNG untouched)."""
    c = conv.conv
    k, s, p, d = c.kernel_size[0], c.stride[0], c.padding[0], c.dilation[0]
    if c.kernel_size[0] != c.kernel_size[1] or c.stride[0] != c.stride[1] or c.padding[0] != c.padding[1]:
        raise ValueError(
            f"GaussianShapedConv needs a square kernel/stride/padding (got kernel {c.kernel_size}, stride {c.stride}, "
            f"padding {c.padding}); use int k, s, p in the YAML row"
        )
    with torch.random.fork_rng(devices=[]):
        gs = GaussianShapedConv(c.in_channels, c.out_channels, k, s, p, c.groups, d, act=conv.act, **opts)
    gs = gs.to(device=c.weight.device, dtype=c.weight.dtype)
    with torch.no_grad():
        gs.conv.weight.copy_(c.weight)
    gs.bn.load_state_dict(conv.bn.state_dict())
    gs.bn.eps, gs.bn.momentum = conv.bn.eps, conv.bn.momentum
    return gs


def _pconv_from_conv(conv: nn.Module, opts: dict) -> PConv:
    """A :class:`~gaussconv_plugin.pconv.PConv` with ``conv``'s channels, kernel, stride and activation (its own
    initialisation, drawn under ``fork_rng`` so that later layers get the stock twin's RNG stream)."""
    c = conv.conv
    if opts:
        raise ValueError(f"PConv rows take no options dict (got {opts}); use [c2, k, s]")
    with torch.random.fork_rng(devices=[]):
        pc = PConv(c.in_channels, c.out_channels, c.kernel_size[0], c.stride[0], act=conv.act)
    return pc.to(device=c.weight.device, dtype=c.weight.dtype)


#: YAML module names built through Conv's channel inference: name -> (class, builder from a Conv, row param count)
CONV_LIKE = {
    GS_NAME: (GaussianShapedConv, _gs_from_conv, _gs_count),
    "PConv": (PConv, _pconv_from_conv, _pconv_count),
}


def _wrap_parse_model(orig):
    @functools.wraps(orig)
    def parse_model(d, ch, verbose=True):
        """``parse_model`` that also builds ``GaussianShapedConv`` and ``PConv`` rows with Conv's channel inference."""
        mode = d.get("scale_loss", "none") if isinstance(d, dict) else "none"
        if mode is None or mode is False:  # YAML `scale_loss: ~` / `false`
            mode = "none"
        if mode not in SCALE_MODES:
            raise ValueError(
                f"model YAML has scale_loss: {mode!r}; use one of {', '.join(SCALE_MODES)} (or omit it for 'none')"
            )
        if isinstance(d, dict):
            scale_loss_options(d)  # validates scale_loss_form / scale_loss_lambda (one-line error)
            shape_lr_mult(d)
        nb = len(d.get("backbone", []))
        rows = list(d.get("backbone", [])) + list(d.get("head", []))
        swaps: dict[int, tuple[str, dict]] = {}
        new_rows = []
        for i, row in enumerate(rows):
            if isinstance(row, (list, tuple)) and len(row) == 4 and row[2] in CONV_LIKE:
                f, n, name, args = row
                args, opts = _split_row_args(args)
                swaps[i] = (name, opts)
                row = [f, n, "Conv", args]
            new_rows.append(row)
        if not swaps:
            return orig(d, ch, verbose)
        d2 = dict(d)
        d2["backbone"], d2["head"] = new_rows[:nb], new_rows[nb:]
        relabel = _RelabelRows({i: (_label(CONV_LIKE[nm][0]), CONV_LIKE[nm][2](o)) for i, (nm, o) in swaps.items()}
                               ) if verbose else None
        if relabel is not None:
            tasks.LOGGER.addFilter(relabel)
        try:
            model, save = orig(d2, ch, verbose)
        finally:
            if relabel is not None:
                tasks.LOGGER.removeFilter(relabel)
        for i, (name, opts) in swaps.items():
            cls, build, _ = CONV_LIKE[name]
            layer = model[i]
            if isinstance(layer, nn.Sequential):  # repeats n > 1
                new = nn.Sequential(*(build(c, opts) for c in layer))
            else:
                new = build(layer, opts)
            new.i, new.f = layer.i, layer.f
            new.type = f"{cls.__module__}.{cls.__qualname__}"
            new.np = sum(x.numel() for x in new.parameters())
            model[i] = new
        return model, save

    parse_model.__wrapped__ = orig
    parse_model._gaussconv = True
    return parse_model


# --------------------------------------------------------------------------------------------- yaml look-up
def _wrap_check_yaml(orig):
    @functools.wraps(orig)
    def check_yaml(file, suffix=(".yaml", ".yml"), hard=True):
        """``check_yaml`` that falls back to gaussconv_plugin's packaged configs for bare file names."""
        found = orig(file, suffix, hard=False)
        if found:
            return found
        p = packaged_cfg(file)
        if p is not None:
            return str(p)
        return orig(file, suffix, hard=hard)

    check_yaml.__wrapped__ = orig
    check_yaml._gaussconv = True
    return check_yaml


# --------------------------------------------------------------------------------------------- fuse
def _wrap_fuse(orig):
    @functools.wraps(orig)
    def fuse(self, *args, **kwargs):
        """``BaseModel.fuse`` that first turns Gaussian-shaped convs into plain convs (effective kernel + BN)."""
        fuse_gaussian_convs(self)
        return orig(self, *args, **kwargs)

    fuse.__wrapped__ = orig
    fuse._gaussconv = True
    return fuse


# --------------------------------------------------------------------------------------------- loss
class ScaleBboxLoss(ul_loss.BboxLoss):
    """YOLOv8's ``BboxLoss`` plus the scale term of :func:`gaussconv_plugin.losses.scale_box_loss`.

    Per foreground anchor, with ``CIoU``/``IoU`` of the decoded predicted box and its assigned target box and
    ``α = scale_weight(P, T, mode)`` (P, T the two areas **in input pixels**: grid-unit boxes times stride²)::

        form='add' (default):  1 − CIoU + λ·(1 − α)          stock CIoU loss + a penalty that only adds loss
        form='mul':            1 − α·IoU + (IoU − CIoU)      stock CIoU loss + (1 − α)·IoU

    ``loss_iou = Σ loss·w / target_scores_sum`` (``w`` the summed target scores of each anchor), as the stock loss.
    Both forms add ≥ 0 to the stock CIoU loss, nothing when P = T, and, for the monotone modes diff/ratio/sqrt,
    grow with the mismatch (var is not monotone). ``add`` keeps the IoU gradient whole (``mul`` scales it by α,
    smallest for the tiniest boxes); it is the default because the SIRST screen chose it (README). The MMDetection
    twin ``DiffScaleIoULoss`` uses the same two forms on (G)IoU.
    The DFL (or L1) term is the stock one.

    Shapes (as ``BboxLoss.forward``): ``pred_dist (B, A, 4·reg_max)``, ``pred_bboxes (B, A, 4)`` and
    ``target_bboxes (B, A, 4)`` xyxy in grid units, ``anchor_points (A, 2)``, ``target_scores (B, A, nc)``,
    ``fg_mask (B, A)`` bool, ``stride (A, 1)``. Returns ``(loss_iou, loss_dfl)`` scalars.
    """

    def __init__(self, reg_max: int = 16, mode: str = "diff", form: str = "add", lam: float = 1.0):
        super().__init__(reg_max)
        self.mode = check_mode(mode)
        self.form = check_form(form)
        if not float(lam) >= 0:
            raise ValueError(f"ScaleBboxLoss lam must be >= 0 (got {lam!r}); use e.g. scale_loss_lambda: 1.0")
        self.lam = float(lam)

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
        return loss_iou, loss_dfl

    def extra_repr(self) -> str:
        return f"mode={self.mode!r}, form={self.form!r}, lam={self.lam}"


def _yaml_get(model_or_yaml, key: str, default):
    y = model_or_yaml if isinstance(model_or_yaml, dict) else getattr(model_or_yaml, "yaml", None)
    v = y.get(key, default) if isinstance(y, dict) else default
    return default if v is None else v


def scale_loss_mode(model) -> str:
    """``model.yaml['scale_loss']`` (``none`` if absent), validated."""
    mode = _yaml_get(model, "scale_loss", "none")
    return check_mode("none" if mode is False else mode)


def scale_loss_options(model) -> dict:
    """``{'form', 'lam'}`` from ``model.yaml`` keys ``scale_loss_form`` (``add``) and ``scale_loss_lambda`` (1.0)."""
    form = _yaml_get(model, "scale_loss_form", "add")
    if form not in BOX_FORMS:
        raise ValueError(f"model YAML has scale_loss_form: {form!r}; use one of {', '.join(BOX_FORMS)}")
    lam = _yaml_get(model, "scale_loss_lambda", 1.0)
    if isinstance(lam, bool) or not isinstance(lam, (int, float)) or lam < 0:
        raise ValueError(f"model YAML has scale_loss_lambda: {lam!r}; use a number >= 0 such as 1.0")
    return {"form": form, "lam": float(lam)}


def install_scale_loss(criterion, mode: str, form: str = "add", lam: float = 1.0) -> int:
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
            new = ScaleBboxLoss(obj.reg_max, mode, form, lam)
            device = getattr(obj, "device", None) or (dev.device if dev is not None else None)
            obj.bbox_loss = new.to(device) if device is not None else new
            n += 1
    return n


def _wrap_init_criterion(orig):
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

    init_criterion.__wrapped__ = orig
    init_criterion._gaussconv = True
    return init_criterion


# --------------------------------------------------------------------------------------------- register
def register() -> None:
    """Patch Ultralytics (see the module docstring). Idempotent and thread-safe.

    Raises:
        RuntimeError: the installed Ultralytics lacks an internal this adapter needs (message names the fix).
    """
    with _lock:
        if not is_registered():
            _register_tasks()
        _register_trainer()


def _register_tasks() -> None:
    problems = check_internals()
    if problems:
        raise RuntimeError(
            f"ultralytics {ultralytics.__version__} is not compatible with gaussconv_plugin ({'; '.join(problems)}); "
            "install ultralytics>=8.3,<8.5"
        )
    tasks.GaussianShapedConv = GaussianShapedConv
    tasks.PConv = PConv
    if not getattr(tasks.parse_model, "_gaussconv", False):
        tasks.parse_model = _wrap_parse_model(tasks.parse_model)
    if not getattr(tasks.check_yaml, "_gaussconv", False):
        tasks.check_yaml = _wrap_check_yaml(tasks.check_yaml)
    if not getattr(tasks.BaseModel.fuse, "_gaussconv", False):
        tasks.BaseModel.fuse = _wrap_fuse(tasks.BaseModel.fuse)
    if not getattr(tasks.DetectionModel.init_criterion, "_gaussconv", False):
        tasks.DetectionModel.init_criterion = _wrap_init_criterion(tasks.DetectionModel.init_criterion)
    add = getattr(torch.serialization, "add_safe_globals", None)
    if add is not None:
        add([GaussianShapedConv, GaussianShapedConv2d])
    # keep the re-export in ultralytics.nn in step (it may already be bound when registering late)
    nn_pkg = sys.modules.get("ultralytics.nn")
    if nn_pkg is not None and hasattr(nn_pkg, "parse_model"):
        nn_pkg.parse_model = tasks.parse_model
    setattr(tasks, _MARK, True)


# --------------------------------------------------------------------------------------------- trainer
_TRAINER = "ultralytics.engine.trainer"
_TRAINER_REQUIRED = (
    ("BaseTrainer.build_optimizer", ("self", "model", "name", "lr", "momentum", "decay", "iterations")),
    ("BaseTrainer.add_callback", ("self", "event", "callback")),
)
SHAPE_LOG = "gauss_shape.csv"  # written next to Ultralytics' results.csv


def _trainer_module():
    """``ultralytics.engine.trainer`` if it is fully imported (never imports it: it imports nn.tasks itself)."""
    m = sys.modules.get(_TRAINER)
    return m if m is not None and hasattr(m, "BaseTrainer") else None


def check_trainer_internals(module=None) -> list[str]:
    """Problems with the trainer internals :func:`register` patches (empty list: all present)."""
    module = module or _trainer_module()
    if module is None:
        return [f"{_TRAINER} is not imported"]
    problems = []
    for path, params in _TRAINER_REQUIRED:
        obj = module
        try:
            for part in path.split("."):
                obj = getattr(obj, part)
        except AttributeError:
            problems.append(f"{_TRAINER}.{path} is missing")
            continue
        missing = [p for p in params if p not in inspect.signature(obj).parameters]
        if missing:
            problems.append(f"{_TRAINER}.{path} lacks parameter(s) {missing}")
    return problems


def shape_params(model: nn.Module) -> list[nn.Parameter]:
    """``σ_raw`` and ``θ`` of every :class:`GaussianShapedConv2d` in ``model`` (shape parameters, not weights)."""
    out = []
    for m in model.modules():
        if isinstance(m, GaussianShapedConv2d):
            out += [m.sigma_raw, m.theta]
    return out


def exclude_from_decay(optimizer: torch.optim.Optimizer, params, lr_mult: float = 1.0) -> int:
    """Move ``params`` out of every weight-decayed param group into a group without decay; returns how many moved.

    With ``lr_mult == 1`` the target is the group Ultralytics tags ``param_group='bn'`` (weight, decay 0) with the
    same learning rate, else any non-bias decay-0 group with that rate, else a new one. With ``lr_mult != 1`` they
    get a new decay-0 group ``param_group='gauss_shape'`` copying the source group's options with ``lr × lr_mult``.
    Call it before the LR scheduler is built (as the wrapped ``build_optimizer`` does), so that every group is
    scheduled (Ultralytics' warm-up and LambdaLR scale each group's own initial lr) and a resumed run rebuilds the
    same groups."""
    ids = {id(p) for p in params}
    moved = 0
    for src in list(optimizer.param_groups):
        if not src.get("weight_decay") or src.get("use_muon"):
            continue
        take = [p for p in src["params"] if id(p) in ids]
        if not take:
            continue
        src["params"] = [p for p in src["params"] if id(p) not in ids]
        cands = [g for g in optimizer.param_groups if not g.get("weight_decay") and not g.get("use_muon")
                 and g.get("param_group") != "bias" and g.get("lr") == src.get("lr")]
        dst = next((g for g in cands if g.get("param_group") == "bn"), cands[0] if cands else None)
        if dst is None or lr_mult != 1:
            optimizer.add_param_group({**{k: v for k, v in src.items() if k not in ("params", "initial_lr")},
                                       "params": take, "weight_decay": 0.0, "lr": src["lr"] * lr_mult,
                                       "param_group": "gauss_shape"})
        else:
            dst["params"].extend(take)
        moved += len(take)
    return moved


def shape_lr_mult(model) -> float:
    """``model.yaml['shape_lr_mult']`` (1 if absent): learning-rate multiplier of σ/θ, validated."""
    m = _yaml_get(model, "shape_lr_mult", 1.0)
    if isinstance(m, bool) or not isinstance(m, (int, float)) or not m > 0:
        raise ValueError(f"model YAML has shape_lr_mult: {m!r}; use a number > 0 such as 1 (default) or 10")
    return float(m)


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


def _wrap_build_optimizer(orig):
    @functools.wraps(orig)
    def build_optimizer(self, model, *args, **kwargs):
        """``BaseTrainer.build_optimizer`` with σ/θ of Gaussian-shaped convs in a no-decay group (+ σ/θ log)."""
        optimizer = orig(self, model, *args, **kwargs)
        inner = getattr(model, "module", model)  # DDP
        mult = shape_lr_mult(inner)
        n = exclude_from_decay(optimizer, shape_params(model), mult)
        if n:
            tasks.LOGGER.info(f"gaussconv_plugin: {n} σ/θ shape parameter tensors moved to a no-decay group"
                              + (f" with lr × {mult:g}" if mult != 1 else "")
                              + f"; σ/θ per epoch in {Path(self.save_dir) / SHAPE_LOG}")
            if not getattr(self, "_gaussconv_shape_log", False):
                self.add_callback("on_fit_epoch_end", _log_shape_params)
                self._gaussconv_shape_log = True
        return optimizer

    build_optimizer.__wrapped__ = orig
    build_optimizer._gaussconv = True
    return build_optimizer


def _register_trainer() -> None:
    """Patch ``BaseTrainer.build_optimizer`` once ``ultralytics.engine.trainer`` is fully imported (the auto-hook
    calls :func:`register` again right after that module executes)."""
    module = _trainer_module()
    if module is None or getattr(module.BaseTrainer.build_optimizer, "_gaussconv", False):
        return
    problems = check_trainer_internals(module)
    if problems:
        raise RuntimeError(
            f"ultralytics {ultralytics.__version__} is not compatible with gaussconv_plugin ({'; '.join(problems)}); "
            "install ultralytics>=8.3,<8.5"
        )
    module.BaseTrainer.build_optimizer = _wrap_build_optimizer(module.BaseTrainer.build_optimizer)


# Imported directly as a process's first import, this module imported ultralytics.nn.tasks while it was still
# half-built, so the auto-hook deferred: register now (silently; GAUSSCONV_NO_AUTOHOOK=1 switches it off).
if not _autohook_disabled():
    register()
