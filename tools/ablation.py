#!/usr/bin/env python
"""Ablation on SIRST v1, NUDT-SIRST or IRSTD-1k: stock / +GaussianShapedConv (and its screened designs) / +scale loss / both,
for YOLOv8n, the MSHNet U-Net and (``--parts retina``) RetinaNet-R18. The pieces live in :mod:`tools.evidence`
(variants, runs, parts, evaluation, statistics, report, plots); this file is the command line.

One command runs every (part, variant, seed) that is not done yet, then writes the tables and plots::

    python tools/ablation.py  # the default schedule, 2 runs side by side: docs/ablation/v1_hard_pinwheel_trainval_test
    python tools/ablation.py --split train:val --parts yolo --variants stock gsconv-f03 pconv --seeds 0 1 2
    python tools/ablation.py --report-only                     # tables + plots from the runs already done
    python tools/ablation.py --parts unet --seeds 0 1 2 --restore docs/ablation/unet_trainval_test  # go on from those
    python tools/ablation.py --split train:val --parts retina --seeds 0 1     # RetinaNet-R18 CPU twins
    python tools/ablation.py --evaluate DIR --eval-imgsz native  # the finished runs on another dataset
    python tools/ablation.py --parts yolo --seeds 0 1 2 --ood   # + the detectors on the other shared datasets
    python tools/ablation.py --dataset nudt_sirst --parts unet yolo --variants stock both --seeds 0 1 2
    python tools/ablation.py --split train:val --parts unet --variants both both-directed both-noloc --reference both

``--split train:val`` trains on ``train`` and evaluates on ``val`` (the screen: designs are chosen there);
the default ``trainval:test`` is the final protocol. ``--dataset nudt_sirst`` (or ``--data-root`` of any folder in
the IRSTD layout) trains on NUDT-SIRST: ``train:test`` by default, ``train_sub:val_sub`` (the committed carve of
``train``) for choices; ``--dataset irstd1k`` the same with ``trainval:test`` and ``trainval_sub:val_sub``; see :mod:`tools.evidence.datasets`. Variants: see :mod:`tools.evidence.variants`. Each run is a
child process (the stock ``yolo`` CLI, or ``tools/train.py``) with one CPU thread; ``--jobs`` runs that many side
by side; finished runs are skipped and a run cut off resumes from its last checkpoint (rerunning resumes). The
metrics are those of the **last** epoch, plus the detectors' mean mAP50 of the last three (no checkpoint selection on
the evaluation split); the detectors are also scored per target (:mod:`tools.evidence.boxeval`,
:mod:`tools.evidence.retina_eval`). ``--evaluate DIR`` scores the finished runs (selected by the same options) on
another dataset in either layout (:mod:`tools.evidence.evaluate`) and writes the same tables to
``<out>/evaluate/<DIR name>/``.

Outputs under ``--out`` (default ``~/.cache/gaussconv_plugin/ablation``, outside the repository):
``<part>/<train>-<eval>/e<epochs>/<variant>/seed<k>/`` (weights, logs, ``result.json``), ``results.json``,
``results.csv``, ``ablation.md`` (paired differences to ``--reference``, default ``stock``) and the PNG plots;
``--publish DIR`` copies the tables and plots (not the weights) to ``DIR``.
"""
from __future__ import annotations

import argparse
import datetime as _dt
import os
import shutil
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from gaussconv_plugin.data import cache_dir  # noqa: E402
from tools.evidence import defaults, retina_part, unet_part, yolo_part  # noqa: E402
from tools.evidence.boxeval import parse_imgsz  # noqa: E402
from tools.evidence.datasets import DATASETS, check_split, ood_targets, resolve  # noqa: E402
from tools.evidence.plots import plot_curves, plot_sigma_theta  # noqa: E402
from tools.evidence.report import REFERENCE, machine, markdown, summarize, write_tables  # noqa: E402
from tools.evidence.runs import (  # noqa: E402
    DEFAULT_PARTS, PARTS, Run, check_specs, child_env, collect, git_commit, log, plan, restore, retrain_restored,
    run_one,
)
from tools.evidence.variants import VARIANTS  # noqa: E402

