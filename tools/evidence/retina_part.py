"""RetinaNet-R18 part: the ``tools/train.py`` command (the CPU twin configs + cfg-options of the variant), its
result record, and its target-level evaluation (:mod:`.retina_eval` in a child process).

Variants (``mmdet_cfgs/retinanet_r18_fpn_sirst320_cpu*.py``; the twins differ only in the backbone and the box
loss, see :data:`VARIANT_OPTIONS`):

===========  ==================================================================  =================================
variant      backbone                                                            box loss (weight 2)
===========  ==================================================================  =================================
``stock``    ResNet-18 (``retinanet_r18_fpn_sirst320_cpu.py``)                    ``GIoULoss``
``gsconv``   ``GaussResNet``: stem + stage-1 3×3 convs Gaussian, as the twin     ``GIoULoss``
``diff``     ResNet-18                                                           ``DiffScaleIoULoss`` diff/add
``both``     the twin ``retinanet_r18_fpn_sirst320_cpu_gauss.py``                ``DiffScaleIoULoss`` diff/add
===========  ==================================================================  =================================

Data: the run's split pair of SIRST (``trainval:test`` or ``train:val``) converted once to COCO json
(:func:`gaussconv_plugin.data.coco_format.prepare_coco`, one ``annotations/<split>.json`` per split) in
:func:`coco_dir`; the train loader reads ``<train>.json``, the val/test loaders and evaluators ``<eval>.json``.
Input size: ``--imgsz`` (the configs' keep-ratio ``Resize`` to ``(imgsz, imgsz)``; 320 = the configs' own).
Schedule: the config's (AdamW, batch 4, 100-iteration warm-up) with ``max_epochs`` = the run's epochs and the
step decays moved with it (after epochs round(⅔E) and round(11⁄12·E) of E, the config's 16 and 22 of 24);
validation on the evaluation split after every epoch (the curves); a checkpoint at every epoch end (the latest
two kept while it trains), so a cut-off run resumes (:mod:`.mmlogs`); the last epoch's is scored (no best-epoch selection).
"""
from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path

from gaussconv_plugin.boxmetrics import EVAL_CONF  # the same threshold as for YOLO

from . import defaults, mmlogs
from .mmlogs import CHECKPOINT_OPTS
from .boxeval import false_box_metrics
from .core import REPO, Run, call_step, dataset_tag

__all__ = ["command", "resume_command", "result", "evaluate", "coco_dir", "model_config", "CONFIGS", "VARIANT_OPTIONS",
           "DEFAULTS"]

#: the part's defaults (:mod:`.defaults`: 12 epochs, half the configs' 24; batch 4)
DEFAULTS = defaults.RETINA
CONFIGS = {"base": REPO / "mmdet_cfgs" / "retinanet_r18_fpn_sirst320_cpu.py",
           "gauss": REPO / "mmdet_cfgs" / "retinanet_r18_fpn_sirst320_cpu_gauss.py"}
#: cfg-options on the baseline config that give the twin's backbone / the twin's box loss
GAUSS_BACKBONE = ["model.backbone.type=GaussResNet", "model.backbone.gauss_conv_cfg.type=GaussianShapedConv2d",
                  "model.backbone.gauss_stem=True", "model.backbone.gauss_stages=(True,False,False,False)"]
DIFF_LOSS = ["model.bbox_head.loss_bbox.type=DiffScaleIoULoss", "model.bbox_head.loss_bbox.mode=diff",
             "model.bbox_head.loss_bbox.iou_mode=giou", "model.bbox_head.loss_bbox.form=add"]
VARIANT_OPTIONS = {"stock": ("base", []), "gsconv": ("base", GAUSS_BACKBONE), "diff": ("base", DIFF_LOSS),
                   "both": ("gauss", [])}
_LOADERS = ("train_dataloader", "val_dataloader", "test_dataloader")


