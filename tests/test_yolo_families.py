"""The YOLO11 and YOLO26 twins of ``yolo_cfgs/`` (P3–P5 and P2–P5 heads): files, building, the criterion each
model really trains with, fusing, ONNX export, fine-tuning from a stock checkpoint, and one ``yolo train`` of
``yolo26n-p2-gauss`` through the stock CLI. The YOLOv8 twins are covered by test_yolo_adapter.py /
test_yolo_cli.py / test_yolo_finetune.py; every model here is scale n at 64² (CPU, seconds per test)."""
from __future__ import annotations

import csv
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

for _k, _v in {"YOLO_OFFLINE": "1", "YOLO_AUTOINSTALL": "false", "MPLBACKEND": "Agg", "HF_HUB_OFFLINE": "1"}.items():
    os.environ.setdefault(_k, _v)
os.environ.setdefault("YOLO_CONFIG_DIR", tempfile.mkdtemp(prefix="gaussconv_yolo_cfg_"))

from gaussconv_plugin.yolo.offline import ensure_fonts, offline_env  # noqa: E402

ensure_fonts(os.environ["YOLO_CONFIG_DIR"])

import torch  # noqa: E402

pytest.importorskip("ultralytics", reason="ultralytics not installed: make setup")
import yaml  # noqa: E402
from ultralytics import YOLO  # noqa: E402
from ultralytics.cfg import get_cfg  # noqa: E402
from ultralytics.nn import tasks  # noqa: E402
from ultralytics.nn.modules import Conv  # noqa: E402
from ultralytics.utils import loss as ul_loss  # noqa: E402

from gaussconv_plugin import GaussianShapedConv, GaussianShapedConv2d  # noqa: E402
from gaussconv_plugin.data.sirst import sirst_root  # noqa: E402
from gaussconv_plugin.data.yolo_format import prepare_yolo  # noqa: E402
from gaussconv_plugin.yolo import cfgs_dir, list_cfgs  # noqa: E402
from gaussconv_plugin.yolo.adapter import ScaleBboxLoss  # noqa: E402  (public name of the adapter façade)

pytestmark = pytest.mark.usefixtures("one_thread")

STEMS = ("yolo11", "yolo11-p2", "yolo26", "yolo26-p2")
#: Ultralytics' own config of each stem at scale n (yolo11-p2 has none: its P2 head is written as yolo26-p2's)
STOCK = {"yolo11": "yolo11n.yaml", "yolo11-p2": None, "yolo26": "yolo26n.yaml", "yolo26-p2": "yolo26n-p2.yaml"}
IMGSZ = 64
SHAPE_KEYS = {"model.0.conv.sigma_raw", "model.0.conv.theta", "model.1.conv.sigma_raw", "model.1.conv.theta"}
#: the state-dict keys only the twin has: σ/θ and each Gaussian conv's recorded settings (m₀, τ, σ_min)
TWIN_KEYS = SHAPE_KEYS | {"model.0.conv._extra_state", "model.1.conv._extra_state"}


def _name(stem: str, kind: str, scale: str = "n") -> str:
    """``('yolo26-p2', 'gauss', 'n')`` → ``'yolo26n-p2-gauss.yaml'`` (the scale letter follows the version)."""
    return f"{stem[:6]}{scale}{stem[6:]}-{kind}.yaml"


def _build(cfg, seed: int = 0) -> tasks.DetectionModel:
    torch.manual_seed(seed)
    return tasks.DetectionModel(cfg, nc=1, verbose=False)


def _n_params(m) -> int:
    return sum(p.numel() for p in m.parameters())


# ------------------------------------------------------------------------------------------------ files
def test_the_eight_twins_are_packaged_and_resolve_by_bare_name_with_a_scale(tmp_path, monkeypatch):
    names = {f"{s}-{k}.yaml" for s in STEMS for k in ("gauss", "base")}
    assert names <= set(list_cfgs())
    monkeypatch.chdir(tmp_path)  # nothing of the checkout in cwd
    for stem in STEMS:
        g, b = tasks.yaml_model_load(_name(stem, "gauss", "s")), tasks.yaml_model_load(_name(stem, "base", "x"))
        assert (g["scale"], g["scale_loss"], b["scale"], b["scale_loss"]) == ("s", "none", "x", "none")
        assert Path(g["yaml_file"]).name == _name(stem, "gauss", "s")
        e2e = stem.startswith("yolo26")
        assert (g.get("end2end", False), g.get("reg_max", 16)) == ((True, 1) if e2e else (False, 16))
        assert len(g["head"]) == (19 if stem.endswith("-p2") else 13)  # P2 head: 6 rows more