__all__ = ["VARIANTS", "PARTS", "Run", "plan", "run_one", "collect", "summarize", "markdown", "write_reports",
           "child_env", "yolo_model_yaml", "unet_command", "main"]

yolo_model_yaml = yolo_part.model_yaml
unet_command = unet_part.command
DEFAULTS = defaults.ALL


def out_of_distribution(runs: list[Run], out: Path, meta: dict, a, publish: Path | None) -> list[dict]:
    """``--ood``: the finished detector runs on every other shared dataset (:func:`ood_targets`), native size; the
    tables are printed after the in-distribution one and published beside it. A dataset that is not on this machine
    is named in one line and left out; a failed evaluation stops with one line after the others ran."""
    from gaussconv_plugin.data import dataset_root
    from tools.evidence.evaluate import evaluate_runs

    det = [r for r in runs if r.part in ("yolo", "retina")]
    if not det:
        log("[ood] no detector runs among --parts (yolo, retina): nothing to score out of distribution")
        return []
    results, errors = [], []
    for name, split in ood_targets(a.dataset, a.split):
        try:
            root = dataset_root(None, name)
        except FileNotFoundError as e:
            log(f"[ood] {name} left out: {e}")
            continue
        res = evaluate_runs(det, root, out, split, "native", a.threads, a.jobs, a.limit,
                            {**meta, "ood_of": meta.get("dataset")})
        print(f"\n## Out of distribution: {name} `{split}`\n")
        print((res["folder"] / "ablation.md").read_text())
        if publish:
            dst = publish / ("evaluate_" + name + ("" if split == "test" else f"-{split}"))
            dst.mkdir(parents=True, exist_ok=True)
            for f in ("ablation.md", "results.json", "results.csv"):
                if (res["folder"] / f).is_file():
                    shutil.copy2(res["folder"] / f, dst / f)
        errors += res["errors"]
        results.append(res)
    if errors:
        raise SystemExit(f"{len(errors)} out-of-distribution evaluation(s) failed; first: {errors[0]}")
    return results


