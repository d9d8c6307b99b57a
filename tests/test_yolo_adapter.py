"""Ultralytics adapter: registration hook, YAML semantics, fusing and the scale box loss (in-process + fresh
interpreters). The CLI life cycle is in test_yolo_cli.py, the data conversion in test_yolo_format.py."""
from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import pytest

# offline before ultralytics is imported anywhere in this process (no-ops where the Makefile already set them)
for _k, _v in {"YOLO_OFFLINE": "1", "YOLO_AUTOINSTALL": "false", "MPLBACKEND": "Agg", "HF_HUB_OFFLINE": "1"}.items():
    os.environ.setdefault(_k, _v)
os.environ.setdefault("YOLO_CONFIG_DIR", tempfile.mkdtemp(prefix="gaussconv_yolo_cfg_"))

# stand-in fonts where check_font looks (<YOLO_CONFIG_DIR>/Ultralytics/): no HEAD request to GitHub
from gaussconv_plugin.yolo.offline import ensure_fonts  # noqa: E402

ensure_fonts(os.environ["YOLO_CONFIG_DIR"])

import torch  # noqa: E402

pytest.importorskip("ultralytics", reason="ultralytics not installed: make setup")

import ultralytics  # noqa: E402
from ultralytics.nn import tasks  # noqa: E402
from ultralytics.nn.modules import Conv  # noqa: E402
from ultralytics.utils import loss as ul_loss  # noqa: E402

import gaussconv_plugin  # noqa: E402
from gaussconv_plugin import GaussianShapedConv, GaussianShapedConv2d, scale_weight, swap_convs  # noqa: E402
from gaussconv_plugin.yolo import adapter, cfgs_dir, list_cfgs, packaged_cfg  # noqa: E402
from gaussconv_plugin.yolo.offline import offline_env  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
PY = sys.executable


def _run_py(code: str, cwd, env=None, timeout=240) -> subprocess.CompletedProcess:
    """Run ``code`` in a fresh interpreter of this venv (site-packages .pth files active), cwd outside the repo."""
    env = offline_env(Path(cwd) / "cfg", env)
    env.pop("PYTHONPATH", None)  # nothing from the checkout: only what is installed
    return subprocess.run([PY, "-c", textwrap.dedent(code)], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout)


def _json_tail(p: subprocess.CompletedProcess) -> dict:
    assert p.returncode == 0, f"subprocess failed ({p.returncode}):\n{p.stdout[-3000:]}\n{p.stderr[-3000:]}"
    return json.loads(p.stdout.strip().splitlines()[-1])


# ------------------------------------------------------------------------------------------------ internals
def test_ultralytics_internals_the_adapter_relies_on_exist():
    """Fails loudly when an Ultralytics update renames/re-signs what adapter.py patches or reads."""
    problems = adapter.check_internals()
    assert problems == [], f"ultralytics {ultralytics.__version__}: {problems}"
    assert adapter.is_registered()
    assert tasks.GaussianShapedConv is GaussianShapedConv
    for obj in (tasks.parse_model, tasks.check_yaml, tasks.BaseModel.fuse, tasks.DetectionModel.init_criterion):
        assert getattr(obj, "_gaussconv", False) and callable(obj.__wrapped__)
    adapter.register()  # idempotent: no double wrapping
    assert not getattr(tasks.parse_model.__wrapped__, "_gaussconv", False)


def _ultralytics_names_used(path: Path) -> dict[str, int]:
    """Dotted Ultralytics names a module of gaussconv_plugin/yolo reads (``tasks.BaseModel.fuse``, a ``from
    ultralytics.x import y`` of a non-module ``y``, …), from its AST: name → first line. Assignments to
    Ultralytics attributes (what ``register`` sets) and dunders (``__version__``) are not reads of an internal."""
    import ast
    import importlib

    tree = ast.parse(path.read_text(encoding="utf-8"))
    alias: dict[str, str] = {}  # local name -> ultralytics module path
    used: dict[str, int] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                if a.name.split(".")[0] == "ultralytics":
                    alias[a.asname or a.name.split(".")[0]] = a.name if a.asname else "ultralytics"
        elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "ultralytics":
            for a in node.names:
                full = f"{node.module}.{a.name}"
                try:
                    importlib.import_module(full)
                    alias[a.asname or a.name] = full
                except ImportError:
                    used.setdefault(full, node.lineno)
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Load):
            chain, cur = [], node
            while isinstance(cur, ast.Attribute):
                chain.append(cur.attr)
                cur = cur.value
            if isinstance(cur, ast.Name) and cur.id in alias:
                used.setdefault(".".join([alias[cur.id], *reversed(chain)]), node.lineno)
    names = {n: line for n, line in used.items() if not any(part.startswith("__") for part in n.split("."))}
    # `tasks.BaseModel.fuse` also walks its prefix `tasks.BaseModel`: keep the longest chains
    return {n: line for n, line in names.items() if not any(o != n and o.startswith(n + ".") for o in names)}


