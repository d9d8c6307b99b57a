"""gaussconv_plugin: Gaussian-shaped convolution and diff-based scale loss for infrared small-target detection.

The core (this namespace) is pure torch/numpy. Host adapters live in ``gaussconv_plugin.yolo`` (Ultralytics)
and ``gaussconv_plugin.mmdet`` (MMDetection/MMEngine) and import their host only when used.
"""
from .conv import GaussianShapedConv, GaussianShapedConv2d, autopad, fuse_conv_bn
from .losses import (
    BOX_FORMS,
    SCALE_MODES,
    ScaleIoULoss,
    box_area,
    location_loss,
    scale_box_loss,
    scale_iou_loss,
    scale_weight,
    soft_iou,
)
from .masks import (
    DEFAULT_MASK_FLOOR,
    blind_input_fraction,
    floor_mask,
    gaussian_envelope,
    pinwheel_mask,
    pinwheel_mask_hard,
    pinwheel_mask_soft,
)
from .pconv import PConv
from .swap import fuse_gaussian_convs, swap_convs

__version__ = "0.1.0"

__all__ = [
    "GaussianShapedConv2d",
    "GaussianShapedConv",
    "autopad",
    "fuse_conv_bn",
    "SCALE_MODES",
    "scale_weight",
    "soft_iou",
    "location_loss",
    "scale_iou_loss",
    "ScaleIoULoss",
    "box_area",
    "BOX_FORMS",
    "scale_box_loss",
    "gaussian_envelope",
    "pinwheel_mask",
    "pinwheel_mask_hard",
    "pinwheel_mask_soft",
    "DEFAULT_MASK_FLOOR",
    "floor_mask",
    "blind_input_fraction",
    "PConv",
    "swap_convs",
    "fuse_gaussian_convs",
]

# Ultralytics auto-registration (stdlib-only hook; no-op with GAUSSCONV_NO_AUTOHOOK=1): registers at once if
# ultralytics.nn.tasks is already imported, else right after it is.
from . import _autohook

_autohook.install()
