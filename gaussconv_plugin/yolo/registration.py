""":func:`register`: install the plug-in into Ultralytics (idempotent, thread-safe); :func:`is_registered`.

Seven changes, five in ``ultralytics.nn.tasks`` plus torch's weights-only allow-list and our swap hook, one in
``ultralytics.engine.trainer``; no Ultralytics file is edited. Each wrapper comes from the module of its concern:

1. **Name.** ``tasks.GaussianShapedConv`` and ``tasks.PConv`` are set, so ``globals()[m]`` in ``parse_model``
   resolves the YAML names.
2. **Rows.** ``tasks.parse_model`` ← :func:`.parse.wrap_parse_model` (also re-bound in ``ultralytics.nn``).
3. **Look-up and fusing.** ``tasks.check_yaml`` ← :func:`.model.wrap_check_yaml`, ``BaseModel.fuse`` ←
   :func:`.model.wrap_fuse`.
4. **Scale box loss.** ``DetectionModel.init_criterion`` ← :func:`.loss.wrap_init_criterion`.
5. **Loading.** ``GaussianShapedConv``, ``GaussianShapedConv2d`` and ``PConv`` (with its conv-BN-act block) join
   torch's weights-only allow-list
   (``torch.serialization.add_safe_globals``), so ``ULTRALYTICS_SAFE_LOAD=1`` loads checkpoints that hold them.
6. **swap_convs.** :func:`.model.yaml_after_swap` joins :data:`gaussconv_plugin.swap.SWAP_HOOKS`, so a swap on an
   Ultralytics model is written into its YAML (which ``yolo train`` rebuilds it from).
7. **Optimizer.** ``BaseTrainer.build_optimizer`` ← :func:`.optim.wrap_build_optimizer`, once
   ``ultralytics.engine.trainer`` is fully imported (never imported from here: it imports ``nn.tasks`` itself).

Nothing registers on import of this module: the auto-hook (:mod:`gaussconv_plugin._autohook`) calls
:func:`register` once ``ultralytics.nn.tasks`` and again once ``ultralytics.engine.trainer`` has executed, and
after the import of any ``gaussconv_plugin.yolo`` module during which one of them executed.
"""
from __future__ import annotations

import sys
import threading

import torch

from ultralytics.nn import tasks

from ..conv import GaussianShapedConv, GaussianShapedConv2d
from ..pconv import PConv, _ConvBNAct
from ..swap import SWAP_HOOKS
from .internals import check_internals, check_trainer_internals, incompatible, is_marked, trainer_module
from .loss import wrap_init_criterion
from .model import wrap_check_yaml, wrap_fuse, yaml_after_swap
from .optim import wrap_build_optimizer
from .parse import wrap_parse_model

__all__ = ["is_registered", "register"]

_MARK = "_gaussconv_registered"  # attribute set on ultralytics.nn.tasks once patched
_lock = threading.Lock()


def is_registered() -> bool:
    """Whether :func:`register` has patched ``ultralytics.nn.tasks`` in this process (and it was not reloaded)."""
    return bool(getattr(tasks, _MARK, False)) and all(
        is_marked(f)
        for f in (tasks.parse_model, tasks.check_yaml, tasks.BaseModel.fuse, tasks.DetectionModel.init_criterion)
    )


def register() -> None:
    """Patch Ultralytics (see the module docstring). Idempotent and thread-safe.

    Raises:
        RuntimeError: the installed Ultralytics lacks an internal this adapter needs (message names the fix).
    """
    with _lock:
        if not is_registered():
            _register_tasks()
        _register_trainer()


def _register_tasks() -> None:
    problems = check_internals()
    if problems:
        raise incompatible(problems)
    tasks.GaussianShapedConv = GaussianShapedConv
    tasks.PConv = PConv
    if not is_marked(tasks.parse_model):
        tasks.parse_model = wrap_parse_model(tasks.parse_model)
    if not is_marked(tasks.check_yaml):
        tasks.check_yaml = wrap_check_yaml(tasks.check_yaml)
    if not is_marked(tasks.BaseModel.fuse):
        tasks.BaseModel.fuse = wrap_fuse(tasks.BaseModel.fuse)
    if not is_marked(tasks.DetectionModel.init_criterion):
        tasks.DetectionModel.init_criterion = wrap_init_criterion(tasks.DetectionModel.init_criterion)
    if yaml_after_swap not in SWAP_HOOKS:
        SWAP_HOOKS.append(yaml_after_swap)
    add = getattr(torch.serialization, "add_safe_globals", None)
    if add is not None:
        add([GaussianShapedConv, GaussianShapedConv2d, PConv, _ConvBNAct])  # ULTRALYTICS_SAFE_LOAD=1
    # keep the re-export in ultralytics.nn in step (it may already be bound when registering late)
    nn_pkg = sys.modules.get("ultralytics.nn")
    if nn_pkg is not None and hasattr(nn_pkg, "parse_model"):
        nn_pkg.parse_model = tasks.parse_model
    setattr(tasks, _MARK, True)


def _register_trainer() -> None:
    """Patch ``BaseTrainer.build_optimizer`` once ``ultralytics.engine.trainer`` is fully imported (the auto-hook
    calls :func:`register` again right after that module executes)."""
    module = trainer_module()
    if module is None or is_marked(module.BaseTrainer.build_optimizer):
        return
    problems = check_trainer_internals(module)
    if problems:
        raise incompatible(problems)
    module.BaseTrainer.build_optimizer = wrap_build_optimizer(module.BaseTrainer.build_optimizer)