@pytest.mark.parametrize("stem", STEMS)
def test_twin_files_differ_only_in_the_conv_and_follow_ultralytics(stem):
    g = yaml.safe_load((cfgs_dir() / f"{stem}-gauss.yaml").read_text())
    b = yaml.safe_load((cfgs_dir() / f"{stem}-base.yaml").read_text())
    assert (g.pop("scale_loss"), b.pop("scale_loss")) == ("none", "none")  # stock box loss in both since issue 33
    assert g["nc"] == b["nc"] == 1
    rg, rb = g.pop("backbone"), b.pop("backbone")
    assert g == b
    assert [r[2] for r in rg[:2]] == ["GaussianShapedConv"] * 2 and [r[2] for r in rb[:2]] == ["Conv"] * 2
    assert [r[:2] + r[3:] for r in rg] == [r[:2] + r[3:] for r in rb] and rg[2:] == rb[2:]
    # the base twin is Ultralytics' config with nc: 1 (yolo11-p2: yolo11's rows + a P2 branch laid out as yolo26-p2's)
    ref = tasks.yaml_model_load(STOCK[stem] or "yolo11n.yaml")
    for k in ("scales", "end2end", "reg_max"):
        assert b.get(k) == ref.get(k), k
    assert rb == ref["backbone"]
    if STOCK[stem]:
        assert b["head"] == ref["head"]
    else:
        p2 = tasks.yaml_model_load("yolo26n-p2.yaml")["head"]
        assert b["head"][:6] == ref["head"][:6] and len(b["head"]) == len(p2)
        assert [(r[0], r[2]) for r in b["head"]] == [(r[0], r[2]) for r in p2]  # same wiring and modules
        assert b["head"][8] == [-1, 2, "C3k2", [128, False]]  # the P2 block, in YOLO11's style (no C3k)
        assert b["head"][-2] == ref["head"][-2]  # P5 block unchanged


# ------------------------------------------------------------------------------------------------ build
@pytest.mark.parametrize("stem", STEMS)
def test_twins_build_gaussian_layers_0_1_on_the_stock_architecture(stem):
    g, b = _build(_name(stem, "gauss")), _build(_name(stem, "base"))
    assert [type(g.model[i]) for i in (0, 1)] == [GaussianShapedConv] * 2
    assert [type(b.model[i]) for i in (0, 1)] == [Conv] * 2
    assert sum(isinstance(m, GaussianShapedConv) for m in g.modules()) == 2
    assert not any(isinstance(m, GaussianShapedConv2d) for m in b.modules())
    # σ and θ per output channel of layers 0 (16 ch at scale n) and 1 (32 ch): nothing else differs
    c0, c1 = g.model[0].conv.out_channels, g.model[1].conv.out_channels
    assert (c0, c1) == (16, 32)
    assert _n_params(g) == _n_params(b) + 2 * (c0 + c1)
    sg, sb = g.state_dict(), b.state_dict()
    assert set(sg) - set(sb) == TWIN_KEYS and set(sb) <= set(sg)
    for k, v in sb.items():  # same seed → same initial weights everywhere (the swap does not consume the RNG)
        assert torch.equal(sg[k], v), k
    if STOCK[stem]:
        s = _build(STOCK[stem])
        assert [type(m) for m in b.model] == [type(m) for m in s.model]
        assert _n_params(b) == _n_params(s)
    assert len(g.model[-1].stride) == (4 if stem.endswith("-p2") else 3)
    assert g.model[-1].stride[0] == (4 if stem.endswith("-p2") else 8)


# ------------------------------------------------------------------------------------------------ criterion
def _batch(n_img: int = 2, size: int = IMGSZ, seed: int = 0) -> dict:
    """``n_img`` random images with 3 targets each of 12–24 px (normalised cx, cy, w, h)."""
    g = torch.Generator().manual_seed(seed)
    boxes, idx = [], []
    for b in range(n_img):
        for _ in range(3):
            wh = (torch.rand(2, generator=g) * 12 + 12) / size
            c = torch.rand(2, generator=g) * (1 - wh) + wh / 2
            boxes.append(torch.cat([c, wh]))
            idx.append(b)
    return {"img": torch.rand(n_img, 3, size, size, generator=g), "batch_idx": torch.tensor(idx, dtype=torch.float32),
            "cls": torch.zeros(len(boxes), 1), "bboxes": torch.stack(boxes)}