def write_reports(runs: list[Run], out: Path, meta: dict, publish: Path | None = None) -> dict:
    records = collect(runs)
    if not records:
        raise SystemExit(f"no finished runs under {out}; run without --report-only first")
    meta = dict(meta, run_commits=sorted({r["commit"] for r in records}),
                run_commands=sorted({r["ablation_command"] for r in records if r.get("ablation_command")}),
                run_dates=sorted({r["finished"][:10] for r in records}),
                run_machines=sorted({r["machine"] for r in records if r.get("machine")}))
    summary = write_tables(records, out, meta)
    pngs = plot_curves(records, out) + plot_sigma_theta(records, out)
    if publish:
        publish.mkdir(parents=True, exist_ok=True)
        for f in [out / "results.json", out / "results.csv", out / "ablation.md", *pngs]:
            shutil.copy2(f, publish / f.name)
        log(f"tables and plots copied to {publish}")
    return summary


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--parts", nargs="+", default=list(DEFAULT_PARTS), choices=PARTS,
                    help="default: yolo unet (retina: RetinaNet-R18, opt-in)")
    ap.add_argument("--variants", nargs="+", default=["stock", "gsconv", "diff", "both"],
                    help="subset of: " + " ".join(VARIANTS) + " (default: stock gsconv diff both)")
    ap.add_argument("--reference", default=None, metavar="VARIANT",
                    help="the variant the tables' paired differences are taken to (default stock; one of --variants, "
                         "e.g. both for a screen of forms of both)")
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1])
    ap.add_argument("--unet-seeds", nargs="+", type=int, default=None,
                    help="seeds of the U-Net part if not --seeds (e.g. 0 1 2 beside five detector seeds)")
    ap.add_argument("--dataset", default="sirst", choices=list(DATASETS),
                    help="sirst (SIRST v1, default), nudt_sirst (NUDT-SIRST) or irstd1k (IRSTD-1k); --data-root "
                         "overrides its folder")
    ap.add_argument("--split", default=None, metavar="TRAIN:EVAL",
                    help="two split lists of the dataset (default: sirst trainval:test, nudt_sirst train:test, "
                         "irstd1k trainval:test; screens: sirst train:val, nudt_sirst train_sub:val_sub, irstd1k "
                         "trainval_sub:val_sub)")
    ap.add_argument("--epochs", type=int, default=None, help="epochs for every part (overrides the three below)")
    ap.add_argument("--yolo-epochs", type=int, default=DEFAULTS["yolo_epochs"])
    ap.add_argument("--unet-epochs", type=int, default=DEFAULTS["unet_epochs"])
    ap.add_argument("--retina-epochs", type=int, default=DEFAULTS["retina_epochs"])
    ap.add_argument("--yolo-arch", choices=("p2", "p3"), default=DEFAULTS["yolo_arch"],
                    help="p2: yolov8-p2-* (P2–P5 outputs, default); p3: yolov8-* (P3–P5)")
    ap.add_argument("--imgsz", type=int, default=None,
                    help="input size of YOLO and RetinaNet (default: sirst 320, nudt_sirst 256, irstd1k 512)")
    ap.add_argument("--batch", type=int, default=DEFAULTS["batch"])
    ap.add_argument("--jobs", type=int, default=2, help="runs side by side (default 2)")
    ap.add_argument("--threads", type=int, default=1, help="CPU threads per run (default 1)")
    ap.add_argument("--device", default=None,
                    help="YOLO runs' device= (default: 0 where CUDA is available, else cpu; the MMEngine parts use "
                         "the GPU when there is one)")
    ap.add_argument("--data-root", default=None,
                    help="dataset folder in either layout (default: the --dataset's folder, gaussconv_plugin.data."
                         "sirst_root() / nudt_root())")
    ap.add_argument("--limit", type=int, default=None, help="use only the first N images per split (smoke runs)")
    ap.add_argument("--out", default=None, help="results folder (default ~/.cache/gaussconv_plugin/ablation)")
    ap.add_argument("--publish", default=None, help="also copy tables + plots (no weights) to this folder "
                    "(with --evaluate: that evaluation's tables)")
    ap.add_argument("--report-only", action="store_true", help="only write tables/plots from finished runs")
    ap.add_argument("--restore", default=None, nargs="+", metavar="RESULTS",
                    help="first mark as done the planned runs that published results.json files (or their folders) "
                         "hold, e.g. runs finished in an earlier session or on another machine (their weights stay "
                         "there); of several, the first that holds a run gives it")
    ap.add_argument("--retrain-restored", action="store_true",
                    help="train again the runs this cache holds only as records restored without their weights "
                         "(e.g. to evaluate them out of distribution); not with --restore")
    ap.add_argument("--evaluate", default=None, metavar="ROOT",
                    help="evaluate the finished runs (selected by the options above) on the dataset ROOT (either "
                         "layout) instead of training; tables in <out>/evaluate/<ROOT name>/")
    ap.add_argument("--eval-split", default="test", help="split of ROOT for --evaluate (default test)")
    ap.add_argument("--ood", action="store_true",
                    help="after the tables, evaluate the finished detector runs on the other shared datasets at "
                         "their native size (final split: their test lists; a screen: their validation carves) and "
                         "print those tables beside the in-distribution one (with --publish: into "
                         "<publish>/evaluate_<dataset>[-<split>]/)")
    ap.add_argument("--eval-imgsz", default=None,
                    help="--evaluate input size of the detectors: N (long side), 'native' (each image at its own "
                         "scale), default: each run's training size")
    a = ap.parse_args(argv)
    eval_imgsz = None if a.eval_imgsz is None else parse_imgsz(a.eval_imgsz, "--eval-imgsz")
    if a.reference is not None and a.reference not in a.variants:
        raise SystemExit(f"--reference {a.reference}: not among --variants ({' '.join(a.variants)}); name one of them "
                         "or add it to --variants")
    if a.epochs is not None:
        a.yolo_epochs = a.unet_epochs = a.retina_epochs = a.epochs
    if min(a.yolo_epochs, a.unet_epochs, a.retina_epochs) < 1 or a.jobs < 1 or a.threads < 1:
        raise SystemExit("--epochs/--yolo-epochs/--unet-epochs/--retina-epochs, --jobs and --threads must be >= 1")
    if a.limit is not None and a.limit < 1:
        raise SystemExit(f"--limit {a.limit}: must be a positive number of images per split; leave it out for all")
    out = Path(a.out) if a.out else cache_dir("ablation")
    out.mkdir(parents=True, exist_ok=True)
    ds = DATASETS[a.dataset]
    a.split = a.split or ds.final
    a.imgsz = a.imgsz or ds.imgsz
    try:
        root = resolve(a.dataset, a.data_root)
        check_split(root, a.split)
    except SystemExit:
        if not a.evaluate:  # --evaluate only reads the finished runs: their training data need not be here
            raise
        root = Path(a.data_root).resolve() if a.data_root else None
    opts = {"data_root": str(root) if root else None, "imgsz": a.imgsz, "batch": a.batch, "yolo_arch": a.yolo_arch,
            "limit": a.limit, "split": a.split, "device": a.device}
    runs = plan(out, a.parts, a.variants, a.seeds, a.yolo_epochs, a.unet_epochs, a.retina_epochs,
                part_seeds={"unet": a.unet_seeds}, **opts)
    meta = {"command": "python tools/ablation.py " + " ".join(argv if argv is not None else sys.argv[1:]),
            "commit": git_commit(), "date": _dt.date.today().isoformat(), "machine": machine(),
            "data_root": str(root), "dataset": root.name if root else a.dataset,
            "dataset_label": ds.label if root is None or root.name == a.dataset else f"{root.name} ({root})",
            "unet_config": unet_part.config(root) if root else None,
            "threads_per_run": a.threads, "jobs": a.jobs, **opts}
    if a.reference not in (None, REFERENCE):  # the default stays implicit: tables from before the option read the same
        meta["reference"] = a.reference
    if a.evaluate:
        from tools.evidence.evaluate import evaluate_runs

        check_specs(runs)
        res = evaluate_runs(runs, a.evaluate, out, a.eval_split, eval_imgsz, a.threads, a.jobs, a.limit, meta)
        print((res["folder"] / "ablation.md").read_text())
        if a.publish:  # the evaluation's tables (not its per-run folders) beside the published training tables
            Path(a.publish).mkdir(parents=True, exist_ok=True)
            for f in ("ablation.md", "results.json", "results.csv"):
                if (res["folder"] / f).is_file():
                    shutil.copy2(res["folder"] / f, Path(a.publish) / f)
            log(f"evaluation tables copied to {a.publish}")
        if res["errors"]:
            raise SystemExit(f"{len(res['errors'])} evaluation(s) failed; first: {res['errors'][0]}")
        return res["summary"]
    if a.retrain_restored:
        if a.restore or a.report_only:
            raise SystemExit("--retrain-restored trains the restored runs again: leave out --restore and --report-only")
        retrain_restored(runs)
    for source in a.restore or []:
        restore(runs, source)
    check_specs(runs)
    todo = [r for r in runs if not r.done]
    log(f"ablation: {len(runs)} runs ({len(runs) - len(todo)} done), {a.jobs} side by side × {a.threads} thread(s); "
        f"results in {out}")
    publish = Path(a.publish) if a.publish else None
    if todo and not a.report_only:
        parts = {r.part for r in todo}
        data = {"yolo": yolo_part.data_yaml(opts) if "yolo" in parts else None,
                "retina": retina_part.coco_dir(opts) if "retina" in parts else None}
        errors = []

        def work(r: Run):
            try:
                run_one(r, data.get(r.part), a.threads, meta["command"])
            except Exception as e:  # keep the other runs going; report at the end
                errors.append(str(e))
                log(f"[fail]  {e}")

        with ThreadPoolExecutor(max_workers=a.jobs) as ex:
            list(ex.map(work, todo))
        if errors:
            if collect(runs):
                write_reports(runs, out, meta, publish)
            raise SystemExit(f"{len(errors)} run(s) failed; first: {errors[0]}")
    summary = write_reports(runs, out, meta, publish)
    print((out / "ablation.md").read_text())
    if a.ood:
        out_of_distribution(runs, out, meta, a, publish)
    print("trained weights (kept out of git):")
    for r in collect(runs):
        here = Path(r["weights"]).is_file()
        print(f"  {r['part']}/{r['variant']}/seed{r['seed']}: {r['weights']}"
              + ("" if here else " (not on this machine)"))
    return summary


if __name__ == "__main__":
    os.environ.setdefault("MPLBACKEND", "Agg")
    main()
