"""OpenMMLab adapter (MMEngine 0.10 / MMCV 2.x / MMDetection 3.x): everything that touches their internals.

Use it from any config, in every process that reads the config (distributed workers included)::

    custom_imports = dict(imports=['gaussconv_plugin.mmdet'], allow_failed_imports=False)

Importing this package registers

==========================  ===========================================  ============================================
name                        registry                                     use in a config
==========================  ===========================================  ============================================
``GaussianShapedConv2d``    MMEngine's root ``MODELS`` (where MMCV 2.x   ``conv_cfg=dict(type='GaussianShapedConv2d')``
                            keeps conv layers; every scope falls back    for ``build_conv_layer`` (any OpenMMLab
                            to it)                                       module with a ``conv_cfg``)
``GaussResNet``             ``mmdet.registry.MODELS``                    ``backbone=dict(type='GaussResNet', ...)``:
                                                                         stem + first stage Gaussian, 1×1 plain
``DiffScaleIoULoss``        ``mmdet.registry.MODELS``                    ``loss_bbox=dict(type='DiffScaleIoULoss',
                                                                         mode='diff')`` with ``reg_decoded_bbox``
==========================  ===========================================  ============================================

(MMCV 1.x's ``CONV_LAYERS`` registry no longer exists in MMCV 2.x; MMDetection 3.x needs MMCV 2.x.)

It also makes MMEngine checkpoints loadable under torch ≥ 2.6 (see :func:`allow_mmengine_checkpoints`), and
offers :func:`check_conv_cfgs`, a config check with a one-line error for unknown ``conv_cfg`` types (MMCV's
own message is ``Cannot find None in registry``).

Modules: :mod:`.detection` (MMDetection models), :mod:`.segmentation` (the U-Net task), :mod:`.runner` (config →
Runner plumbing of ``tools/train.py`` and ``tools/test.py``: CPU distributed training, one-line errors). Other
OpenMMLab task modules are imported at the end of this file, one line each.

The U-Net segmentation task needs MMEngine alone: where MMDetection or a compiled MMCV is missing (a GPU machine
with only ``pip install mmengine``, say), this package still imports and registers the conv and the U-Net task;
then ``GaussResNet`` and ``DiffScaleIoULoss`` raise an ``ImportError`` that names the fix.
"""
from __future__ import annotations

from typing import Any, Iterator

from mmengine.registry import MODELS as ROOT_MODELS

from ..conv import GaussianShapedConv2d

__all__ = [
    "GaussianShapedConv2d",
    "GaussResNet",
    "DiffScaleIoULoss",
    "allow_mmengine_checkpoints",
    "check_conv_cfgs",
    "conv_type_registered",
]


def _register(registry, name: str, obj) -> None:
    """Register ``obj`` as ``name`` unless it already is (re-import safe); refuse to shadow a different object."""
    have = registry.module_dict.get(name)
    if have is obj:
        return
    if have is not None:
        raise KeyError(
            f"{name!r} is already registered in {registry.name!r} by {have.__module__}; "
            "remove the other plugin from custom_imports or rename one of them"
        )
    registry.register_module(name=name, module=obj)


_register(ROOT_MODELS, "GaussianShapedConv2d", GaussianShapedConv2d)


def _checkpoint_getattr(obj, name: str):
    """Stand-in for ``builtins.getattr`` inside weights-only unpickling: only what MMEngine's ``HistoryBuffer``
    pickles (``getattr(HistoryBuffer, 'min')`` … its public statistics methods) is allowed."""
    from mmengine.logging import HistoryBuffer

    if obj is HistoryBuffer and isinstance(name, str) and not name.startswith("_") and callable(
        getattr(HistoryBuffer, name, None)
    ):
        return getattr(HistoryBuffer, name)
    import pickle

    raise pickle.UnpicklingError(
        f"weights-only load refused getattr({obj!r}, {name!r}); gaussconv_plugin only allows HistoryBuffer "
        "statistics methods (load untrusted files with weights_only=True and without them)"
    )


def allow_mmengine_checkpoints() -> list:
    """Let ``torch.load``'s default ``weights_only=True`` (torch ≥ 2.6) read MMEngine checkpoints.

    MMEngine 0.10.7 calls ``torch.load(file, map_location=...)`` without ``weights_only`` (its issue #1655),
    so under torch ≥ 2.6 ``--resume`` and ``load_from`` of its own checkpoints fail: besides tensors they hold
    the ``MessageHub`` state, i.e. ``HistoryBuffer`` objects (whose pickle calls
    ``getattr(HistoryBuffer, 'min')`` …), numpy arrays and numpy scalars. Instead of switching the safety check
    off (``weights_only=False`` or ``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1``, which would let any checkpoint run
    code), this adds exactly those globals to torch's allow-list with ``torch.serialization.add_safe_globals``:
    ``HistoryBuffer``, numpy's ``_reconstruct``/``scalar``/``ndarray``/``dtype`` and the numeric/str/bool dtype
    classes (no object dtype), and, under the name ``builtins.getattr``, :func:`_checkpoint_getattr`, which
    only resolves ``HistoryBuffer``'s statistics methods. Idempotent; returns what was added.
    """
    import numpy as np
    import torch
    from mmengine.logging import HistoryBuffer

    if not hasattr(torch.serialization, "add_safe_globals"):  # torch < 2.4: weights_only defaults to False
        return []
    try:
        from numpy._core.multiarray import _reconstruct, scalar
    except ImportError:  # numpy 1.x
        from numpy.core.multiarray import _reconstruct, scalar
    dtypes = dict.fromkeys(type(np.dtype(t)) for t in "bBhHiIlLqQefdg?U")
    allowed = [HistoryBuffer, _reconstruct, scalar, np.ndarray, np.dtype, *dtypes,
               (_checkpoint_getattr, "builtins.getattr")]
    torch.serialization.add_safe_globals(allowed)
    return allowed


allow_mmengine_checkpoints()


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


from . import segmentation  # noqa: F401,E402  (registers the U-Net segmentation task: MMEngine only)

#: why the MMDetection models are unavailable (``None`` when they are registered)
DETECTION_IMPORT_ERROR: str | None = None
try:
    from .detection import DiffScaleIoULoss, GaussResNet  # noqa: E402  (registers them)
except ImportError as _e:  # only a missing MMDetection / MMCV (or MMCV's compiled ops) is tolerated
    if (_e.name or "").split(".")[0] not in ("mmdet", "mmcv"):
        raise
    DETECTION_IMPORT_ERROR = (
        f"GaussResNet and DiffScaleIoULoss need MMDetection 3.3 with a compiled MMCV 2.1 ({_e.name} did not import: "
        f"{_e}); run `bash tools/setup_env.sh` (or pip install -e '.[mmdet]'); the U-Net task needs MMEngine alone"
    )
    del _e

    def __getattr__(name: str):
        if name in ("GaussResNet", "DiffScaleIoULoss"):
            raise ImportError(DETECTION_IMPORT_ERROR)
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
