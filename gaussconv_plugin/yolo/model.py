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

- :func:`yaml_after_swap` — a :data:`~gaussconv_plugin.swap.SWAP_HOOKS` entry: ``yolo train`` rebuilds the model
  from ``model.yaml`` (and transfers the weights by name), so after :func:`~gaussconv_plugin.swap_convs` on an
  Ultralytics model each swapped ``model.<i>.conv`` of a ``Conv`` row turns its row into ``GaussianShapedConv``
  (σ/θ keep their names, so they transfer too); a swapped conv no row can name (inside a ``C2f``, say) gets a
  one-line warning instead of being dropped silently.
"""
from __future__ import annotations

import functools
import re
import warnings

from ..swap import fuse_gaussian_convs
from .configs import packaged_cfg
from .internals import mark

__all__ = ["wrap_check_yaml", "wrap_fuse", "yaml_after_swap"]


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


def yaml_after_swap(model, replaced: dict, gs_kwargs: dict) -> None:
    """After ``swap_convs(model, ...)``: write each swapped ``model.<i>.conv`` of a ``Conv`` row into ``model.yaml``
    as a ``GaussianShapedConv`` row (``gs_kwargs`` as its trailing options dict); warn once, naming them, for swapped
    convs no row can name. Models without an Ultralytics YAML (``.yaml`` dict with ``backbone``/``head``; the
    ``YOLO`` wrapper's ``.model`` is looked into) are left alone."""
    prefix, inner = "", model
    if not _has_rows(inner) and _has_rows(getattr(inner, "model", None)):  # the YOLO wrapper
        prefix, inner = "model.", inner.model
    if not replaced or not _has_rows(inner):
        return
    rows = [*inner.yaml["backbone"], *inner.yaml["head"]]
    unnamed = []
    for name in replaced:
        m = re.fullmatch(re.escape(prefix) + r"model\.(\d+)\.conv", name)
        i = int(m.group(1)) if m else -1
        if 0 <= i < len(rows) and rows[i][2] in ("Conv", "GaussianShapedConv") and type(inner.model[i]).__name__ in (
                "Conv", "GaussianShapedConv"):
            args = [a for a in rows[i][3] if not isinstance(a, dict)]
            rows[i][2], rows[i][3] = "GaussianShapedConv", [*args, dict(gs_kwargs)] if gs_kwargs else args
        else:
            unnamed.append(name)
    if unnamed:
        warnings.warn(f"swap_convs: yolo train rebuilds this model from model.yaml, whose rows cannot say that "
                      f"{', '.join(unnamed[:3])}{' …' if len(unnamed) > 3 else ''} are Gaussian-shaped (only a whole "
                      "Conv row, model.<i>.conv, can): training would make them plain convs again; train a gauss "
                      "YAML (yolov8n-gauss.yaml …) for those layers", UserWarning, stacklevel=3)


def _has_rows(model) -> bool:
    y = getattr(model, "yaml", None)
    return isinstance(y, dict) and isinstance(y.get("backbone"), list) and isinstance(y.get("head"), list) and (
        hasattr(model, "model"))
