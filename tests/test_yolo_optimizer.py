"""σ/θ out of weight decay: the wrapped BaseTrainer.build_optimizer (through a real DetectionTrainer), the bare
exclude_from_decay on an Ultralytics-style optimizer, the σ/θ log callback, and registration of the trainer patch
in fresh interpreters whatever is imported first. (The end-to-end `yolo train` check is in test_yolo_cli.py.)"""
from __future__ import annotations

import copy
import csv
import json
import os
import subprocess
import sys
import tempfile
import textwrap

import pytest

from gaussconv_plugin.masks import DEFAULT_MASK_FLOOR

# offline before ultralytics is imported anywhere in this process (no-ops where the Makefile already set them)
for _k, _v in {"YOLO_OFFLINE": "1", "YOLO_AUTOINSTALL": "false", "MPLBACKEND": "Agg", "HF_HUB_OFFLINE": "1"}.items():
    os.environ.setdefault(_k, _v)
os.environ.setdefault("YOLO_CONFIG_DIR", tempfile.mkdtemp(prefix="gaussconv_yolo_cfg_"))

from gaussconv_plugin.yolo.offline import ensure_fonts, offline_env  # noqa: E402

ensure_fonts(os.environ["YOLO_CONFIG_DIR"])

import torch  # noqa: E402

pytest.importorskip("ultralytics", reason="ultralytics not installed: make setup")

import ultralytics.engine.trainer as ul_trainer  # noqa: E402
from ultralytics.nn import tasks  # noqa: E402

from gaussconv_plugin import GaussianShapedConv2d  # noqa: E402
from gaussconv_plugin.yolo import adapter  # noqa: E402
from gaussconv_plugin.yolo.optim import _log_shape_params  # noqa: E402

CFG = "yolov8n-p2-gauss.yaml"


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return tasks.DetectionModel(CFG, nc=1, verbose=False)


@pytest.fixture(scope="module")
def trainer(tmp_path_factory):
    """A DetectionTrainer as `yolo train` builds it (nothing is trained; only its data.yaml is read)."""
    from ultralytics.models.yolo.detect import DetectionTrainer

    d = tmp_path_factory.mktemp("tiny")
    for s in ("train", "val"):
        (d / "images" / s).mkdir(parents=True)
        (d / "labels" / s).mkdir(parents=True)
    (d / "data.yaml").write_text(f"path: {d}\ntrain: {d}/images/train\nval: {d}/images/val\nnames:\n  0: Target\n")
    return DetectionTrainer(overrides={"model": CFG, "data": str(d / "data.yaml"), "device": "cpu",
                                       "project": str(d / "runs"), "name": "t", "plots": False})


def _ids(params) -> set[int]:
    return {id(p) for p in params}


def _shape_ids(model) -> set[int]:
    return _ids(adapter.shape_params(model))


# ------------------------------------------------------------------------------------------------ registration
def test_trainer_is_patched_in_this_process():
    assert adapter.check_trainer_internals() == []
    assert adapter.check_trainer_internals(ul_trainer) == []
    bo = ul_trainer.BaseTrainer.build_optimizer
    assert getattr(bo, "_gaussconv", False) is True
    assert not getattr(bo.__wrapped__, "_gaussconv", False)  # wrapped exactly once
    adapter.register()  # idempotent
    assert ul_trainer.BaseTrainer.build_optimizer is bo
    assert adapter.is_registered()


def test_check_trainer_internals_reports_missing_names():
    class Fake:
        class BaseTrainer:
            def build_optimizer(self, model, name="auto", lr=0.001):  # lacks momentum, decay, iterations
                pass

    problems = adapter.check_trainer_internals(Fake)
    assert len(problems) == 2
    assert "BaseTrainer.build_optimizer lacks parameter(s) ['momentum', 'decay', 'iterations']" in problems[0]
    assert "BaseTrainer.add_callback is missing" in problems[1]


