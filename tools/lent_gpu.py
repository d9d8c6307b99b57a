#!/usr/bin/env python
"""Run ``tools/ablation.py`` on a lent GPU machine in one prepared call, and bring the finished runs back.

A lent machine (the device tool of these sittings) is bare: it has Python 3.12 with torch, numpy, OpenCV, SciPy,
scikit-image, matplotlib, but not MMEngine or pyirstdmetrics; it reaches no network; the working tree travels to it
(64 MiB at most, ``../shared/data`` does not travel), and at most 8 files come back from ``$OUT``. So:

here (this checkout, with the project's ``.venv``)::

    python tools/lent_gpu.py pack --dataset nudt_sirst     # → .gpu/: wheels + a grayscale copy of the dataset

writes into ``.gpu/`` (ignored by git): the pure-Python wheels the U-Net needs beyond the machine's own packages,
pinned by ``requirements/constraints.txt`` (``pip download``, from the package registry), a copy of the dataset as
8-bit grayscale PNGs — exactly the arrays :func:`gaussconv_plugin.data.load_image` reads (NUDT-SIRST's RGB files
hold three equal channels: 45 MB of images become ~29 MB) — with its masks and split lists, and this checkout's
commit (``.git`` does not travel). It prints the size that will travel. A dataset whose copy does not fit beside the
working tree (IRSTD-1k: 77 MB of images, already grayscale) is split: the images that do not fit go to
``.gpu/stage/``, carried by a first call (``carry: [".gpu/stage"]``, ``python3 tools/lent_gpu.py stage``) that copies
them onto the machine's disk, where they stay while it is warm (30 s after a call); the ``run`` call right after it
carries the rest (``carry: [".gpu/wheels", ".gpu/data", ".gpu/commit"]``) and merges the two. ``run`` refuses, in
one line and before any training, a copy that misses images of its split lists.

there (the device tool's ``run``, ``carry: [".gpu"]``, ``timeout_s`` 600)::

    python3 tools/lent_gpu.py run --budget-s 540 -- --dataset nudt_sirst --parts unet --variants stock both \\
        --seeds 0 --unet-epochs 20 --jobs 2 --threads 4

installs the wheels into ``/tmp/site``, points the dataset's environment variable at the carried copy, runs the
ablation into ``/tmp/gpu_ablation`` for at most ``--budget-s`` seconds (then stops it: a later call on the still-warm
machine resumes every cut run from its last checkpoint, as on the CPU), and publishes what finished into ``$OUT``
(``results.json``, ``results.csv``, ``ablation.md`` and ``runs.tar.gz``, the run folders' logs without weights).

here again: ``python tools/ablation.py <the same options> --restore <the folder the files came back to>`` marks those
runs done in this machine's cache (without weights), and the usual ``--report-only --publish`` writes the tables.
Runs pair only with runs of the same hardware (``report.hardware``): a GPU seed needs its stock on the GPU too.
"""
from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # run as a file from a checkout that was never pip-installed
    sys.path.insert(0, str(REPO))

from gaussconv_plugin.data.sirst import SHARED_DATASETS  # noqa: E402  (dataset -> (environment variable, folder))

PACK = REPO / ".gpu"
#: the wheels a bare device machine lacks for the U-Net part (pure Python; pinned in requirements/constraints.txt)
WHEELS = ("mmengine", "addict", "yapf", "platformdirs", "termcolor", "pyirstdmetrics")
#: the device tool's limit on the working tree that travels
TRAVEL_LIMIT = 64 * 2**20


def pinned(names=WHEELS, constraints: Path = REPO / "requirements" / "constraints.txt") -> list[str]:
    """``name==version`` of each of ``names`` as ``constraints`` pins it; one missing is a one-line error."""
    pins = {}
    for line in constraints.read_text().splitlines():
        if "==" in line and not line.lstrip().startswith("#"):
            name, version = line.split("#")[0].strip().split("==")
            pins[name.lower()] = version
    missing = [n for n in names if n not in pins]
    if missing:
        raise SystemExit(f"{constraints}: no pin for {', '.join(missing)}; add 'NAME==VERSION' lines for them")
    return [f"{n}=={pins[n]}" for n in names]


def tree_size(root: Path = REPO) -> int:
    """Bytes of the files that travel besides ``.gpu``: tracked and untracked-not-ignored (``git ls-files``)."""
    out = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=root,
                         capture_output=True, check=True).stdout
    return sum((root / p).stat().st_size for p in out.decode().split("\0") if p and (root / p).is_file())


