"""The Ultralytics adapter's public names in one place (a façade; written against ultralytics 8.4.190).

The adapter is split by concern into modules that import downwards only (each line imports only from those
above it, plus the core package)::

    configs        where the packaged YAMLs live; bare-name look-up (stdlib only)
    internals      every Ultralytics internal relied on, check_internals / check_trainer_internals, mark
    keys           the model-YAML keys scale_loss, scale_loss_form, scale_loss_lambda, shape_lr_mult
    parse          YAML rows → GaussianShapedConv / PConv layers (wraps tasks.parse_model)
    model          config look-up (wraps tasks.check_yaml) and fusing (wraps BaseModel.fuse)
    loss           ScaleBboxLoss, install_scale_loss (wraps DetectionModel.init_criterion)
    optim          σ/θ out of weight decay and the warm-up-bias group, σ/θ log (wraps build_optimizer)
    registration   register / is_registered: installs the wrappers above
    adapter        this façade

:func:`register` (idempotent) makes six changes: the YAML names ``GaussianShapedConv`` and ``PConv``, Conv-style
channel inference for their rows (:mod:`.parse`), packaged configs by bare name and fusing to plain convs
(:mod:`.model`), the scale box loss (:mod:`.loss`), torch's weights-only allow-list, and σ/θ in the optimizer
(:mod:`.optim`); see :mod:`.registration`. It is called by the auto-hook (:mod:`gaussconv_plugin._autohook`),
never on import of this module. :func:`check_internals` lists every internal relied on; ``register`` refuses to
patch (one-line ``RuntimeError``) when one is missing, and ``tests/test_yolo_adapter.py`` fails loudly on an
Ultralytics update.
"""
from __future__ import annotations

from .internals import check_internals, check_trainer_internals
from .keys import scale_loss_mode, scale_loss_options, shape_lr_mult
from .loss import ScaleBboxLoss, install_scale_loss
from .optim import SHAPE_LOG, exclude_from_decay, norm_weight_group, shape_param_stats, shape_params
from .parse import GS_NAME
from .registration import is_registered, register

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
    "norm_weight_group",
    "shape_lr_mult",
    "check_trainer_internals",
    "SHAPE_LOG",
]
