"""Config → MMEngine ``Runner`` plumbing shared by ``tools/train.py`` and ``tools/test.py``.

Scope-agnostic: nothing here assumes MMDetection (the segmentation configs run through the same tools with
their own ``default_scope``). What it adds to MMDetection's own ``tools/train.py``/``tools/test.py`` logic:

- **CPU distributed training** (``torchrun ... --launcher pytorch`` without a GPU). MMEngine 0.10.7 assumes
  CUDA there: ``init_dist`` calls ``torch.cuda.set_device(LOCAL_RANK)`` and the default DDP wrapper gets
  ``device_ids=[LOCAL_RANK]``, both of which fail on a CPU-only machine. :func:`setup_launcher` then switches
  an ``nccl`` backend to ``gloo``, initialises the process group itself (the Runner skips ``init_dist`` when
  one exists) and sets ``model_wrapper_cfg`` with ``device_ids=None``. With CUDA nothing changes.
- **One-line config errors**: :func:`one_line` turns an exception raised while reading the config or building
  the runner (unknown type, bad loss mode, missing file) into one line, which the tools print instead of a
  traceback (``--debug`` shows the traceback); :func:`tool_errors` is that rule as a ``with`` block, for both tools.
- :func:`~gaussconv_plugin.mmdet.check_conv_cfgs` before the build (MMCV's error for an unknown
  ``conv_cfg`` type does not name the type).
- **Paths in** ``--cfg-options``: :class:`CfgOptionsAction` keeps a value that names an existing file or folder
  as it is; MMEngine's ``DictAction`` deletes its spaces and splits it at commas.
"""
from __future__ import annotations

import contextlib
import os
import os.path as osp
import sys

from mmengine.config import DictAction

from gaussconv_plugin.data.sirst import DataFileError

__all__ = [
    "CfgOptionsAction", "load_config", "setup_launcher", "build_runner", "one_line", "set_visualization",
    "local_rank_env", "check_amp", "leave_process_group", "check_checkpoint", "tool_errors", "shape_decay_warning",
]


class CfgOptionsAction(DictAction):
    """MMEngine's ``DictAction`` (``--cfg-options key=value ...``), except that a value naming an existing file or
    folder (it contains a path separator and exists) is kept as it is, where ``DictAction`` would delete its
    spaces and split it at commas (``data_root=/data/my sets/sirst`` would become ``/data/mysets/sirst``). Every
    other value is parsed as MMEngine parses it (numbers, booleans, ``None``, ``[a,b]``, ``(a,b)``)."""

    @staticmethod
    def _parse_iterable(val: str):  # DictAction.__call__ parses each value through self._parse_iterable
        raw = val.strip("'\"")
        return raw if os.sep in raw and osp.exists(raw) else DictAction._parse_iterable(val)


def load_config(config: str, cfg_options: dict | None = None, work_dir: str | None = None, launcher: str = "none"):
    """``Config.fromfile`` (imports ``custom_imports``) + ``--cfg-options`` + work dir (CLI > config > ``./work_dirs/<config name>``)
    + launcher, exactly as MMDetection's tools do."""
    from mmengine.config import Config

    if not osp.isfile(config):
        raise FileNotFoundError(f"config file {config} not found; pass the path of a config .py, e.g. mmdet_cfgs/...")
    cfg = Config.fromfile(config)
    cfg.launcher = launcher
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    if work_dir is not None:
        cfg.work_dir = work_dir
    elif cfg.get("work_dir", None) is None:
        cfg.work_dir = osp.join("./work_dirs", osp.splitext(osp.basename(config))[0])
    return cfg


def setup_launcher(cfg) -> str | None:
    """Make ``cfg.launcher`` work on a CPU-only machine (see the module docstring). Returns a note of what was
    changed (for the log), or None. Call it before :func:`build_runner`."""
    import torch

    launcher = cfg.get("launcher", "none")
    if launcher == "none" or torch.cuda.is_available():
        return None
    if launcher != "pytorch":
        raise RuntimeError(
            f"--launcher {launcher} needs CUDA GPUs with MMEngine 0.10; on a CPU-only machine use "
            "torchrun --nproc_per_node=N tools/train.py CONFIG --launcher pytorch"
        )
    import torch.distributed as dist

    env_cfg = cfg.setdefault("env_cfg", {})
    dist_cfg = env_cfg.setdefault("dist_cfg", {})
    if dist_cfg.get("backend", "nccl") == "nccl":
        dist_cfg["backend"] = "gloo"
    if not dist.is_initialized():
        kwargs = {k: v for k, v in dist_cfg.items() if k != "backend"}
        dist.init_process_group(backend=dist_cfg["backend"], **kwargs)
    wrapper = cfg.get("model_wrapper_cfg", None)
    if wrapper is None:
        cfg.model_wrapper_cfg = dict(
            type="MMDistributedDataParallel", device_ids=None, broadcast_buffers=False,
            find_unused_parameters=cfg.get("find_unused_parameters", False),
        )
    else:
        wrapper.setdefault("device_ids", None)
    return (
        f"no CUDA: distributed on CPU with backend {dist_cfg['backend']!r}, rank {dist.get_rank()}/"
        f"{dist.get_world_size()}, DDP without device_ids"
    )


