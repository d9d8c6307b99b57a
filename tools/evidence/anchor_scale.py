"""Box size where the box loss acts: predicted/target area at the foreground anchors of the detector's assigner.

The target-level ``area P/T`` of :mod:`.boxeval` / :mod:`.retina_eval` measures the *final* detections (the best
anchor per target after NMS). The box loss, the scale term included, acts on every foreground anchor the assigner
picks (YOLO: the task-aligned assigner; RetinaNet: ``MaxIoUAssigner``'s positive anchors). This module runs a
trained model on a split (eval mode, no augmentation, at the training size), lets the model's own loss assign the
anchors, and reports P/T there, so the two can be told apart::

    python -m tools.evidence.anchor_scale RUN_DIR [RUN_DIR ...] [--split val]

``RUN_DIR`` is an ablation run folder (``.../<variant>/seed<k>/``): a YOLO run (``train/weights/last.pt`` and
``train/args.yaml``; ``--split`` names a split of its YOLO dataset) or a RetinaNet run (the config MMEngine dumped
there and its ``epoch_<N>.pth`` checkpoints, the last one used; ``--split val``/``test`` picks the config's
dataloader, both the run's evaluation split; ``train`` its training images through the evaluation pipeline). Per
run: the number of foreground anchors, the median and the weighted geometric mean of P/T (YOLO: weighted by the
assigner's scores; RetinaNet: every positive anchor alike), the fraction with P < T, the median IoU of the
anchor's box with its target, and (RetinaNet) the median P/T of each target's best-scored positive anchor.
"""
from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a file: make `tools` and `gaussconv_plugin` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

__all__ = ["ratio_stats", "foreground_boxes", "retina_foreground_boxes", "top_scored_ratio", "loss_pipeline",
           "run_stats", "main"]


def ratio_stats(pred, target, weight) -> dict:
    """Statistics of ``pred`` vs ``target`` boxes.

    Args:
        pred, target: ``(K, 4)`` xyxy boxes (any common unit); weight: ``(K,)`` non-negative anchor weights.

    Returns:
        ``{"n", "median", "wgeo", "frac_smaller", "median_iou"}``: P/T median, weighted geometric mean of P/T,
        fraction with P < T, median IoU (NaN for K = 0).
    """
    import torch

    from gaussconv_plugin.losses import box_area

    if len(pred) == 0:
        return {"n": 0, "median": math.nan, "wgeo": math.nan, "frac_smaller": math.nan, "median_iou": math.nan}
    p, t = box_area(pred.float()), box_area(target.float())
    r = p / t.clamp_min(1e-12)
    lt = torch.maximum(pred[:, :2], target[:, :2])
    rb = torch.minimum(pred[:, 2:], target[:, 2:])
    inter = (rb - lt).clamp_min(0).prod(-1)
    iou = inter / (p + t - inter).clamp_min(1e-12)
    w = weight.float() / weight.float().sum().clamp_min(1e-12)
    return {"n": len(r), "median": float(r.median()), "wgeo": float((w * r.clamp_min(1e-9).log()).sum().exp()),
            "frac_smaller": float((r < 1).float().mean()), "median_iou": float(iou.median())}


def foreground_boxes(model, batches):
    """``(pred, target, weight)`` of every foreground anchor the model's own loss assigns on ``batches``
    (Ultralytics batch dicts, ``img`` uint8). ``model``: a ``DetectionModel`` with ``args`` set."""
    import torch

    crit = model.init_criterion()
    got = []
    inner = crit.bbox_loss.forward

    def capture(pred_dist, pred_bboxes, anchor_points, target_bboxes, target_scores, tss, fg_mask, *rest):
        idx = fg_mask.nonzero(as_tuple=True)
        got.append((pred_bboxes[idx].detach(), target_bboxes[idx].detach(), target_scores[idx].sum(-1).detach()))
        return inner(pred_dist, pred_bboxes, anchor_points, target_bboxes, target_scores, tss, fg_mask, *rest)

    crit.bbox_loss.forward = capture
    model.eval()
    with torch.no_grad():
        for b in batches:
            b = {**b, "img": b["img"].float() / 255}
            crit(model(b["img"]), b)
    if not got:
        return torch.zeros(0, 4), torch.zeros(0, 4), torch.zeros(0)
    return tuple(torch.cat(x) for x in zip(*got))


