"""Target-level metrics of a box detector on small targets: Pd, false alarms per image, size calibration.

mAP50 of 2–10 px targets is as much box-size calibration as detection (docs/evidence/README.md, protocol), so the
detectors are also scored the way IRSTD scores segmentation, per target (pure NumPy):

- A detection (score ≥ the caller's confidence threshold) **matches** a target when the distance between the
  detection's box centre and the target box's centre is ``≤ radius`` (3 px, the IRSTD Pd rule). Matching is
  one-to-one and greedy by distance over all (target, detection) pairs of an image (closest pair first).
- **Pd** = matched targets / all targets (over the dataset; NaN if it holds no target).
- **Fa per image** = unmatched detections / images; **Fa per empty image** = unmatched detections on images
  without a target / such images (NaN if there are none).
- **Duplicate Fa per image** = the part of Fa that is a second box on a found target: unmatched detections whose
  box overlaps (positive area) the box of a matched target, / images. The rest of Fa is background (or a box on a
  missed target). On 2–10 px targets a second box shifted by 2–3 px keeps IoU < 0.5 with the first, so NMS at
  IoU 0.5 lets it through; it costs precision although nothing new was "seen".
- **Area ratio** = predicted / target box area of each matched pair; the median is reported (< 1: boxes too
  small, which costs IoU ≥ 0.5 matches in mAP50 even when the target is found).
- **False boxes by size and head** (``false_boxes`` of :meth:`BoxTargetMetrics.result`): of the unmatched
  detections, the share whose long side is ``≥ 32`` and ``≥ 100`` px (original image pixels), their median long
  side, their count per head stride (when the caller passes each detection's stride) and their median score
  (when it passes the scores). A detector tuned for 1–30 px targets that fires 100 px boxes on clutter fails in a
  different way from one that fires small ones (docs/ablation/ood_yolo).
- **Pd by target area** (:meth:`BoxTargetMetrics.pd_by_area`): Pd within bins of the target box's area in pixels
  of the original image, bin ``i`` holding ``edges[i-1] < area ≤ edges[i]`` (first bin from 0, last to ∞), so
  a Pd gap between two detectors or two datasets can be traced to the target sizes it comes from.
"""
from __future__ import annotations

import numpy as np

__all__ = ["PD_RADIUS", "EVAL_CONF", "match_targets", "BoxTargetMetrics"]

PD_RADIUS = 3.0  # px between box centres for a match: the IRSTD Pd rule
EVAL_CONF = 0.3  # confidence threshold of the project's target-level evaluation (every detector, every tool)


def _centres(b: np.ndarray) -> np.ndarray:
    return np.stack([(b[:, 0] + b[:, 2]) / 2, (b[:, 1] + b[:, 3]) / 2], 1)