def test_check_internals_lists_every_ultralytics_internal_the_yolo_modules_read():
    """Every Ultralytics name read by a module of gaussconv_plugin/yolo is covered by internals.REQUIRED (the
    name itself, an object it belongs to, or an object inside it), so check_internals sees every one of them."""
    from gaussconv_plugin.yolo import internals

    required = [path for path, _ in internals.REQUIRED]
    folder = Path(internals.__file__).parent
    seen, missing = {}, []
    for f in sorted(folder.glob("*.py")):
        if f.name == "internals.py":  # the list itself (and the Conv it builds to check .conv/.bn/.act)
            continue
        for name, line in _ultralytics_names_used(f).items():
            seen[name] = f.name
            if not any(name == r or name.startswith(r + ".") or r.startswith(name + ".") for r in required):
                missing.append(f"{f.name}:{line} reads {name}")
    assert missing == [], "add these to internals.REQUIRED: " + "; ".join(missing)
    # positive control: the walk sees the reads it must see
    for name in ("ultralytics.nn.tasks.parse_model", "ultralytics.utils.loss.BboxLoss", "ultralytics.utils.RANK",
                 "ultralytics.utils.metrics.bbox_iou", "ultralytics.nn.tasks.BaseModel.fuse"):
        assert name in seen, (name, sorted(seen))


# ------------------------------------------------------------------------------------------------ hook
def test_autohook_registers_in_a_fresh_interpreter_without_importing_the_package(tmp_path):
    """The installed .pth loads only the stdlib hook at start-up (no torch); ultralytics' import registers."""
    out = _json_tail(_run_py(
        """
        import json, sys
        start = {"torch": "torch" in sys.modules, "pkg": "gaussconv_plugin" in sys.modules,
                 "hook": "gaussconv_plugin._autohook" in sys.modules}
        from ultralytics import YOLO                      # lazy: does not import nn.tasks yet
        import ultralytics.nn.tasks as t
        m = YOLO("yolov8n-gauss.yaml").model              # bare name, packaged config, scale n
        print(json.dumps({**start, "registered": bool(getattr(t, "_gaussconv_registered", False)),
                          "types": [type(m.model[i]).__name__ for i in (0, 1, 3)],
                          "scale_loss": m.yaml.get("scale_loss"), "scale": m.yaml.get("scale")}))
        """, tmp_path))
    assert out["hook"], "gaussconv_plugin_autohook.pth is not active: reinstall with pip install -e . (make setup)"
    assert not out["torch"] and not out["pkg"], "the start-up hook must not import torch or the package"
    assert out["registered"]
    assert out["types"] == ["GaussianShapedConv", "GaussianShapedConv", "Conv"]
    assert out["scale_loss"] == "none" and out["scale"] == "n"  # the twin's loss is stock since issue 33


def test_installed_pth_is_the_current_hook_line():
    import sysconfig

    from gaussconv_plugin import _autohook

    f = Path(sysconfig.get_paths()["purelib"]) / _autohook.PTH_NAME
    assert f.is_file(), f"{f} missing: install the project (pip install -e . --no-deps --no-build-isolation)"
    assert f.read_text().splitlines() == [_autohook.pth_line()], "stale .pth: reinstall with pip install -e ."


def test_autohook_can_be_switched_off(tmp_path):
    env = dict(os.environ, GAUSSCONV_NO_AUTOHOOK="1")
    out = _json_tail(_run_py(
        """
        import json, sys
        import ultralytics.nn.tasks as t
        print(json.dumps({"hook": "gaussconv_plugin._autohook" in sys.modules,
                          "registered": bool(getattr(t, "_gaussconv_registered", False)),
                          "has_name": hasattr(t, "GaussianShapedConv")}))
        """, tmp_path, env))
    assert out == {"hook": False, "registered": False, "has_name": False}