def retina_foreground_boxes(model, loader):
    """``(pred, target, weight, score, image)`` of every positive anchor the model's own loss assigns on ``loader``
    (an MMDetection dataloader whose pipeline loads the boxes): ``(K, 4)`` boxes at the input size, weight 1 each,
    the anchor's class score (sigmoid, best class) and the index of its image in the loader's order. ``model``: a
    ``RetinaNet``-like detector (``AnchorHead.loss_by_feat_single``: ``loss_cls`` then ``loss_bbox`` per level, both
    over the same flattened anchors) whose head decodes its boxes before ``loss_bbox`` (``reg_decoded_bbox=True``,
    as the IoU losses need)."""
    import torch

    head = model.bbox_head
    if not getattr(head, "reg_decoded_bbox", False):
        raise SystemExit("the detector's head regresses deltas (reg_decoded_bbox=False): its box loss never sees "
                         "boxes, so there is no P/T to measure; use a config with an IoU box loss")
    got, scores, seen = [], [], {"before": 0, "batch": 0}
    inner_cls, inner_box = head.loss_cls.forward, head.loss_bbox.forward

    def capture_cls(cls_score, *rest, **kw):
        scores.append(cls_score.detach().float().sigmoid().amax(-1))
        return inner_cls(cls_score, *rest, **kw)

    def capture(pred, target, weight=None, *rest, **kw):
        pos = (weight.reshape(len(pred), -1) > 0).any(-1) if weight is not None else \
            torch.ones(len(pred), dtype=torch.bool, device=pred.device)
        score = scores.pop()
        if len(score) != len(pred):
            raise RuntimeError(f"the head scored {len(score)} anchors but regressed {len(pred)}: not an AnchorHead "
                               "loss (loss_cls then loss_bbox over the same anchors); anchor_scale cannot pair them")
        image = seen["before"] + torch.arange(len(pred)) // (len(pred) // seen["batch"])
        got.append((pred[pos].detach(), target[pos].detach(), torch.ones(int(pos.sum())), score[pos], image[pos]))
        return inner_box(pred, target, weight, *rest, **kw)

    head.loss_cls.forward, head.loss_bbox.forward = capture_cls, capture
    model.eval()
    with torch.no_grad():
        for data in loader:
            data = model.data_preprocessor(data, False)
            seen["batch"] = len(data["data_samples"])
            model.loss(data["inputs"], data["data_samples"])
            seen["before"] += seen["batch"]
    if not got:
        return torch.zeros(0, 4), torch.zeros(0, 4), torch.zeros(0), torch.zeros(0), torch.zeros(0, dtype=torch.long)
    return tuple(torch.cat(x) for x in zip(*got))


def top_scored_ratio(pred, target, score, image) -> dict:
    """P/T of the best-scored positive anchor of each target (the box that survives NMS, if any does), against the
    median over all positives: ``{"targets", "top_median"}`` (NaN without targets). ``(K, 4)`` boxes, ``(K,)`` scores
    and image indices; a target is one (image, target box) pair."""
    import torch

    if len(pred) == 0:
        return {"targets": 0, "top_median": math.nan}
    keys = torch.cat([image[:, None].to(target.dtype), target], 1)
    _, group = torch.unique(keys, dim=0, return_inverse=True)
    scores, best = score.tolist(), {}
    for k, g in enumerate(group.tolist()):
        if g not in best or scores[k] > scores[best[g]]:
            best[g] = k
    idx = torch.tensor(sorted(best.values()))
    return {"targets": len(idx), "top_median": ratio_stats(pred[idx], target[idx], torch.ones(len(idx)))["median"]}


def loss_pipeline(test_pipeline: list) -> list:
    """An MMDetection test pipeline with its ``LoadAnnotations`` moved right after the image is loaded, so that the
    boxes are resized with the image (the test pipelines load them after ``Resize``: the evaluator compares them with
    predictions mapped back to the original image, whereas a loss needs them at the network's input size)."""
    steps = [dict(s) for s in test_pipeline]
    ann = [s for s in steps if s["type"] == "LoadAnnotations"]
    if len(ann) != 1 or steps[0]["type"] != "LoadImageFromFile":
        raise SystemExit("the config's test pipeline must start with LoadImageFromFile and hold one LoadAnnotations "
                         f"(got {[s['type'] for s in steps]}); evaluate with a stock test pipeline")
    rest = [s for s in steps[1:] if s["type"] != "LoadAnnotations"]
    return [steps[0], ann[0], *rest]


