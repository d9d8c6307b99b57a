"""tools/evidence/anchor_scale.py: P/T of the boxes at the assigner's foreground anchors."""
from __future__ import annotations

import math
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from tools.evidence.anchor_scale import foreground_boxes, ratio_stats, top_scored_ratio  # noqa: E402


def test_ratio_stats_by_hand():
    t = torch.tensor([[0.0, 0, 2, 2]] * 3)  # area 4
    p = torch.tensor([[0.0, 0, 4, 2], [0, 0, 1, 2], [0, 0, 2, 2]])  # areas 8, 2, 4: P/T 2, 0.5, 1
    s = ratio_stats(p, t, torch.tensor([1.0, 1.0, 2.0]))
    assert s["n"] == 3 and s["median"] == pytest.approx(1.0) and s["frac_smaller"] == pytest.approx(1 / 3)
    assert s["wgeo"] == pytest.approx(1.0)  # (log 2 + log 0.5 + 2·log 1) / 4 = 0
    assert s["median_iou"] == pytest.approx(0.5)  # IoUs 0.5, 0.5, 1
    s = ratio_stats(p[:2], t[:2], torch.tensor([3.0, 1.0]))
    assert s["wgeo"] == pytest.approx(math.exp(0.75 * math.log(2) + 0.25 * math.log(0.5)))
    assert math.isnan(ratio_stats(p[:0], t[:0], torch.zeros(0))["median"])


def test_foreground_boxes_come_from_the_models_own_assigner():
    from ultralytics.cfg import get_cfg
    from ultralytics.nn.tasks import DetectionModel
    from ultralytics.utils import DEFAULT_CFG

    import gaussconv_plugin
    from gaussconv_plugin.yolo import packaged_cfg

    torch.manual_seed(0)
    model = DetectionModel(str(packaged_cfg("yolov8-p2-gauss.yaml")), ch=3, nc=1, verbose=False)
    model.args = get_cfg(DEFAULT_CFG)
    img = torch.zeros(2, 3, 64, 64, dtype=torch.uint8)
    batch = {"img": img, "batch_idx": torch.tensor([0.0, 1.0]), "cls": torch.zeros(2, 1),
             "bboxes": torch.tensor([[0.5, 0.5, 0.2, 0.2], [0.25, 0.25, 0.1, 0.15]])}  # normalised xywh
    pred, target, weight = foreground_boxes(model, [batch])
    assert len(pred) == len(target) == len(weight) > 0 and pred.shape[-1] == 4
    assert torch.isfinite(pred).all() and (weight >= 0).all()
    # the packaged gauss YAML was built through the adapter: its Gaussian-shaped layers are in the model
    assert sum(isinstance(m, gaussconv_plugin.GaussianShapedConv) for m in model.modules()) == 2
    # every assigned target is one of the two boxes (in grid units of its anchor's stride)
    wh = target[:, 2:] - target[:, :2]
    ratios = wh[:, 1] / wh[:, 0]
    assert all(r.item() == pytest.approx(1.0, abs=1e-4) or r.item() == pytest.approx(1.5, abs=1e-4) for r in ratios)


def test_top_scored_ratio_takes_each_targets_best_scored_anchor():
    t1, t2 = [0.0, 0, 2, 2], [5.0, 5, 9, 9]  # areas 4 and 16
    target = torch.tensor([t1, t1, t2, t2, t1])
    pred = torch.tensor([[0.0, 0, 4, 2], [0, 0, 1, 2], [5, 5, 9, 13], [5, 5, 7, 9], [0, 0, 2, 2]])  # P/T 2 .5 2 .5 1
    score = torch.tensor([0.9, 0.2, 0.1, 0.8, 0.95])
    image = torch.tensor([0, 0, 0, 0, 1])  # the last anchor's target has t1's box but lies in another image
    r = top_scored_ratio(pred, target, score, image)
    assert r["targets"] == 3 and r["top_median"] == pytest.approx(1.0)  # best P/T per target: 2, 0.5, 1
    r = top_scored_ratio(pred[:4], target[:4], torch.tensor([0.1, 0.2, 0.9, 0.1]), image[:4])
    assert r["targets"] == 2 and r["top_median"] == pytest.approx(0.5)  # torch's median of (0.5, 2): the lower
    assert math.isnan(top_scored_ratio(pred[:0], target[:0], score[:0], image[:0])["top_median"])
