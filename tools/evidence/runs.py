"""The plan of an ablation's runs and running one: the dispatch over the parts, above them.

A :class:`~.core.Run` (part × variant × seed × split × epochs) and the child-process runner are in :mod:`.core`, the
parts' defaults in :mod:`.defaults`; the parts (:mod:`.yolo_part`, :mod:`.unet_part`, :mod:`.retina_part`) import
those and never this module, which picks a part's module for each run (:data:`PART_MODULES`).

A run lives in ``<out>/<part>/[<dataset>/]<train>-<eval>/e<epochs>/<variant>/seed<k>/`` and is done when that
folder holds ``result.json``; finished runs are skipped, so an interrupted ablation resumes where it stopped. A run
cut off half-way resumes from its last end-of-epoch checkpoint (each part's ``resume_command``: ``yolo train resume``
from ``last.pt``, ``tools/train.py --resume`` for the MMDetection parts); one cut off before its first checkpoint
starts again. Each stretch of training is a *segment* (``segments.json``: commit, start, wall seconds — ``null``
for a segment that was cut off — and command); the result's ``wall_s`` sums the finished segments and
``resumed`` counts the restarts. Each run is a child process with its own CPU thread budget.

A run is what its variant resolved to when it started, with the ablation options that change what it trains
(:func:`run_spec`: ``spec.json`` beside the run, ``spec`` in its record). Variants such as ``gsconv`` follow the
package defaults, so a default that changes turns the runs already in a folder into runs of another design:
:func:`check_specs` stops an ablation that would resume, skip, report or evaluate such a run under the variant's
name, and :func:`restore` does not carry one over.

While a process trains a run, ``seed<k>.lock`` beside its folder names that process (:func:`claim`): a second
ablation that plans the same run on this machine (the same command started twice, say) stops with
one line instead of deleting or resuming the folder under the first, and :func:`restore` leaves such a run to it.
"""
from __future__ import annotations

import datetime as _dt
import json
import os
import shutil
import time
from contextlib import contextmanager
from pathlib import Path

from . import defaults, mmlogs, retina_part, unet_part, yolo_part
from .core import REPO, Run, call, call_step, child_env, dataset_tag, git_commit, log, relocated
from .datasets import parse_split, run_tag
from .variants import PART_VARIANTS, check_variants, resolved

__all__ = ["PARTS", "DEFAULT_PARTS", "PART_MODULES", "Run", "plan", "resume_command", "run_one", "restore",
           "record_key", "collect", "child_env", "spec_drift", "check_specs", "run_spec", "RUN_OPTS", "SPEC",
           "retrain_restored", "git_commit", "log", "REPO", "call", "dataset_tag", "dataset_record", "relocated",
           "segments", "SEGMENTS", "claim", "trained_by"]

PARTS = ("yolo", "unet", "retina")
#: the parts an ablation runs unless told otherwise (``--parts``); the RetinaNet part is opt-in
DEFAULT_PARTS = ("yolo", "unet")
#: the module of each part: ``command``, ``resume_command``, ``result`` and (detectors) ``evaluate`` of a run
PART_MODULES = {"yolo": yolo_part, "unet": unet_part, "retina": retina_part}