def _retina_run_stats(run_dir: Path, split: str) -> dict:
    from mmengine.config import Config
    from mmengine.runner import Runner, load_checkpoint

    from mmdet.utils import register_all_modules

    import gaussconv_plugin.mmdet  # noqa: F401  (the configs' custom types)

    from tools.evidence.mmlogs import finished_run

    config, weights = finished_run(run_dir)
    if split not in ("train", "val", "test"):
        raise SystemExit(f"--split {split}: a RetinaNet run has the config's 'train', 'val' and 'test' data; pass one")
    register_all_modules()  # mmdet's registries, default scope 'mmdet'
    cfg = Config.fromfile(str(config))
    from mmdet.registry import MODELS

    model = MODELS.build(cfg.model)
    load_checkpoint(model, str(weights), map_location="cpu", logger="silent")
    ev = cfg[f"{split}_dataloader" if split != "train" else "val_dataloader"]
    dataset = cfg.train_dataloader.dataset if split == "train" else ev.dataset  # train: no augmentation, in order
    loader = Runner.build_dataloader({**ev, "num_workers": 0, "persistent_workers": False,
                                      "dataset": {**dataset, "pipeline": loss_pipeline(ev.dataset.pipeline)}})
    pred, target, weight, score, image = retina_foreground_boxes(model, loader)
    return {"run": str(run_dir), "split": split, "weights": str(weights), **ratio_stats(pred, target, weight),
            **top_scored_ratio(pred, target, score, image)}


def run_stats(run_dir, split: str = "val", batch: int = 16) -> dict:
    """:func:`ratio_stats` of the run's last weights on ``split`` of the dataset it was trained on (a YOLO or a
    RetinaNet run folder, told apart by its files)."""
    run_dir = Path(run_dir)
    if not (run_dir / "train" / "args.yaml").is_file() and any(run_dir.glob("*.py")):
        return _retina_run_stats(run_dir, split)
    import torch
    import yaml
    from ultralytics import YOLO
    from ultralytics.cfg import get_cfg
    from ultralytics.data import build_yolo_dataset
    from ultralytics.data.utils import check_det_dataset
    from ultralytics.utils import DEFAULT_CFG

    import gaussconv_plugin  # noqa: F401  (registers the modules the weights need)

    run_dir = Path(run_dir)
    args = yaml.safe_load((run_dir / "train" / "args.yaml").read_text())
    weights = run_dir / "train" / "weights" / "last.pt"
    if not weights.is_file():
        raise SystemExit(f"{weights} not found; pass a finished ablation run folder (.../<variant>/seed<k>/)")
    data = check_det_dataset(args["data"])
    cfg = get_cfg(DEFAULT_CFG, {"imgsz": args["imgsz"]})
    ds = build_yolo_dataset(cfg, data[split], batch, data, mode="val", rect=False, stride=32)
    loader = torch.utils.data.DataLoader(ds, batch_size=batch, collate_fn=ds.collate_fn)
    model = YOLO(str(weights)).model.float()
    model.args = get_cfg(DEFAULT_CFG, {k: args[k] for k in ("box", "cls", "dfl") if k in args})
    return {"run": str(run_dir), "split": split, **ratio_stats(*foreground_boxes(model, loader))}


def main(argv=None) -> list[dict]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+", help="ablation run folders (.../<variant>/seed<k>/)")
    ap.add_argument("--split", default="val", help="split of the run's YOLO dataset (val = its evaluation split); "
                    "RetinaNet: the config's val or test dataloader, or train (its training images, no augmentation)")
    a = ap.parse_args(argv)
    import torch

    torch.set_num_threads(1)
    rows = [run_stats(r, a.split) for r in a.runs]
    print("| run | fg anchors | median P/T | weighted geo-mean P/T | P < T | median IoU | best-scored P/T |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        name = "/".join(Path(r["run"]).parts[-2:])
        top = f"{r['top_median']:.2f} ({r['targets']} targets)" if "top_median" in r else "–"  # RetinaNet only
        print(f"| {name} | {r['n']} | {r['median']:.2f} | {r['wgeo']:.2f} | {r['frac_smaller']:.2f} | "
              f"{r['median_iou']:.2f} | {top} |")
    return rows


if __name__ == "__main__":
    main()