def test_shape_params_are_exactly_sigma_and_theta(model):
    convs = [m for m in model.modules() if isinstance(m, GaussianShapedConv2d)]
    assert len(convs) == 2  # layers 0 and 1 of the -gauss twin
    sp = adapter.shape_params(model)
    assert len(sp) == 4
    assert _ids(sp) == _ids([c.sigma_raw for c in convs] + [c.theta for c in convs])
    names = {n for n, p in model.named_parameters() if id(p) in _ids(sp)}
    assert names == {"model.0.conv.sigma_raw", "model.0.conv.theta", "model.1.conv.sigma_raw", "model.1.conv.theta"}


# ------------------------------------------------------------------------------------------------ bare optimizer
def _stock_split(model) -> list[list]:
    """Ultralytics' split of a model's parameters (both 8.3 and 8.4): [weights, norm-layer weights, biases]."""
    bn = tuple(v for k, v in torch.nn.__dict__.items() if "Norm" in k)
    g = [[], [], []]
    for mn, m in model.named_modules():
        for pn, p in m.named_parameters(recurse=False):
            full = f"{mn}.{pn}" if mn else pn
            g[2 if "bias" in full else 1 if isinstance(m, bn) else 0].append(p)
    return g


def _ultralytics_groups(model, lr=0.01, decay=5e-4, bn_lr=None):
    """The three groups of Ultralytics 8.4's BaseTrainer.build_optimizer (SGD), in its order and with its tags:
    weight (decay), bn (norm weights, decay 0), bias (no decay; 8.4's warm-up finds it by its tag)."""
    g = _stock_split(model)
    return torch.optim.SGD([
        {"params": g[0], "lr": lr, "momentum": 0.9, "nesterov": True, "weight_decay": decay, "param_group": "weight"},
        {"params": g[1], "lr": lr if bn_lr is None else bn_lr, "momentum": 0.9, "nesterov": True, "weight_decay": 0.0,
         "param_group": "bn"},
        {"params": g[2], "lr": lr, "momentum": 0.9, "nesterov": True, "param_group": "bias"},
    ])


def _group(opt, name):
    (g,) = [g for g in opt.param_groups if g.get("param_group") == name]
    return g


def test_exclude_from_decay_moves_exactly_sigma_theta_to_the_bn_group(model):
    model = copy.deepcopy(model)  # this test steps the optimizer: keep the shared model at its initial values
    opt = _ultralytics_groups(model)
    before = {g["param_group"]: _ids(g["params"]) for g in opt.param_groups}
    shape = _shape_ids(model)
    assert shape <= before["weight"]  # where stock Ultralytics puts them: decayed
    n = adapter.exclude_from_decay(opt, adapter.shape_params(model))
    assert n == 4 and len(opt.param_groups) == 3
    after = {g["param_group"]: _ids(g["params"]) for g in opt.param_groups}
    assert after["weight"] == before["weight"] - shape
    assert after["bn"] == before["bn"] | shape
    assert after["bias"] == before["bias"]
    assert _group(opt, "weight")["weight_decay"] == 5e-4 and _group(opt, "bn")["weight_decay"] == 0.0
    # the Gaussian convs' weights stay decayed
    for c in (m for m in model.modules() if isinstance(m, GaussianShapedConv2d)):
        assert id(c.weight) in after["weight"]
    # every parameter still in exactly one group
    all_ids = [id(p) for g in opt.param_groups for p in g["params"]]
    assert len(all_ids) == len(set(all_ids)) == len(list(model.parameters()))
    # idempotent
    assert adapter.exclude_from_decay(opt, adapter.shape_params(model)) == 0
    assert {g["param_group"]: _ids(g["params"]) for g in opt.param_groups} == after
    # the optimizer still steps (state is per parameter, not per group)
    model.zero_grad()
    for p in adapter.shape_params(model):
        p.grad = torch.ones_like(p)
    s0 = [p.detach().clone() for p in adapter.shape_params(model)]
    opt.step()
    assert all(not torch.equal(a, p) for a, p in zip(s0, adapter.shape_params(model)))


