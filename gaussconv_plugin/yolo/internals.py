"""Every Ultralytics internal the plug-in relies on, and the check that they are still there (8.4.190).

:data:`REQUIRED` lists what ``ultralytics.nn.tasks`` / ``ultralytics.utils`` must offer (object path, required
parameter names or None for "exists"); :data:`TRAINER_REQUIRED` what ``ultralytics.engine.trainer`` must offer.
Which module uses what:

- :mod:`.parse`: ``tasks.parse_model`` (wrapped), ``tasks.LOGGER`` (its per-layer table), ``Conv``'s signature
  and its ``.conv`` / ``.bn`` / ``.act`` (a GaussianShapedConv is built from the ``Conv`` Ultralytics built);
- :mod:`.model`: ``tasks.check_yaml`` (as called by ``tasks.yaml_model_load``) and ``BaseModel.fuse`` (wrapped);
- :mod:`.loss`: ``DetectionModel.init_criterion`` (wrapped), ``BboxLoss.forward`` (subclassed), the
  ``bbox_loss`` attribute of ``v8DetectionLoss`` and of ``E2ELoss``'s branches, ``metrics.bbox_iou``;
- :mod:`.optim`: ``BaseTrainer.build_optimizer`` (wrapped), ``BaseTrainer.add_callback``, ``utils.RANK``,
  ``torch_utils.unwrap_model``, ``tasks.LOGGER``;
- :mod:`.registration`: sets ``tasks.GaussianShapedConv`` / ``tasks.PConv`` and installs the wrappers above.

:func:`check_internals` and :func:`check_trainer_internals` return the problems (empty: all present);
:func:`~gaussconv_plugin.yolo.registration.register` refuses to patch with one line naming them (:func:`incompatible`),
and ``tests/test_yolo_adapter.py`` fails loudly on an Ultralytics update. :func:`mark` / :func:`is_marked` are the
convention every wrapper follows (``__wrapped__`` plus a ``_gaussconv`` flag), so nothing is wrapped twice.
"""
from __future__ import annotations

import inspect
import sys

import torch
import torch.nn as nn

import ultralytics
from ultralytics import utils as ul_utils
from ultralytics.nn import tasks
from ultralytics.nn.modules import Conv
from ultralytics.utils import loss as ul_loss
from ultralytics.utils import metrics as ul_metrics
from ultralytics.utils import torch_utils as ul_torch_utils

__all__ = [
    "REQUIRED",
    "TRAINER",
    "TRAINER_REQUIRED",
    "check_internals",
    "check_trainer_internals",
    "incompatible",
    "is_marked",
    "mark",
    "trainer_module",
]

# Everything the plug-in relies on: (object path, required parameter names or None for "exists").
REQUIRED = (
    ("ultralytics.nn.tasks.parse_model", ("d", "ch", "verbose")),
    ("ultralytics.nn.tasks.yaml_model_load", ("path",)),
    ("ultralytics.nn.tasks.check_yaml", ("file", "suffix", "hard")),
    ("ultralytics.nn.tasks.LOGGER", None),
    ("ultralytics.nn.tasks.BaseModel.fuse", ("self", "verbose")),
    ("ultralytics.nn.tasks.DetectionModel.init_criterion", ("self",)),
    ("ultralytics.nn.tasks.Conv", ("c1", "c2", "k", "s", "p", "g", "d", "act")),
    ("ultralytics.utils.loss.v8DetectionLoss.__init__", ("self", "model")),
    ("ultralytics.utils.loss.E2ELoss.__init__", ("self", "model")),
    (
        "ultralytics.utils.loss.BboxLoss.forward",
        ("self", "pred_dist", "pred_bboxes", "anchor_points", "target_bboxes", "target_scores",
         "target_scores_sum", "fg_mask", "imgsz", "stride"),
    ),
    ("ultralytics.utils.metrics.bbox_iou", ("box1", "box2", "xywh", "CIoU")),
    ("ultralytics.utils.RANK", None),
    ("ultralytics.utils.torch_utils.unwrap_model", ("m",)),
)

TRAINER = "ultralytics.engine.trainer"
TRAINER_REQUIRED = (
    ("BaseTrainer.build_optimizer", ("self", "model", "name", "lr", "momentum", "decay", "iterations")),
    ("BaseTrainer.add_callback", ("self", "event", "callback")),
)

