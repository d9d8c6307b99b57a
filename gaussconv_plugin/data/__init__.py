"""Datasets in the SIRST layout (real SIRST v1 or the embedded synthetic generator)."""
from .sirst import (
    cache_dir,
    check_boxes_against_voc,
    load_image,
    load_mask,
    load_voc_boxes,
    mask_to_boxes,
    read_split,
    sirst_root,
    target_boxes,
)
from .synthetic import make_synthetic_sirst

__all__ = [
    "cache_dir",
    "sirst_root",
    "read_split",
    "load_image",
    "load_mask",
    "load_voc_boxes",
    "mask_to_boxes",
    "check_boxes_against_voc",
    "target_boxes",
    "make_synthetic_sirst",
]