def model_config(variant: str) -> tuple[Path, list[str]]:
    """``(config file, cfg-options)`` of a variant's model (no data/schedule options)."""
    if variant not in VARIANT_OPTIONS:
        raise SystemExit(f"variant {variant!r} has no retina form; the retina part has {', '.join(VARIANT_OPTIONS)}")
    cfg, opts = VARIANT_OPTIONS[variant]
    return CONFIGS[cfg], list(opts)


def coco_dir(opts: dict) -> Path:
    """The run's SIRST split pair as COCO json in the cache (converted once; keyed by the data folder and limit)."""
    from gaussconv_plugin.data import cache_dir, sirst_root
    from gaussconv_plugin.data.coco_format import prepare_coco

    from .datasets import parse_split

    root = sirst_root(opts.get("data_root")).resolve()
    limit = opts.get("limit")
    return Path(prepare_coco(root, cache_dir("ablation_coco", dataset_tag(root, limit)),
                             splits=parse_split(opts.get("split", "trainval:test")),
                             limit=limit, verbose=False))


def _milestones(epochs: int) -> list[int]:
    """The config's LR steps (epochs 16 and 22 of 24) scaled to ``epochs``: ``round(⅔E)``, ``round(11⁄12·E)``,
    within 1..E−1 (an epoch-E milestone would never be reached)."""
    ms = sorted({max(1, min(epochs - 1, round(epochs * f))) for f in (2 / 3, 11 / 12)})
    return ms


def _imgsz(run: Run) -> int:
    return int(run.opts.get("imgsz") or defaults.YOLO["imgsz"])  # the detectors share one input size


def command(run: Run, data=None) -> list[str]:
    """``tools/train.py`` on the variant's config with the data, schedule, seed and checkpoint options."""
    cfg, opts = model_config(run.variant)
    coco = Path(data) if data else coco_dir(run.opts)
    train, ev = run.split
    s = _imgsz(run)
    opts += [f"{d}.dataset.data_root={coco}" for d in _LOADERS]
    opts += [f"train_dataloader.dataset.ann_file=annotations/{train}.json",
             f"val_dataloader.dataset.ann_file=annotations/{ev}.json",
             f"test_dataloader.dataset.ann_file=annotations/{ev}.json",
             f"val_evaluator.ann_file={coco / 'annotations' / f'{ev}.json'}",
             f"test_evaluator.ann_file={coco / 'annotations' / f'{ev}.json'}",
             f"train_dataloader.dataset.pipeline.2.scale=({s},{s})",
             f"val_dataloader.dataset.pipeline.1.scale=({s},{s})",
             f"test_dataloader.dataset.pipeline.1.scale=({s},{s})",
             f"train_dataloader.batch_size={DEFAULTS['retina_batch']}",
             f"train_cfg.max_epochs={run.epochs}", "train_cfg.val_interval=1",
             f"param_scheduler.1.end={run.epochs}",
             "param_scheduler.1.milestones=[" + ",".join(map(str, _milestones(run.epochs))) + "]",
             f"randomness.seed={run.seed}", *CHECKPOINT_OPTS]
    for d in _LOADERS:
        opts += [f"{d}.num_workers=0", f"{d}.persistent_workers=False"]
    return [sys.executable, str(REPO / "tools" / "train.py"), str(cfg), "--work-dir", str(run.dir),
            "--cfg-options", *opts]


def resume_command(run: Run, data=None) -> list[str] | None:
    """``tools/train.py --resume`` from the run's last end-of-epoch checkpoint (:func:`.mmlogs.resume_command`)."""
    return mmlogs.resume_command(run.dir, run.epochs, command(run, data))


