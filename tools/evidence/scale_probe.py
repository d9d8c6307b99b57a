"""Where the YOLO scale term acts: per head, on which foreground anchors, and how much it adds to the box loss.

Loads a trained detector (``last.pt``), puts ``--batches`` batches of ``--split`` images of a dataset (either layout,
letterboxed to ``--imgsz`` as Ultralytics' validator does, no augmentation) through the model in eval mode and
through a criterion built for it with the scale loss of ``--mode`` (default ``diff``, λ = 1, form ``add``), and
records for every foreground anchor TAL assigns: its head stride, its target score (the weight of its box loss),
whether it is the best-aligned anchor of its target, its stock term ``1 − CIoU`` and its scale term
``λ·(1 − α(P, T))``, and P/T. Prints one JSON record::

    python -m tools.evidence.scale_probe --weights RUN/train/weights/last.pt --split train --batches 8

- ``scale_over_box``: Σ w·λ(1 − α) / Σ w·(1 − CIoU), the share the scale term adds to the box loss;
- ``by_stride``: per head, the anchors, their share of the weight ``w``, of the stock and of the scale term, and
  the median P/T;
- ``target_score_per_target``: Σ w / targets — Ultralytics divides the classification loss by Σ w, so a box fit
  that raises the alignment also weakens the push on every background anchor; ``ciou_best_mean`` the mean CIoU of
  the best-aligned anchors;
- ``scale_share_not_best``: the part of the weighted scale term carried by anchors that are not their target's
  best-aligned one;
- ``grad_share_not_best``: the same for the norm of the scale term's gradient with respect to the predicted box.

- ``stem``: for layers 0 and 1 (the convs the twin replaces), the share of the effective kernel's energy in its
  centre tap (1/9 for a kernel with no preference) and the share of its frequency response's energy outside the band
  a stride-2 output keeps (aliased), over all (out, in) kernel pairs.

Targets: the mask's 8-connected components (:func:`gaussconv_plugin.data.target_boxes`). The criterion is the
model's own (``init_criterion``) with its ``bbox_loss`` replaced by a :class:`ScaleBboxLoss` of ``--mode``, so a
stock model is probed with the term it was not trained with (what it *would* add).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

if __package__ in (None, ""):  # run as a file: make `tools` and `gaussconv_plugin` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

__all__ = ["probe", "stem_kernels", "main"]


def stem_kernels(model, layers=(0, 1), n: int = 64) -> dict:
    """``{layer: {"centre_share", "aliased_share"}}`` of the effective kernels of ``model.model[layer].conv``
    (module docstring, ``stem``)."""
    import torch

    out = {}
    for i in layers:
        conv = model.model[i].conv
        k = (conv.effective_kernel() if hasattr(conv, "effective_kernel") else conv.weight).detach().float()
        c = k.shape[-1] // 2
        spec = torch.fft.fft2(k, s=(n, n)).abs() ** 2
        f = torch.fft.fftfreq(n)
        band = (f.abs()[:, None] > 0.25) | (f.abs()[None, :] > 0.25)
        out[str(i)] = {"centre_share": float((k[..., c, c] ** 2).sum() / (k ** 2).sum()),
                       "aliased_share": float(spec[..., band].sum() / spec.sum())}
    return out


def _letterbox(img: np.ndarray, size: int) -> tuple[np.ndarray, float, tuple[int, int]]:
    """``(H, W)`` uint8 → ``(size, size)`` float32 in [0, 1], the scale and the (top, left) padding."""
    import cv2

    h, w = img.shape
    r = size / max(h, w)
    nh, nw = round(h * r), round(w * r)
    out = np.full((size, size), 114, np.uint8)
    top, left = (size - nh) // 2, (size - nw) // 2
    out[top:top + nh, left:left + nw] = cv2.resize(img, (nw, nh), interpolation=cv2.INTER_LINEAR)
    return out.astype(np.float32) / 255.0, r, (top, left)


def _batches(root, split: str, size: int, batch: int, n_batches: int):
    import torch

    from gaussconv_plugin.data import load_image, read_split, target_boxes

    names = read_split(root, split)
    for b in range(n_batches):
        chunk = names[b * batch:(b + 1) * batch]
        if not chunk:
            return
        imgs, idx, boxes = [], [], []
        for i, n in enumerate(chunk):
            im, r, (top, left) = _letterbox(load_image(root, n), size)
            imgs.append(np.repeat(im[None], 3, 0))
            for x0, y0, x1, y1 in target_boxes(root, n)[0]:
                x0, x1 = x0 * r + left, x1 * r + left
                y0, y1 = y0 * r + top, y1 * r + top
                idx.append(i)
                boxes.append([(x0 + x1) / 2 / size, (y0 + y1) / 2 / size, (x1 - x0) / size, (y1 - y0) / size])
        yield {"img": torch.from_numpy(np.stack(imgs)), "batch_idx": torch.tensor(idx, dtype=torch.float32),
               "cls": torch.zeros(len(idx), 1), "bboxes": torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4)}


def probe(weights, root=None, split: str = "train", imgsz: int = 320, batch: int = 16, batches: int = 8,
          mode: str = "diff", lam: float = 1.0) -> dict:
    import torch
    from ultralytics import YOLO
    from ultralytics.utils.metrics import bbox_iou

    from gaussconv_plugin.data import sirst_root
    from gaussconv_plugin.losses import box_area, scale_weight
    from gaussconv_plugin.yolo.adapter import install_scale_loss

    root = sirst_root(root)
    from ultralytics.cfg import get_cfg

    model = YOLO(str(weights)).model.float().eval()
    if isinstance(getattr(model, "args", None), dict):  # a loaded checkpoint keeps its train args as a dict
        model.args = get_cfg(overrides={k: v for k, v in model.args.items() if k in ("box", "cls", "dfl")})
    crit = model.init_criterion()
    install_scale_loss(crit, mode, "add", lam)
    rec = []  # per fg anchor: stride, w, best, stock, scale, p_over_t, grad_norm
    seen = {}  # the inputs of the criterion's box loss in the last call
    handle = crit.bbox_loss.register_forward_pre_hook(lambda m, a: seen.__setitem__("args", a))
    for b in _batches(root, split, imgsz, batch, batches):
        with torch.no_grad():
            preds = model(b["img"])
        crit(preds, b)
        (pred_dist, pred_bboxes, anchor_points, target_bboxes, target_scores, target_scores_sum, fg_mask, imgsz_t,
         stride) = seen["args"]
        idx = fg_mask.nonzero(as_tuple=True)
        if not len(idx[0]):
            continue
        w = target_scores[idx].sum(-1)
        pb = pred_bboxes[idx].detach().float().requires_grad_(True)
        tb = target_bboxes[idx].float()
        s = stride.reshape(-1)[idx[1]].float()
        ciou = bbox_iou(pb, tb, xywh=False, CIoU=True).squeeze(-1)
        alpha = scale_weight(box_area(pb) * s ** 2, box_area(tb) * s ** 2, mode)
        scale = lam * (1 - alpha)
        g = torch.autograd.grad(scale.sum(), pb)[0].norm(dim=-1)
        # best-aligned anchor of each target: the highest target score among the anchors assigned to the same box
        key = torch.stack([idx[0].float(), *(tb * s[:, None]).round().T], 1)  # the target in input pixels
        _, inv = torch.unique(key, dim=0, return_inverse=True)
        best = torch.zeros(len(w), dtype=torch.bool)
        for k in inv.unique():
            sel = (inv == k).nonzero().squeeze(1)
            best[sel[w[sel].argmax()]] = True
        pt = (box_area(pb) / box_area(tb).clamp_min(1e-9)).detach()
        for row in zip(s.tolist(), w.tolist(), best.tolist(), (1 - ciou).tolist(), scale.tolist(), pt.tolist(),
                       g.tolist()):
            rec.append(row)
    handle.remove()
    if not rec:
        raise SystemExit(f"no foreground anchor in {batches} batches of {split}: use a split with targets")
    a = np.asarray(rec, np.float64)
    s, w, best, stock, scale, pt, g = a.T
    best = best.astype(bool)
    out = {"weights": str(weights), "root": str(root), "split": split, "imgsz": imgsz, "mode": mode, "lam": lam,
           "fg_anchors": int(len(a)), "targets": int(best.sum()),
           "target_score_per_target": float(w.sum() / best.sum()),
           "ciou_best_mean": float(1 - stock[best].mean()),
           "scale_over_box": float((w * scale).sum() / (w * stock).sum()),
           "scale_share_not_best": float((w * scale)[~best].sum() / (w * scale).sum()),
           "grad_share_not_best": float((w * g)[~best].sum() / (w * g).sum()),
           "stem": stem_kernels(model), "by_stride": {}}
    for st in sorted(set(s.tolist())):
        m = s == st
        out["by_stride"][str(int(st))] = {
            "anchors": int(m.sum()), "best": int((m & best).sum()),
            "share_w": float(w[m].sum() / w.sum()),
            "share_stock": float((w * stock)[m].sum() / (w * stock).sum()),
            "share_scale": float((w * scale)[m].sum() / max((w * scale).sum(), 1e-12)),
            "p_over_t_median": float(np.median(pt[m]))}
    return out


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--weights", required=True)
    ap.add_argument("--data-root", default=None, help="dataset folder, either layout (default: the shared SIRST v1)")
    ap.add_argument("--split", default="train")
    ap.add_argument("--imgsz", type=int, default=320)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--batches", type=int, default=8)
    ap.add_argument("--mode", default="diff")
    ap.add_argument("--lam", type=float, default=1.0)
    a = ap.parse_args(argv)
    if not Path(a.weights).is_file():
        raise SystemExit(f"--weights {a.weights} does not exist; pass the last.pt of a finished run")
    rec = probe(a.weights, a.data_root, a.split, a.imgsz, a.batch, a.batches, a.mode, a.lam)
    print(json.dumps(rec, indent=1))
    return rec


if __name__ == "__main__":
    main()
