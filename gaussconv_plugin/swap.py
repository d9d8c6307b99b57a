"""Put :class:`GaussianShapedConv2d` into any existing model, and take it out again for inference."""
from __future__ import annotations

import fnmatch
from typing import Callable, Iterable

import torch
import torch.nn as nn

from .conv import GaussianShapedConv, GaussianShapedConv2d
from .shaped_kernel import ShapedFilter2d

__all__ = ["swap_convs", "fuse_gaussian_convs", "SWAP_HOOKS"]

#: functions called as ``hook(model, replaced, gs_kwargs)`` at the end of every :func:`swap_convs`: a host adapter
#: appends one to keep its own description of the model in step (the Ultralytics adapter: the model YAML, from
#: which ``yolo train`` rebuilds the model). This module imports no host.
SWAP_HOOKS: list[Callable[[nn.Module, dict, dict], None]] = []


def _as_patterns(p: str | Iterable[str] | None) -> list[str] | None:
    if p is None:
        return None
    return [p] if isinstance(p, str) else list(p)


def _eligible(conv: nn.Conv2d, skip_1x1: bool) -> str | None:
    """Why ``conv`` cannot be swapped (None if it can)."""
    if isinstance(conv, GaussianShapedConv2d):
        return "already GaussianShapedConv2d"
    if type(conv) is not nn.Conv2d:
        return f"subclass {type(conv).__name__} (only plain nn.Conv2d is replaced)"
    kh, kw = conv.kernel_size
    if kh != kw or kh % 2 == 0:
        return f"kernel {conv.kernel_size} is not odd and square"
    if kh == 1 and skip_1x1:
        return "1x1"
    if isinstance(conv.padding, str):
        return f"padding={conv.padding!r}"
    return None


def _hooked(conv: nn.Conv2d) -> str | None:
    """What a swap would drop from ``conv`` (None if nothing): its hooks, a pruning (a forward pre-hook that
    multiplies ``weight_orig`` by ``weight_mask``) among them."""
    if hasattr(conv, "weight_orig") or any(n.endswith("_mask") for n, _ in conv.named_buffers(recurse=False)):
        return "it is pruned (torch.nn.utils.prune); make the pruning permanent first: prune.remove(conv, 'weight')"
    kinds = [k for k, d in (("forward hooks", conv._forward_hooks), ("forward pre-hooks", conv._forward_pre_hooks),
                            ("backward hooks", conv._backward_hooks)) if d]
    if kinds:
        return f"it has {' and '.join(kinds)} a new module would not carry; remove them, swap, register them again"
    return None