# longest prefix first: "ultralytics.utils.loss.X" must not resolve through "ultralytics.utils"
_MODULES = {"ultralytics.nn.tasks": tasks, "ultralytics.utils.loss": ul_loss, "ultralytics.utils.metrics": ul_metrics,
            "ultralytics.utils.torch_utils": ul_torch_utils, "ultralytics.utils": ul_utils}


def _resolve(path: str):
    for prefix, m in _MODULES.items():
        if path.startswith(prefix + "."):
            obj = m
            for part in path[len(prefix) + 1 :].split("."):
                obj = getattr(obj, part)
            return obj
    raise KeyError(path)


def _resolve_original(path: str):
    try:
        return _resolve(path)
    except (AttributeError, KeyError):
        return None


def check_internals() -> list[str]:
    """Problems with the Ultralytics internals this adapter needs (empty list: all present).

    Checks that each name in :data:`REQUIRED` exists and that callables accept the listed parameter names, that
    ``Conv`` still builds ``.conv``/``.bn``/``.act`` and that ``v8DetectionLoss`` instances carry ``bbox_loss``."""
    problems = []
    for path, params in REQUIRED:
        obj = _resolve_original(path)
        if obj is None:
            problems.append(f"{path} is missing")
            continue
        if params:
            try:
                sig = inspect.signature(obj)
            except (TypeError, ValueError):
                problems.append(f"{path}: signature unreadable")
                continue
            missing = [p for p in params if p not in sig.parameters]
            if missing:
                problems.append(f"{path} lacks parameter(s) {missing}")
    try:
        with torch.random.fork_rng(devices=[]):  # its init draws from the global RNG: a user's seeded run is as stock
            c = Conv(4, 8, 3, 2)
        if not (isinstance(c.conv, nn.Conv2d) and isinstance(c.bn, nn.BatchNorm2d) and isinstance(c.act, nn.Module)):
            problems.append("Conv no longer has .conv/.bn/.act")
    except Exception as e:  # pragma: no cover - only on a broken Ultralytics
        problems.append(f"Conv(4, 8, 3, 2) fails: {e}")
    try:
        if "self.bbox_loss" not in inspect.getsource(ul_loss.v8DetectionLoss.__init__):
            problems.append("v8DetectionLoss no longer sets self.bbox_loss")
    except (OSError, TypeError):  # no source shipped: install_scale_loss still checks at run time
        pass
    return problems


def trainer_module():
    """``ultralytics.engine.trainer`` if it is fully imported (never imports it: it imports nn.tasks itself)."""
    m = sys.modules.get(TRAINER)
    return m if m is not None and hasattr(m, "BaseTrainer") else None


def check_trainer_internals(module=None) -> list[str]:
    """Problems with the trainer internals :func:`register` patches (empty list: all present)."""
    module = module or trainer_module()
    if module is None:
        return [f"{TRAINER} is not imported"]
    problems = []
    for path, params in TRAINER_REQUIRED:
        obj = module
        try:
            for part in path.split("."):
                obj = getattr(obj, part)
        except AttributeError:
            problems.append(f"{TRAINER}.{path} is missing")
            continue
        missing = [p for p in params if p not in inspect.signature(obj).parameters]
        if missing:
            problems.append(f"{TRAINER}.{path} lacks parameter(s) {missing}")
    return problems


def incompatible(problems: list[str]) -> RuntimeError:
    """The one-line error :func:`register` raises when internals are missing."""
    return RuntimeError(
        f"ultralytics {ultralytics.__version__} is not compatible with gaussconv_plugin ({'; '.join(problems)}); "
        "install ultralytics>=8.4,<8.5 (the tested line; 8.4.190 in requirements/constraints.txt)"
    )


def mark(wrapper, orig):
    """Tag ``wrapper`` as gaussconv_plugin's wrapper of ``orig`` (``__wrapped__`` + ``_gaussconv``); returns it."""
    wrapper.__wrapped__ = orig
    wrapper._gaussconv = True
    return wrapper


def is_marked(obj) -> bool:
    """Whether ``obj`` is one of gaussconv_plugin's wrappers (see :func:`mark`)."""
    return bool(getattr(obj, "_gaussconv", False))
