"""The basics every part of the ablation shares: a :class:`Run` (part × variant × seed × split × epochs and its
folder), the child processes that train and evaluate it (:func:`call`, :func:`call_step`, :func:`child_env`), the
cache key of a dataset folder (:func:`dataset_tag`), the checkout's commit and the runner's log.

The parts (:mod:`.yolo_part`, :mod:`.unet_part`, :mod:`.retina_part`) import from here and from :mod:`.defaults`;
the plan of an ablation and the dispatch over the parts live above them, in :mod:`.runs`. Nothing here imports a
part, so the imports go one way: ``runs`` → parts → ``core``.
"""
from __future__ import annotations

import os
import subprocess
import threading
from dataclasses import dataclass, field
from pathlib import Path

from .datasets import parse_split

__all__ = ["REPO", "Run", "log", "git_commit", "MALLOC_VARS", "child_env", "call", "call_step", "dataset_tag",
           "relocated"]

REPO = Path(__file__).resolve().parents[2]
_print_lock = threading.Lock()


def log(msg: str) -> None:
    """Print one line of the runner's log (side-by-side runs print whole lines)."""
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


#: glibc malloc settings of the child runs. PyTorch's CPU tensors come from malloc, and glibc serves a block above its
#: mmap threshold (dynamic, at most 32 MiB) with fresh pages that it unmaps on free, so every training step faults its
#: large activations in again (measured: ~540,000 minor page faults and 0.9 s of kernel time per U-Net step of batch 8
#: at 256², a quarter of the step's CPU time). A 2 GiB mmap threshold and a 16 GiB trim threshold keep freed blocks
#: in the heap for the next step: the same numbers (bit-identical parameters), ~25 % less CPU per step, ~20 % more
#: peak memory (``python tools/bench_alloc.py`` measures it side by side). Other C libraries ignore them; a value
#: already in the environment wins.
MALLOC_VARS = {"MALLOC_MMAP_THRESHOLD_": str(2 ** 31), "MALLOC_TRIM_THRESHOLD_": str(2 ** 34)}


def child_env(threads: int) -> dict:
    """Environment of the child runs: Ultralytics offline switches, ``threads`` CPU threads and
    :data:`MALLOC_VARS` (unless the environment sets them)."""
    from gaussconv_plugin.yolo.offline import offline_env

    env = offline_env(threads=threads)
    for k, v in MALLOC_VARS.items():
        env.setdefault(k, v)
    return env


def call(cmd: list[str], logfile: Path, threads: int, cwd: Path, what: str, hint: str = "",
         append: bool = False) -> None:
    """Run ``cmd`` in ``cwd`` with ``threads`` CPU threads (:func:`child_env`) and its output in ``logfile`` (appended
    to it with ``append``); a failure raises one line: ``<what> (exit N): <last log line> — see <logfile><hint>``."""
    with Path(logfile).open("a" if append else "w") as fh:
        proc = subprocess.run(cmd, cwd=cwd, env=child_env(threads), stdout=fh, stderr=subprocess.STDOUT)
    if proc.returncode != 0:
        tail = Path(logfile).read_text(errors="replace").strip().splitlines()[-1:]
        raise RuntimeError(f"{what} (exit {proc.returncode}): {tail[0] if tail else ''} — see {logfile}{hint}")


def call_step(cmd: list[str], run: Run, threads: int, logname: str, cwd: Path | None = None,
              append: bool = False) -> None:
    """:func:`call` for a step of ``run`` (in ``cwd``, default the run folder; output in ``<run>/<logname>``)."""
    call(cmd, run.dir / logname, threads, cwd or run.dir, f"{run.name} failed", "; rerun the same command to retry it "
         "(it resumes from the run's last checkpoint; delete the run folder to start it afresh)", append)


def dataset_tag(root, limit: int | None = None) -> str:
    """Cache key of a dataset folder: ``<name>-<sha1 of its absolute path, 8 hex>[-limit<N>]``."""
    from gaussconv_plugin.data.sirst import path_tag

    return path_tag(root) + (f"-limit{limit}" if limit else "")


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
