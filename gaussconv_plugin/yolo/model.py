"""Model-level wraps that are not about YAML rows: where a bare config name resolves, and what ``fuse()`` does first.

- :func:`wrap_check_yaml` — ``check_yaml`` (as called by ``tasks.yaml_model_load``) falls back to the packaged
  configs (:func:`~gaussconv_plugin.yolo.configs.packaged_cfg`) for bare file names that Ultralytics does not
  find itself (the working directory and its own cfg folder win).
- :func:`wrap_fuse` — ``BaseModel.fuse`` first calls :func:`gaussconv_plugin.fuse_gaussian_convs`: every
  ``GaussianShapedConv`` becomes one plain ``nn.Conv2d`` holding ``W·G·M`` with its BN folded in, and any bare
  ``GaussianShapedConv2d`` (e.g. put into a stock ``Conv`` by :func:`~gaussconv_plugin.swap_convs`) becomes a
  plain conv *before* Ultralytics' ``fuse_conv_and_bn`` reads ``.weight`` (which is not the effective kernel).

Both take the original function and return the wrapper (:func:`~gaussconv_plugin.yolo.internals.mark`-ed);
:mod:`.registration` installs them; the originals are handed in, so this module names no Ultralytics object.
"""
from __future__ import annotations

import functools

from ..swap import fuse_gaussian_convs
from .configs import packaged_cfg
from .internals import mark

__all__ = ["wrap_check_yaml", "wrap_fuse"]


def wrap_check_yaml(orig):
    """``check_yaml`` → the same, falling back to the packaged configs for bare file names."""

    @functools.wraps(orig)
    def check_yaml(file, suffix=(".yaml", ".yml"), hard=True):
        """``check_yaml`` that falls back to gaussconv_plugin's packaged configs for bare file names."""
        found = orig(file, suffix, hard=False)
        if found:
            return found
        p = packaged_cfg(file)
        if p is not None:
            return str(p)
        return orig(file, suffix, hard=hard)

    return mark(check_yaml, orig)


def wrap_fuse(orig):
    """``BaseModel.fuse`` → the same, after turning Gaussian-shaped convs into plain convs."""

    @functools.wraps(orig)
    def fuse(self, *args, **kwargs):
        """``BaseModel.fuse`` that first turns Gaussian-shaped convs into plain convs (effective kernel + BN)."""
        fuse_gaussian_convs(self)
        return orig(self, *args, **kwargs)

    return mark(fuse, orig)
