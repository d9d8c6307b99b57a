"""Evaluation of a trained MMDetection detector (the RetinaNet part) on a split of a SIRST-layout folder: box mAP50
(COCO, IoU 0.5) and the target-level Pd / false alarms per image / median area ratio
(:mod:`gaussconv_plugin.boxmetrics`).

One pass of ``tools/test.py`` (MMDetection's test loop on CPU, batch 1) over the split converted to COCO json
(:func:`gaussconv_plugin.data.coco_format.prepare_coco`) gives ``CocoMetric``'s mAP50 and a dump of every
prediction (``--out``); the dumped boxes (original-image pixels) with score ≥ ``--conf`` (0.3) are matched to the
mask's 8-connected components (centre distance ≤ 3 px), the same protocol as :mod:`.boxeval` for YOLO. Images
without a target count in the false alarms per image (and in ``Fa_per_empty_img``).

Input size: ``--imgsz N`` resizes every image to long side N (the configs' ``Resize`` keep-ratio step with scale
``(N, N)``, the training size); ``--imgsz native`` keeps each image at its own size (``scale_factor=1``; the data
preprocessor pads to a multiple of 32). ``--per-image`` adds each image's original and network input shape.
::

    python -m tools.evidence.retina_eval --config mmdet_cfgs/retinanet_r18_fpn_sirst320_cpu.py \\
        --checkpoint work_dirs/r18/epoch_12.pth --split test --imgsz 320 --out eval.json

``--predictions PKL ...`` re-scores saved dumps (each ablation run keeps its ``retina_eval/predictions.pkl``)
without running a model and prints Pd, Fa / img and the duplicate part of Fa (second boxes on found targets)::

    python -m tools.evidence.retina_eval --split test --predictions RUN1/retina_eval/predictions.pkl RUN2/...

``--runs RUN_DIR ...`` re-evaluates finished run folders from their own dumped config and last epoch, with
``--cfg-options`` as test-time overrides on top (a sensitivity check, e.g. another NMS IoU)::

    python -m tools.evidence.retina_eval --split test --runs RUN1 RUN2 --cfg-options model.test_cfg.nms.iou_threshold=0.3
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import math
import pickle
import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a file: make `tools` and `gaussconv_plugin` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from gaussconv_plugin.boxmetrics import EVAL_CONF, PD_RADIUS, BoxTargetMetrics  # noqa: E402

__all__ = ["evaluate_checkpoint", "eval_coco_dir", "main"]

REPO = Path(__file__).resolve().parents[2]


def eval_coco_dir(root: Path, limit: int | None = None) -> Path:
    """Cache folder of the COCO conversion of an evaluation folder (keyed by its path and limit)."""
    from gaussconv_plugin.data import cache_dir

    from .core import dataset_tag

    return cache_dir("eval_coco", dataset_tag(root, limit))


def _test_tool():
    spec = importlib.util.spec_from_file_location("gaussconv_tools_test", REPO / "tools" / "test.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _parse_options(options: list[str]) -> dict:
    from gaussconv_plugin.mmdet.runner import CfgOptionsAction

    p = argparse.ArgumentParser()
    p.add_argument("--o", nargs="+", action=CfgOptionsAction, default={})
    return p.parse_args(["--o", *options]).o if options else {}


def _resize_index(config: str, options: list[str]) -> int:
    """Index of the ``Resize`` step of the config's test pipeline."""
    import gaussconv_plugin.mmdet  # noqa: F401  (custom types of the config)
    from gaussconv_plugin.mmdet.runner import load_config

    cfg = load_config(str(config), _parse_options(options))
    steps = [t.get("type") for t in cfg.test_dataloader.dataset.pipeline]
    if "Resize" not in steps:
        raise ValueError(f"{config}: the test pipeline {steps} has no Resize step to set the input size with")
    return steps.index("Resize")


