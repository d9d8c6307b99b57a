"""IRSTD segmentation metrics (mIoU, nIoU, Pd, Fa) and a threshold sweep (ROC: Pd vs Fa; PR), wrapping
`pyirstdmetrics <https://pypi.org/project/pyirstdmetrics/>`_ (import name ``py_irstd_metrics``, imported lazily).

Per image, ``prob`` ``(H, W)`` in [0, 1] (sigmoid of the logits, cropped to the valid image) and the bool
target ``mask`` ``(H, W)``; the prediction is ``prob > threshold`` (0.5 ⇔ logit > 0, as MSHNet). With
``tp, fp, fn`` pixel counts:

- **mIoU** (dataset level): ``Σ_i tp_i / Σ_i (tp_i + fp_i + fn_i)`` — pyirstdmetrics ``IoUHandler``,
  ``sample_based=False``.
- **nIoU** (image level): ``mean_i tp_i / (tp_i + fp_i + fn_i)``; an image whose target and prediction are both
  empty scores **0** (the library's ``divide_func`` returns 0 for 0/0) — ``IoUHandler``, ``sample_based=True``.
- **Pd** (target level): targets and predicted components are the 8-connected components; for each target
  in label order, the first not-yet-matched predicted component whose centroid lies at Euclidean distance
  ``< distance_threshold`` (3 px) is matched. ``Pd = #matched / #targets`` over the dataset (0 if the dataset
  holds no target). — ``ProbabilityDetectionAndFalseAlarmRate``.
- **Fa** (pixel level): ``Σ area of unmatched predicted components / Σ image pixels``. A target-free image adds
  nothing to Pd's numerator or denominator; all its predicted pixels are false alarms and its pixels count in
  the denominator. Usually reported ×10⁶ (``Fa_e6``). MSHNet's own ``PD_FA`` (its ``utils/metric.py``) leaves
  out every unmatched component whose *area* equals that of a matched one (``x not in image_area_match``), so on
  the same predictions it can report a slightly lower Fa than this (matching by component, not by area).

Threshold sweep (``curve_bins = B > 0``), prediction ``prob > t_b`` for b = 0..B−1:

- ``curve_spacing='linear'``: ``t_b = b / B`` (the library's ``linspace(0, 1, B, endpoint=False)``);
- ``curve_spacing='logit'``: ``t_b = σ(−10 + 20·b/(B−1))``, evenly spaced in logit space from σ(−10) ≈ 4.5·10⁻⁵
  to σ(10) ≈ 0.99995 — networks trained with soft-IoU losses output nearly binary probabilities, so a linear
  sweep puts almost every threshold on the same operating point.

For each threshold: Pd and Fa (ROC of IRSTD papers), target precision
``#matched / #predicted components``, and dataset-level pixel precision ``Σtp / Σ(tp + fp)`` and recall
``Σtp / Σ(tp + fn)`` (PR curve; counted here with NumPy, the library's dynamic curves average per image).
:func:`plot_curves` draws them with Matplotlib (Agg).
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

__all__ = ["IRSTDMetrics", "CURVE_SPACINGS", "sweep_thresholds", "plot_curves", "save_curves", "load_curves"]

CURVE_SPACINGS = ("linear", "logit")


def _lib():
    try:
        import py_irstd_metrics  # noqa: PLC0415
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError(
            "gaussconv_plugin.metrics needs pyirstdmetrics (import name py_irstd_metrics); install it with "
            "`pip install --no-deps pyirstdmetrics==1.0.2 scikit-image scipy` (make setup does this)"
        ) from e
    return py_irstd_metrics


def sweep_thresholds(bins: int, spacing: str = "linear") -> np.ndarray:
    """The ``bins`` increasing thresholds of a sweep (module docstring): linear ``b/B`` or logit-spaced."""
    if spacing == "linear":
        return np.linspace(0, 1, bins, endpoint=False)
    if spacing == "logit":
        return 1.0 / (1.0 + np.exp(-np.linspace(-10.0, 10.0, bins)))
    raise ValueError(f"curve_spacing must be one of {CURVE_SPACINGS} (got {spacing!r})")


def _div(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return np.divide(a, b, out=np.zeros(np.broadcast(a, b).shape), where=b != 0)


class IRSTDMetrics:
    """Accumulate IRSTD metrics image by image (module docstring for the definitions).

    Args:
        threshold: binarisation threshold on the probability (``prob > threshold``), default 0.5.
        distance_threshold: centroid distance (px) under which a predicted component matches a target (3).
        curve_bins: number of thresholds of the sweep (0: no sweep).
        curve_spacing: ``'linear'`` or ``'logit'`` placement of the sweep's thresholds (module docstring).

    Use: ``m = IRSTDMetrics(); m.update(prob, mask) …; m.get()``.
    """

    def __init__(self, threshold: float = 0.5, distance_threshold: float = 3, curve_bins: int = 0,
                 curve_spacing: str = "linear"):
        if not 0.0 <= threshold < 1.0:
            raise ValueError(f"threshold must lie in [0, 1) (got {threshold!r}); use 0.5 (logit > 0)")
        if curve_bins < 0 or int(curve_bins) != curve_bins:
            raise ValueError(f"curve_bins must be an int >= 0 (got {curve_bins!r}); use e.g. 50, or 0 for no sweep")
        if curve_spacing not in CURVE_SPACINGS:
            raise ValueError(f"curve_spacing must be one of {CURVE_SPACINGS} (got {curve_spacing!r})")
        if curve_spacing == "logit" and curve_bins == 1:
            raise ValueError("curve_spacing='logit' needs curve_bins >= 2; use e.g. curve_bins=50")
        self.curve_spacing = curve_spacing
        lib = _lib()
        self.threshold, self.distance_threshold, self.curve_bins = float(threshold), distance_threshold, int(curve_bins)
        self._cm = lib.CMMetrics(threshold=self.threshold, metric_handlers={
            "miou": lib.IoUHandler(with_dynamic=False, with_binary=True, sample_based=False),
            "niou": lib.IoUHandler(with_dynamic=False, with_binary=True, sample_based=True),
        })
        self._pdfa = lib.ProbabilityDetectionAndFalseAlarmRate(num_bins=1, distance_threshold=distance_threshold)
        self._pdfa.thresholds = np.array([self.threshold])  # the library fixes 0.5 for num_bins=1
        self._sweep = None
        if self.curve_bins:
            self._sweep = lib.ProbabilityDetectionAndFalseAlarmRate(num_bins=self.curve_bins,
                                                                    distance_threshold=distance_threshold)
            self._sweep.thresholds = sweep_thresholds(self.curve_bins, curve_spacing)
            self._px_tp = np.zeros(self.curve_bins, np.int64)
            self._px_fp = np.zeros(self.curve_bins, np.int64)
            self._px_pos = 0
        self.num_images = 0

    @staticmethod
    def _check(prob: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        prob = np.asarray(prob, dtype=np.float64)
        mask = np.asarray(mask).astype(bool)
        if prob.ndim != 2 or prob.shape != mask.shape:
            raise ValueError(f"IRSTDMetrics.update needs (H, W) prob and mask of one shape (got {prob.shape} and "
                             f"{mask.shape}); squeeze the channel axis and crop the padding first")
        if not np.isfinite(prob).all() or prob.min() < 0 or prob.max() > 1:
            raise ValueError("IRSTDMetrics.update needs probabilities in [0, 1]; apply sigmoid to the logits first")
        return prob, mask

    def update(self, prob: np.ndarray, mask: np.ndarray) -> None:
        """Add one image: ``prob`` ``(H, W)`` probabilities in [0, 1], ``mask`` ``(H, W)`` bool (or 0/1)."""
        prob, mask = self._check(prob, mask)
        self._cm.update(prob, mask)
        self._pdfa.update(prob, mask)
        if self._sweep is not None:
            self._sweep.update(prob, mask)
            thr = self._sweep.thresholds
            pos, neg = np.sort(prob[mask]), np.sort(prob[~mask])
            self._px_tp += len(pos) - np.searchsorted(pos, thr, side="right")  # count(prob > t)
            self._px_fp += len(neg) - np.searchsorted(neg, thr, side="right")
            self._px_pos += len(pos)
        self.num_images += 1

    def get(self) -> dict:
        """Metrics so far.

        Returns:
            ``{'mIoU', 'nIoU', 'Pd', 'Fa', 'Fa_e6', 'num_images', 'num_targets'}`` (floats/ints), plus
            ``'curves'`` (dict of lists, see :meth:`curves`) when ``curve_bins > 0``.
        """
        if self.num_images == 0:
            raise RuntimeError("IRSTDMetrics.get() before any update(); feed at least one image")
        cm = self._cm.get()
        pdfa = self._pdfa.get()
        fa = float(pdfa["false_alarm"][0])
        out = {
            "mIoU": float(cm["miou"]["binary"]),
            "nIoU": float(cm["niou"]["binary"]),
            "Pd": float(pdfa["probability_detection"][0]),
            "Fa": fa,
            "Fa_e6": fa * 1e6,
            "num_images": int(self.num_images),
            "num_targets": int(self._pdfa.tp_objs[0] + self._pdfa.fn_objs[0]),
        }
        if self._sweep is not None:
            out["curves"] = self.curves()
        return out

    def curves(self) -> dict:
        """Threshold sweep: ``{'thresholds', 'pd', 'fa', 'target_precision', 'pixel_precision', 'pixel_recall'}``,
        each a list of ``curve_bins`` floats (thresholds increasing)."""
        if self._sweep is None:
            raise RuntimeError("IRSTDMetrics was built with curve_bins=0; pass curve_bins=50 for ROC/PR curves")
        s = self._sweep.get()
        tp, fp = self._sweep.tp_objs, self._sweep.fp_objs
        return {
            "thresholds": self._sweep.thresholds.astype(float).tolist(),
            "pd": np.asarray(s["probability_detection"], float).tolist(),
            "fa": np.asarray(s["false_alarm"], float).tolist(),
            "target_precision": _div(tp, tp + fp).tolist(),
            "pixel_precision": _div(self._px_tp, self._px_tp + self._px_fp).tolist(),
            "pixel_recall": _div(self._px_tp, self._px_pos).tolist(),
        }


def save_curves(curves: dict, path: str | os.PathLike) -> Path:
    """Write the sweep (``IRSTDMetrics.curves()``) as JSON; returns the path."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(json.dumps(curves, indent=1))
    return p


