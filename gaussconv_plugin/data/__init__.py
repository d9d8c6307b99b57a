"""Datasets in the SIRST v1 layout or the common IRSTD layout (NUDT-SIRST, IRSTD-1k), real or synthetic.

See :mod:`gaussconv_plugin.data.layout` for the two layouts and :mod:`gaussconv_plugin.data.split_lists` for
the split lists committed with the package (NUDT-SIRST's validation carve).
"""
from .layout import LAYOUTS, default_idx, detect_layout, mask_path
from .sirst import (
    cache_dir,
    check_boxes_against_voc,
    dataset_root,
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
    "cache_dir",
    "sirst_root",
    "nudt_root",
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