def test_exclude_from_decay_adds_a_group_when_no_bn_group_has_the_rate(model):
    torch.manual_seed(0)
    m = tasks.DetectionModel(CFG, nc=1, verbose=False)
    opt = _ultralytics_groups(m, lr=0.01, bn_lr=0.02)  # no decay-0 non-bias group with lr 0.01
    assert adapter.exclude_from_decay(opt, adapter.shape_params(m)) == 4
    assert len(opt.param_groups) == 4
    new = opt.param_groups[-1]
    assert new["param_group"] == "gauss_shape" and new["weight_decay"] == 0.0 and new["lr"] == 0.01
    assert _ids(new["params"]) == _shape_ids(m) and new["momentum"] == 0.9 and new["nesterov"] is True
    assert not _shape_ids(m) & _ids(_group(opt, "weight")["params"])


def test_exclude_from_decay_with_lr_mult_gets_its_own_group(model):
    opt = _ultralytics_groups(model, lr=0.01)
    n_before = len(opt.param_groups)
    assert adapter.exclude_from_decay(opt, adapter.shape_params(model), lr_mult=10) == 4
    assert len(opt.param_groups) == n_before + 1
    new = opt.param_groups[-1]
    assert new["param_group"] == "gauss_shape" and new["weight_decay"] == 0.0
    assert new["lr"] == pytest.approx(0.1) and _ids(new["params"]) == _shape_ids(model)
    assert not _shape_ids(model) & _ids(_group(opt, "bn")["params"])
    assert not _shape_ids(model) & _ids(_group(opt, "weight")["params"])


def _ultralytics_83_groups(model, lr=0.01, decay=5e-4):
    """The groups of Ultralytics 8.3's BaseTrainer.build_optimizer (SGD): untagged, built as
    ``SGD(g[2], lr, momentum, nesterov)`` (0: biases), then ``add_param_group`` of g[0] (1: weights, decay) and of
    g[1] (2: norm weights, decay 0). 8.3's warm-up starts group index 0 at ``warmup_bias_lr``, the others at 0."""
    g = _stock_split(model)
    opt = torch.optim.SGD(g[2], lr=lr, momentum=0.9, nesterov=True)
    opt.add_param_group({"params": g[0], "weight_decay": decay})
    opt.add_param_group({"params": g[1], "weight_decay": 0.0})
    return opt


def _warmup_start_lr(opt, warmup_bias_lr=0.1) -> list[float]:
    """Learning rate of each group at warm-up iteration 0 under Ultralytics 8.3's rule (bias group = index 0)."""
    return [warmup_bias_lr if j == 0 else 0.0 for j, _ in enumerate(opt.param_groups)]


def test_exclude_from_decay_on_an_83_layout_never_uses_the_bias_group(model):
    opt = _ultralytics_83_groups(model)
    before = [_ids(g["params"]) for g in opt.param_groups]
    shape = _shape_ids(model)
    # the trap: group 0 (biases) is untagged and has no decay, exactly like the norm-weight group 2
    assert [g.get("param_group") for g in opt.param_groups] == [None, None, None]
    assert opt.param_groups[0]["weight_decay"] == opt.param_groups[2]["weight_decay"] == 0
    assert shape <= before[1]
    assert adapter.exclude_from_decay(opt, adapter.shape_params(model), model=model) == 4
    after = [_ids(g["params"]) for g in opt.param_groups]
    assert after == [before[0], before[1] - shape, before[2] | shape]  # σ/θ join the norm weights
    start = _warmup_start_lr(opt)
    assert {start[j] for j, g in enumerate(after) if g & shape} == {0.0}  # no σ/θ warms up from 0.1
    assert adapter.norm_weight_group(opt, model) is opt.param_groups[2]


def test_exclude_from_decay_on_an_83_layout_without_the_model_takes_a_new_group(model):
    """Untagged groups cannot be told apart without the model: σ/θ get their own group, never group 0."""
    opt = _ultralytics_83_groups(model)
    before = [_ids(g["params"]) for g in opt.param_groups]
    assert adapter.exclude_from_decay(opt, adapter.shape_params(model)) == 4
    assert len(opt.param_groups) == 4
    assert [_ids(g["params"]) for g in opt.param_groups[:3]] == [before[0], before[1] - _shape_ids(model), before[2]]
    new = opt.param_groups[3]
    assert _ids(new["params"]) == _shape_ids(model) and new["weight_decay"] == 0.0 and new["lr"] == 0.01