def test_hook_active_in_spawned_dataloader_workers(tmp_path):
    """Spawned workers (and the DDP temp script) are fresh interpreters: the .pth registers there too.
    (Ultralytics itself uses workers=0 on CPU and fork elsewhere; fork inherits the patched module.)"""
    (tmp_path / "gc_probe_ds.py").write_text(textwrap.dedent(
        """
        import os, sys
        import torch.utils.data as tud

        class Probe(tud.Dataset):
            def __len__(self):
                return 4

            def __getitem__(self, i):
                pkg_before = "gaussconv_plugin" in sys.modules and "ultralytics.nn.tasks" not in sys.modules
                import ultralytics.nn.tasks as t
                return {"pid": os.getpid(), "registered": bool(getattr(t, "_gaussconv_registered", False)),
                        "pkg_before": pkg_before}
        """))
    out = _json_tail(_run_py(
        """
        import json, os, sys
        sys.path.insert(0, os.getcwd())
        import torch.utils.data as tud
        from gc_probe_ds import Probe
        if __name__ == "__main__":
            dl = tud.DataLoader(Probe(), batch_size=None, num_workers=2, multiprocessing_context="spawn")
            items = list(dl)
            print(json.dumps({"pids": sorted({int(x["pid"]) for x in items}), "main": os.getpid(),
                              "registered": [bool(x["registered"]) for x in items],
                              "pkg_before": [bool(x["pkg_before"]) for x in items]}))
        """, tmp_path))
    assert out["main"] not in out["pids"] and len(out["pids"]) >= 1
    assert out["registered"] == [True] * 4
    assert out["pkg_before"] == [False] * 4  # nothing imported the package in the worker before ultralytics did


# ------------------------------------------------------------------------------------------------ YAML semantics
def _stock_yaml(name: str) -> dict:
    return tasks.yaml_model_load(name)


def _as_gauss(d: dict, rows=None) -> dict:
    """Copy of a model dict with ``Conv`` rows (all, or the given indices) renamed to GaussianShapedConv."""
    d = copy.deepcopy(d)
    allrows = d["backbone"] + d["head"]
    for i, r in enumerate(allrows):
        if r[2] == "Conv" and (rows is None or i in rows):
            r[2] = "GaussianShapedConv"
    return d


def _channel_plan(model) -> list[tuple[str, int]]:
    """(type, output channels) per layer, from a forward pass (Detect: its input channels)."""
    plan, hooks = [], []
    for m in model.model[:-1]:
        hooks.append(m.register_forward_hook(lambda mod, i, o: plan.append((type(mod).__name__, o.shape[1]))))
    model.eval()
    with torch.no_grad():
        model(torch.zeros(1, 3, 64, 64))
    for h in hooks:
        h.remove()
    return plan


@pytest.mark.parametrize("scale", ["n", "s"])
def test_channel_plan_equals_stock_yolov8(scale):
    stock = _stock_yaml(f"yolov8{scale}.yaml")
    ms = tasks.DetectionModel(copy.deepcopy(stock), nc=1, verbose=False)
    mg = tasks.DetectionModel(_as_gauss(stock), nc=1, verbose=False)  # every Conv row → GaussianShapedConv
    ps, pg = _channel_plan(ms), _channel_plan(mg)
    assert [c for _, c in ps] == [c for _, c in pg]
    n_gs = sum(t == "GaussianShapedConv" for t, _ in pg)
    assert n_gs == sum(t == "Conv" for t, _ in ps) >= 6
    # per layer, parameters differ exactly by σ and θ (2 per output channel) of the swapped layers
    for a, b in zip(ms.model, mg.model):
        extra = 2 * b.conv.out_channels if isinstance(b, GaussianShapedConv) else 0
        assert sum(p.numel() for p in b.parameters()) == sum(p.numel() for p in a.parameters()) + extra