def result(run: Run) -> dict:
    records, scalars = mmlogs.scalar_records(run.dir)
    if not scalars:
        raise RuntimeError(f"{run.dir}: no */vis_data/scalars.json (did the training run?)")
    train: dict[int, dict[str, list[float]]] = {}
    val: dict[int, dict] = {}
    for rec in records:
        if "loss" in rec and "epoch" in rec:
            d = train.setdefault(int(rec["epoch"]), {})
            for k in ("loss", "loss_cls", "loss_bbox"):
                if k in rec:
                    d.setdefault(k, []).append(float(rec[k]))
        elif "step" in rec and "lr" not in rec:  # an evaluation record (step = epoch)
            val[int(rec["step"])] = {k.split("/", 1)[1]: float(v) for k, v in rec.items() if k.startswith("coco/")}
    if run.epochs not in val:
        raise RuntimeError(f"{run.dir}: no validation at the last epoch {run.epochs} in {scalars[-1]}")
    # CocoMetric returns nothing when no box of the whole split scores above test_cfg.score_thr (it logs 'The
    # testing results of the whole dataset is empty'): no detection at all is an AP of 0
    ap = {e: (v.get("bbox_mAP_50", 0.0), v.get("bbox_mAP", 0.0)) for e, v in val.items()}
    epochs = sorted(train)
    mean = lambda xs: sum(xs) / len(xs) if xs else float("nan")  # noqa: E731
    return {
        "metrics": {"mAP50": ap[run.epochs][0], "mAP50-95": ap[run.epochs][1]},
        "epochs_done": max(epochs) if epochs else 0,
        "curves": {"epoch": epochs, **{k: [mean(train[e].get(k, [])) for e in epochs]
                                       for k in ("loss", "loss_cls", "loss_bbox")},
                   "val_epoch": sorted(ap), "mAP50": [ap[e][0] for e in sorted(ap)],
                   "mAP50-95": [ap[e][1] for e in sorted(ap)]},
        "empty_predictions": sorted(e for e, v in val.items() if "bbox_mAP_50" not in v),
        "imgsz": _imgsz(run),
        "weights": str(run.dir / f"epoch_{run.epochs}.pth"),
        **mmlogs.epoch_cost(run.dir, statistics.median),
    }


def eval_command(config: Path, model_opts: list[str], weights: str, root, split: str, imgsz, out: Path,
                 work_dir: Path, limit: int | None = None, coco: Path | None = None, conf: float = EVAL_CONF,
                 per_image: bool = False) -> list[str]:
    """The :mod:`.retina_eval` child command (``--cfg-options`` last)."""
    cmd = [sys.executable, "-m", "tools.evidence.retina_eval", "--config", str(config), "--checkpoint", str(weights),
           "--split", split, "--imgsz", str(imgsz), "--conf", str(conf), "--out", str(out), "--work-dir",
           str(work_dir)]
    if root is not None:
        cmd += ["--data-root", str(root)]
    if limit:
        cmd += ["--limit", str(limit)]
    if coco is not None:
        cmd += ["--coco-dir", str(coco)]
    if per_image:
        cmd += ["--per-image"]
    if model_opts:
        cmd += ["--cfg-options", *model_opts]
    return cmd


def evaluate(run: Run, threads: int = 1) -> dict:
    """Target-level figures of the run's last checkpoint on its evaluation split (child process, see
    :mod:`.retina_eval`: one image at a time at the training size, score ≥ 0.3, centres ≤ 3 px)."""
    cfg, opts = model_config(run.variant)
    out = run.dir / "retina_eval.json"
    cmd = eval_command(cfg, opts, str(run.dir / f"epoch_{run.epochs}.pth"), run.opts.get("data_root"), run.split[1],
                       _imgsz(run), out, run.dir / "retina_eval", run.opts.get("limit"), coco_dir(run.opts))
    call_step(cmd, run, threads, "retina_eval.log", cwd=REPO)
    rec = json.loads(out.read_text())
    return {"metrics": {**{k: rec[k] for k in ("Pd", "Fa_per_img", "area_ratio_median")}, **false_box_metrics(rec)},
            "retina_eval": rec}
