"""What an MMEngine training leaves in its work dir, read across resumes: the scalar records, the seconds of
each epoch, and whether (and how) to resume it. Shared by the U-Net and RetinaNet parts.

A resumed MMEngine run writes a new ``<work_dir>/<timestamp>/vis_data/scalars.json`` per segment and appends its
text log to the run's ``log.txt`` (:func:`tools.evidence.runs.run_one`); the epoch that was cut off is trained
again, so its records come from the latest segment that holds them.
"""
from __future__ import annotations

import json
import re
from datetime import datetime
from pathlib import Path

__all__ = ["CHECKPOINT_OPTS", "epoch_checkpoints", "finished_run", "resume_command", "validated", "scalar_records",
           "epoch_seconds", "epoch_cost"]

#: ``--cfg-options`` of the ablation's MMEngine runs: a checkpoint at every epoch end, so that a run cut off resumes
#: from its last finished epoch, and none chosen on the evaluation split. The latest two are kept: MMEngine saves an
#: epoch's checkpoint before validating it, so a run cut during its last validation trains the last epoch again
#: from the one before (:func:`resume_command`); the runner deletes the older one once the run is recorded.
CHECKPOINT_OPTS = ["default_hooks.checkpoint.interval=1", "default_hooks.checkpoint.save_best=None",
                   "default_hooks.checkpoint.max_keep_ckpts=2"]


def epoch_checkpoints(work_dir) -> list[Path]:
    """The ``epoch_<k>.pth`` checkpoints MMEngine saved in ``work_dir``, oldest epoch first."""
    return sorted(Path(work_dir).glob("epoch_*.pth"), key=lambda p: int(p.stem.split("_")[1]))


def finished_run(work_dir) -> tuple[Path, Path]:
    """``(config, checkpoint)`` of a finished MMEngine run folder: the one config MMEngine dumped there and its last
    ``epoch_<k>.pth``; a one-line ``SystemExit`` for a folder that is not one."""
    work_dir = Path(work_dir)
    cfgs, ckpts = sorted(work_dir.glob("*.py")), epoch_checkpoints(work_dir)
    if len(cfgs) != 1 or not ckpts:
        raise SystemExit(f"{work_dir}: not a finished MMEngine run (needs one dumped config *.py and epoch_<N>.pth; "
                         f"found {len(cfgs)} config(s), {len(ckpts)} checkpoint(s)); pass .../<variant>/seed<k>/")
    return cfgs[0], ckpts[-1]


def validated(work_dir, epoch: int) -> bool:
    """Whether the run's scalar records hold an evaluation at ``epoch`` (its step is the epoch)."""
    records, _ = scalar_records(work_dir)
    return any("epoch" not in r and "lr" not in r and r.get("step") == epoch for r in records)


def resume_command(work_dir, epochs: int, command: list[str]) -> list[str] | None:
    """``command`` + ``--resume CKPT`` (``tools/train.py``) from the work dir's latest checkpoint if one exists;
    ``[]`` if the last epoch's checkpoint ``epoch_<epochs>.pth`` is there and validated; None if there is none.

    The latest is the one ``last_checkpoint`` names, or, if a cut left that name pointing at a checkpoint already
    deleted (MMEngine saves the new one, deletes the old, then writes the name), the newest ``epoch_<k>.pth``.
    MMEngine saves ``epoch_<epochs>.pth`` before its validation: a run cut during that validation resumes from
    ``epoch_<epochs − 1>.pth`` (kept by :data:`CHECKPOINT_OPTS`) and trains the last epoch again; a one-line
    ``SystemExit`` where that checkpoint is gone too (runs started before two were kept)."""
    work_dir = Path(work_dir)
    if (work_dir / f"epoch_{epochs}.pth").is_file():
        if validated(work_dir, epochs):
            return []
        ckpt = work_dir / f"epoch_{epochs - 1}.pth"
        if not ckpt.is_file():
            raise SystemExit(f"{work_dir}: epoch_{epochs}.pth is saved but its validation was cut off and no "
                             f"epoch_{epochs - 1}.pth is left to train the last epoch again from; delete the folder "
                             "to train the run again")
    else:
        named = work_dir / "last_checkpoint"
        ckpt = Path(named.read_text().strip()) if named.is_file() else None
        if ckpt is None or not ckpt.is_file():
            found = epoch_checkpoints(work_dir)
            ckpt = found[-1] if found else None
        if ckpt is None:
            return None
    i = command.index("--cfg-options") if "--cfg-options" in command else len(command)
    return [*command[:i], "--resume", str(ckpt), *command[i:]]