def swap_convs(
    model: nn.Module,
    include: str | Iterable[str] | None = None,
    exclude: str | Iterable[str] | None = None,
    predicate: Callable[[str, nn.Conv2d], bool] | None = None,
    skip_1x1: bool = True,
    **gs_kwargs,
) -> dict[str, GaussianShapedConv2d]:
    """Replace ``nn.Conv2d`` layers of ``model`` in place by :class:`GaussianShapedConv2d`.

    A conv is replaced when its qualified name (as in ``model.named_modules()``) matches one of the
    ``include`` glob patterns (all convs if None), matches no ``exclude`` pattern, ``predicate(name, conv)``
    is true (if given), and it is a plain ``nn.Conv2d`` with an odd square kernel (1×1 skipped unless
    ``skip_1x1=False``). Stride, padding, dilation, groups, padding mode, bias, device, dtype, the weights
    and the train/eval mode are kept, so a trained detector can be fine-tuned. Note that the effective
    kernel ``W·G·M`` differs from ``W``: the swapped model's outputs change until it is fine-tuned. A conv held
    under several names (shared weights) is replaced by one module in every place.

    Args:
        model: any ``nn.Module`` (Ultralytics, MMDetection, torchvision models).
        include, exclude: glob patterns (``fnmatch``) on module names, e.g. ``"backbone.layer1.*"``.
        predicate: extra filter ``(name, conv) -> bool``.
        skip_1x1: leave 1×1 convs alone (default).
        **gs_kwargs: forwarded to :class:`GaussianShapedConv2d` (``sigma_init``, ``theta_init``, ``tau`` …).

    Returns:
        ``{name: new_module}`` for every replaced conv, in ``named_modules`` order.

    Raises:
        ValueError: an ``include`` entry that names a conv exactly names one that cannot be swapped (the message
            says why; a glob pattern skips such convs), or a pattern matches the name of no ``nn.Conv2d`` of
            ``model`` (a typo would leave the model stock, silently), or a conv to swap carries state the new
            module would not (hooks, a pruning mask: the message names the fix).
    """
    inc, exc = _as_patterns(include), _as_patterns(exclude) or []
    if inc is not None:
        convs = [n for n, m in model.named_modules(remove_duplicate=False) if isinstance(m, nn.Conv2d)]
        for p in inc:
            if not any(fnmatch.fnmatchcase(n, p) for n in convs):
                like = ", ".join(repr(n) for n in convs[:3]) or "none: the model has no nn.Conv2d"
                raise ValueError(f"swap_convs: include pattern {p!r} matches no nn.Conv2d of the model (its convs: "
                                 f"{like}{', …' if len(convs) > 3 else ''}); fix the pattern")
    targets, names = [], {}
    for name, m in model.named_modules(remove_duplicate=False):
        if not isinstance(m, nn.Conv2d) or isinstance(m, GaussianShapedConv2d):
            continue
        if id(m) in names:  # shared: replaced (or left) wherever it sits, as its first name decides
            names[id(m)].append(name)
            continue
        names[id(m)] = [name]
        if inc is not None and not any(fnmatch.fnmatchcase(name, p) for p in inc):
            continue
        if any(fnmatch.fnmatchcase(name, p) for p in exc):
            continue
        if predicate is not None and not predicate(name, m):
            continue
        why = _eligible(m, skip_1x1)
        if why is not None:
            explicit = inc is not None and any(name == p for p in inc)
            if explicit:
                raise ValueError(f"swap_convs: {name!r} cannot be swapped ({why}); remove it from include=")
            continue
        lost = _hooked(m)
        if lost is not None:
            raise ValueError(f"swap_convs: {name!r} cannot be swapped: {lost} (or leave it stock: exclude={name!r})")
        targets.append((name, m))

    replaced: dict[str, GaussianShapedConv2d] = {}
    for name, m in targets:
        new = GaussianShapedConv2d(
            m.in_channels, m.out_channels, m.kernel_size, m.stride, m.padding, m.dilation, m.groups,
            m.bias is not None, m.padding_mode, device=m.weight.device, dtype=m.weight.dtype, **gs_kwargs,
        )
        with torch.no_grad():
            new.weight.copy_(m.weight)
            if m.bias is not None:
                new.bias.copy_(m.bias)
        new.weight.requires_grad_(m.weight.requires_grad)  # a frozen conv stays frozen: its bias and σ/θ too
        if m.bias is not None:
            new.bias.requires_grad_(m.bias.requires_grad)
        if not m.weight.requires_grad:
            new.sigma_raw.requires_grad_(False)
            new.theta.requires_grad_(False)
        new.train(m.training)
        for slot in names[id(m)]:
            _set_submodule(model, slot, new)
            replaced[slot] = new
    for hook in SWAP_HOOKS:
        hook(model, replaced, gs_kwargs)
    return replaced


def _set_submodule(model: nn.Module, name: str, new: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, child, new)


def fuse_gaussian_convs(model: nn.Module) -> int:
    """Replace every :class:`GaussianShapedConv2d` and :class:`~gaussconv_plugin.shaped_kernel.ShapedFilter2d` in
    ``model`` by its plain ``nn.Conv2d`` (and fuse every :class:`GaussianShapedConv` block with its BN). Call it
    before a generic conv-BN fuser or an export: such tools read ``.weight``, which is not the effective kernel (a
    ShapedFilter2d has none). Returns the number of layers converted."""
    n = 0
    for name, m in list(model.named_modules()):
        if isinstance(m, GaussianShapedConv) and hasattr(m, "bn"):
            m.fuse()
            n += 1
    for name, m in list(model.named_modules()):
        if isinstance(m, (GaussianShapedConv2d, ShapedFilter2d)):
            if name == "":
                raise ValueError(f"fuse_gaussian_convs: the model itself is a {type(m).__name__}; call .to_conv2d()")
            _set_submodule(model, name, m.to_conv2d())
            n += 1
    return n
