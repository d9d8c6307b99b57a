#!/usr/bin/env python
"""Train any MMEngine/OpenMMLab config (MMDetection's ``tools/train.py`` conventions), offline.

    python tools/train.py CONFIG [--work-dir DIR] [--cfg-options k=v ...] [--resume [CKPT]] [--amp]
                                 [--auto-scale-lr] [--launcher {none,pytorch,slurm,mpi}] [--debug]
    torchrun --nproc_per_node=2 tools/train.py CONFIG --launcher pytorch      # also on a CPU-only machine

Thin over ``mmengine.runner.Runner.from_cfg`` (``RUNNERS.build`` if the config sets ``runner_type``); works for
the RetinaNet configs in ``mmdet_cfgs/`` and for configs of any other ``default_scope``. Differences from
MMDetection's tool (see :mod:`gaussconv_plugin.mmdet.runner`): ``gaussconv_plugin.mmdet`` is imported (so the
Gaussian conv and the scale losses are registered even without ``custom_imports``, and MMEngine checkpoints
load under torch ≥ 2.6), distributed training also runs on CPU (gloo), and a config error prints one line
(``train.py: error: ...``, exit status 2) instead of a traceback — ``--debug`` shows the traceback.

``--resume`` without a value resumes from the latest checkpoint in the work dir (``last_checkpoint``);
with a path, from that checkpoint. Nothing is downloaded unless the config asks for pretrained weights.
"""
from __future__ import annotations

import argparse
import importlib.util
import os
import sys
from pathlib import Path

if importlib.util.find_spec("gaussconv_plugin") is None:  # source checkout that was never pip-installed
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gaussconv_plugin.data.sirst import DataFileError  # noqa: E402
from gaussconv_plugin.mmdet.runner import CfgOptionsAction, tool_errors  # noqa: E402


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="train.py", description="Train a model from an MMEngine config")
    p.add_argument("config", help="train config file path")
    p.add_argument("--work-dir", help="the dir to save logs and models (default ./work_dirs/<config name>)")
    p.add_argument("--amp", action="store_true", default=False,
                   help="automatic mixed precision (AmpOptimWrapper, dynamic loss scale; needs a GPU)")
    p.add_argument("--auto-scale-lr", action="store_true", help="scale the LR by the real batch size (auto_scale_lr)")
    p.add_argument("--resume", nargs="?", type=str, const="auto",
                   help="resume from CKPT, or from the latest checkpoint in the work dir if no CKPT is given")
    p.add_argument("--cfg-options", nargs="+", action=CfgOptionsAction,
                   help="override config settings, key=value (e.g. train_cfg.max_epochs=2 "
                        "train_dataloader.batch_size=4); lists as key=\"[a,b]\"")
    p.add_argument("--launcher", choices=["none", "pytorch", "slurm", "mpi"], default="none", help="job launcher")
    # torch.distributed.launch passes --local-rank (torch >= 2.0) or --local_rank
    p.add_argument("--local_rank", "--local-rank", type=int, default=0)
    p.add_argument("--debug", action="store_true", help="show the full traceback of config/build errors")
    return p.parse_args(argv)


def build(args: argparse.Namespace):
    """Config + runner from parsed arguments (no training)."""
    import gaussconv_plugin.mmdet  # noqa: F401  (registrations, torch.load allow-list)
    from gaussconv_plugin.mmdet.runner import (
        build_runner, check_amp, check_checkpoint, load_config, local_rank_env, setup_launcher, shape_decay_warning,
    )

    local_rank_env(args.local_rank)
    cfg = load_config(args.config, args.cfg_options, args.work_dir, args.launcher)
    if args.amp:
        cfg.optim_wrapper.type = "AmpOptimWrapper"
        cfg.optim_wrapper.loss_scale = "dynamic"
    check_amp(cfg)
    if args.auto_scale_lr:
        if "auto_scale_lr" in cfg and "enable" in cfg.auto_scale_lr and "base_batch_size" in cfg.auto_scale_lr:
            cfg.auto_scale_lr.enable = True
        else:
            raise RuntimeError(
                "--auto-scale-lr needs auto_scale_lr=dict(enable=False, base_batch_size=N) in the config; add it"
            )
    if args.resume == "auto":
        cfg.resume = True
        cfg.load_from = None
    elif args.resume is not None:
        if not os.path.isfile(args.resume):
            raise FileNotFoundError(f"--resume {args.resume}: no such checkpoint; name a .pth in this config's "
                                    "work dir, or --resume auto for its last one")
        cfg.resume = True
        cfg.load_from = args.resume
    note = setup_launcher(cfg)
    runner = build_runner(cfg)
    if args.resume not in (None, "auto"):
        check_checkpoint(runner.model, args.resume)
    if note:
        runner.logger.info(note)
    decay = shape_decay_warning(cfg, runner.model)
    if decay:
        runner.logger.warning(decay)
    return runner


def main(argv=None):
    """Train; returns the runner (for tests and notebooks)."""
    args = parse_args(argv)
    with tool_errors("train.py", args.debug):  # config / build errors
        runner = build(args)
    dataset = (runner.cfg.get("train_dataloader") or {}).get("dataset") or {}
    coco = "Coco" in str(dataset.get("type", ""))  # the detectors' datasets
    hint = ("; prepare the dataset the config points to (python tools/prepare_sirst.py --format coco, or set "
            "GAUSSCONV_SIRST_COCO)") if coco else ""
    # the dataloaders are built in train(): a missing dataset is the usual first error; a bad image / mask is met
    # while loading (maybe inside a DataLoader worker)
    with tool_errors("train.py", args.debug, (DataFileError, FileNotFoundError), hint):
        runner.train()
    return runner


if __name__ == "__main__":
    main()
    from gaussconv_plugin.mmdet.runner import leave_process_group

    leave_process_group()
