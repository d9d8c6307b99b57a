"""The one place where gaussconv_plugin touches Ultralytics internals (written against ultralytics 8.4.190).

:func:`register` (idempotent; called by the auto-hook once ``ultralytics.nn.tasks`` is imported) makes five
changes, all in ``ultralytics.nn.tasks`` plus torch's weights-only allow-list. No Ultralytics file is edited.

1. **Name.** ``tasks.GaussianShapedConv`` is set, so ``globals()[m]`` in ``parse_model`` resolves the YAML name.
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
   :class:`ScaleBboxLoss`: ``loss_iou = Σ (1 − α(P, T)·CIoU)·w / Σ target_scores`` with
   ``α = scale_weight(P, T, mode)``, P and T the predicted / assigned target box areas **in input pixels**
   (grid-unit boxes times stride²). DFL/L1 terms are untouched; ``none`` leaves the stock criterion object as is.
   Detection models only: segment/pose/OBB criteria are built by their own ``init_criterion`` and ignore the key.
5. **Loading.** ``GaussianShapedConv`` and ``GaussianShapedConv2d`` are added to torch's weights-only allow-list
   (``torch.serialization.add_safe_globals``), so ``ULTRALYTICS_SAFE_LOAD=1`` can load checkpoints that hold them.
   ``check_yaml`` (as used by ``yaml_model_load``) falls back to the packaged configs for bare file names that
   Ultralytics does not find itself (cwd and its own cfg folder win).

:func:`check_internals` lists every internal name/signature relied on; ``register`` refuses to patch (one-line
``RuntimeError``) when one is missing, and ``tests/test_yolo_adapter.py`` fails loudly on an Ultralytics update.
"""
from __future__ import annotations

import functools
import inspect
import logging
import re
import threading

import torch
import torch.nn as nn