def test_exclude_from_decay_on_an_84_layout_finds_the_bn_group_by_its_content(model):
    opt = _ultralytics_groups(model)
    before = {g["param_group"]: _ids(g["params"]) for g in opt.param_groups}
    for g in opt.param_groups:  # what it holds decides, not the tag
        g.pop("param_group")
    assert adapter.exclude_from_decay(opt, adapter.shape_params(model), model=model) == 4
    assert [_ids(g["params"]) for g in opt.param_groups] == [
        before["weight"] - _shape_ids(model), before["bn"] | _shape_ids(model), before["bias"]]


@pytest.mark.parametrize("layout", ["8.3", "8.4"])
def test_wrapped_build_optimizer_rebuilds_the_same_groups_on_resume(trainer, layout):
    """The wrapper on a stock build_optimizer of each layout: σ/θ in the norm-weight group, and a rebuilt
    optimizer (what ``resume`` does) has the same groups, so the saved optimizer state loads into it."""
    from gaussconv_plugin.yolo.optim import wrap_build_optimizer

    def stock(self, model, name="SGD", lr=0.01, momentum=0.9, decay=5e-4, iterations=100):
        return _ultralytics_83_groups(model, lr, decay) if layout == "8.3" else _ultralytics_groups(model, lr, decay)

    torch.manual_seed(0)
    m = tasks.DetectionModel(CFG, nc=1, verbose=False)
    build = wrap_build_optimizer(stock)
    a = build(trainer, m)
    shape = _shape_ids(m)
    norm_group = 2 if layout == "8.3" else 1  # 8.3: bias, weight, norm weights; 8.4: weight, bn, bias
    assert [bool(_ids(g["params"]) & shape) for g in a.param_groups] == [j == norm_group for j in range(3)]
    assert a.param_groups[norm_group]["weight_decay"] == 0.0
    for p in m.parameters():
        p.grad = torch.ones_like(p)
    a.step()
    b = build(trainer, m)
    assert [[id(p) for p in g["params"]] for g in a.param_groups] == \
        [[id(p) for p in g["params"]] for g in b.param_groups]
    b.load_state_dict(a.state_dict())
    assert len(b.state) == len(a.state) == len(list(m.parameters()))


def test_shape_lr_mult_yaml_key_is_validated():
    assert adapter.shape_lr_mult({}) == 1.0 and adapter.shape_lr_mult({"shape_lr_mult": 10}) == 10.0
    for bad in (0, -1.0, "10", True):
        with pytest.raises(ValueError, match="shape_lr_mult") as e:
            adapter.shape_lr_mult({"shape_lr_mult": bad})
        assert "\n" not in str(e.value)