def evaluate_checkpoint(config, checkpoint, root=None, split: str = "test", imgsz: int | str = 320,
                        conf: float = EVAL_CONF, radius: float = PD_RADIUS, limit: int | None = None,
                        cfg_options: list[str] | tuple = (), coco_dir=None, work_dir=None,
                        per_image: bool = False) -> dict:
    """mAP50 and target-level figures of ``checkpoint`` on ``split`` of ``root`` (module docstring)."""
    from gaussconv_plugin.data import read_split, sirst_root
    from gaussconv_plugin.data.coco_format import prepare_coco

    root = sirst_root(root).resolve()
    names = read_split(root, split)[: limit or None]
    coco = Path(prepare_coco(root, coco_dir or eval_coco_dir(root, limit), splits=(split,), limit=limit,
                             verbose=False))
    ann = coco / "annotations" / f"{split}.json"
    work = Path(work_dir) if work_dir else coco / "work"
    work.mkdir(parents=True, exist_ok=True)
    opts = list(cfg_options)
    i = _resize_index(config, opts)
    rs = f"test_dataloader.dataset.pipeline.{i}"
    if str(imgsz) == "native":
        opts += [f"{rs}.scale=None", f"{rs}.scale_factor=1.0"]
    else:
        opts += [f"{rs}.scale=({int(imgsz)},{int(imgsz)})"]
    opts += [f"test_dataloader.dataset.data_root={coco}", f"test_dataloader.dataset.ann_file=annotations/{split}.json",
             f"test_evaluator.ann_file={ann}", "test_dataloader.batch_size=1",
             "test_dataloader.num_workers=0", "test_dataloader.persistent_workers=False",
             "visualizer.name=retina_eval"]
    pkl = work / "predictions.pkl"
    metrics = _test_tool().main([str(config), str(checkpoint), "--work-dir", str(work), "--out", str(pkl),
                                 "--cfg-options", *opts])
    acc, rows = target_metrics(pkl, root, names, conf, radius)
    # CocoMetric returns no keys when no box of the split scores above the config's score_thr: an AP of 0
    rec = {**acc.result(), "mAP50": float(metrics.get("coco/bbox_mAP_50", 0.0)),
           "mAP50-95": float(metrics.get("coco/bbox_mAP", 0.0)), "empty_predictions": "coco/bbox_mAP_50" not in metrics,
           "checkpoint": str(checkpoint), "config": str(config), "cfg_options": list(cfg_options), "root": str(root),
           "split": split, "imgsz": imgsz if str(imgsz) == "native" else int(imgsz), "conf": conf, "radius": radius}
    if per_image:
        rec["per_image"] = rows
    return rec


def target_metrics(predictions, root, names: list[str], conf: float = EVAL_CONF,
                   radius: float = PD_RADIUS) -> tuple[BoxTargetMetrics, list[dict]]:
    """Score a ``tools/test.py --out`` dump (``predictions``: its path) against the targets of ``names``.

    Returns the filled :class:`BoxTargetMetrics` (boxes with score ≥ ``conf``, centre distance ≤ ``radius``) and
    one row per image (original and network input shape, target and detection counts).
    """
    from gaussconv_plugin.data import target_boxes

    preds = pickle.loads(Path(predictions).read_bytes())
    by_name = {Path(p["img_path"]).stem: p for p in preds}
    missing = [n for n in names if n not in by_name]
    if missing:
        raise RuntimeError(f"no prediction for {len(missing)} image(s) of the split in {predictions}, "
                           f"e.g. {missing[0]}: pass the split the dump was made on (--split)")
    acc = BoxTargetMetrics(radius)
    rows = []
    for n in names:
        p = by_name[n]
        inst = p["pred_instances"]
        keep = inst["scores"] >= conf
        det = inst["bboxes"][keep].numpy().reshape(-1, 4)
        tgt = target_boxes(root, n)[0]
        acc.update(det, tgt)
        rows.append({"name": n, "orig_shape": [int(x) for x in p["ori_shape"]],
                     "input_shape": [int(x) for x in p["img_shape"]], "targets": int(len(tgt)),
                     "detections": int(len(det))})
    return acc, rows


def evaluate_runs(run_dirs: list, cfg_options: list[str] | tuple = (), root=None, split: str = "test",
                  imgsz: int | str = 320, conf: float = EVAL_CONF, radius: float = PD_RADIUS, limit: int | None = None,
                  work_dir=None) -> list[dict]:
    """:func:`evaluate_checkpoint` of finished RetinaNet run folders (each: its dumped config ``*.py``, which holds
    the variant's settings, and its last ``epoch_<N>.pth``), with ``cfg_options`` applied on top — e.g. a test-time
    ``model.test_cfg.nms.iou_threshold=0.3``. Test work dirs (logs, ``predictions.pkl``) go under ``work_dir``
    and stay there; without one they go to a temporary folder deleted on return. Never into the runs."""
    import tempfile
    from contextlib import nullcontext

    from tools.evidence.mmlogs import finished_run

    finished = [(Path(d), *finished_run(d)) for d in run_dirs]  # every folder checked before the first test
    with nullcontext(work_dir) if work_dir else tempfile.TemporaryDirectory(prefix="retina_eval_runs_") as base:
        base = Path(base)
        return [{"run": str(d), **evaluate_checkpoint(config, weights, root, split, imgsz, conf, radius, limit,
                                                      cfg_options, work_dir=base / f"{i:02d}_{d.parent.name}_{d.name}")}
                for i, (d, config, weights) in enumerate(finished)]


