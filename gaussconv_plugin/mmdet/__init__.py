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

It also makes MMEngine checkpoints loadable under torch ≥ 2.6 (see :func:`allow_mmengine_checkpoints`; a direct
``torch.load`` of one goes inside :func:`~.checkpoints.mmengine_checkpoint_globals`), and
offers :func:`check_conv_cfgs`, a config check with a one-line error for unknown ``conv_cfg`` types (MMCV's
own message is ``Cannot find None in registry``).

Modules: :mod:`.registry` (``@register_once(REGISTRY)``, the one registration style: MMEngine's
``@REGISTRY.register_module()`` that tolerates re-registering the same object and refuses to shadow another),
:mod:`.conv_layer` (the conv in the root ``MODELS``, :func:`conv_type_registered`, :func:`check_conv_cfgs`),
:mod:`.checkpoints`, :mod:`.detection` (MMDetection models), :mod:`.segmentation` (the U-Net task),
:mod:`.runner` (config → Runner plumbing of ``tools/train.py`` and ``tools/test.py``: CPU distributed training,
one-line errors). Other OpenMMLab task modules are imported at the end of this file, one line each.

The U-Net segmentation task needs MMEngine alone: where MMDetection or a compiled MMCV is missing (a GPU machine
with only ``pip install mmengine``, say), this package still imports and registers the conv and the U-Net task;
then ``GaussResNet`` and ``DiffScaleIoULoss`` raise an ``ImportError`` that names the fix.
"""
from __future__ import annotations

from .checkpoints import allow_mmengine_checkpoints
from .conv_layer import GaussianShapedConv2d, check_conv_cfgs, conv_type_registered  # registers the conv

__all__ = [
    "GaussianShapedConv2d",
    "GaussResNet",
    "DiffScaleIoULoss",
    "allow_mmengine_checkpoints",
    "check_conv_cfgs",
    "conv_type_registered",
]

allow_mmengine_checkpoints()

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