# ------------------------------------------------------------------------------------------------ real trainer
@pytest.mark.parametrize("name", ["SGD", "AdamW", "MuSGD"])
def test_build_optimizer_of_a_real_detection_trainer(trainer, name):
    torch.manual_seed(0)
    m = tasks.DetectionModel(CFG, nc=1, verbose=False)
    kw = dict(name=name, lr=0.01, momentum=0.9, decay=5e-4, iterations=100)
    stock = ul_trainer.BaseTrainer.build_optimizer.__wrapped__(trainer, m, **kw)
    opt = trainer.build_optimizer(m, **kw)
    shape = _shape_ids(m)
    assert len(shape) == 4
    assert len(opt.param_groups) == len(stock.param_groups)
    # stock: σ/θ are decayed; patched: no decayed group holds any of them, and all sit in decay-0 'bn' groups
    assert any(shape & _ids(g["params"]) for g in stock.param_groups if g["weight_decay"])
    for g in opt.param_groups:
        if g["weight_decay"]:
            assert not shape & _ids(g["params"]), g["param_group"]
    held = set().union(*(_ids(g["params"]) & shape for g in opt.param_groups))
    assert held == shape
    for g in opt.param_groups:
        if shape & _ids(g["params"]):
            assert g["param_group"] == "bn" and g["weight_decay"] == 0.0
    # apart from σ/θ, the groups are the stock ones (same order, same options); weights stay decayed
    for gs, go in zip(stock.param_groups, opt.param_groups):
        assert {k: v for k, v in gs.items() if k != "params"} == {k: v for k, v in go.items() if k != "params"}
        assert _ids(go["params"]) - shape == _ids(gs["params"]) - shape
    for w in (m.model[0].conv.weight, m.model[1].conv.weight):  # the Gaussian convs' weights stay decayed
        (g,) = [g for g in opt.param_groups if id(w) in _ids(g["params"])]
        assert g["weight_decay"] == 5e-4 and g["param_group"] == ("muon" if name == "MuSGD" else "weight")
    # the σ/θ log callback is registered once, however often the optimizer is rebuilt (resume)
    cbs = trainer.callbacks["on_fit_epoch_end"]
    assert sum(cb is _log_shape_params for cb in cbs) == 1


def test_stock_model_without_gaussian_convs_is_untouched(trainer):
    torch.manual_seed(0)
    m = tasks.DetectionModel("yolov8n-p2-base.yaml", nc=1, verbose=False)
    assert adapter.shape_params(m) == []
    kw = dict(name="SGD", lr=0.01, momentum=0.9, decay=5e-4, iterations=100)
    a = ul_trainer.BaseTrainer.build_optimizer.__wrapped__(trainer, m, **kw)
    b = trainer.build_optimizer(m, **kw)
    assert [[id(p) for p in g["params"]] for g in a.param_groups] == [[id(p) for p in g["params"]] for g in b.param_groups]


# ------------------------------------------------------------------------------------------------ σ/θ log
def test_shape_param_stats_and_csv_log(model, tmp_path):
    theta0 = model.model[1].conv.theta.detach().clone()  # the module-scoped model is given back as it came
    with torch.no_grad():
        model.model[1].conv.theta.copy_(torch.linspace(-0.5, 0.5, model.model[1].conv.theta.numel()))
    try:
        rows = adapter.shape_param_stats(model)
        assert [r["layer"] for r in rows] == ["model.0.conv", "model.1.conv"]
        assert [(r["k"], r["stride"], r["mask_floor"]) for r in rows] == [(3, 2, DEFAULT_MASK_FLOOR)] * 2
        assert rows[0]["sigma_mean"] == pytest.approx(1.5, abs=1e-5)  # default σ₀ = k/2
        # default θ₀ 'mid': 15° for k = 3 (masks.default_theta), off the flip at 0
        assert rows[0]["theta_min_deg"] == rows[0]["theta_max_deg"] == pytest.approx(15.0, abs=1e-2)
        assert rows[1]["theta_min_deg"] == pytest.approx(-28.6479, abs=1e-3)
        assert rows[1]["theta_max_deg"] == pytest.approx(28.6479, abs=1e-3)

        class FakeTrainer:
            save_dir = tmp_path
            epoch, epochs = 0, 2

        ft = FakeTrainer()
        ft.model = model
        _log_shape_params(ft)
        ft.epoch = 1
        _log_shape_params(ft)
        ft.epoch = 2  # Ultralytics' final_eval fires on_fit_epoch_end once more after the last epoch: not logged
        _log_shape_params(ft)
        lines = list(csv.DictReader((tmp_path / adapter.SHAPE_LOG).open()))
        assert adapter.SHAPE_LOG == "gauss_shape.csv"
        assert [(r["epoch"], r["layer"]) for r in lines] == [("1", "model.0.conv"), ("1", "model.1.conv"),
                                                              ("2", "model.0.conv"), ("2", "model.1.conv")]
        assert float(lines[3]["theta_max_deg"]) == pytest.approx(28.6479, abs=1e-3)
        assert (tmp_path / adapter.SHAPE_LOG).read_text().count("epoch,layer") == 1  # one header
    finally:
        with torch.no_grad():
            model.model[1].conv.theta.copy_(theta0)


