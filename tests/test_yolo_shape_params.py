"""σ/θ of the Gaussian-shaped convs in a real Ultralytics training run: out of weight decay, and logged per epoch."""
from __future__ import annotations

import csv
import os
import tempfile

import pytest

for _k, _v in {"YOLO_OFFLINE": "1", "YOLO_AUTOINSTALL": "false", "MPLBACKEND": "Agg", "HF_HUB_OFFLINE": "1"}.items():
    os.environ.setdefault(_k, _v)
os.environ.setdefault("YOLO_CONFIG_DIR", tempfile.mkdtemp(prefix="gaussconv_yolo_cfg_"))

from gaussconv_plugin.yolo.offline import ensure_fonts  # noqa: E402

ensure_fonts(os.environ["YOLO_CONFIG_DIR"])
pytest.importorskip("ultralytics", reason="ultralytics not installed: make setup")

from gaussconv_plugin import GaussianShapedConv2d  # noqa: E402
from gaussconv_plugin.data.sirst import sirst_root  # noqa: E402
from gaussconv_plugin.data.yolo_format import prepare_yolo  # noqa: E402


@pytest.mark.parametrize("lr_mult", [None, 10])
def test_train_puts_sigma_theta_in_a_no_decay_group_and_logs_them(tmp_path, lr_mult):
    import yaml
    from ultralytics import YOLO

    from gaussconv_plugin.yolo.adapter import SHAPE_LOG

    data = prepare_yolo(sirst_root(), tmp_path / "data", limit=8)
    seen = {}

    def grab(trainer):  # after build_optimizer, the scheduler and resume: the groups training really uses
        model = trainer.model
        shape = {id(p): n for n, p in model.named_parameters() if n.endswith((".sigma_raw", ".theta"))}
        weights = {id(m.weight) for m in model.modules() if isinstance(m, GaussianShapedConv2d)}
        seen["n_shape"], seen["n_groups"] = len(shape), len(trainer.optimizer.param_groups)
        seen["shape_lr"] = {g["initial_lr"] for g in trainer.optimizer.param_groups for p in g["params"] if id(p) in shape}
        seen["weight_lr"] = {g["initial_lr"] for g in trainer.optimizer.param_groups for p in g["params"]
                             if id(p) in weights}
        seen["shape_decay"] = [g["weight_decay"] for g in trainer.optimizer.param_groups for p in g["params"]
                               if id(p) in shape]
        seen["weight_decay"] = [g["weight_decay"] for g in trainer.optimizer.param_groups for p in g["params"]
                                if id(p) in weights]

    cfg = "yolov8n-p2-gauss.yaml"
    if lr_mult:
        from gaussconv_plugin.yolo import cfgs_dir

        d = yaml.safe_load((cfgs_dir() / "yolov8-p2-gauss.yaml").read_text())
        d["shape_lr_mult"] = lr_mult
        cfg = tmp_path / "yolov8n-p2-gauss-lr.yaml"
        cfg.write_text(yaml.safe_dump(d))
    model = YOLO(str(cfg))
    model.add_callback("on_pretrain_routine_end", grab)
    model.train(data=str(data), epochs=2, imgsz=64, batch=4, device="cpu", workers=0, project=str(tmp_path / "runs"),
                name="t", exist_ok=True, plots=False, val=False, seed=0, verbose=False)
    assert seen["n_shape"] == 4  # σ_raw and θ of layers 0 and 1
    if lr_mult is None:  # no extra param group: the scheduler and resume see Ultralytics' own groups
        assert seen["n_groups"] == 3 and seen["shape_lr"] == seen["weight_lr"]
    else:  # a group of their own, scheduled like the others from lr0 × mult
        assert seen["n_groups"] == 4 and len(seen["shape_lr"]) == len(seen["weight_lr"]) == 1
        assert seen["shape_lr"].pop() == pytest.approx(lr_mult * seen["weight_lr"].pop())
    assert len(seen["shape_decay"]) == 4 and all(wd == 0 for wd in seen["shape_decay"])
    assert len(seen["weight_decay"]) == 2 and all(wd > 0 for wd in seen["weight_decay"]), "conv weights keep decay"

    rows = list(csv.DictReader((tmp_path / "runs" / "t" / SHAPE_LOG).open()))
    assert [(r["epoch"], r["layer"]) for r in rows] == [(e, f"model.{i}.conv") for e in ("1", "2") for i in (0, 1)]
    for r in rows:
        assert float(r["sigma_min"]) <= float(r["sigma_mean"]) <= float(r["sigma_max"])
        assert float(r["theta_min_deg"]) <= float(r["theta_mean_deg"]) <= float(r["theta_max_deg"])
        assert r["k"] == "3" and r["stride"] == "2" and float(r["mask_floor"]) > 0


def test_fixed_sigma_theta_stay_fixed_through_ultralytics_training(tmp_path):
    """``learn_sigma: false`` / ``learn_theta: false`` in a YAML row hold through ``yolo train``, whose freeze loop
    sets ``requires_grad`` back on every parameter outside ``freeze=``; the other layer's σ/θ still learn."""
    import torch
    import yaml
    from ultralytics import YOLO

    from gaussconv_plugin.yolo import cfgs_dir

    data = prepare_yolo(sirst_root(), tmp_path / "data", limit=8)
    d = yaml.safe_load((cfgs_dir() / "yolov8-p2-gauss.yaml").read_text())
    row = d["backbone"][0]
    assert row[2] == "GaussianShapedConv", row
    row[3] = [*row[3][:3], {"learn_sigma": False, "learn_theta": False}]
    cfg = tmp_path / "yolov8n-p2-gauss-fixed.yaml"
    cfg.write_text(yaml.safe_dump(d))
    model = YOLO(str(cfg))
    start = {n: p.detach().clone() for n, p in model.model.named_parameters() if n.endswith((".sigma_raw", ".theta"))}
    assert set(start) == {f"model.{i}.conv.{p}" for i in (0, 1) for p in ("sigma_raw", "theta")}
    end = {}

    def grab(trainer):
        end.update({n: p.detach().clone() for n, p in trainer.model.named_parameters() if n in start})

    model.add_callback("on_train_end", grab)
    model.train(data=str(data), epochs=1, imgsz=64, batch=4, device="cpu", workers=0, project=str(tmp_path / "runs"),
                name="t", exist_ok=True, plots=False, val=False, seed=0, verbose=False)
    for name in ("model.0.conv.sigma_raw", "model.0.conv.theta"):
        assert torch.equal(end[name], start[name]), f"{name} moved although its YAML row fixed it"
    assert not torch.equal(end["model.1.conv.sigma_raw"], start["model.1.conv.sigma_raw"]), "layer 1's σ did not learn"