@pytest.mark.parametrize("stem,scale", [("yolov8", "n"), ("yolov8-p2", "n"), ("yolov8-p2", "s")])
def test_packaged_twins_share_the_stock_channel_plan(stem, scale):
    g = tasks.DetectionModel(f"{stem[:6]}{scale}{stem[6:]}-gauss.yaml", nc=1, verbose=False)
    b = tasks.DetectionModel(f"{stem[:6]}{scale}{stem[6:]}-base.yaml", nc=1, verbose=False)
    s = tasks.DetectionModel(f"{stem[:6]}{scale}{stem[6:]}.yaml", nc=1, verbose=False)  # ultralytics' own
    assert g.yaml["scale"] == scale and g.yaml["scale_loss"] == "none" == b.yaml["scale_loss"]
    pg, pb, ps = _channel_plan(g), _channel_plan(b), _channel_plan(s)
    assert [c for _, c in pg] == [c for _, c in pb] == [c for _, c in ps]
    assert [t for t, _ in pg][:3] == ["GaussianShapedConv", "GaussianShapedConv", "C2f"]
    assert [t for t, _ in pb] == [t for t, _ in ps]
    assert sum(isinstance(m, GaussianShapedConv) for m in g.modules()) == 2


def test_twin_yaml_files_differ_only_in_the_conv():
    """Since issue 33 the twins share the stock box loss (scale_loss: none; 'diff' is one key away)."""
    for stem in ("yolov8", "yolov8-p2"):
        import yaml

        g = yaml.safe_load((cfgs_dir() / f"{stem}-gauss.yaml").read_text())
        b = yaml.safe_load((cfgs_dir() / f"{stem}-base.yaml").read_text())
        assert (g.pop("scale_loss"), b.pop("scale_loss")) == ("none", "none")
        rg, rb = g.pop("backbone"), b.pop("backbone")
        assert g == b
        assert [r[2] for r in rg[:2]] == ["GaussianShapedConv"] * 2 and [r[2] for r in rb[:2]] == ["Conv"] * 2
        assert [r[:2] + r[3:] for r in rg] == [r[:2] + r[3:] for r in rb] and rg[2:] == rb[2:]


def test_param_count_within_0p1_percent_of_yolov8n():
    g = tasks.DetectionModel("yolov8n-gauss.yaml", nc=1, verbose=False)
    s = tasks.DetectionModel("yolov8n.yaml", nc=1, verbose=False)
    ng, ns = (sum(p.numel() for p in m.parameters()) for m in (g, s))
    assert ng == ns + 2 * (16 + 32)  # σ and θ per output channel of layers 0 (16 ch) and 1 (32 ch)
    assert 0 < (ng - ns) / ns <= 1e-3


def test_swapped_layer_keeps_init_and_rng_stream_of_the_stock_twin():
    torch.manual_seed(0)
    g = tasks.DetectionModel("yolov8n-gauss.yaml", nc=1, verbose=False)
    torch.manual_seed(0)
    b = tasks.DetectionModel("yolov8n-base.yaml", nc=1, verbose=False)
    sg, sb = g.state_dict(), b.state_dict()
    extra = {k for k in sg if k not in sb}
    assert extra == {f"model.{i}.conv.{n}" for i in (0, 1) for n in ("sigma_raw", "theta", "_extra_state")}
    for k, v in sb.items():
        assert torch.equal(sg[k], v), k


def test_yaml_row_options_and_default_kernel():
    d = _stock_yaml("yolov8n.yaml")
    d["backbone"][0] = [-1, 1, "GaussianShapedConv", [64, 3, 2, {"sigma_init": 0.75, "per_channel": False}]]
    d["backbone"][1] = [-1, 1, "GaussianShapedConv", [128]]  # k omitted → 3, stride 1
    m = tasks.DetectionModel(d, nc=1, verbose=False)
    l0, l1 = m.model[0], m.model[1]
    assert isinstance(l0, GaussianShapedConv) and l0.conv.sigma_raw.numel() == 1
    assert torch.allclose(l0.conv.sigma, torch.tensor([0.75]), atol=1e-5)
    assert l1.conv.kernel_size == (3, 3) and l1.conv.stride == (1, 1) and l1.conv.out_channels == 32


def test_bad_scale_loss_is_one_line_error_naming_the_modes():
    d = _stock_yaml("yolov8n.yaml")
    d["scale_loss"] = "diffs"
    with pytest.raises(ValueError, match=r"scale_loss: 'diffs'.*diff, var, ratio, sqrt, none"):
        tasks.DetectionModel(d, nc=1, verbose=False)