def rescore(predictions: list, root=None, split: str = "test", conf: float = EVAL_CONF, radius: float = PD_RADIUS,
            limit: int | None = None) -> list[dict]:
    """Target-level figures of saved dumps (each run's ``retina_eval/predictions.pkl``; ``limit``: the first N names
    of the split, as the dump was made), no model run; one record per dump, with the duplicate part of the false
    alarms (:mod:`gaussconv_plugin.boxmetrics`)."""
    from gaussconv_plugin.data import read_split, sirst_root

    root = sirst_root(root).resolve()
    names = read_split(root, split)[: limit or None]
    return [{"predictions": str(p), **target_metrics(p, root, names, conf, radius)[0].result()} for p in predictions]


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", help="the config the checkpoint was trained with")
    ap.add_argument("--checkpoint")
    ap.add_argument("--runs", nargs="+", metavar="RUN_DIR", default=None,
                    help="instead of --config/--checkpoint: evaluate finished RetinaNet run folders (their dumped "
                         "config and last epoch) with --cfg-options on top, e.g. model.test_cfg.nms.iou_threshold=0.3")
    ap.add_argument("--predictions", nargs="+", metavar="PKL", default=None,
                    help="instead of --config/--checkpoint: re-score saved predictions.pkl dumps (a run's "
                         "retina_eval/predictions.pkl) and print Pd / Fa / duplicate Fa per dump, no model run")
    ap.add_argument("--data-root", default=None, help="SIRST-layout folder (default: the shared SIRST v1)")
    ap.add_argument("--split", default="test")
    ap.add_argument("--imgsz", default="320", help="long side N of the input, or 'native' (default 320)")
    ap.add_argument("--conf", type=float, default=EVAL_CONF)
    ap.add_argument("--radius", type=float, default=PD_RADIUS)
    ap.add_argument("--limit", type=int, default=None)
    ap.add_argument("--coco-dir", default=None, help="where the COCO json of the split goes (default: a cache folder)")
    ap.add_argument("--work-dir", default=None, help="test work dir (logs, predictions.pkl)")
    ap.add_argument("--per-image", action="store_true", help="also record each image's original and input shape")
    ap.add_argument("--out", default=None, help="also write the figures to this JSON file")
    ap.add_argument("--cfg-options", nargs="+", default=[], help="the cfg-options the checkpoint was trained with "
                    "(with --runs: test-time overrides on top of each run's dumped config)")
    a = ap.parse_args(argv)
    if a.imgsz != "native" and not a.imgsz.isdigit():
        raise SystemExit(f"--imgsz {a.imgsz}: give a long side in pixels (e.g. 320) or 'native'")
    if a.predictions and a.runs:
        raise SystemExit("give --runs (re-evaluate the models) or --predictions (re-score saved dumps), not both")
    if a.predictions or a.runs:
        recs = (rescore(a.predictions, a.data_root, a.split, a.conf, a.radius, a.limit) if a.predictions else
                evaluate_runs(a.runs, a.cfg_options, a.data_root, a.split, a.imgsz, a.conf, a.radius, a.limit,
                              a.work_dir))
        if a.out:
            Path(a.out).write_text(json.dumps(recs, indent=1))
        return _print_table(recs, "predictions" if a.predictions else "run")
    if not (a.config and a.checkpoint):
        raise SystemExit("give --config and --checkpoint (a trained run), --runs RUN_DIR ... (finished run folders) "
                         "or --predictions PKL ... (saved dumps)")
    if not Path(a.checkpoint).is_file():
        raise SystemExit(f"--checkpoint {a.checkpoint} does not exist; pass the epoch_<N>.pth of a finished run")
    rec = evaluate_checkpoint(a.config, a.checkpoint, a.data_root, a.split, a.imgsz, a.conf, a.radius, a.limit,
                              a.cfg_options, a.coco_dir, a.work_dir, a.per_image)
    show = {k: v for k, v in rec.items() if k != "per_image"}
    print(json.dumps({k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in show.items()}, indent=1))
    if a.out:
        Path(a.out).write_text(json.dumps(rec, indent=1))
    return rec


def _print_table(recs: list[dict], source: str) -> list[dict]:
    """Markdown table of records (``source``: the key naming each row: a dump or a run folder)."""
    fmt = lambda r, k, f: format(r[k], f) if k in r and not math.isnan(r[k]) else "–"  # noqa: E731
    print(f"| {source} | mAP50 | Pd | Fa / img | duplicate Fa / img | area P/T | false | duplicates |")
    print("|---|---|---|---|---|---|---|---|")
    for r in recs:
        print(f"| {r[source]} | {fmt(r, 'mAP50', '.3f')} | {fmt(r, 'Pd', '.4f')} | {fmt(r, 'Fa_per_img', '.3f')} "
              f"| {fmt(r, 'Fa_duplicate_per_img', '.3f')} | {fmt(r, 'area_ratio_median', '.2f')} | {r['n_false']} "
              f"| {r['n_false_duplicate']} |")
    return recs


if __name__ == "__main__":
    main()