def _overlaps(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``(N, M)`` bool: box ``a[i]`` and box ``b[j]`` (xyxy) share an area > 0."""
    w = np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0])
    h = np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1])
    return (w > 0) & (h > 0)


def match_targets(det_boxes: np.ndarray, tgt_boxes: np.ndarray, radius: float = PD_RADIUS) -> np.ndarray:
    """One-to-one greedy matching by centre distance (module docstring).

    Args:
        det_boxes: ``(N, 4)`` xyxy detections (already thresholded); tgt_boxes: ``(K, 4)`` xyxy targets.

    Returns:
        ``(K,)`` int array: index of the matched detection for each target, −1 where none.
    """
    det = np.asarray(det_boxes, np.float64).reshape(-1, 4)
    tgt = np.asarray(tgt_boxes, np.float64).reshape(-1, 4)
    out = np.full(len(tgt), -1, dtype=np.int64)
    if not len(det) or not len(tgt):
        return out
    d = np.linalg.norm(_centres(tgt)[:, None, :] - _centres(det)[None, :, :], axis=-1)  # (K, N)
    used = np.zeros(len(det), bool)
    for flat in np.argsort(d, axis=None, kind="stable"):
        t, j = divmod(int(flat), len(det))
        if d[t, j] > radius:
            break
        if out[t] < 0 and not used[j]:
            out[t], used[j] = j, True
    return out


class BoxTargetMetrics:
    """Accumulates :func:`match_targets` over images; :meth:`result` gives the dataset figures."""

    def __init__(self, radius: float = PD_RADIUS):
        if not radius > 0:
            raise ValueError(f"radius must be > 0 pixels (got {radius!r}); the IRSTD rule is 3")
        self.radius = float(radius)
        self.n_images = self.n_empty_images = self.n_targets = self.n_matched = 0
        self.n_false = self.n_false_empty = self.n_false_duplicate = 0
        self.area_ratios: list[float] = []
        self.target_areas: list[float] = []
        self.target_found: list[bool] = []
        self.false_long: list[float] = []
        self.false_strides: list[int] = []
        self.false_scores: list[float] = []

    def update(self, det_boxes: np.ndarray, tgt_boxes: np.ndarray, det_strides=None, det_scores=None) -> None:
        """One image: ``(N, 4)`` thresholded detections and ``(K, 4)`` targets, xyxy pixels; optionally ``(N,)``
        the stride of the head each detection comes from and ``(N,)`` its score (for ``false_boxes``)."""
        det = np.asarray(det_boxes, np.float64).reshape(-1, 4)
        tgt = np.asarray(tgt_boxes, np.float64).reshape(-1, 4)
        for name, extra in (("det_strides", det_strides), ("det_scores", det_scores)):
            if extra is not None and len(extra) != len(det):
                raise ValueError(f"{name} has {len(extra)} entries for {len(det)} detections; pass one per box")
        m = match_targets(det, tgt, self.radius)
        ok = m >= 0
        unmatched = np.setdiff1d(np.arange(len(det)), m[ok])
        self.false_long += np.maximum(det[unmatched, 2] - det[unmatched, 0],
                                      det[unmatched, 3] - det[unmatched, 1]).tolist()
        if det_strides is not None:
            self.false_strides += [int(s) for s in np.asarray(det_strides).reshape(-1)[unmatched]]
        if det_scores is not None:
            self.false_scores += np.asarray(det_scores, np.float64).reshape(-1)[unmatched].tolist()
        self.n_images += 1
        self.n_targets += len(tgt)
        self.n_matched += int(ok.sum())
        false = len(det) - int(ok.sum())
        self.n_false += false
        if not len(tgt):
            self.n_empty_images += 1
            self.n_false_empty += false
        elif false and ok.any():
            un = np.setdiff1d(np.arange(len(det)), m[ok])
            self.n_false_duplicate += int(_overlaps(det[un], tgt[ok]).any(1).sum())
        area = lambda b: (b[:, 2] - b[:, 0]).clip(0) * (b[:, 3] - b[:, 1]).clip(0)  # noqa: E731
        self.target_areas += area(tgt).tolist()
        self.target_found += ok.tolist()
        if ok.any():
            ta, pa = area(tgt[ok]), area(det[m[ok]])
            self.area_ratios += (pa / np.maximum(ta, 1e-9)).tolist()

    def pd_by_area(self, edges=(9, 25, 64)) -> list[dict]:
        """Pd per bin of target box area (px²): ``[{"area": "(lo, hi]", "targets": n, "matched": m, "Pd": m / n}]``.

        ``edges``: increasing upper bounds; the defaults split at 3×3, 5×5 and 8×8 px boxes. Empty bins give
        ``Pd`` NaN."""
        e = [float(x) for x in edges]
        if not e or any(b <= a for a, b in zip(e, e[1:])) or e[0] <= 0:
            raise ValueError(f"edges must be positive and strictly increasing (got {list(edges)!r}), e.g. 9 25 64")
        areas, found = np.asarray(self.target_areas, np.float64), np.asarray(self.target_found, bool)
        idx = np.searchsorted(np.asarray(e), areas, side="left")  # area ≤ e[i] -> bin i
        bounds = [0.0] + e + [float("inf")]
        rows = []
        for i in range(len(e) + 1):
            sel = idx == i
            n, m = int(sel.sum()), int(found[sel].sum())
            rows.append({"area": f"({bounds[i]:g}, {bounds[i + 1]:g}]", "targets": n, "matched": m,
                         "Pd": m / n if n else float("nan")})
        return rows

    def false_boxes(self) -> dict:
        """Unmatched detections by size, head and score (module docstring): ``{n, share_long_ge32,
        share_long_ge100, long_median, by_stride: {stride: n}, score_median, score_median_long_ge100}``."""
        nan = float("nan")
        long_ = np.asarray(self.false_long, np.float64)
        scores = np.asarray(self.false_scores, np.float64)
        big = long_ >= 100
        out = {"n": int(len(long_)),
               "share_long_ge32": float((long_ >= 32).mean()) if len(long_) else nan,
               "share_long_ge100": float(big.mean()) if len(long_) else nan,
               "long_median": float(np.median(long_)) if len(long_) else nan}
        if self.false_strides:
            strides = np.asarray(self.false_strides)
            out["by_stride"] = {str(s): int((strides == s).sum()) for s in sorted(set(self.false_strides))}
            out["by_stride_long_ge100"] = {str(s): int(((strides == s) & big).sum())
                                           for s in sorted(set(self.false_strides))}
        if len(scores) == len(long_) and len(scores):
            out["score_median"] = float(np.median(scores))
            out["score_median_long_ge100"] = float(np.median(scores[big])) if big.any() else nan
        return out

    def result(self) -> dict:
        nan = float("nan")
        return {
            "false_boxes": self.false_boxes(),
            "Pd": self.n_matched / self.n_targets if self.n_targets else nan,
            "Fa_per_img": self.n_false / self.n_images if self.n_images else nan,
            "Fa_per_empty_img": self.n_false_empty / self.n_empty_images if self.n_empty_images else nan,
            "area_ratio_median": float(np.median(self.area_ratios)) if self.area_ratios else nan,
            "n_images": self.n_images, "n_targets": self.n_targets, "n_matched": self.n_matched,
            "Fa_duplicate_per_img": self.n_false_duplicate / self.n_images if self.n_images else nan,
            "n_false": self.n_false, "n_false_duplicate": self.n_false_duplicate,
        }