def scalar_records(work_dir) -> tuple[list[dict], list[Path]]:
    """The records of every ``*/vis_data/scalars.json`` under ``work_dir``, oldest segment first; a training
    epoch (records with ``epoch``) or an evaluation step (records without ``lr``) that a later segment holds too
    is taken from the later one. Returns ``(records, files)``."""
    # oldest first by the segment folder's MMEngine timestamp (YYYYMMDD_HHMMSS), which a copy keeps and mtime may not
    files = sorted(Path(work_dir).glob("*/vis_data/scalars.json"),
                   key=lambda p: (p.parent.parent.name, p.stat().st_mtime))
    merged: list[dict] = []
    for f in files:
        recs = [json.loads(line) for line in f.read_text().splitlines() if line.strip()]
        epochs = {r["epoch"] for r in recs if "epoch" in r}
        steps = {r.get("step") for r in recs if "epoch" not in r and "lr" not in r}
        merged = [r for r in merged if not ("epoch" in r and r["epoch"] in epochs)
                  and not ("epoch" not in r and "lr" not in r and r.get("step") in steps)]
        merged += recs
    return merged, files


_STAMP = re.compile(r"^(\d\d/\d\d \d\d:\d\d:\d\d) - mmengine - INFO - (.*)$")  # MMEngine: month/day time


def epoch_seconds(log: Path) -> list[float]:
    """Wall seconds of each epoch (training + its validation, if it had one) from the timestamps of the MMEngine text
    log. An epoch ends at the later of 'Saving checkpoint at k epochs' and 'Epoch(val) [k][n/n]' (validation
    follows the checkpoint); it starts where the previous epoch ended or, for the first epoch of a segment, at
    'Checkpoints will be saved to'. So a run validated only every few epochs still times each epoch, and a resumed
    epoch is timed from its segment's start; an epoch cut off (no end line) is not timed."""
    ends: dict[int, float] = {}
    start = cur = cur_end = None

    def close():  # the epoch ``cur`` has ended at ``cur_end``; the next one starts there
        nonlocal start
        if cur is None:
            return
        if start is not None and cur_end >= start:  # (the log has no year: drop a new-year crossing)
            ends[cur] = cur_end - start
        start = cur_end

    for line in log.read_text(errors="replace").splitlines() if log.is_file() else []:
        m = _STAMP.match(line)
        if not m:
            continue
        t = datetime.strptime("2000/" + m.group(1), "%Y/%m/%d %H:%M:%S").timestamp()  # (a leap year: 02/29)
        msg = m.group(2)
        if msg.startswith("Checkpoints will be saved to"):
            close()
            start, cur = t, None
            continue
        v = re.match(r"Epoch\(val\) \[(\d+)\]\[(\d+)/(\d+)\]", msg)
        c = re.match(r"Saving checkpoint at (\d+) epochs", msg)
        k = int(c.group(1)) if c else int(v.group(1)) if v and v.group(2) == v.group(3) else None
        if k is None:
            continue
        if k != cur:
            close()
            cur = k
        cur_end = t
    close()
    return [ends[e] for e in sorted(ends)]


def epoch_cost(work_dir, average) -> dict:
    """``{"sec_per_epoch": average(secs), "epoch_seconds": secs}`` from :func:`epoch_seconds` of the run's
    ``log.txt`` (rounded to 0.1 s), or ``{}`` if the log times no epoch. ``average``: e.g. ``statistics.median``."""
    secs = epoch_seconds(Path(work_dir) / "log.txt")
    if not secs:
        return {}
    return {"sec_per_epoch": round(average(secs), 1), "epoch_seconds": [round(x, 1) for x in secs]}
