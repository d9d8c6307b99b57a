"""Datasets in the SIRST v1 layout or the common IRSTD layout (NUDT-SIRST, IRSTD-1k), real or synthetic.

See :mod:`gaussconv_plugin.data.layout` for the two layouts and :mod:`gaussconv_plugin.data.split_lists` for
the split lists committed with the package (the validation carves of NUDT-SIRST and IRSTD-1k).

**Shared folders.** :func:`dataset_root` finds a named dataset: the path given, else its environment variable,
else ``../shared/data/<folder>`` beside the checkout: ``sirst`` (``$GAUSSCONV_SIRST_ROOT``, :func:`sirst_root`),
``nudt_sirst`` (``$GAUSSCONV_NUDT_ROOT``, :func:`nudt_root`), ``irstd1k`` (``$GAUSSCONV_IRSTD1K_ROOT``,
:func:`irstd1k_root`).

**Mask threshold: a pixel is target where its grey value is > 127**, in every layout and every tool
(:func:`load_mask`; boxes, YOLO labels, COCO boxes, the U-Net's ground truth and metrics all come from it). Masks
are meant to be 0 / 255, but IRSTD-1k's official masks are not quite: 85 of its 1001 masks hold 140 grey pixels
(values 1–254). 137 of them touch a 255-pixel of a target (its anti-aliased rim), 3 lie alone (``XDU0``: 64,
``XDU325``: 114, ``XDU337``: 1). The midpoint rule keeps the rim pixels that are mostly target (67 of the 140, all
beside a target) and drops the three stray ones; it gives the same 1492 targets (8-connected components) as
``== 255``, while ``> 0`` would add the three strays as one-pixel targets (1495), counted as missed by every
model. It is also the label area of MSHNet's mIoU (``ToTensor`` → ``v/255``, counted in the histogram bin
``[0.5, 1.5]``), so its IoU denominators and ours agree. (Measured over ``masks/*.png`` of ``../shared/data/irstd1k``;
``tests/test_irstd1k.py`` checks the rule on those masks.)
"""
from .layout import LAYOUTS, default_idx, detect_layout, mask_path
from .sirst import (
    DataFileError,
    cache_dir,
    check_boxes_against_voc,
    dataset_root,
    irstd1k_root,
    load_image,
    load_mask,
    load_voc_boxes,
    mask_to_boxes,
    nudt_root,
    read_split,
    sirst_root,
    target_boxes,
)
from .synthetic import make_synthetic_sirst

__all__ = [
    "DataFileError",
    "cache_dir",
    "sirst_root",
    "nudt_root",
    "irstd1k_root",
    "dataset_root",
    "LAYOUTS",
    "detect_layout",
    "default_idx",
    "mask_path",
    "read_split",
    "load_image",
    "load_mask",
    "load_voc_boxes",
    "mask_to_boxes",
    "check_boxes_against_voc",
    "target_boxes",
    "make_synthetic_sirst",
]