def folder_size(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def pack_dataset(dataset: str, dest: Path, root=None) -> Path:
    """Copy ``dataset`` into ``dest/data/<its folder name>``: every image as the 8-bit grayscale PNG of
    :func:`load_image`'s array, masks and split-list folders as they are. Returns the copy's root."""
    from PIL import Image

    from gaussconv_plugin.data import dataset_root, load_image
    src = dataset_root(root, dataset)
    out = dest / "data" / src.name
    if out.exists():
        shutil.rmtree(out)
    (out / "images").mkdir(parents=True)
    for p in sorted((src / "images").glob("*.png")):
        Image.fromarray(load_image(src, p.stem)).save(out / "images" / p.name, optimize=True)
    for sub in src.iterdir():
        if sub.is_dir() and sub.name != "images":
            shutil.copytree(sub, out / sub.name)
    return out


def split_for_travel(dest: Path, tree: int, limit: int = TRAVEL_LIMIT, margin: int = 2**20) -> int:
    """Move the images of ``dest/data/*/images`` that do not fit beside ``tree`` bytes (and everything else under
    ``dest``) within ``limit`` into ``dest/stage/<dataset>/images`` (the last names in sorted order). Returns the
    bytes staged; a stage that cannot travel alone either is a one-line error."""
    stage = dest / "stage"
    if stage.exists():
        shutil.rmtree(stage)
    room = limit - margin - tree - sum(f.stat().st_size for f in dest.rglob("*")
                                       if f.is_file() and f.parent.name != "images")
    moved = 0
    for f in sorted(dest.glob("data/*/images/*")):
        room -= f.stat().st_size
        if room < 0:
            to = stage / f.parent.parent.name / "images" / f.name
            to.parent.mkdir(parents=True, exist_ok=True)
            shutil.move(f, to)
            moved += to.stat().st_size
    if moved and tree + moved + margin > limit:
        raise SystemExit(f"{stage}: {moved / 2**20:.1f} MiB of images do not fit one call beside the working tree "
                         f"either; pack fewer datasets (one per call)")
    return moved


def pack(args) -> None:
    dest = Path(args.dest)
    (dest / "wheels").mkdir(parents=True, exist_ok=True)
    subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:",
                    "--python-version", "3.12", "--implementation", "cp", "--platform", "any",
                    "-d", str(dest / "wheels"), *pinned()], check=True)
    if (dest / "data").exists():  # a pack holds exactly the datasets named now
        shutil.rmtree(dest / "data")
    for dataset in args.dataset:
        print(f"packed {dataset}: {pack_dataset(dataset, dest, args.data_root)}")
    from tools.evidence.core import git_commit  # the runner's own record of the checkout, ``+dirty`` included
    (dest / "commit").write_text(git_commit())
    tree = tree_size()
    staged = split_for_travel(dest, tree)
    run_call = "run(command='python3 tools/lent_gpu.py run --budget-s 540 -- <ablation options>', timeout_s=600, "
    if not staged:
        print(f"travels: {(tree + folder_size(dest)) / 2**20:.1f} MiB of {TRAVEL_LIMIT / 2**20:.0f}")
        print(f"device call: {run_call}carry=['.gpu'])")
        return
    print(f"two calls, back to back (the machine keeps /tmp only while warm): {staged / 2**20:.1f} MiB staged, then "
          f"{(tree + folder_size(dest) - staged) / 2**20:.1f} MiB")
    print("device call 1: run(command='python3 tools/lent_gpu.py stage', carry=['.gpu/stage'], timeout_s=120)")
    print(f"device call 2: {run_call}carry=['.gpu/wheels', '.gpu/data', '.gpu/commit'])")


STAGE = Path("/tmp/gpu_stage")


def stage(args) -> None:
    """There, first call: copy the carried ``.gpu/stage`` onto the machine's disk for the next call."""
    src = Path(args.pack) / "stage"
    if not src.is_dir():
        raise SystemExit(f"{src}: nothing to stage; carry '.gpu/stage' in this call (tools/lent_gpu.py pack made it)")
    shutil.copytree(src, STAGE, dirs_exist_ok=True)
    print(f"staged {sum(1 for f in STAGE.rglob('*') if f.is_file())} files in {STAGE}")


