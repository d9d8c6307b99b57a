"""YAML rows → layers: ``GaussianShapedConv`` and ``PConv`` rows built with the ``Conv`` channel inference.

``parse_model`` decides Conv-style channel inference (``c1 = ch[f]``, ``c2 = make_divisible(min(c2, max_channels)
· width, 8)``) by membership in a set that is local to the function, so a new class cannot be added to it.
:func:`wrap_parse_model` therefore hands Ultralytics the same YAML with the rows named in :data:`CONV_LIKE` renamed
to ``Conv`` (exactly Conv's inference and n/s/m/l/x scaling), then replaces each of those ``Conv`` layers:

- ``GaussianShapedConv``: a :class:`~gaussconv_plugin.GaussianShapedConv` with the same geometry (c1, c2, k, s,
  p, g, d, activation) and the *same* initial conv weight and BN state;
- ``PConv``: a :class:`~gaussconv_plugin.pconv.PConv` (the pinwheel conv of Yang et al., the peer row) with the
  same channels, kernel, stride and activation.

Replacements are built under ``torch.random.fork_rng``, so the global RNG stream — and thus the initialisation of
every later layer — is the one the stock twin gets for the same seed. The per-layer log line is relabelled
(:class:`_RelabelRows`). A ``GaussianShapedConv`` row may end with a dict of
:class:`~gaussconv_plugin.GaussianShapedConv2d` options (``[64, 3, 2, {sigma_init: 1.0}]``); if ``k`` is omitted
it is 3 (GaussianShapedConv's default). The plug-in's top-level keys are validated here
(:func:`~gaussconv_plugin.yolo.keys.check_model_keys`).

Ultralytics internals used: ``tasks.parse_model`` (wrapped), ``tasks.LOGGER``, ``Conv``'s ``.conv``/``.bn``/``.act``
(listed in :mod:`.internals`).
"""
from __future__ import annotations

import ast
import functools
import logging
import re

import torch
import torch.nn as nn

from ultralytics.nn import tasks

from ..conv import GaussianShapedConv
from ..pconv import PConv
from .internals import mark
from .keys import check_model_keys

__all__ = ["CONV_LIKE", "GS_NAME", "wrap_parse_model"]

GS_NAME = "GaussianShapedConv"


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
    """Parameters of a PConv row (``[c1, c2, k, s]``): two c2/4-channel strips (1×k, k×1) + the 2×2 merge,
    with BN."""
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


def wrap_parse_model(orig):
    """``parse_model`` → the same plus ``GaussianShapedConv`` / ``PConv`` rows (see the module docstring)."""

    @functools.wraps(orig)
    def parse_model(d, ch, verbose=True):
        """``parse_model`` that also builds ``GaussianShapedConv`` and ``PConv`` rows with Conv's channel inference."""
        check_model_keys(d)  # scale_loss, scale_loss_form, scale_loss_lambda, shape_lr_mult: one-line errors
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
            try:
                if isinstance(layer, nn.Sequential):  # repeats n > 1
                    new = nn.Sequential(*(build(c, opts) for c in layer))
                else:
                    new = build(layer, opts)
            except (ValueError, TypeError) as e:  # the row's values: name the file and the row, one line
                raise ValueError(f"{d.get('yaml_file', 'model YAML')} layer {i} ({name} {rows[i][3]}): {e}") from None
            new.i, new.f = layer.i, layer.f
            new.type = f"{cls.__module__}.{cls.__qualname__}"
            new.np = sum(x.numel() for x in new.parameters())
            model[i] = new
        return model, save

    return mark(parse_model, orig)