def _bbox_losses(crit) -> dict:
    """``{'': bbox_loss}`` of a v8DetectionLoss, ``{'one2many': …, 'one2one': …}`` of an E2ELoss."""
    if isinstance(crit, ul_loss.E2ELoss):
        return {"one2many": crit.one2many.bbox_loss, "one2one": crit.one2one.bbox_loss}
    return {"": crit.bbox_loss}


@pytest.mark.parametrize("stem", STEMS)
def test_the_criterion_the_model_trains_with_holds_the_scale_loss(stem):
    """Both twins train with the stock BboxLoss; ``scale_loss: diff`` in the gauss twin puts ScaleBboxLoss in every
    box-loss slot of the criterion (YOLO26: both branches) and model.loss calls it."""
    e2e = stem.startswith("yolo26")
    for kind in ("gauss", "base", "gauss+diff"):
        if kind == "gauss+diff":
            d = tasks.yaml_model_load(_name(stem, "gauss"))
            d["scale_loss"] = "diff"
            model = _build(d).train()
        else:
            model = _build(_name(stem, kind)).train()
        model.args = get_cfg()  # what the trainer sets before the first loss
        crit = model.init_criterion()
        assert type(crit) is (ul_loss.E2ELoss if e2e else ul_loss.v8DetectionLoss)
        boxes = _bbox_losses(crit)
        assert len(boxes) == (2 if e2e else 1)
        if kind != "gauss+diff":
            assert all(type(bl) is ul_loss.BboxLoss for bl in boxes.values())
            continue
        assert all(isinstance(bl, ScaleBboxLoss) and bl.mode == "diff" and bl.form == "add" for bl in boxes.values())
        assert all((bl.dfl_loss is None) == e2e for bl in boxes.values())  # YOLO26: reg_max 1, L1 term
        calls = {k: 0 for k in boxes}
        hooks = [bl.register_forward_hook(lambda *a, k=k: calls.__setitem__(k, calls[k] + 1))
                 for k, bl in boxes.items()]
        model.criterion = crit
        loss, items = model.loss(_batch())
        for h in hooks:
            h.remove()
        assert calls == {k: 1 for k in boxes}, "the scale loss was not called by model.loss (no foreground anchor?)"
        assert torch.isfinite(loss).all() and items["box_loss"].item() > 0
        loss.sum().backward()
        g = model.model[0].conv.sigma_raw.grad  # σ of layer 0 trains through this loss
        assert g is not None and float(g.abs().sum()) > 0


# ------------------------------------------------------------------------------------------------ fuse
def _decoded(model, x) -> torch.Tensor:
    """Decoded boxes + scores ``(B, 4 + nc, A)`` of every anchor, from the branch the model predicts with (YOLO26:
    before the end-to-end top-k, whose order is not stable under rounding)."""
    with torch.no_grad():
        _, preds = model(x)
    head = model.model[-1]
    if "one2one" in preds:  # unfused YOLO26: both branches; fuse() keeps only the one Detect.forward decodes
        preds = preds["one2one" if head.end2end else "one2many"]
    return head._inference(preds)


@pytest.mark.parametrize("stem", STEMS)
def test_fuse_leaves_plain_convs_with_the_unfused_output(stem, randomise_shapes):
    m = _build(_name(stem, "gauss")).eval()
    randomise_shapes(m)
    x = torch.rand(2, 3, IMGSZ, IMGSZ + 32, generator=torch.Generator().manual_seed(0))
    ref = _decoded(m, x)
    m.fuse(verbose=False)
    assert not any(isinstance(k, GaussianShapedConv2d) for k in m.modules())
    assert type(m.model[0].conv) is torch.nn.Conv2d and m.model[0].forward == m.model[0].forward_fuse
    assert not any(hasattr(k, "bn") for k in m.modules() if isinstance(k, (GaussianShapedConv, Conv)))
    got = _decoded(m, x)
    assert got.shape == ref.shape
    assert torch.allclose(got, ref, rtol=1e-4, atol=1e-4 * ref.abs().max().item())