@pytest.mark.parametrize("row, says", [
    ([64, 4, 2], r"needs an odd square kernel_size \(got 4\)"),
    ([64, 3, 2, {"sigma_init": -1.0}], r"sigma must be > 0\.4"),
    ([64, 3, 2, {"nosuch": 1}], "unexpected keyword argument 'nosuch'"),
])
def test_bad_row_values_name_the_yaml_and_the_layer(row, says):
    """A GaussianShapedConv row the conv refuses: one line naming the YAML file, the layer and its arguments."""
    d = _stock_yaml("yolov8n.yaml")
    d["yaml_file"] = "my-gauss.yaml"
    d["backbone"][1] = [-1, 1, "GaussianShapedConv", row]
    with pytest.raises(ValueError, match=r"^my-gauss\.yaml layer 1 \(GaussianShapedConv \[.*\]\): .*" + says) as e:
        tasks.DetectionModel(d, nc=1, verbose=False)
    assert "\n" not in str(e.value)


def test_verbose_table_names_the_gaussian_layers(ultralytics_log):
    tasks.DetectionModel("yolov8n-gauss.yaml", nc=1, verbose=True)
    rows = [ln for ln in ultralytics_log if ln[:3].strip() in ("0", "1", "3") and "[" in ln]
    assert "gaussconv_plugin.GaussianShapedConv" in rows[0] and "496" in rows[0]  # 464 + 2·16
    assert "gaussconv_plugin.GaussianShapedConv" in rows[1] and "4736" in rows[1]  # 4672 + 2·32
    assert "ultralytics.nn.modules.conv.Conv" in rows[2]


# ------------------------------------------------------------------------------------------------ cfg look-up
def test_packaged_configs_resolve_by_bare_name_from_any_directory(tmp_path, monkeypatch):
    assert list_cfgs() == ["yolo11-base.yaml", "yolo11-gauss.yaml", "yolo11-p2-base.yaml", "yolo11-p2-gauss.yaml",
                           "yolo11-p2only-base.yaml", "yolo11-p2only-gauss.yaml",
                           "yolo26-base.yaml", "yolo26-gauss.yaml", "yolo26-p2-base.yaml", "yolo26-p2-gauss.yaml",
                           "yolo26-p2only-base.yaml", "yolo26-p2only-gauss.yaml",
                           "yolov8-base.yaml", "yolov8-gauss.yaml", "yolov8-p2-base.yaml", "yolov8-p2-gauss.yaml",
                           "yolov8-p2-pconv.yaml", "yolov8-p2only-base.yaml", "yolov8-p2only-gauss.yaml"]
    # YOLO11/YOLO26 twins: test_yolo_families.py; the P2-only twins: test_yolo_p2only.py
    monkeypatch.chdir(tmp_path)
    d = tasks.yaml_model_load("yolov8s-p2-gauss.yaml")
    assert d["scale"] == "s" and d["scale_loss"] == "none" and len(d["head"]) == 19  # P2 head
    assert packaged_cfg("yolov8-gauss.yaml") == cfgs_dir() / "yolov8-gauss.yaml"
    assert packaged_cfg("sub/yolov8-gauss.yaml") is None and packaged_cfg("nope.yaml") is None
    # a path works too, and a user's file of the same name in cwd wins over the packaged one
    assert tasks.yaml_model_load(str(cfgs_dir() / "yolov8-base.yaml"))["scale_loss"] == "none"
    (tmp_path / "yolov8-gauss.yaml").write_text((cfgs_dir() / "yolov8-gauss.yaml").read_text().replace(
        "scale_loss: none", "scale_loss: ratio"))
    assert tasks.yaml_model_load("yolov8n-gauss.yaml")["scale_loss"] == "ratio"
    with pytest.raises(FileNotFoundError):
        tasks.yaml_model_load("yolov8n-nonexistent.yaml")


# ------------------------------------------------------------------------------------------------ fuse
def _out(model, x):
    with torch.no_grad():
        y = model(x)
    return y[0] if isinstance(y, (tuple, list)) else y


