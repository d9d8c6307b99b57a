"""MSHNet U-Net part: the ``tools/train.py`` command (CPU config + cfg-options of the variant) and its result."""
from __future__ import annotations

import statistics
import sys

from . import defaults, mmlogs
from .mmlogs import CHECKPOINT_OPTS
from .report import LAST_K
from .core import REPO, Run
from .variants import BASELINE_LOSS, VARIANTS

__all__ = ["command", "resume_command", "config", "result", "DEFAULTS"]

DEFAULTS = defaults.UNET  # the part's defaults (:mod:`.defaults`)
_LOADERS = ("train_dataloader", "val_dataloader", "test_dataloader")


def command(run: Run, data=None) -> list[str]:
    from gaussconv_plugin.data import sirst_root

    v = VARIANTS[run.variant]
    o = run.opts
    root = sirst_root(o.get("data_root")).resolve()
    train, ev = run.split
    val_every = max(1, int(o.get("val_interval") or max(1, run.epochs // 5)))
    # validate after each of the last LAST_K epochs too (MMEngine's dynamic_intervals: after epoch k it uses the
    # interval of the last milestone ≤ k + 1, so milestone E − LAST_K + 2 → epochs E − LAST_K + 1 … E), so that the
    # report can average the last LAST_K epochs as it does for the detectors (no epoch chosen on the evaluation split)
    milestone = max(1, run.epochs - LAST_K + 2)
    opts = [f"{d}.dataset.data_root={root}" for d in _LOADERS]
    opts += [f"train_dataloader.dataset.split={train}", f"val_dataloader.dataset.split={ev}",
             f"test_dataloader.dataset.split={ev}"]
    opts += [f"model.net.gauss_conv={'both' if v.gauss else 'none'}",
             f"model.loss.mode={v.loss or BASELINE_LOSS['unet']}",
             f"train_cfg.max_epochs={run.epochs}", f"train_cfg.val_interval={val_every}",
             f"train_cfg.dynamic_intervals=[({milestone},1)]",
             f"model.warmup_epochs={min(2, max(0, run.epochs - 1))}", f"randomness.seed={run.seed}",
             *CHECKPOINT_OPTS, "default_hooks.logger.interval=5"]
    opts += [f"model.loss.{k}={val}" for k, val in v.loss_opts.items()]
    opts += [f"model.net.gauss_kwargs.{k}={val}" for k, val in v.conv_opts.items()]
    opts += [f"model.net.{k}={val}" for k, val in v.net_opts.items()]
    for d in _LOADERS:
        opts += [f"{d}.num_workers=0", f"{d}.persistent_workers=False"]
    if o.get("limit"):
        opts += [f"{d}.dataset.max_images={o['limit']}" for d in ("train_dataloader", "val_dataloader")]
    return [sys.executable, str(REPO / "tools" / "train.py"), str(REPO / "mmdet_cfgs" / config(root)),
            "--work-dir", str(run.dir), "--cfg-options", *opts]


def config(root) -> str:
    """The U-Net config of the dataset folder ``root``: the named dataset's (NUDT-SIRST: native 256-px crops), else
    the SIRST v1 CPU config (whose dataset reads either layout; ``idx=None`` finds the split folder)."""
    from pathlib import Path

    from .datasets import DATASETS

    d = DATASETS.get(Path(root).name)
    return d.unet_config if d else DATASETS["sirst"].unet_config


def resume_command(run: Run, data=None) -> list[str] | None:
    """``tools/train.py --resume`` from the run's last end-of-epoch checkpoint (:func:`.mmlogs.resume_command`)."""
    return mmlogs.resume_command(run.dir, run.epochs, command(run, data))


def result(run: Run) -> dict:
    records, scalars = mmlogs.scalar_records(run.dir)
    if not scalars:
        raise RuntimeError(f"{run.dir}: no */vis_data/scalars.json (did the training run?)")
    train: dict[int, list[float]] = {}
    val: dict[int, dict] = {}
    for rec in records:
        if "loss" in rec and "epoch" in rec:
            train.setdefault(int(rec["epoch"]), []).append(float(rec["loss"]))
        elif "irstd/mIoU" in rec:
            val[int(rec["step"])] = {k.split("/", 1)[1]: float(v) for k, v in rec.items() if k.startswith("irstd/")}
    if run.epochs not in val:
        raise RuntimeError(f"{run.dir}: no validation at the last epoch {run.epochs} in {scalars[-1]}")
    last = val[run.epochs]
    epochs = sorted(train)
    return {
        "metrics": {k: last[k] for k in ("mIoU", "nIoU", "Pd", "Fa_e6")},
        "epochs_done": max(epochs) if epochs else 0,
        "curves": {"epoch": epochs, "loss": [sum(train[e]) / len(train[e]) for e in epochs],
                   "val_epoch": sorted(val), "mIoU": [val[e]["mIoU"] for e in sorted(val)],
                   "Pd": [val[e]["Pd"] for e in sorted(val)]},
        "weights": str(run.dir / f"epoch_{run.epochs}.pth"),
        **_epoch_cost(run),
    }


def _epoch_cost(run: Run) -> dict:
    """``sec_per_epoch``: the mean wall time of the epochs timed in the run's log (their validations included, as
    the whole run's wall time / epochs gives for a run never cut), and the ``epoch_seconds`` behind it. A run
    resumed after a cut needs this: its finished segments' wall time covers only the epochs trained since the cut.
    Empty if the log times no epoch (the runner then falls back to wall time / epochs)."""
    return mmlogs.epoch_cost(run.dir, statistics.fmean)
