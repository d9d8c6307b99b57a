"""MMEngine adapter for the U-Net segmentation task (MSHNet-style IRSTD segmentation).

Importing it (``custom_imports=dict(imports=['gaussconv_plugin.mmdet'])``) registers, in MMEngine's **root**
registries (every scope, ``mmdet`` included, falls back to them):

=============================  ============  ===================================================================
name                           registry      what
=============================  ============  ===================================================================
``SIRSTSegDataset``            DATASETS      :class:`gaussconv_plugin.data.seg_dataset.SIRSTSegDataset`
                                             (SIRST v1 and IRSTD layouts, e.g. NUDT-SIRST)
``seg_pad_collate``            FUNCTIONS     :func:`~gaussconv_plugin.data.seg_dataset.pad_collate` (pads a batch
                                             to a multiple of ``size_divisor``; ``collate_fn=dict(type=...)``)
``IRSTDSegmentor``             MODELS        :class:`IRSTDSegmentor`, ``BaseModel`` around
                                             :class:`~gaussconv_plugin.unet.MSHUNet` + ScaleIoULoss
``IRSTDMetric``                METRICS       :class:`IRSTDMetric`: mIoU, nIoU, Pd, Fa (+ ROC/PR sweep)
``IRSTDVisualizationHook``     HOOKS         :class:`IRSTDVisualizationHook`: predicted masks + overlays
=============================  ============  ===================================================================

Warm-up: :class:`IRSTDSegmentor` reads the current epoch from MMEngine's ``MessageHub`` (``'epoch'``, set by
the runner's ``RuntimeInfoHook`` before every training epoch, also after ``--resume``); epochs
``0 … warmup_epochs−1`` use the plain soft-IoU loss.

Inference outputs: with ``default_hooks.visualization = dict(type='IRSTDVisualizationHook')`` in the config,
MMDetection's ``tools/test.py --show-dir DIR`` convention (``draw=True``, ``test_out_dir=DIR``) writes, per test
image, ``DIR/<name>_mask.png`` (prediction, 0/255, native size) and ``DIR/<name>_overlay.png`` (grey image;
prediction only red, target only green, both yellow); a relative ``DIR`` lies under
``<work_dir>/<timestamp>/`` as in MMDetection. If the test metric has ``curve_bins > 0`` and no ``out_dir``,
its ROC/PR PNGs and ``curves.json`` go to the same folder.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from mmengine.evaluator import BaseMetric
from mmengine.hooks import Hook
from mmengine.logging import MessageHub, print_log
from mmengine.model import BaseModel
from mmengine.registry import DATASETS, FUNCTIONS, HOOKS, METRICS, MODELS
from PIL import Image

from ..data.seg_dataset import SIRSTSegDataset, pad_collate
from ..data.sirst import load_image
from ..losses import ScaleIoULoss
from ..metrics import IRSTDMetrics, plot_curves, save_curves
from ..unet import MSHUNet, deep_supervision_loss
from .registry import register_once

__all__ = [
    "IRSTDSegmentor",
    "IRSTDMetric",
    "IRSTDVisualizationHook",
    "SIRSTSegDataset",
    "seg_pad_collate",
    "overlay_image",
]

register_once(DATASETS)(SIRSTSegDataset)  # defined in gaussconv_plugin.data (no MMEngine there): registered here


@register_once(FUNCTIONS)
def seg_pad_collate(data_batch: Sequence[dict], size_divisor: int = 32, pad_value: float = 0.0) -> dict:
    """:func:`~gaussconv_plugin.data.seg_dataset.pad_collate` under its registry name."""
    return pad_collate(data_batch, size_divisor=size_divisor, pad_value=pad_value)


@register_once(MODELS)
class IRSTDSegmentor(BaseModel):
    """MMEngine model: :class:`~gaussconv_plugin.unet.MSHUNet` + deep-supervised :class:`ScaleIoULoss`.

    Args:
        net: keyword arguments of :class:`~gaussconv_plugin.unet.MSHUNet` (``in_channels``, ``gauss_conv``, …).
        loss: keyword arguments of :class:`~gaussconv_plugin.losses.ScaleIoULoss` (``mode='var'`` = MSHNet's SLS,
            ``mode='diff'`` = the proposed loss; ``with_location`` …).
        warmup_epochs: epochs (0-based ``epoch < warmup_epochs``) trained with plain soft-IoU (MSHNet: 6, its
            ``--warm-epoch 5`` with ``epoch > warm_epoch``; the paper configs set 6).
        data_preprocessor: MMEngine data preprocessor config (default ``BaseDataPreprocessor``: moves to device).
        predict_size_divisor: in ``'predict'`` each image is zero-padded (bottom/right) to a multiple of it alone
            (32: what ``seg_pad_collate(size_divisor=32)`` gives a batch of one, the configs' test setting).

    ``forward(inputs, data_samples, mode)``, ``inputs`` ``(N, C, H, W)`` float, ``data_samples`` a list of dicts
    from :class:`SIRSTSegDataset` / ``seg_pad_collate`` (``gt_mask`` ``(H, W)``, ``img_shape`` …):

    - ``'loss'``: ``{'loss_seg': total, 'ds_fused', 'ds_side0'…'ds_side3': the five terms (detached),
      'warmup': 1./0.}`` (only ``loss_seg`` is optimised).
    - ``'predict'``: one dict per image: the data sample's fields plus ``pred_prob`` ``(h, w)`` float32 CPU
      tensor (sigmoid of the fused logits) with ``gt_mask`` ``(h, w)`` bool, both cropped to ``img_shape``. Each
      image runs alone at its ``img_shape`` padded to ``predict_size_divisor``, so a prediction does not depend on
      the test batch size or on which images share a batch.
    - ``'tensor'``: the network's raw output (``(fused, sides)`` in train mode, fused logits in eval).
    """

    def __init__(self, net: dict | None = None, loss: dict | None = None, warmup_epochs: int = 5,
                 data_preprocessor: dict | None = None, init_cfg: dict | None = None, predict_size_divisor: int = 32):
        super().__init__(data_preprocessor=data_preprocessor, init_cfg=init_cfg)
        self.predict_size_divisor = max(int(predict_size_divisor), 1)
        self.net = MSHUNet(**(net or {}))
        self.loss_fn = ScaleIoULoss(**(loss or {}))
        if int(warmup_epochs) < 0:
            raise ValueError(f"warmup_epochs must be >= 0 (got {warmup_epochs}); MSHNet's schedule is 6")
        self.warmup_epochs = int(warmup_epochs)
        self.epoch: int | None = None  # set it to override the MessageHub's epoch (e.g. outside a Runner)

    def current_epoch(self) -> int:
        """``self.epoch`` if set, else the runner's epoch from the current ``MessageHub`` (0 if none)."""
        if self.epoch is not None:
            return int(self.epoch)
        return int(MessageHub.get_current_instance().get_info("epoch", 0) or 0)

    def in_warmup(self) -> bool:
        return self.current_epoch() < self.warmup_epochs

    @staticmethod
    def _targets(data_samples: Sequence[dict], like: torch.Tensor) -> torch.Tensor:
        if not data_samples or "gt_mask" not in data_samples[0]:
            raise ValueError("IRSTDSegmentor loss mode needs data_samples with 'gt_mask'; "
                             "build the dataloader from SIRSTSegDataset with collate_fn=dict(type='seg_pad_collate')")
        t = torch.stack([torch.as_tensor(ds["gt_mask"]) for ds in data_samples]).to(like.device)
        return t.unsqueeze(1).float()

    def forward(self, inputs: torch.Tensor, data_samples: Sequence[dict] | None = None, mode: str = "tensor"):
        if mode == "loss":
            fused, sides = self.net(inputs, return_sides=True)
            target = self._targets(data_samples, fused)
            warm = self.in_warmup()
            total, parts = deep_supervision_loss(fused, sides, target, self.loss_fn, warmup=warm)
            out = {"loss_seg": total}
            out.update({f"ds_{k}": v.detach() for k, v in parts.items()})
            out["warmup"] = torch.tensor(float(warm), device=total.device)
            return out
        if mode == "predict":
            results = []
            for k in range(inputs.shape[0]):  # one image at a time, padded alone to predict_size_divisor: the
                # channel attention pools over the whole map, so padding an image to a larger batch-mate's size
                # would change its prediction everywhere, not only at the edge
                ds = dict(data_samples[k]) if data_samples is not None else {}
                h, w = tuple(ds.get("img_shape", inputs.shape[-2:]))[-2:]
                d = self.predict_size_divisor
                x = F.pad(inputs[k:k + 1, :, :h, :w], (0, -(-w // d) * d - w, 0, -(-h // d) * d - h))
                logits = self.net(x, return_sides=False)
                ds["pred_prob"] = torch.sigmoid(logits.float())[0, 0, :h, :w].cpu()
                if "gt_mask" in ds:
                    ds["gt_mask"] = torch.as_tensor(ds["gt_mask"])[:h, :w].bool().cpu()
                results.append(ds)
            return results
        if mode == "tensor":
            return self.net(inputs)
        raise ValueError(f"IRSTDSegmentor: unknown mode {mode!r}; use 'loss', 'predict' or 'tensor'")


@register_once(METRICS)
class IRSTDMetric(BaseMetric):
    """MMEngine metric over :class:`~gaussconv_plugin.metrics.IRSTDMetrics` (pyirstdmetrics): mIoU, nIoU, Pd, Fa.

    Args:
        threshold: ``prob > threshold`` is a target pixel (0.5).
        distance_threshold: centroid distance for a detected target (3 px).
        curve_bins: thresholds of the ROC/PR sweep (0: none). With ``out_dir`` set, ``curves.json``,
            ``roc.png`` and ``pr.png`` are written there.
        curve_spacing: ``'logit'`` (default: thresholds evenly spaced in logit space, informative for the
            near-binary outputs of soft-IoU-trained networks) or ``'linear'`` (``b / curve_bins``).
        out_dir: folder for the sweep outputs (``None``: the visualization hook's folder when it is enabled).

    Results (prefix ``irstd``): ``mIoU``, ``nIoU``, ``Pd``, ``Fa`` (fraction), ``Fa_e6`` (×10⁻⁶).
    """

    default_prefix = "irstd"

    def __init__(self, threshold: float = 0.5, distance_threshold: float = 3, curve_bins: int = 0,
                 curve_spacing: str = "logit", out_dir: str | None = None, collect_device: str = "cpu",
                 prefix: str | None = None, collect_dir: str | None = None):
        super().__init__(collect_device=collect_device, prefix=prefix, collect_dir=collect_dir)
        IRSTDMetrics(threshold, distance_threshold, curve_bins, curve_spacing)  # validate the arguments now
        self.threshold, self.distance_threshold, self.curve_bins = threshold, distance_threshold, curve_bins
        self.curve_spacing = curve_spacing
        self.out_dir = out_dir
        self.last_curves: dict | None = None

    def process(self, data_batch, data_samples: Sequence[dict]) -> None:
        for ds in data_samples:
            if "pred_prob" not in ds or "gt_mask" not in ds:
                raise KeyError("IRSTDMetric needs 'pred_prob' and 'gt_mask' in every output; "
                               "use IRSTDSegmentor (predict mode) with SIRSTSegDataset")
            self.results.append({
                "name": ds.get("name", ""),
                "prob": np.asarray(torch.as_tensor(ds["pred_prob"]).float().cpu(), np.float32),
                "mask": np.asarray(torch.as_tensor(ds["gt_mask"]).cpu()).astype(bool),
            })

    def compute_metrics(self, results: list) -> dict:
        acc = IRSTDMetrics(self.threshold, self.distance_threshold, self.curve_bins, self.curve_spacing)
        for r in results:
            acc.update(r["prob"], r["mask"])
        m = acc.get()
        if self.curve_bins:
            self.last_curves = m["curves"]
            if self.out_dir:
                save_curves(m["curves"], Path(self.out_dir) / "curves.json")
                paths = plot_curves(m["curves"], self.out_dir)
                print_log(f"IRSTDMetric: ROC/PR curves written to {', '.join(map(str, paths))}", logger="current")
        return {k: m[k] for k in ("mIoU", "nIoU", "Pd", "Fa", "Fa_e6")}


def overlay_image(gray: np.ndarray, pred: np.ndarray, gt: np.ndarray | None = None, alpha: float = 0.6) -> np.ndarray:
    """RGB overlay ``(H, W, 3)`` uint8 of a grey image ``(H, W)``: prediction-only pixels red, target-only
    green, both yellow, blended with weight ``alpha``."""
    g = np.asarray(gray, np.float32)
    rgb = np.stack([g, g, g], -1)
    pred = np.asarray(pred, bool)
    gt = np.zeros_like(pred) if gt is None else np.asarray(gt, bool)
    colors = {(True, False): (255, 0, 0), (False, True): (0, 255, 0), (True, True): (255, 255, 0)}
    for (p, t), c in colors.items():
        sel = (pred == p) & (gt == t)
        rgb[sel] = (1 - alpha) * rgb[sel] + alpha * np.asarray(c, np.float32)
    return np.clip(rgb + 0.5, 0, 255).astype(np.uint8)


@register_once(HOOKS)
class IRSTDVisualizationHook(Hook):
    """Write predicted masks and overlays of the test set (MMDetection ``--show-dir`` convention).

    Args:
        draw: enable (``tools/test.py --show-dir`` sets it to True).
        test_out_dir: output folder; relative → ``<work_dir>/<timestamp>/<test_out_dir>``; ``None`` with
            ``draw=True`` → ``<work_dir>/<timestamp>/vis``.
        threshold: binarisation of ``pred_prob`` (0.5).
        save_prob: also write ``<name>_prob.png`` (probability × 255).
        interval: write every ``interval``-th test batch (1: all).
        show, wait_time: accepted for MMDetection's CLI; there is no display, so they are ignored.
    """

    priority = "NORMAL"

    def __init__(self, draw: bool = False, test_out_dir: str | None = None, threshold: float = 0.5,
                 save_prob: bool = False, interval: int = 1, show: bool = False, wait_time: float = 0.0):
        self.draw, self.test_out_dir, self.threshold = draw, test_out_dir, float(threshold)
        self.save_prob, self.interval = save_prob, max(int(interval), 1)
        self.out_dir: Path | None = None

    def before_test(self, runner) -> None:
        if not self.draw:
            return
        self.out_dir = Path(os.path.join(runner.work_dir, runner.timestamp, self.test_out_dir or "vis"))
        self.out_dir.mkdir(parents=True, exist_ok=True)
        for metric in getattr(runner.test_evaluator, "metrics", []):
            if isinstance(metric, IRSTDMetric) and metric.curve_bins and not metric.out_dir:
                metric.out_dir = str(self.out_dir)

    def after_test_iter(self, runner, batch_idx: int, data_batch=None, outputs=None) -> None:
        if not self.draw or self.out_dir is None or not outputs or batch_idx % self.interval:
            return
        for ds in outputs:
            prob = np.asarray(torch.as_tensor(ds["pred_prob"]).float().cpu())
            pred = prob > self.threshold
            name = ds.get("name") or f"img{batch_idx:05d}"
            Image.fromarray(pred.astype(np.uint8) * 255).save(self.out_dir / f"{name}_mask.png")
            if self.save_prob:
                Image.fromarray(np.clip(prob * 255 + 0.5, 0, 255).astype(np.uint8)).save(
                    self.out_dir / f"{name}_prob.png")
            if "root" in ds and "name" in ds:
                gray = load_image(ds["root"], ds["name"])
                if gray.shape != pred.shape:  # the dataset's test_size: the image as the network saw it
                    gray = np.asarray(Image.fromarray(gray).resize(pred.shape[::-1], Image.BILINEAR))
            else:
                gray = np.zeros(pred.shape, np.uint8)
            gt = np.asarray(torch.as_tensor(ds["gt_mask"]).cpu()).astype(bool) if "gt_mask" in ds else None
            Image.fromarray(overlay_image(gray, pred, gt)).save(self.out_dir / f"{name}_overlay.png")

    def after_test(self, runner) -> None:
        if self.draw and self.out_dir is not None:
            print_log(f"IRSTDVisualizationHook: masks and overlays written to {self.out_dir}", logger="current")