def test_model_fuse_replaces_every_gaussian_conv_with_same_outputs(randomise_shapes):
    torch.manual_seed(0)
    m = tasks.DetectionModel("yolov8n-p2-gauss.yaml", nc=1, verbose=False).eval()
    randomise_shapes(m)
    x = torch.rand(2, 3, 96, 128)
    ref = _out(m, x)
    m.fuse(verbose=False)
    assert not any(isinstance(k, (GaussianShapedConv2d,)) for k in m.modules())
    assert not any(hasattr(k, "bn") for k in m.modules() if isinstance(k, (GaussianShapedConv, Conv)))
    assert type(m.model[0].conv) is torch.nn.Conv2d and m.model[0].forward == m.model[0].forward_fuse
    got = _out(m, x)
    assert torch.allclose(got, ref, rtol=1e-4, atol=1e-4 * ref.abs().max().item())


def test_fuse_handles_gaussian_convs_swapped_into_stock_conv_blocks(randomise_shapes):
    """Ultralytics' fuse_conv_and_bn reads .weight; the adapter converts GaussianShapedConv2d first."""
    torch.manual_seed(0)
    m = tasks.DetectionModel("yolov8n.yaml", nc=1, verbose=False).eval()
    swapped = swap_convs(m, include=["model.0.conv", "model.3.conv"])
    assert len(swapped) == 2
    randomise_shapes(m)
    x = torch.rand(1, 3, 64, 64)
    ref = _out(m, x)
    m.fuse(verbose=False)
    assert not any(isinstance(k, GaussianShapedConv2d) for k in m.modules())
    assert torch.allclose(_out(m, x), ref, rtol=1e-4, atol=1e-4 * ref.abs().max().item())


# ------------------------------------------------------------------------------------------------ scale loss
def _batch(n_img=2, size=128, seed=0):
    g = torch.Generator().manual_seed(seed)
    boxes, idx = [], []
    for b in range(n_img):
        for _ in range(3):  # 3 targets of 12–40 px per image
            wh = (torch.rand(2, generator=g) * 28 + 12) / size
            c = torch.rand(2, generator=g) * (1 - wh) + wh / 2
            boxes.append(torch.cat([c, wh]))
            idx.append(b)
    n = len(boxes)
    return {"img": torch.rand(n_img, 3, size, size, generator=g), "batch_idx": torch.tensor(idx, dtype=torch.float32),
            "cls": torch.zeros(n, 1), "bboxes": torch.stack(boxes)}


def _trainer_model(cfg: str, data_yaml, scale_loss=None):
    """The model as DetectionTrainer builds it (get_model + args), optionally with another scale_loss."""
    from ultralytics.models.yolo.detect import DetectionTrainer

    trainer = DetectionTrainer(overrides={"model": cfg, "data": str(data_yaml), "device": "cpu", "name": "t",
                                          "project": str(Path(data_yaml).parents[1] / "runs"), "plots": False})
    d = tasks.yaml_model_load(cfg)
    if scale_loss is not None:
        d["scale_loss"] = scale_loss
    torch.manual_seed(0)
    model = trainer.get_model(cfg=d, weights=None, verbose=False)
    model.args = trainer.args
    return model


def test_trainer_criterion_uses_the_chosen_scale_loss(tiny_yolo_data):
    batch = _batch()
    losses = {}
    for mode in ("none", "diff", "var"):
        model = _trainer_model("yolov8n-gauss.yaml", tiny_yolo_data, scale_loss=mode).train()
        crit = model.init_criterion()
        assert isinstance(crit, ul_loss.v8DetectionLoss)
        assert (type(crit.bbox_loss) is ul_loss.BboxLoss) == (mode == "none")
        if mode != "none":
            assert isinstance(crit.bbox_loss, adapter.ScaleBboxLoss) and crit.bbox_loss.mode == mode
        model.criterion = crit
        loss, items = model.loss(batch)
        losses[mode] = items
    # stock criterion on the same model and batch: 'none' is exactly Ultralytics' loss
    model = _trainer_model("yolov8n-gauss.yaml", tiny_yolo_data, scale_loss="none").train()
    model.criterion = ul_loss.v8DetectionLoss(model)
    _, stock = model.loss(batch)
    box = {k: v["box_loss"].item() for k, v in losses.items()}
    assert box["none"] > 0.05, "no foreground anchors: the batch does not exercise the box loss"
    assert box["none"] == pytest.approx(stock["box_loss"].item(), rel=0, abs=0)
    assert abs(box["diff"] - box["none"]) > 1e-3
    # 'var' on pixel areas: (D/2)² dominates for boxes of hundreds of px², so α ≈ 1 and the change is small
    assert box["var"] != pytest.approx(box["none"], rel=1e-6, abs=0)
    assert box["diff"] != pytest.approx(box["var"], rel=1e-6)
    for k in ("cls_loss", "dfl_loss"):  # only the IoU term changes
        assert losses["diff"][k].item() == pytest.approx(losses["none"][k].item(), rel=1e-6)
    # the packaged base twin keeps the stock criterion
    assert type(_trainer_model("yolov8n-base.yaml", tiny_yolo_data).init_criterion().bbox_loss) is ul_loss.BboxLoss