def plan(out: Path, parts, variants, seeds, yolo_epochs: int, unet_epochs: int, retina_epochs: int | None = None,
         part_seeds: dict | None = None, **opts) -> list[Run]:
    """The runs of an ablation (folders: :func:`tools.evidence.datasets.run_tag`; split pairs: the datasets'
    ``final``/``screen`` defaults or any ``TRAIN:EVAL``), seed-major (every variant of seed 0 first, so that a
    cut-off ablation leaves complete seeds) and interleaved so that side-by-side jobs mix parts. Variants a part
    lacks are skipped. ``retina_epochs`` defaults to :data:`.defaults.RETINA`; ``part_seeds`` (``{part: seeds}``)
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
        for v in dict.fromkeys(variants):  # named twice: one run, not two in one folder
            for p in parts:
                if v not in PART_VARIANTS[p] or s not in part_seeds.get(p, seeds):
                    continue
                e = {"yolo": yolo_epochs, "unet": unet_epochs}.get(p, retina_epochs)
                if e is None:
                    e = defaults.RETINA["retina_epochs"]
                runs.append(Run(p, v, int(s), int(e), Path(out) / p / tag / f"e{e}" / v / f"seed{s}", dict(opts)))
    return runs


#: the file of a run's training segments (module docstring)
SEGMENTS = "segments.json"
#: the file of the options a run started with (module docstring)
SPEC = "spec.json"
#: options a record may lack because it predates them, with the value every run before them was trained with
_LEGACY = {"conv_opts": {"theta_init": 0.0}, "net_opts": {"sa_form": "conv"},
           "run_opts": {"yolo_arch": "p2", "limit": None}}
_MISSING = object()
#: the ablation's options that change what a part trains but not the run's folder (``--yolo-arch``, ``--imgsz``,
#: ``--batch``, ``--limit``): recorded in the spec beside the variant's, so a run trained under other ones is
#: never resumed, skipped or restored as this one (:func:`run_spec`)
RUN_OPTS = {"yolo": ("yolo_arch", "imgsz", "batch", "limit"), "retina": ("imgsz", "limit"), "unet": ("limit",)}


def run_spec(run: Run) -> dict:
    """What ``run`` trains: its variant's options (:func:`~.variants.resolved`) and, as ``run_opts``, the values of
    the ablation options of :data:`RUN_OPTS` it runs under (a part's default where ``run.opts`` lacks one)."""
    spec = resolved(run.part, run.variant)
    keys = RUN_OPTS.get(run.part, ())
    if keys:
        dflt = {**defaults.YOLO, **PART_MODULES[run.part].DEFAULTS}  # the detectors share one input size
        spec["run_opts"] = {k: dflt.get(k) if run.opts.get(k) is None else run.opts[k] for k in keys}
    return spec


def spec_drift(part: str, variant: str, recorded: dict | None, now: dict | None = None) -> list[str]:
    """How the options a run of ``variant`` was trained with (``recorded``: its ``spec``) differ from what the
    variant resolves to now (``now``: a planned run's :func:`run_spec`; default the variant's options alone), as
    ``"conv_opts.theta_init: 0.0 -> 'mid'"`` lines (``[]``: the same). Options the record predates count at their
    value of that time (:data:`_LEGACY`) or not at all; a record without a spec (runs from before specs were kept)
    has nothing to compare."""
    if not recorded:
        return []
    out = []
    for key, now in (now if now is not None else resolved(part, variant)).items():
        had = recorded.get(key, _MISSING)
        if isinstance(now, dict):
            had = had if isinstance(had, dict) else {}
            for k, v in now.items():
                h = had.get(k, _LEGACY.get(key, {}).get(k, _MISSING))
                if h is not _MISSING and h != v:
                    out.append(f"{key}.{k}: {h!r} -> {v!r}")
        elif had is not _MISSING and had != now:
            out.append(f"{key}: {had!r} -> {now!r}")
    return out


def _recorded_spec(run: Run) -> dict | None:
    """The options ``run`` was trained with: its record's ``spec`` once finished, else its ``spec.json``."""
    if run.result_file.is_file():
        return json.loads(run.result_file.read_text()).get("spec")
    f = run.dir / SPEC
    return json.loads(f.read_text()) if f.is_file() else None


def check_specs(runs: list[Run]) -> None:
    """Stop (one line naming the folder and the fix) if a planned run that is finished or half-trained was trained
    with other options than its variant resolves to now (:func:`spec_drift`)."""
    stale = [(r, d) for r in runs for d in [spec_drift(r.part, r.variant, _recorded_spec(r), run_spec(r))] if d]
    if stale:
        r, d = stale[0]
        raise SystemExit(f"ablation: {r.dir} was trained as {r.variant} with other options than {r.variant} means now "
                         f"({'; '.join(d)}){f' (and {len(stale) - 1} more run(s))' if len(stale) > 1 else ''}; move "
                         f"it aside (mv {r.dir} {r.dir}.old) to train it anew, or name the variant that pins those "
                         "options")


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


def resume_command(run: Run, data_yaml: Path | None = None) -> list[str] | None:
    """The command that goes on with ``run``'s training from the checkpoint in its folder (its part's
    ``resume_command``; ``[]`` when the training is complete), or None where no training of it was started here or none
    got as far as a checkpoint."""
    if not (run.dir / "command.txt").is_file():
        return None
    return PART_MODULES[run.part].resume_command(run, data_yaml)


def _lock_file(run: Run) -> Path:
    return run.dir.with_name(run.dir.name + ".lock")


def _cmdline(pid: int) -> str | None:
    """``pid``'s command line as ``/proc`` holds it; None where no such process lives (or no ``/proc``)."""
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
    except OSError:
        return None


def trained_by(run: Run) -> int | None:
    """The pid of the process on this machine that is training ``run`` now (:func:`claim`), or None. A lock whose
    process is gone, or whose pid now runs another command line (a pid reused after a restart), counts as none."""
    try:
        held = json.loads(_lock_file(run).read_text())
        pid = int(held["pid"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if not Path("/proc").is_dir():  # no command lines to compare: the pid alone
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        except PermissionError:
            pass
        return pid
    cmd = _cmdline(pid)
    return pid if cmd is not None and cmd == held.get("cmdline") else None


@contextmanager
def claim(run: Run):
    """Hold ``run`` for this process while its body trains it: write ``seed<k>.lock`` beside its folder (pid and
    command line), remove it on the way out. Raises RuntimeError (one line: the folder, the process and the fix)
    where another live process holds it; a stale lock (its process gone) is taken over."""
    f = _lock_file(run)
    f.parent.mkdir(parents=True, exist_ok=True)
    me = {"pid": os.getpid(), "cmdline": _cmdline(os.getpid()),
          "started": _dt.datetime.now().isoformat(timespec="seconds")}
    for _ in range(2):
        try:
            fd = os.open(f, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            pid = trained_by(run)
            if pid is not None and pid != os.getpid():
                raise RuntimeError(f"{run.dir}: process {pid} is training this run now; let it finish (or stop it: "
                                   f"kill {pid}) and run again") from None
            f.unlink(missing_ok=True)  # stale: its process is gone
            continue
        with os.fdopen(fd, "w") as fh:
            fh.write(json.dumps(me))
        break
    else:
        raise RuntimeError(f"{run.dir}: could not take {f}; remove it if no ablation is training this run")
    try:
        yield
    finally:
        f.unlink(missing_ok=True)


def run_one(run: Run, data_yaml: Path | None = None, threads: int = 1, invoked_by: str = "") -> dict:
    """Train one run in a child process (skipped if its ``result.json`` exists), evaluate it, and return its
    result record (also written to ``result.json``), holding the run meanwhile (:func:`claim`)."""
    if run.done:
        return relocated(json.loads(run.result_file.read_text()), run)
    with claim(run):
        if run.done:  # finished by another process between the plan and now
            return relocated(json.loads(run.result_file.read_text()), run)
        return _train_and_record(run, data_yaml, threads, invoked_by)


def _train_and_record(run: Run, data_yaml: Path | None, threads: int, invoked_by: str) -> dict:
    from .report import machine

    part = PART_MODULES[run.part]
    cmd = resume_command(run, data_yaml)
    if cmd is None:
        if run.dir.exists():
            shutil.rmtree(run.dir)  # cut off before its first complete checkpoint: starts again
        run.dir.mkdir(parents=True)
        (run.dir / SPEC).write_text(json.dumps(run_spec(run), indent=1))
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
        call_step(cmd, run, threads, "log.txt", append=len(segs) > 1)
    segs[-1]["wall_s"] = round(time.time() - t0, 1)
    seg_file.write_text(json.dumps(segs, indent=1))
    wall = sum(s["wall_s"] for s in segs if s["wall_s"] is not None)
    res = part.result(run)
    extra = part.evaluate(run, threads) if hasattr(part, "evaluate") else {}
    rec = {"part": run.part, "variant": run.variant, "seed": run.seed,
           "spec": _recorded_spec(run) or run_spec(run),  # what it started with (spec.json)
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
    if run.part in ("unet", "retina"):  # recorded: the checkpoint kept for a cut last validation has done its job
        for ckpt in mmlogs.epoch_checkpoints(run.dir)[:-1]:
            ckpt.unlink()
    m = ", ".join(f"{k} {v:.4g}" for k, v in rec["metrics"].items())
    log(f"[done]  {run.name}: {m} ({wall / 60:.1f} min)")
    return rec


def record_key(r: "Run | dict") -> tuple:
    """What names one training run, for a planned :class:`Run` or a result record alike: part, variant, seed,
    epochs, training split, evaluation split and dataset name (a record without them: SIRST v1, trainval → test,
    as before they were recorded). Two records with the same key are the same run; :func:`restore` and the
    published-evaluation look-up of ``tools.evidence.evaluate`` match on it."""
    if isinstance(r, Run):
        return r.part, r.variant, int(r.seed), int(r.epochs), *r.split, dataset_record(r)["name"]
    sp = r.get("split") or {"train": "trainval", "eval": "test"}
    return (r.get("part"), r.get("variant"), int(r.get("seed", -1)), int(r.get("epochs", -1)), sp.get("train"),
            sp.get("eval"), (r.get("dataset") or {}).get("name", "sirst"))


def restore(runs: list[Run], source) -> list[Run]:
    """Mark as done the planned runs that a published ``results.json`` (``source``: the file or its folder) holds:
    each run not done whose part, variant, seed, epochs, split pair and dataset name match a record gets that
    record as its ``result.json`` (with ``restored_from``). Returns the restored runs. This carries finished runs
    from one machine to another (a new session, a GPU machine) through git, without their weights, so that an
    ablation cut across sittings goes on where it stopped and its tables hold every run. A run whose training is
    under way here (a checkpoint it would resume from) is left to it, with one line: the record would hide the
    training, and ``--retrain-restored`` would then delete both. So is one a live process trains now
    (:func:`trained_by`), checkpoint or not."""
    f = Path(source)
    f = f / "results.json" if f.is_dir() else f
    if not f.is_file():
        raise SystemExit(f"--restore {source}: no results.json there; name a folder written by --publish or its file")
    try:
        records = json.loads(f.read_text())["runs"]
    except (ValueError, KeyError, TypeError):
        raise SystemExit(f"--restore {f}: not a results.json of tools/ablation.py (no 'runs' list)") from None

    have = {record_key(r): r for r in records}
    done = []
    for run in runs:
        rec = None if run.done else have.get(record_key(run))
        drift = spec_drift(run.part, run.variant, rec.get("spec"), run_spec(run)) if rec else []
        if drift:
            log(f"[stale] {run.name} not restored from {f}: trained with other options than {run.variant} means "
                f"now ({'; '.join(drift)})")
            continue
        if rec is not None and (resume_command(run) is not None or trained_by(run) is not None):
            log(f"[kept] {run.name}: its training is under way here ({run.dir}), not restored from {f}; let it "
                "finish, or delete that folder to take the published record")
            continue
        if rec is not None:
            run.dir.mkdir(parents=True, exist_ok=True)
            run.result_file.write_text(json.dumps({**rec, "restored_from": str(f)}, indent=1))
            log(f"[restored] {run.name} from {f}")
            done.append(run)
    return done


def retrain_restored(runs: list[Run]) -> list[Run]:
    """Forget the planned runs that are done only as a record restored without its weights (``restored_from`` in
    their ``result.json``, the weights nowhere under the run's folder), so that the ablation trains them again (e.g.
    to evaluate them on another dataset). Returns those runs; their folders are removed."""
    gone = []
    for run in runs:
        if not run.done:
            continue
        rec = relocated(json.loads(run.result_file.read_text()), run)
        if rec.get("restored_from") and not (rec.get("weights") and Path(rec["weights"]).is_file()):
            shutil.rmtree(run.dir)
            log(f"[retrain] {run.name}: restored from {rec['restored_from']} without its weights; trained again")
            gone.append(run)
    return gone


def collect(runs: list[Run]) -> list[dict]:
    return [relocated(json.loads(r.result_file.read_text()), r) for r in runs if r.done]