def check_amp(cfg) -> None:
    """Fail early, in one line, when ``optim_wrapper`` is an ``AmpOptimWrapper`` but no accelerator is present
    (MMEngine asserts this only once training starts, after the model and data are built)."""
    from mmengine.device import is_cuda_available, is_mlu_available, is_musa_available, is_npu_available

    wrapper = cfg.get("optim_wrapper", None) or {}
    if wrapper.get("type", None) != "AmpOptimWrapper":
        return
    if not (is_cuda_available() or is_npu_available() or is_mlu_available() or is_musa_available()):
        raise RuntimeError(
            "AmpOptimWrapper (--amp or the config's optim_wrapper) needs a GPU; on CPU drop --amp or pass "
            "--cfg-options optim_wrapper.type=OptimWrapper"
        )


def build_runner(cfg):
    """``Runner.from_cfg(cfg)``, or ``RUNNERS.build(cfg)`` when ``cfg.runner_type`` is set (as MMDetection's
    tools), under the config's ``default_scope``; checks ``conv_cfg`` types first."""
    from mmengine.registry import RUNNERS, DefaultScope
    from mmengine.runner import Runner

    from .conv_layer import check_conv_cfgs

    check_conv_cfgs(cfg)
    if "runner_type" not in cfg:
        return Runner.from_cfg(cfg)
    with DefaultScope.overwrite_default_scope(cfg.get("default_scope", None)):
        return RUNNERS.build(cfg)


def set_visualization(cfg, show: bool = False, show_dir: str | None = None, wait_time: float = 2.0) -> None:
    """Turn on the ``default_hooks.visualization`` hook for ``test``, as MMDetection's ``--show``/``--show-dir``.

    Works with any scope's visualization hook: ``show_dir`` goes to the hook's ``test_out_dir`` argument when its
    class has one (MMDetection's ``DetVisualizationHook``), otherwise to ``visualizer.save_dir`` (the
    convention of hooks that draw through the visualizer, e.g. MMSegmentation's).
    """
    import inspect

    from mmengine.registry import HOOKS, DefaultScope

    hooks = cfg.get("default_hooks", None) or {}
    if "visualization" not in hooks:
        raise RuntimeError(
            "--show/--show-dir need a visualization hook; add default_hooks=dict(visualization=dict(type=...)) "
            "to the config (e.g. DetVisualizationHook)"
        )
    hook = hooks["visualization"]
    hook["draw"] = True
    if show:
        hook["show"] = True
        hook["wait_time"] = wait_time
    if show_dir:
        with DefaultScope.overwrite_default_scope(cfg.get("default_scope", None)):
            with HOOKS.switch_scope_and_registry(None) as registry:
                hook_cls = registry.get(hook["type"]) if isinstance(hook["type"], str) else hook["type"]
        if hook_cls is not None and "test_out_dir" in inspect.signature(hook_cls.__init__).parameters:
            hook["test_out_dir"] = show_dir
        else:
            cfg.setdefault("visualizer", {})["save_dir"] = show_dir


def one_line(exc: BaseException) -> str:
    """``ExcType: first line of the message`` (+ the cause's first line, if it adds something)."""
    def first(e: BaseException) -> str:
        msg = e.args[0] if isinstance(e, KeyError) and len(e.args) == 1 else str(e)
        lines = [ln.strip() for ln in str(msg).splitlines() if ln.strip()]
        return lines[0] if lines else type(e).__name__

    text = f"{type(exc).__name__}: {first(exc)}"
    cause = exc.__cause__
    if cause is not None and first(cause) not in text:
        text += f" (caused by {type(cause).__name__}: {first(cause)})"
    return text


@contextlib.contextmanager
def tool_errors(prog: str, debug: bool, catch: tuple[type[BaseException], ...] = (Exception,), file_hint: str = ""):
    """A ``with`` block whose exceptions of the ``catch`` types end the tool in one line, ``<prog>: error: <line>``
    on stderr, exit status 2; ``debug`` re-raises them (the traceback). The line is a
    :class:`~gaussconv_plugin.data.sirst.DataFileError`'s own (also from inside a DataLoader worker's traceback
    text), else :func:`one_line`'s; a ``FileNotFoundError``'s is followed by ``file_hint``."""
    try:
        yield
    except catch as e:
        if debug:
            raise
        if isinstance(e, DataFileError):
            line = DataFileError.line(e)
        else:
            line = one_line(e) + (file_hint if isinstance(e, FileNotFoundError) else "")
        print(f"{prog}: error: {line}", file=sys.stderr)
        raise SystemExit(2) from None