def test_scale_bbox_loss_uses_pixel_areas_and_matches_formula():
    """Grid-unit boxes × stride² → pixel areas; 'var' is not scale-invariant, so the units are observable."""
    A = 4
    stride = torch.tensor([[8.0], [8.0], [16.0], [16.0]])  # (A, 1)
    pred = torch.tensor([[[0, 0, 2, 2], [1, 1, 3, 2], [0, 0, 1, 1], [0, 0, 3, 1]]], dtype=torch.float32)  # (1, A, 4)
    tgt = torch.tensor([[[0, 0, 1, 1], [1, 1, 3, 2], [0, 0, 2, 1], [0, 0, 1, 1]]], dtype=torch.float32)
    fg = torch.tensor([[True, True, True, False]])
    scores = torch.tensor([[[0.5], [1.0], [0.25], [0.0]]])
    tss = scores.sum()
    anchors = torch.rand(A, 2)
    dist = torch.randn(1, A, 4 * 16)
    args = (dist, pred, anchors, tgt, scores, tss, fg, torch.tensor([64.0, 64.0]), stride)
    stock_iou, stock_dfl = ul_loss.BboxLoss(16)(*args)
    from ultralytics.utils.metrics import bbox_iou

    ciou = bbox_iou(pred[fg], tgt[fg], xywh=False, CIoU=True).squeeze(-1)
    w = scores[fg].sum(-1)
    s2 = stride[:3, 0] ** 2
    area = lambda b: (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])  # noqa: E731
    iou = bbox_iou(pred[fg], tgt[fg], xywh=False).squeeze(-1)
    for mode in ("var", "diff", "sqrt"):
        alpha = scale_weight(area(pred[fg]) * s2, area(tgt[fg]) * s2, mode)
        got_iou, got_dfl = adapter.ScaleBboxLoss(16, mode)(*args)  # default form 'add', λ = 1
        assert torch.allclose(got_iou, ((1 - ciou + (1 - alpha)) * w).sum() / tss, atol=1e-6)
        assert torch.equal(got_dfl, stock_dfl)
        got_mul, _ = adapter.ScaleBboxLoss(16, mode, "mul")(*args)
        assert torch.allclose(got_mul, ((1 - alpha * iou + (iou - ciou)) * w).sum() / tss, atol=1e-6)
    alpha_px = scale_weight(area(pred[fg]) * s2, area(tgt[fg]) * s2, "var")
    alpha_grid = scale_weight(area(pred[fg]), area(tgt[fg]), "var")
    assert not torch.allclose(alpha_px, alpha_grid)  # so the test above pins the pixel units
    assert alpha_px[1] == 1.0  # equal boxes: α = 1, the term equals the stock one
    e = adapter.ScaleBboxLoss(16, "none")(*args)[0]
    assert torch.allclose(e, stock_iou)


def test_safe_load_allow_list_contains_the_gaussian_classes():
    allowed = torch.serialization.get_safe_globals()
    assert GaussianShapedConv in allowed and GaussianShapedConv2d in allowed


def test_package_import_registers_when_ultralytics_came_first(tmp_path):
    """Without the .pth (GAUSSCONV_NO_AUTOHOOK=1 at start-up), `import gaussconv_plugin` after ultralytics
    registers at once when the variable is cleared in between."""
    env = dict(os.environ, GAUSSCONV_NO_AUTOHOOK="1")
    out = _json_tail(_run_py(
        """
        import json, os
        import ultralytics.nn.tasks as t
        before = bool(getattr(t, "_gaussconv_registered", False))
        del os.environ["GAUSSCONV_NO_AUTOHOOK"]
        import gaussconv_plugin
        print(json.dumps({"before": before, "after": bool(getattr(t, "_gaussconv_registered", False))}))
        """, tmp_path, env))
    assert out == {"before": False, "after": True}
