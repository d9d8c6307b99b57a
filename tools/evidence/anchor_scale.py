"""Box size where the box loss acts: predicted/target area at the foreground anchors of YOLO's assigner.

The target-level ``area P/T`` of :mod:`.boxeval` measures the *final* detections (the best anchor per target after
NMS). The box loss, the scale term included, acts on every foreground anchor the task-aligned assigner picks. This
module runs a trained model on a split (eval mode, no augmentation, letterboxed at the training size), lets the
model's own loss assign the anchors, and reports P/T there, so the two can be told apart::

    python -m tools.evidence.anchor_scale RUN_DIR [RUN_DIR ...] [--split val]

``RUN_DIR`` is an ablation run folder (``.../<variant>/seed<k>/``, holding ``train/weights/last.pt`` and
``train/args.yaml``). Per run: the number of foreground anchors, the median and the score-weighted geometric mean
of P/T, the fraction with P < T, and the median IoU of the anchor's box with its target.
"""
from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a file: make `tools` and `gaussconv_plugin` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

__all__ = ["ratio_stats", "foreground_boxes", "run_stats", "main"]


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


def run_stats(run_dir, split: str = "val", batch: int = 16) -> dict:
    """:func:`ratio_stats` of the run's last weights on ``split`` of the dataset it was trained on."""
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
    ap.add_argument("--split", default="val", help="split of the run's YOLO dataset (val = its evaluation split)")
    a = ap.parse_args(argv)
    import torch

    torch.set_num_threads(1)
    rows = [run_stats(r, a.split) for r in a.runs]
    print("| run | fg anchors | median P/T | weighted geo-mean P/T | P < T | median IoU |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        name = "/".join(Path(r["run"]).parts[-2:])
        print(f"| {name} | {r['n']} | {r['median']:.2f} | {r['wgeo']:.2f} | {r['frac_smaller']:.2f} | "
              f"{r['median_iou']:.2f} |")
    return rows


if __name__ == "__main__":
    main()