# ------------------------------------------------------------------------------------------------ import order
def _fresh(code: str, tmp_path) -> tuple[dict, str]:
    """Run ``code`` in a fresh interpreter of this venv (the .pth hook active), cwd outside the repository."""
    env = offline_env(os.environ.get("YOLO_CONFIG_DIR"), threads=1)
    env.pop("PYTHONPATH", None)
    env.pop("GAUSSCONV_NO_AUTOHOOK", None)
    p = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=tmp_path, env=env, capture_output=True,
                       text=True, timeout=120)
    assert p.returncode == 0, f"subprocess failed ({p.returncode}):\n{p.stdout[-3000:]}\n{p.stderr[-3000:]}"
    return json.loads(p.stdout.strip().splitlines()[-1]), p.stderr


def test_adapter_as_first_import_registers_silently(tmp_path):
    out, err = _fresh(
        """
        import json, sys
        hook = "gaussconv_plugin._autohook" in sys.modules
        import gaussconv_plugin.yolo.adapter as adapter
        from gaussconv_plugin import _autohook
        reg = adapter.is_registered()
        import ultralytics.engine.trainer as tr
        print(json.dumps({"hook": hook, "registered": reg, "error": repr(_autohook.last_error()),
                          "trainer": bool(getattr(tr.BaseTrainer.build_optimizer, "_gaussconv", False)),
                          "problems": adapter.check_trainer_internals()}))
        """, tmp_path)
    assert "warning" not in err.lower(), err
    assert out == {"hook": True, "registered": True, "error": "None", "trainer": True, "problems": []}


def test_trainer_as_first_import_patches_build_optimizer(tmp_path):
    out, err = _fresh(
        """
        import json, sys
        import ultralytics.engine.trainer as tr
        bo = tr.BaseTrainer.build_optimizer
        adapter = sys.modules.get("gaussconv_plugin.yolo.adapter")
        print(json.dumps({"trainer": bool(getattr(bo, "_gaussconv", False)),
                          "once": not getattr(bo.__wrapped__, "_gaussconv", False),
                          "registered": bool(adapter and adapter.is_registered())}))
        """, tmp_path)
    assert "warning" not in err.lower(), err
    assert out == {"trainer": True, "once": True, "registered": True}


def test_registering_leaves_the_global_rng_as_stock(tmp_path):
    """Importing Ultralytics with the auto-hook (which checks the internals it relies on, building a small ``Conv``)
    leaves torch's global RNG stream as it is without the plug-in: a user's seeded stock run is the same."""
    code = """
        import json, torch
        torch.manual_seed(0)
        from ultralytics import YOLO
        print(json.dumps(torch.rand(3).tolist()))
        """
    hooked, _ = _fresh(code, tmp_path)
    torch.manual_seed(0)
    assert hooked == torch.rand(3).tolist()


def test_safe_load_reads_pconv_checkpoints(tmp_path):
    """``ULTRALYTICS_SAFE_LOAD=1`` (weights-only load with the allow-list) reads a PConv model's checkpoint too."""
    ckpt = tmp_path / "pconv.pt"
    code = f"""
        import json, os
        from ultralytics import YOLO
        YOLO("yolov8n-p2-pconv.yaml").save({str(ckpt)!r})
        """
    _fresh(code + "print(json.dumps(0))", tmp_path)
    os.environ["ULTRALYTICS_SAFE_LOAD"] = "1"
    try:
        out, _ = _fresh(f"""
            import json
            from ultralytics import YOLO
            from ultralytics.utils import SAFE_LOAD
            m = YOLO({str(ckpt)!r}).model
            print(json.dumps([SAFE_LOAD, sum(type(x).__name__ == "PConv" for x in m.modules())]))
            """, tmp_path)
    finally:
        del os.environ["ULTRALYTICS_SAFE_LOAD"]
    assert out[0] is True and out[1] > 0
