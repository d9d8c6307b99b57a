"""A run of the ablation (part × variant × seed × split × epochs), the plan of runs, and running one.

A run lives in ``<out>/<part>/[<dataset>/]<train>-<eval>/e<epochs>/<variant>/seed<k>/`` and is done when that
folder holds ``result.json``; finished runs are skipped, so an interrupted ablation resumes where it stopped. A run
cut off half-way resumes from its last end-of-epoch checkpoint (each part's ``resume_command``: ``yolo train resume``
from ``last.pt``, ``tools/train.py --resume`` for the MMDetection parts); one cut off before its first checkpoint
starts again. Each stretch of training is a *segment* (``segments.json``: commit, start, wall seconds — ``null``
for a segment that was cut off — and command); the result's ``wall_s`` sums the finished segments and
``resumed`` counts the restarts. Each run is a child process with its own CPU thread budget.
"""
from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
import shutil
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from .datasets import parse_split, run_tag
from .variants import PART_VARIANTS, check_variants, resolved

__all__ = ["PARTS", "DEFAULT_PARTS", "Run", "plan", "run_one", "collect", "child_env", "git_commit", "log",
           "REPO", "call", "dataset_tag", "dataset_record", "relocated",
           "segments", "SEGMENTS"]

REPO = Path(__file__).resolve().parents[2]
PARTS = ("yolo", "unet", "retina")
#: the parts an ablation runs unless told otherwise (``--parts``); the RetinaNet part is opt-in
DEFAULT_PARTS = ("yolo", "unet")
_print_lock = threading.Lock()


def log(msg: str) -> None:
    with _print_lock:
        print(msg, flush=True)


@dataclass
class Run:
    """One training run; ``dir`` holds everything it writes. ``opts``: imgsz, batch, data_root, limit, split …"""

    part: str
    variant: str
    seed: int
    epochs: int
    dir: Path
    opts: dict = field(default_factory=dict)

    @property
    def split(self) -> tuple[str, str]:
        return parse_split(self.opts.get("split", "trainval:test"))

    @property
    def result_file(self) -> Path:
        return self.dir / "result.json"

    @property
    def done(self) -> bool:
        return self.result_file.is_file()

    @property
    def name(self) -> str:
        return f"{self.part}/{'-'.join(self.split)}/{self.variant}/seed{self.seed}"


def plan(out: Path, parts, variants, seeds, yolo_epochs: int, unet_epochs: int, retina_epochs: int | None = None,
         part_seeds: dict | None = None, **opts) -> list[Run]:
    """The runs of an ablation (folders: :func:`tools.evidence.datasets.run_tag`; split pairs: the datasets'
    ``final``/``screen`` defaults or any ``TRAIN:EVAL``), seed-major (every variant of seed 0 first, so that a
    cut-off ablation leaves complete seeds) and interleaved so that side-by-side jobs mix parts. Variants a part lacks are skipped.
    ``retina_epochs`` defaults to :data:`tools.evidence.retina_part.DEFAULTS`; ``part_seeds`` (``{part: seeds}``)
    gives a part its own seeds instead of ``seeds`` (e.g. 3 U-Net seeds beside 5 detector seeds)."""
    for p in parts:
        if p not in PARTS:
            raise SystemExit(f"unknown part {p!r}; choose from {', '.join(PARTS)}")
    check_variants(parts, variants)
    tag = run_tag(opts.get("data_root"), parse_split(opts.setdefault("split", "trainval:test")))
    part_seeds = {p: [int(s) for s in ss] for p, ss in (part_seeds or {}).items() if ss is not None}
    runs = []
    seeds = [int(s) for s in seeds]
    for s in dict.fromkeys(seeds + [s for ss in part_seeds.values() for s in ss]):  # in order, once each
        for v in variants:
            for p in parts:
                if v not in PART_VARIANTS[p] or s not in part_seeds.get(p, seeds):
                    continue
                e = {"yolo": yolo_epochs, "unet": unet_epochs}.get(p, retina_epochs)
                if e is None:
                    from .retina_part import DEFAULTS as RD

                    e = RD["retina_epochs"]
                runs.append(Run(p, v, int(s), int(e), Path(out) / p / tag / f"e{e}" / v / f"seed{s}", dict(opts)))
    return runs