def shape_decay_warning(cfg, model) -> str | None:
    """One line when ``model`` holds Gaussian-shaped convs and ``cfg.optim_wrapper`` would weight-decay their σ/θ
    (a weight decay > 0, and a σ/θ parameter whose ``paramwise_cfg.custom_keys`` entry — the longest key contained
    in its name, MMEngine's rule — is missing or has no ``decay_mult=0``): decay pulls σ_raw towards 0 and θ towards
    the mask's flip at 0. Else None."""
    from gaussconv_plugin.conv import GaussianShapedConv2d

    names = [f"{n}.{p}" for n, m in model.named_modules() if isinstance(m, GaussianShapedConv2d)
             for p in ("sigma_raw", "theta")]
    ow = cfg.get("optim_wrapper") or {}
    if not names or not (ow.get("optimizer") or {}).get("weight_decay"):
        return None
    keys = (ow.get("paramwise_cfg") or {}).get("custom_keys") or {}
    order = sorted(sorted(keys), key=len, reverse=True)

    def exempt(name: str) -> bool:
        key = next((k for k in order if k in name), None)
        return key is not None and (keys[key] or {}).get("decay_mult", 1.0) == 0

    decayed = [n for n in names if not exempt(n)]
    if not decayed:
        return None
    return (f"{len(decayed)} σ/θ tensors of Gaussian-shaped convs get weight decay (e.g. {decayed[0]}); add "
            "optim_wrapper.paramwise_cfg.custom_keys={'.sigma_raw': dict(decay_mult=0.0), '.theta': "
            "dict(decay_mult=0.0)}, as mmdet_cfgs/ does")


def local_rank_env(local_rank: int) -> None:
    """Set ``LOCAL_RANK`` from ``--local_rank`` when the launcher did not (``torch.distributed.launch``)."""
    if "LOCAL_RANK" not in os.environ:
        os.environ["LOCAL_RANK"] = str(local_rank)


def leave_process_group() -> None:
    """Free what still holds the process group, then destroy it, if one is up.

    After ``runner.train()`` the DDP-wrapped model is reachable only through the runner's reference cycles, so it
    outlives ``destroy_process_group`` and its gloo group is torn down during interpreter finalisation, which
    aborts a rank now and then ("terminate called without an active exception", SIGABRT, exit -6) after the work
    is done: 3 of 20 two-rank gloo runs here with a cycle-held DDP model, 0 of 30 with ``gc.collect()`` first."""
    import gc

    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        gc.collect()  # the cycle-held DDP model and its reducer go now, while the interpreter is whole
        dist.barrier()
        dist.destroy_process_group()


def check_checkpoint(model, path: str) -> None:
    """Stop before a test that would score ``model`` with weights it does not hold: ``path`` must read as a torch
    checkpoint whose ``state_dict`` (``module.`` prefixes dropped, as MMEngine does) has every key of the model's
    (MMEngine loads with ``strict=False``: a checkpoint of another model, or a base one for a gauss config, would
    be scored with the missing weights at their initial values, with a warning in the log and exit status 0), and
    no σ/θ of Gaussian-shaped convs the model lacks (a gauss checkpoint for the stock twin: MMEngine would drop
    them and score the bare weights W instead of W·G·M). ValueError, one line naming the file, what is wrong and
    the fix."""
    import re

    import torch

    if not os.path.isfile(path):
        raise FileNotFoundError(f"checkpoint {path} not found")
    from .checkpoints import mmengine_checkpoint_globals

    try:  # torch's weights-only load with the allow-list of .checkpoints, as MMEngine's own load goes
        with mmengine_checkpoint_globals():
            ckpt = torch.load(path, map_location="cpu")
    except Exception as e:
        raise ValueError(f"checkpoint {path} cannot be read as a torch checkpoint ({one_line(e)}); pass a .pth "
                         "that tools/train.py wrote") from None
    sd = ckpt.get("state_dict", ckpt) if isinstance(ckpt, dict) else None
    if not isinstance(sd, dict):
        raise ValueError(f"checkpoint {path} holds no state_dict; pass a .pth that tools/train.py wrote")
    have = {re.sub(r"^module\.", "", k) for k in sd}
    want = [k for k in getattr(model, "module", model).state_dict() if not k.endswith("._extra_state")]  # optional
    missing = [k for k in want if k not in have]
    if missing:
        raise ValueError(f"checkpoint {path} holds {len(want) - len(missing)} of the {len(want)} weights of this "
                         f"config's model (missing {', '.join(missing[:3])}{', …' if len(missing) > 3 else ''}); "
                         "pass the checkpoint tools/train.py wrote for this config")
    shape = sorted(k for k in have - set(want) if k.endswith((".sigma_raw", ".theta")))
    if shape:  # a gauss checkpoint for a stock config: MMEngine would drop σ/θ and score W instead of W·G·M
        raise ValueError(f"checkpoint {path} holds σ/θ of Gaussian-shaped convs this config's model does not have "
                         f"({', '.join(shape[:2])}{', …' if len(shape) > 2 else ''}); pass the checkpoint with the "
                         "config it was trained with (the *_gauss.py twin, or gauss_conv set in model.net)")
