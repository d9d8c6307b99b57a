"""Fine-tuning a detector the user already trained with the Gaussian conv: every tensor of the stock checkpoint
arrives in the gauss twin (the conv weights of layers 0–1 in the GaussianShapedConv layers); only σ/θ start fresh."""
from __future__ import annotations

import os
import tempfile

import pytest
import torch

for _k, _v in {"YOLO_OFFLINE": "1", "YOLO_AUTOINSTALL": "false", "MPLBACKEND": "Agg", "HF_HUB_OFFLINE": "1"}.items():
    os.environ.setdefault(_k, _v)
os.environ.setdefault("YOLO_CONFIG_DIR", tempfile.mkdtemp(prefix="gaussconv_yolo_cfg_"))
pytest.importorskip("ultralytics", reason="ultralytics not installed: make setup")

from gaussconv_plugin import GaussianShapedConv  # noqa: E402


def test_stock_checkpoint_loads_into_the_gauss_twin(tmp_path):
    from ultralytics import YOLO
    from ultralytics.nn.tasks import DetectionModel

    torch.manual_seed(1)
    stock = DetectionModel("yolov8n-p2-base.yaml", nc=1, verbose=False)
    with torch.no_grad():  # make every tensor distinctive, so a transfer can't pass by chance
        for p in stock.parameters():
            p.add_(torch.randn_like(p))
    ckpt = tmp_path / "their.pt"
    torch.save({"model": stock, "train_args": {}}, ckpt)

    gauss = YOLO("yolov8n-p2-gauss.yaml")
    gauss.load(str(ckpt))  # what `yolo train model=yolov8n-p2-gauss.yaml pretrained=their.pt` does
    sd_g, sd_s = gauss.model.state_dict(), stock.state_dict()
    shape_keys = {k for k in sd_g if k.endswith((".sigma_raw", ".theta"))}
    assert len(shape_keys) == 4 and set(sd_g) - set(sd_s) == shape_keys  # only σ/θ are new
    assert (len(sd_s), len(sd_g)) == (437, 441)  # the README's count of what transfers
    for k, v in sd_s.items():
        assert torch.equal(sd_g[k], v), f"{k} did not arrive from the checkpoint"
    for i in (0, 1):
        layer = gauss.model.model[i]
        assert isinstance(layer, GaussianShapedConv)
        assert torch.equal(layer.conv.weight, stock.model[i].conv.weight)
        assert torch.equal(layer.bn.running_var, stock.model[i].bn.running_var)