def load_curves(path: str | os.PathLike) -> dict:
    """Read a JSON written by :func:`save_curves` (a dict of lists, or a ``{label: curves}`` dict)."""
    return json.loads(Path(path).read_text())


def plot_curves(curves: dict, out_dir: str | os.PathLike, prefix: str = "") -> list[Path]:
    """Draw ``roc.png`` (Pd vs Fa×10⁶; log x when Fa spans more than a decade) and ``pr.png`` (pixel and target precision vs recall).

    Args:
        curves: one sweep (``IRSTDMetrics.curves()``) or ``{label: sweep}`` to overlay several models.
        out_dir: folder for the PNGs (created).
        prefix: file-name prefix.

    Returns:
        the two PNG paths.
    """
    import matplotlib  # noqa: PLC0415

    matplotlib.use("Agg")
    import matplotlib.ticker  # noqa: PLC0415
    import matplotlib.pyplot as plt  # noqa: PLC0415

    runs = {"": curves} if "thresholds" in curves else dict(curves)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    fig, ax = plt.subplots(figsize=(5, 4))
    all_fa = np.concatenate([np.asarray(c["fa"], float) * 1e6 for c in runs.values()])
    log_x = all_fa.max() > 10 * max(all_fa.min(), 1e-2)  # log axis only when Fa spans more than a decade
    for label, c in runs.items():
        fa = np.asarray(c["fa"], float) * 1e6
        ax.plot(np.maximum(fa, 1e-2) if log_x else fa, c["pd"], marker=".", label=label or None)
    if log_x:  # Fa = 0 is drawn at 0.01
        ax.set_xscale("log")
        ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    ax.set_xlabel("Fa (×10⁻⁶, false-alarm pixels / pixels)")
    ax.set_ylabel("Pd (detected targets / targets)")
    ax.set_ylim(0, 1.02)
    ax.set_title("ROC (threshold sweep)")
    ax.grid(True, which="both", alpha=0.3)
    if any(runs):
        ax.legend()
    fig.tight_layout()
    paths.append(out / f"{prefix}roc.png")
    fig.savefig(paths[-1], dpi=120)
    plt.close(fig)
    fig, ax = plt.subplots(figsize=(5, 4))
    for label, c in runs.items():
        tag = f"{label} " if label else ""
        ax.plot(c["pixel_recall"], c["pixel_precision"], marker=".", label=f"{tag}pixel")
        ax.plot(c["pd"], c["target_precision"], marker=".", linestyle="--", label=f"{tag}target")
    ax.set_xlabel("recall (pixel: tp/(tp+fn); target: Pd)")
    ax.set_ylabel("precision")
    ax.set_xlim(0, 1.02)
    ax.set_ylim(0, 1.02)
    ax.set_title("Precision-recall (threshold sweep)")
    ax.grid(True, alpha=0.3)
    ax.legend()
    fig.tight_layout()
    paths.append(out / f"{prefix}pr.png")
    fig.savefig(paths[-1], dpi=120)
    plt.close(fig)
    return paths