from ..conv import GaussianShapedConv, GaussianShapedConv2d
from ..losses import SCALE_MODES, box_area, check_mode, scale_weight
from ..swap import fuse_gaussian_convs
from . import packaged_cfg

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
    "install_scale_loss",
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

    Ultralytics logs ``f"{i:>3}{f!s:>20}{n_:>3}{np:10.0f}  {t:<45}{args!s:<30}"`` with ``args = [c1, c2, ...]``;
    a swap adds 2·c2 parameters (σ, θ per output channel) or 2 (``per_channel: false``)."""

    _row = re.compile(r"^(?P<pre>.{3}.{20}.{3})(?P<np>.{10})  (?P<t>.{45})(?P<args>\[\s*\d+\s*,\s*(?P<c2>\d+).*)$", re.S)
    _label = f"{GaussianShapedConv.__module__.rpartition('.')[0]}.{GaussianShapedConv.__qualname__}"

    def __init__(self, per_channel: dict[int, bool]):
        super().__init__()
        self.per_channel = per_channel  # swapped layer index -> per_channel option

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            m = self._row.match(record.getMessage())
            if m and int(m["pre"][:3]) in self.per_channel and m["t"].rstrip().endswith(".Conv"):
                n_extra = 2 * int(m["c2"]) if self.per_channel[int(m["pre"][:3])] else 2
                np_ = int(float(m["np"])) + n_extra
                record.msg, record.args = f"{m['pre']}{np_:10.0f}  {self._label:<45}{m['args']}", ()
        except Exception:  # cosmetic only: never break model building
            pass
        return True


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


def _wrap_parse_model(orig):
    @functools.wraps(orig)
    def parse_model(d, ch, verbose=True):
        """``parse_model`` that also builds ``GaussianShapedConv`` rows with Conv's channel inference."""
        mode = d.get("scale_loss", "none") if isinstance(d, dict) else "none"
        if mode is None or mode is False:  # YAML `scale_loss: ~` / `false`
            mode = "none"
        if mode not in SCALE_MODES:
            raise ValueError(
                f"model YAML has scale_loss: {mode!r}; use one of {', '.join(SCALE_MODES)} (or omit it for 'none')"
            )
        nb = len(d.get("backbone", []))
        rows = list(d.get("backbone", [])) + list(d.get("head", []))
        swaps: dict[int, dict] = {}
        new_rows = []
        for i, row in enumerate(rows):
            if isinstance(row, (list, tuple)) and len(row) == 4 and row[2] == GS_NAME:
                f, n, _, args = row
                args, opts = _split_row_args(args)
                swaps[i] = opts
                row = [f, n, "Conv", args]
            new_rows.append(row)
        if not swaps:
            return orig(d, ch, verbose)
        d2 = dict(d)
        d2["backbone"], d2["head"] = new_rows[:nb], new_rows[nb:]
        relabel = _RelabelRows({i: bool(o.get("per_channel", True)) for i, o in swaps.items()}) if verbose else None
        if relabel is not None:
            tasks.LOGGER.addFilter(relabel)
        try:
            model, save = orig(d2, ch, verbose)
        finally:
            if relabel is not None:
                tasks.LOGGER.removeFilter(relabel)
        for i, opts in swaps.items():
            layer = model[i]
            if isinstance(layer, nn.Sequential):  # repeats n > 1
                new = nn.Sequential(*(_gs_from_conv(c, opts) for c in layer))
            else:
                new = _gs_from_conv(layer, opts)
            new.i, new.f = layer.i, layer.f
            new.type = f"{GaussianShapedConv.__module__}.{GaussianShapedConv.__qualname__}"
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
    """YOLOv8's ``BboxLoss`` with the IoU term weighted by the scale weight α(P, T).

    ``loss_iou = Σ_fg (1 − α(P, T) · CIoU) · w / target_scores_sum`` with ``w`` the summed target scores of each
    foreground anchor, ``P``/``T`` the areas of the decoded predicted box and of its assigned target box in input
    pixels (both given in grid units by Ultralytics, multiplied by the anchor's stride²), and
    ``α = scale_weight(P, T, mode)`` (differentiable, float32). The DFL (or L1) term is the stock one.

    Shapes (as ``BboxLoss.forward``): ``pred_dist (B, A, 4·reg_max)``, ``pred_bboxes (B, A, 4)`` and
    ``target_bboxes (B, A, 4)`` xyxy in grid units, ``anchor_points (A, 2)``, ``target_scores (B, A, nc)``,
    ``fg_mask (B, A)`` bool, ``stride (A, 1)``. Returns ``(loss_iou, loss_dfl)`` scalars.
    """

    def __init__(self, reg_max: int = 16, mode: str = "diff"):
        super().__init__(reg_max)
        self.mode = check_mode(mode)

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
        iou = bbox_iou(pb, tb, xywh=False, CIoU=True)  # (K, 1)
        s = torch.as_tensor(stride, device=pb.device, dtype=torch.float32)
        s2 = (s.reshape(-1)[idx[-1]] if s.numel() > 1 else s.reshape(1).expand(len(pb))) ** 2  # (K,)
        alpha = scale_weight(box_area(pb.float()) * s2, box_area(tb.float()) * s2, self.mode).unsqueeze(-1)
        loss_iou = ((1.0 - alpha.to(iou.dtype) * iou) * weight).sum() / target_scores_sum
        return loss_iou, loss_dfl

    def extra_repr(self) -> str:
        return f"mode={self.mode!r}"


def scale_loss_mode(model) -> str:
    """``model.yaml['scale_loss']`` (``none`` if absent), validated."""
    y = getattr(model, "yaml", None)
    mode = y.get("scale_loss", "none") if isinstance(y, dict) else "none"
    return check_mode("none" if mode in (None, False) else mode)


def install_scale_loss(criterion, mode: str) -> int:
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
            new = ScaleBboxLoss(obj.reg_max, mode)
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
        if mode != "none" and install_scale_loss(crit, mode) == 0:
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
        if is_registered():
            return
        problems = check_internals()
        if problems:
            raise RuntimeError(
                f"ultralytics {ultralytics.__version__} is not compatible with gaussconv_plugin ({'; '.join(problems)}); "
                "install ultralytics>=8.3,<8.5"
            )
        tasks.GaussianShapedConv = GaussianShapedConv
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
        nn_pkg = __import__("sys").modules.get("ultralytics.nn")
        if nn_pkg is not None and hasattr(nn_pkg, "parse_model"):
            nn_pkg.parse_model = tasks.parse_model
        setattr(tasks, _MARK, True)

