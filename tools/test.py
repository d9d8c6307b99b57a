#!/usr/bin/env python
"""Test (and evaluate) a checkpoint of any MMEngine/OpenMMLab config (MMDetection's ``tools/test.py`` conventions).

    python tools/test.py CONFIG CHECKPOINT [--work-dir DIR] [--out results.pkl] [--show] [--show-dir DIR]
                                           [--wait-time S] [--cfg-options k=v ...] [--tta]
                                           [--launcher {none,pytorch,slurm,mpi}] [--debug]

Runs ``runner.test()`` on ``test_dataloader`` with ``test_evaluator`` (COCO bbox mAP for ``mmdet_cfgs/``).
Scope-agnostic:

- ``--out FILE.pkl`` adds a results dump to the test evaluator: the scope's ``DumpDetResults`` if it has one
  (MMDetection, same file format as its tool), else MMEngine's ``DumpResults``.
- ``--show``/``--show-dir DIR`` turn on ``default_hooks.visualization`` (``draw=True``); ``DIR`` goes to the
  hook's ``test_out_dir`` if it has that argument, else to ``visualizer.save_dir`` (relative dirs end up under
  ``<work_dir>/<timestamp>/``).
- ``--tta`` wraps the model in ``cfg.tta_model`` and uses ``cfg.tta_pipeline`` (both must be in the config).

A config error prints one line (``test.py: error: ...``, exit status 2); ``--debug`` shows the traceback. So does a
checkpoint that is not one, or that lacks weights of the config's model (``check_checkpoint``): MMEngine would
load it non-strictly and score the missing weights at their initial values.
"""
from __future__ import annotations

import argparse
import importlib.util
import sys
from pathlib import Path

if importlib.util.find_spec("gaussconv_plugin") is None:  # source checkout that was never pip-installed
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gaussconv_plugin.data.sirst import DataFileError  # noqa: E402
from gaussconv_plugin.mmdet.runner import CfgOptionsAction, tool_errors  # noqa: E402


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="test.py", description="Test (and evaluate) a model from an MMEngine config")
    p.add_argument("config", help="test config file path")
    p.add_argument("checkpoint", help="checkpoint file")
    p.add_argument("--work-dir", help="the dir to save the evaluation metrics (default ./work_dirs/<config name>)")
    p.add_argument("--out", type=str, help="dump predictions to a pickle file (.pkl/.pickle) for offline evaluation")
    p.add_argument("--show", action="store_true", help="show prediction results in a window")
    p.add_argument("--show-dir", help="save painted predictions here (relative: under work_dir/timestamp)")
    p.add_argument("--wait-time", type=float, default=2, help="the interval of --show (s)")
    p.add_argument("--cfg-options", nargs="+", action=CfgOptionsAction,
                   help="override config settings, key=value (e.g. test_dataloader.batch_size=4)")
    p.add_argument("--launcher", choices=["none", "pytorch", "slurm", "mpi"], default="none", help="job launcher")
    p.add_argument("--tta", action="store_true", help="test-time augmentation with cfg.tta_model/cfg.tta_pipeline")
    p.add_argument("--local_rank", "--local-rank", type=int, default=0)
    p.add_argument("--debug", action="store_true", help="show the full traceback of config/build errors")
    return p.parse_args(argv)


def _dump_metric(cfg, out_file: str):
    """Results-dump metric of the config's scope (``DumpDetResults`` in MMDetection, else ``DumpResults``)."""
    from mmengine.registry import METRICS, DefaultScope

    with DefaultScope.overwrite_default_scope(cfg.get("default_scope", None)):
        with METRICS.switch_scope_and_registry(None) as registry:
            metric_cls = registry.get("DumpDetResults") or registry.get("DumpResults")
    return metric_cls(out_file_path=out_file)


def build(args: argparse.Namespace):
    """Config + runner from parsed arguments (no testing)."""
    import gaussconv_plugin.mmdet  # noqa: F401  (registrations, torch.load allow-list)
    from gaussconv_plugin.mmdet.runner import (
        build_runner, check_checkpoint, load_config, local_rank_env, set_visualization, setup_launcher,
    )
    from mmengine.config import ConfigDict

    local_rank_env(args.local_rank)
    if args.out is not None and not args.out.endswith((".pkl", ".pickle")):
        raise ValueError(f"--out {args.out}: the dump file must end in .pkl or .pickle")
    cfg = load_config(args.config, args.cfg_options, args.work_dir, args.launcher)
    cfg.load_from = args.checkpoint
    if args.show or args.show_dir:
        set_visualization(cfg, args.show, args.show_dir, args.wait_time)
    if args.tta:
        if "tta_model" not in cfg or "tta_pipeline" not in cfg:
            raise KeyError("--tta needs tta_model and tta_pipeline in the config; add them or drop --tta")
        cfg.model = ConfigDict(**cfg.tta_model, module=cfg.model)
        cfg.test_dataloader.dataset.pipeline = cfg.tta_pipeline  # as MMDetection's tool
    note = setup_launcher(cfg)
    runner = build_runner(cfg)
    if not args.tta:  # the TTA wrapper's keys are the model's under another prefix
        check_checkpoint(runner.model, args.checkpoint)
    if note:
        runner.logger.info(note)
    if args.out is not None:
        runner.test_evaluator.metrics.append(_dump_metric(cfg, args.out))
    return runner


def main(argv=None):
    """Test; returns the metrics dict of ``runner.test()``."""
    args = parse_args(argv)
    with tool_errors("test.py", args.debug):  # config / build errors
        runner = build(args)
    hint = ("; check the checkpoint path and that the config's dataset is prepared (mmdet_cfgs/: python "
            "tools/prepare_sirst.py --format coco)")
    with tool_errors("test.py", args.debug, (DataFileError, FileNotFoundError), hint):
        return runner.test()


if __name__ == "__main__":
    main()
    from gaussconv_plugin.mmdet.runner import leave_process_group

    leave_process_group()