def git_commit() -> str:
    """Short hash of the checkout (``+dirty`` with uncommitted changes to tracked files); outside a git checkout (a
    copy of the tree on a GPU machine, say) ``$GAUSSCONV_COMMIT`` if set, else ``unknown``."""
    try:
        c = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                           check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(REPO), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True).stdout.strip()
        return c + ("+dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return os.environ.get("GAUSSCONV_COMMIT") or "unknown"


def child_env(threads: int) -> dict:
    """Environment of the child runs: Ultralytics offline switches and ``threads`` CPU threads."""
    from gaussconv_plugin.yolo.offline import offline_env

    return offline_env(threads=threads)


def call(cmd: list[str], logfile: Path, threads: int, cwd: Path, what: str, hint: str = "",
         append: bool = False) -> None:
    """Run ``cmd`` in ``cwd`` with ``threads`` CPU threads (:func:`child_env`) and its output in ``logfile`` (appended
    to it with ``append``); a failure raises one line: ``<what> (exit N): <last log line> — see <logfile><hint>``."""
    with Path(logfile).open("a" if append else "w") as fh:
        proc = subprocess.run(cmd, cwd=cwd, env=child_env(threads), stdout=fh, stderr=subprocess.STDOUT)
    if proc.returncode != 0:
        tail = Path(logfile).read_text(errors="replace").strip().splitlines()[-1:]
        raise RuntimeError(f"{what} (exit {proc.returncode}): {tail[0] if tail else ''} — see {logfile}{hint}")


def _call(cmd: list[str], run: Run, threads: int, logname: str, cwd: Path | None = None,
          append: bool = False) -> None:
    """:func:`call` for a step of ``run`` (in ``cwd``, default the run folder; output in ``<run>/<logname>``)."""
    call(cmd, run.dir / logname, threads, cwd or run.dir, f"{run.name} failed", "; rerun the same command to retry it "
         "(it resumes from the run's last checkpoint; delete the run folder to start it afresh)", append)


def dataset_tag(root, limit: int | None = None) -> str:
    """Cache key of a dataset folder: ``<name>-<sha1 of its absolute path, 8 hex>[-limit<N>]``."""
    root = Path(root).resolve()
    return f"{root.name}-{hashlib.sha1(str(root).encode()).hexdigest()[:8]}" + (f"-limit{limit}" if limit else "")


#: the file of a run's training segments (module docstring)
SEGMENTS = "segments.json"


def segments(run: Run) -> list[dict]:
    """The training segments of ``run`` so far (``[]`` for a fresh run)."""
    f = run.dir / SEGMENTS
    return json.loads(f.read_text()) if f.is_file() else []


def dataset_record(run: Run) -> dict:
    """``{"name", "root", "layout"}`` of the folder ``run`` trains on (recorded in each ``result.json``)."""
    from gaussconv_plugin.data import sirst_root
    from gaussconv_plugin.data.layout import detect_layout

    root = sirst_root(run.opts.get("data_root")).resolve()
    return {"name": root.name, "root": str(root), "layout": detect_layout(root)}


def relocated(rec: dict, run: Run) -> dict:
    """``rec`` (a finished run's record) with ``weights`` pointing into ``run.dir`` where the recorded file is gone but
    the run's folder holds its copy: a run trained on another machine or under another ``--out`` (a GPU machine's
    results untarred here) keeps the same path below its ``<part>/<split>/e<E>/<variant>/seed<S>`` folder."""
    w = rec.get("weights")
    if not w or Path(w).is_file():
        return rec
    parts = Path(w).parts
    tail = [i for i in range(1, len(parts)) if parts[i - 1:i + 1] == run.dir.parts[-2:]]
    if tail and run.dir.joinpath(*parts[tail[-1] + 1:]).is_file():
        return {**rec, "weights": str(run.dir.joinpath(*parts[tail[-1] + 1:]))}
    return rec


def run_one(run: Run, data_yaml: Path | None = None, threads: int = 1, invoked_by: str = "") -> dict:
    """Train one run in a child process (skipped if its ``result.json`` exists), evaluate it, and return its
    result record (also written to ``result.json``)."""
    from . import retina_part, unet_part, yolo_part
    from .report import machine

    if run.done:
        return relocated(json.loads(run.result_file.read_text()), run)
    part = {"yolo": yolo_part, "unet": unet_part, "retina": retina_part}[run.part]
    cmd = part.resume_command(run, data_yaml) if (run.dir / "command.txt").is_file() else None
    if cmd is None:
        if run.dir.exists():
            shutil.rmtree(run.dir)  # cut off before its first checkpoint: starts again
        run.dir.mkdir(parents=True)
        cmd = part.command(run, data_yaml)
        (run.dir / "command.txt").write_text(" ".join(cmd) + "\n")
        log(f"[start] {run.name} ({run.epochs} epochs): {run.dir}/log.txt")
    else:
        log(f"[resume] {run.name} ({run.epochs} epochs) from its last checkpoint: {run.dir}/log.txt")
    segs = segments(run)
    segs.append({"commit": git_commit(), "started": _dt.datetime.now().isoformat(timespec="seconds"),
                 "wall_s": None, "command": cmd})
    seg_file = run.dir / SEGMENTS
    seg_file.write_text(json.dumps(segs, indent=1))
    t0 = time.time()
    if cmd:  # [] = training finished before the cut (the evaluation was not): nothing to train
        _call(cmd, run, threads, "log.txt", append=len(segs) > 1)
    segs[-1]["wall_s"] = round(time.time() - t0, 1)
    seg_file.write_text(json.dumps(segs, indent=1))
    wall = sum(s["wall_s"] for s in segs if s["wall_s"] is not None)
    res = part.result(run)
    extra = part.evaluate(run, threads) if hasattr(part, "evaluate") else {}
    rec = {"part": run.part, "variant": run.variant, "spec": resolved(run.part, run.variant), "seed": run.seed,
           "epochs": run.epochs, "split": {"train": run.split[0], "eval": run.split[1]},
           "dataset": dataset_record(run),
           "wall_s": round(wall, 1), "threads": threads, "machine": machine(), "commit": segs[0]["commit"],
           "finished": _dt.datetime.now().isoformat(timespec="seconds"), "command": segs[0]["command"],
           "resumed": len(segs) - 1, "ablation_command": invoked_by, **res}
    if len({s["commit"] for s in segs}) > 1:
        rec["commits"] = [s["commit"] for s in segs]
    rec["metrics"] = {**rec["metrics"], **extra.get("metrics", {})}
    if extra:
        rec["eval"] = extra
    rec.setdefault("sec_per_epoch", round(wall / max(1, run.epochs), 1))
    run.result_file.write_text(json.dumps(rec, indent=1))
    m = ", ".join(f"{k} {v:.4g}" for k, v in rec["metrics"].items())
    log(f"[done]  {run.name}: {m} ({wall / 60:.1f} min)")
    return rec


def restore(runs: list[Run], source) -> list[Run]:
    """Mark as done the planned runs that a published ``results.json`` (``source``: the file or its folder) holds:
    each run not done whose part, variant, seed, epochs, split pair and dataset name match a record gets that
    record as its ``result.json`` (with ``restored_from``). Returns the restored runs. This carries finished runs
    from one machine to another (a new session, a GPU machine) through git, without their weights, so that an
    ablation cut across sittings goes on where it stopped and its tables hold every run."""
    f = Path(source)
    f = f / "results.json" if f.is_dir() else f
    if not f.is_file():
        raise SystemExit(f"--restore {source}: no results.json there; name a folder written by --publish or its file")
    try:
        records = json.loads(f.read_text())["runs"]
    except (ValueError, KeyError, TypeError):
        raise SystemExit(f"--restore {f}: not a results.json of tools/ablation.py (no 'runs' list)") from None

    def key(part, variant, seed, epochs, train, ev, dataset):
        return part, variant, int(seed), int(epochs), train, ev, dataset

    have = {}
    for r in records:
        sp = r.get("split") or {"train": "trainval", "eval": "test"}
        have[key(r["part"], r["variant"], r["seed"], r["epochs"], sp["train"], sp["eval"],
                 (r.get("dataset") or {}).get("name", "sirst"))] = r
    done = []
    for run in runs:
        rec = None if run.done else have.get(key(run.part, run.variant, run.seed, run.epochs, *run.split,
                                                 dataset_record(run)["name"]))
        if rec is not None:
            run.dir.mkdir(parents=True, exist_ok=True)
            run.result_file.write_text(json.dumps({**rec, "restored_from": str(f)}, indent=1))
            log(f"[restored] {run.name} from {f}")
            done.append(run)
    return done


def collect(runs: list[Run]) -> list[dict]:
    return [relocated(json.loads(r.result_file.read_text()), r) for r in runs if r.done]
