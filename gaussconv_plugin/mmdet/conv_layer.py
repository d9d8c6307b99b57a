"""The Gaussian-shaped conv as an MMCV conv layer: registered in MMEngine's root ``MODELS``, plus the checks
:func:`conv_type_registered` and :func:`check_conv_cfgs`.

MMCV 2.x keeps its conv layers in MMEngine's root ``MODELS`` and ``build_conv_layer`` looks there after the
default scope's ``MODELS``, so ``conv_cfg=dict(type='GaussianShapedConv2d')`` works in every scope. (MMCV 1.x's
``CONV_LAYERS`` registry no longer exists in MMCV 2.x; MMDetection 3.x needs MMCV 2.x.)
"""
from __future__ import annotations

from typing import Any, Iterator

from mmengine.registry import MODELS as ROOT_MODELS

from ..conv import GaussianShapedConv2d
from .registry import register_once

__all__ = ["GaussianShapedConv2d", "check_conv_cfgs", "conv_type_registered"]

register_once(ROOT_MODELS)(GaussianShapedConv2d)  # defined in the core (no MMEngine there): registered here


def _conv_cfgs(node: Any, path: str) -> Iterator[tuple[str, Any]]:
    if isinstance(node, dict):
        for k, v in node.items():
            p = f"{path}.{k}" if path else str(k)
            if isinstance(k, str) and k.endswith("conv_cfg") and isinstance(v, dict) and "type" in v:
                yield p, v["type"]
            yield from _conv_cfgs(v, p)
    elif isinstance(node, (list, tuple)):
        for i, v in enumerate(node):
            yield from _conv_cfgs(v, f"{path}.{i}")


def conv_type_registered(conv_type) -> bool:
    """Whether MMCV's ``build_conv_layer`` can resolve ``conv_type`` in the current default scope (it looks in
    that scope's ``MODELS`` and then in MMEngine's root ``MODELS``, where MMCV 2.x keeps its conv layers)."""
    import torch.nn as nn

    if not isinstance(conv_type, str):
        return isinstance(conv_type, type) and issubclass(conv_type, nn.Module)
    with ROOT_MODELS.switch_scope_and_registry(None) as registry:
        return registry.get(conv_type) is not None


def check_conv_cfgs(cfg, root: str = "model") -> None:
    """Raise one clear ``ValueError`` for the first ``*conv_cfg=dict(type=...)`` under ``cfg[root]`` whose
    type MMCV's ``build_conv_layer`` cannot resolve (it looks in ``cfg.default_scope``'s ``MODELS``, then in
    MMEngine's root ``MODELS``). Call it before building the model: MMCV's own error for an unknown conv type
    is ``KeyError: Cannot find None in registry under scope name ...``, which does not name the type."""
    from mmengine.registry import DefaultScope

    node = cfg.get(root) if hasattr(cfg, "get") else None
    if node is None:
        return
    with DefaultScope.overwrite_default_scope(cfg.get("default_scope", None)):
        for path, conv_type in _conv_cfgs(node, root):
            if not conv_type_registered(conv_type):
                raise ValueError(
                    f"{path}: conv type {conv_type!r} is not registered; use 'GaussianShapedConv2d' (with "
                    "custom_imports=dict(imports=['gaussconv_plugin.mmdet'])), 'Conv2d' or another MMCV conv layer"
                )