# ------------------------------------------------------------------------------------------------ ONNX
@pytest.mark.parametrize("stem,nms_free", [("yolo11", False), ("yolo26-p2", True)])
def test_onnx_export_has_plain_conv_nodes_only(stem, nms_free, tmp_path, randomise_shapes):
    """YOLO26 is exported with ``nms=False``: its NMS-free one-to-one head with the top-k in the graph."""
    onnx = pytest.importorskip("onnx")
    m = YOLO(_name(stem, "gauss"))
    randomise_shapes(m.model)
    pt = tmp_path / _name(stem, "gauss").replace(".yaml", ".pt")
    m.save(pt)  # Ultralytics' checkpoint format; export writes next to it
    kw = {"nms": False} if nms_free else {}
    f = Path(YOLO(str(pt)).export(format="onnx", imgsz=IMGSZ, device="cpu", simplify=False, verbose=False, **kw))
    assert f.parent == tmp_path and f.suffix == ".onnx"
    g = onnx.load(str(f))
    onnx.checker.check_model(g)
    ops = {(n.domain, n.op_type) for n in g.graph.node}
    assert all(d in ("", "ai.onnx") for d, _ in ops) and all(onnx.defs.has(op) for _, op in ops), ops
    assert ("", "TopK") in ops if nms_free else ("", "TopK") not in ops
    ref_model = YOLO(str(pt)).model.float().eval()
    ref_model.end2end = nms_free  # as the exporter sets it, before fusing (fuse keeps only that branch)
    fused = ref_model.fuse(verbose=False)
    assert not any(isinstance(k, GaussianShapedConv2d) for k in fused.modules())
    n_conv2d = sum(isinstance(k, torch.nn.Conv2d) for k in fused.modules())
    assert sum(n.op_type == "Conv" for n in g.graph.node) == n_conv2d  # σ/θ left no op of their own
    first = next(n for n in g.graph.node if n.op_type == "Conv")
    w0 = next(t for t in g.graph.initializer if t.name == first.input[1])
    assert list(w0.dims) == [16, 3, 3, 3]  # layer 0 is one 3×3 conv with the Gaussian-shaped kernel folded in

    ort = pytest.importorskip("onnxruntime")
    x = torch.rand(1, 3, IMGSZ, IMGSZ, generator=torch.Generator().manual_seed(0))
    sess = ort.InferenceSession(str(f), providers=["CPUExecutionProvider"])
    got = torch.from_numpy(sess.run(None, {sess.get_inputs()[0].name: x.numpy()})[0])
    with torch.no_grad():
        ref = fused(x)[0]
    assert got.shape == ref.shape == ((1, 300, 6) if nms_free else (1, 5, 21 * IMGSZ**2 // 1024))
    if nms_free:  # [x1, y1, x2, y2, score, class] after top-k; ties may reorder rows, so each row of the reference
        # clear of the top-k's cut (where a near-tie may swap the last rows) must have its twin among the exported
        scale = ref[0].abs().amax(0).clamp_min(1.0)  # per column: pixels, score, class
        dist = ((got[0][:, None, :] - ref[0][None, :, :]).abs() / scale).amax(-1)  # (exported row, reference row)
        clear = ref[0, :, 4] > ref[0, :, 4].min() + 1e-3
        assert clear.sum() > 0 and dist.min(0).values[clear].max() < 1e-4, dist.min(0).values[clear].max()
        got, ref = got[0, :, 4].sort().values, ref[0, :, 4].sort().values  # and every score
    assert torch.allclose(got, ref, rtol=1e-4, atol=1e-4 * ref.abs().max().item())


# ------------------------------------------------------------------------------------------------ pretrained=
@pytest.mark.parametrize("version", ["11", "26"])
def test_pretrained_stock_checkpoint_transfers_every_tensor_but_sigma_theta(version, tmp_path, tiny_yolo_data):
    from ultralytics.models.yolo.detect import DetectionTrainer

    # a stock yolo<version>n checkpoint in Ultralytics' format, made here: Ultralytics' YAML with the dataset's nc
    d = tasks.yaml_model_load(f"yolo{version}n.yaml")
    assert d["backbone"][0][2] == "Conv" and "scale_loss" not in d
    d["nc"] = 1
    stock_yaml = tmp_path / f"yolo{version}n.yaml"
    stock_yaml.write_text(yaml.safe_dump({k: v for k, v in d.items() if k != "yaml_file"}, sort_keys=False))
    torch.manual_seed(1)
    stock = YOLO(str(stock_yaml))
    with torch.no_grad():  # make every tensor distinctive, so a transfer can't pass by chance
        for t in stock.model.state_dict().values():
            if t.is_floating_point():
                t.add_(torch.randn_like(t).abs())
    ckpt = tmp_path / f"yolo{version}n.pt"
    stock.save(ckpt)

    trainer = DetectionTrainer(overrides={
        "model": f"yolo{version}n-gauss.yaml", "pretrained": str(ckpt), "data": str(tiny_yolo_data),
        "device": "cpu", "project": str(tmp_path / "runs"), "name": "t", "plots": False})
    trainer.setup_model()  # what `yolo train model=yolo<v>n-gauss.yaml pretrained=<ckpt>` does
    model = trainer.model
    src, _ = tasks.load_checkpoint(str(ckpt))
    sd_s, sd_g = src.float().state_dict(), model.state_dict()
    assert set(sd_g) - set(sd_s) == TWIN_KEYS and set(sd_s) <= set(sd_g)
    for k, v in sd_s.items():
        assert torch.equal(sd_g[k], v), f"{k} did not arrive from the checkpoint"
    assert [type(model.model[i]) for i in (0, 1)] == [GaussianShapedConv] * 2 and model.yaml["scale_loss"] == "none"
    fresh = _build(f"yolo{version}n-gauss.yaml")
    for k in SHAPE_KEYS:  # σ/θ start from the Gaussian conv's own initialisation
        assert torch.equal(sd_g[k], fresh.state_dict()[k]), k


# ------------------------------------------------------------------------------------------------ CLI
def test_yolo_train_cli_yolo26n_p2_gauss(tmp_path):
    """One epoch of ``yolo train model=yolo26n-p2-gauss.yaml`` in a fresh process, cwd outside the repository, on
    8 + 8 SIRST images at 64² (as test_yolo_cli.py does for yolov8n-gauss)."""
    yolo = Path(sys.executable).with_name("yolo")
    if not yolo.is_file():
        pytest.fail(f"{yolo} missing: the ultralytics console script is not installed (make setup)")
    data = prepare_yolo(sirst_root(), tmp_path / "sirst_yolo", limit=8)
    env = offline_env(tmp_path / "cfg")
    env.pop("PYTHONPATH", None)  # nothing from the checkout: the package comes from site-packages
    env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    work = tmp_path / "work"
    work.mkdir()
    args = ["train", "model=yolo26n-p2-gauss.yaml", f"data={data}", "epochs=1", f"imgsz={IMGSZ}", "batch=4",
            "device=cpu", "workers=0", f"project={tmp_path / 'runs'}", "name=train", "exist_ok=True", "seed=0",
            "plots=False"]
    p = subprocess.run([str(yolo), *args], cwd=work, env=env, capture_output=True, text=True, timeout=600)
    out = p.stdout + p.stderr
    assert p.returncode == 0, f"yolo {' '.join(args)} failed ({p.returncode}):\n{out[-4000:]}"
    rows = [ln for ln in out.splitlines() if "gaussconv_plugin.GaussianShapedConv" in ln]
    assert [ln.split()[0] for ln in rows] == ["0", "1"], out[-3000:]  # per-layer table: layers 0 and 1
    assert re.search(r"YOLO26n-p2-gauss summary: \d+ layers, [\d,]+ parameters", out), out[-3000:]
    assert "σ/θ shape parameter tensors moved to a no-decay group" in out
    assert "summary (fused)" in out  # the final validation ran the fused model
    best = tmp_path / "runs" / "train" / "weights" / "best.pt"
    assert best.is_file() and not list(work.iterdir())
    m, _ = tasks.load_checkpoint(str(best))
    assert [type(m.model[i]) for i in (0, 1)] == [GaussianShapedConv] * 2
    assert m.yaml["scale_loss"] == "none" and m.yaml["end2end"] and m.model[-1].one2one_cv2 is not None  # NMS-free head
    with open(best.parent.parent / "gauss_shape.csv") as fh:
        shape_rows = list(csv.DictReader(fh))
    assert [(r["epoch"], r["layer"]) for r in shape_rows] == [("1", "model.0.conv"), ("1", "model.1.conv")]
    m.args = get_cfg()
    assert all(type(bl) is ul_loss.BboxLoss for bl in _bbox_losses(m.float().init_criterion()).values())
    m.yaml["scale_loss"] = "diff"  # the reloaded model's criterion follows its YAML's scale_loss
    assert all(isinstance(bl, ScaleBboxLoss) for bl in _bbox_losses(m.init_criterion()).values())
