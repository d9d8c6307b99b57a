"""tools.evidence.scale_probe: where the YOLO scale term acts, and the stem kernels' shape figures."""
from __future__ import annotations

import types

import pytest
import torch

pytest.importorskip("ultralytics", reason="ultralytics not installed: make setup")


def test_stem_kernel_shares_of_a_delta_and_a_flat_kernel():
    from tools.evidence.scale_probe import stem_kernels

    delta, flat = torch.nn.Conv2d(1, 1, 3, bias=False), torch.nn.Conv2d(1, 1, 3, bias=False)
    with torch.no_grad():
        delta.weight.zero_()
        delta.weight[..., 1, 1] = 1.0
        flat.weight.fill_(1.0)
    model = types.SimpleNamespace(model=[types.SimpleNamespace(conv=delta), types.SimpleNamespace(conv=flat)])
    got = stem_kernels(model)
    assert got["0"]["centre_share"] == pytest.approx(1.0) and got["1"]["centre_share"] == pytest.approx(1 / 9)
    assert got["0"]["aliased_share"] == pytest.approx(0.75, abs=0.02)  # a delta is white: 3/4 outside the band
    assert got["1"]["aliased_share"] < got["0"]["aliased_share"]  # a box filter is low-pass


def test_probe_on_an_untrained_p2_model(tmp_path):
    """An untrained model on real SIRST train images: the figures exist and add up (shares of the weight over the
    heads sum to 1), every head the model has is named, the stem figures are those of its layers 0–1."""
    from ultralytics import YOLO

    from tools.evidence.scale_probe import probe

    w = tmp_path / "untrained.pt"
    YOLO("yolov8n-p2-gauss.yaml").save(str(w))
    rec = probe(w, split="train", imgsz=160, batch=4, batches=2)
    assert rec["fg_anchors"] > 0 and rec["targets"] > 0
    assert set(rec["by_stride"]) <= {"4", "8", "16", "32"} and "4" in rec["by_stride"]
    assert sum(h["share_w"] for h in rec["by_stride"].values()) == pytest.approx(1.0)
    assert rec["scale_over_box"] > 0 and 0 <= rec["scale_share_not_best"] <= 1
    assert set(rec["stem"]) == {"0", "1"} and all(0 < v["centre_share"] < 1 for v in rec["stem"].values())
