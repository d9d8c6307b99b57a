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
    shape_keys = {k for k in sd_g if k.endswith((".sigma_raw", ".theta", "._extra_state"))}
    assert len(shape_keys) == 6 and set(sd_g) - set(sd_s) == shape_keys  # only σ/θ and the convs' settings are new
    assert (len(sd_s), len(sd_g)) == (437, 443)  # the README's count of what transfers
    for k, v in sd_s.items():
        assert torch.equal(sd_g[k], v), f"{k} did not arrive from the checkpoint"
    for i in (0, 1):
        layer = gauss.model.model[i]
        assert isinstance(layer, GaussianShapedConv)
        assert torch.equal(layer.conv.weight, stock.model[i].conv.weight)
        assert torch.equal(layer.bn.running_var, stock.model[i].bn.running_var)


def test_swap_convs_on_a_loaded_yolo_model_survives_yolo_train(tmp_path):
    """``swap_convs`` on a loaded Ultralytics model, then ``train()``: Ultralytics rebuilds the model from
    ``model.yaml`` and transfers the weights by name, so the swap is written into the YAML (the Conv rows of layers
    0–1 become GaussianShapedConv rows with the swap's options) and σ/θ transfer like every weight; a swapped conv
    no row can name (inside a C2f) is named in a warning."""
    from ultralytics import YOLO
    from ultralytics.nn.tasks import DetectionModel

    from gaussconv_plugin import GaussianShapedConv2d, swap_convs
    from gaussconv_plugin.data.sirst import sirst_root
    from gaussconv_plugin.data.yolo_format import prepare_yolo

    torch.manual_seed(0)
    ckpt = tmp_path / "their.pt"
    torch.save({"model": DetectionModel("yolov8n-p2-base.yaml", nc=1, verbose=False), "train_args": {}}, ckpt)
    y = YOLO(str(ckpt))
    with pytest.warns(UserWarning, match=r"swap_convs: yolo train rebuilds this model from model.yaml, whose rows "
                                         r"cannot say that model\.2\.m\.0\.cv1\.conv are Gaussian-shaped"):
        swap_convs(y.model, include=["model.0.conv", "model.1.conv", "model.2.m.0.cv1.conv"], sigma_init=1.0)
    rows = y.model.yaml["backbone"]
    assert [r[2] for r in rows[:3]] == ["GaussianShapedConv", "GaussianShapedConv", "C2f"]
    assert rows[0][3][-1] == {"sigma_init": 1.0}
    with torch.no_grad():
        y.model.model[0].conv.sigma_raw.fill_(0.25)  # a value the YAML's sigma_init does not give: it must transfer
    seen = {}

    def grab(trainer):
        seen["convs"] = [n for n, m in trainer.model.named_modules() if isinstance(m, GaussianShapedConv2d)]
        seen["sigma_raw"] = trainer.model.model[0].conv.sigma_raw.detach().clone()

    y.add_callback("on_pretrain_routine_end", grab)
    data = prepare_yolo(sirst_root(), tmp_path / "data", limit=8)
    y.train(data=str(data), epochs=1, imgsz=64, batch=4, device="cpu", workers=0, project=str(tmp_path / "runs"),
            name="t", exist_ok=True, plots=False, val=False, seed=0, verbose=False)
    assert seen["convs"] == ["model.0.conv", "model.1.conv"]
    assert torch.allclose(seen["sigma_raw"], torch.full_like(seen["sigma_raw"], 0.25))