def merge_stage(pack_dir: Path, staged: Path | None = None) -> None:
    """Put the images staged in ``staged`` (default :data:`STAGE`) back beside the carried ones, then check that every
    image of every split list is there: a copy that misses some is a one-line error before any training."""
    for f in (STAGE if staged is None else staged).glob("*/images/*"):
        to = pack_dir / "data" / f.parent.parent.name / "images" / f.name
        if to.parent.is_dir() and not to.exists():
            shutil.copy2(f, to)
    for data in sorted((pack_dir / "data").glob("*")):
        names = {n for lst in data.glob("*/*.txt") for n in lst.read_text().split()}
        missing = sorted(n for n in names if not (data / "images" / f"{n}.png").is_file())
        if missing:
            raise SystemExit(f"{data}: {len(missing)} images of its split lists are missing (e.g. {missing[0]}.png); "
                             f"run 'python3 tools/lent_gpu.py stage' with carry ['.gpu/stage'] in the call just before")


def run(args) -> int:
    pack_dir = Path(args.pack)
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    if not args.no_install:
        site = Path("/tmp/site")
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-index", "--no-deps", "--no-compile",
                        "--no-cache-dir", "--upgrade", "--target", str(site),
                        *map(str, sorted((pack_dir / "wheels").glob("*.whl")))], check=True)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(site), str(REPO), env.get("PYTHONPATH")]))
    merge_stage(pack_dir)
    env_of_folder = {folder: var for var, folder in SHARED_DATASETS.values()}
    for data in sorted((pack_dir / "data").glob("*")):  # each copy is named after its shared folder
        if data.name in env_of_folder:
            env[env_of_folder[data.name]] = str(data.resolve())
    if (pack_dir / "commit").is_file():
        env.setdefault("GAUSSCONV_COMMIT", (pack_dir / "commit").read_text().strip())
    opts = [a for a in args.ablation if a != "--"]
    cmd = [sys.executable, str(REPO / "tools" / "ablation.py"), *opts, "--out", args.work]
    print("+", " ".join(cmd), flush=True)
    t0 = time.time()
    proc = subprocess.Popen(cmd, env=env, start_new_session=True)
    try:
        rc = proc.wait(timeout=args.budget_s)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait()
        rc = 124
        print(f"budget of {args.budget_s} s spent: stopped; a later call resumes every cut run", flush=True)
    print(f"ablation: exit {rc} after {time.time() - t0:.0f} s", flush=True)
    out = Path(args.out or os.environ.get("OUT") or "gpu_out")
    pub = Path(args.work) / "_publish"
    subprocess.run([*cmd, "--report-only", "--publish", str(pub)], env=env, check=False)
    out.mkdir(parents=True, exist_ok=True)
    for name in ("results.json", "results.csv", "ablation.md"):
        if (pub / name).is_file():
            shutil.copy2(pub / name, out / name)
    with tarfile.open(out / "runs.tar.gz", "w:gz") as tar:
        for f in sorted(Path(args.work).rglob("*")):
            if f.is_file() and f.suffix not in (".pth", ".pt") and "_publish" not in f.parts:
                tar.add(f, arcname=str(f.relative_to(args.work)))
    print(f"published into {out}: {sorted(p.name for p in out.iterdir())}")
    return rc


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("pack", help="here: wheels + grayscale dataset copies into .gpu/")
    p.add_argument("--dataset", nargs="+", default=["nudt_sirst"], choices=sorted(SHARED_DATASETS))
    p.add_argument("--data-root", default=None, help="the dataset's folder (default: its shared folder)")
    p.add_argument("--dest", default=str(PACK))
    g = sub.add_parser("stage", help="there, first of two calls: keep the carried .gpu/stage on the machine")
    g.add_argument("--pack", default=str(PACK))
    r = sub.add_parser("run", help="there: install the wheels, run the ablation for --budget-s, publish into $OUT")
    r.add_argument("--pack", default=str(PACK))
    r.add_argument("--budget-s", type=float, default=540.0)
    r.add_argument("--work", default="/tmp/gpu_ablation", help="the ablation's --out on the device machine")
    r.add_argument("--out", default=None, help="where the results go (default $OUT)")
    r.add_argument("--no-install", action="store_true", help="the wheels are installed already (a CPU rehearsal)")
    r.add_argument("ablation", nargs=argparse.REMAINDER, help="-- then tools/ablation.py's options")
    args = ap.parse_args(argv)
    if args.cmd in ("pack", "stage"):
        (pack if args.cmd == "pack" else stage)(args)
        return 0
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
