"""U-Net segmentation through the real MMEngine Runner (tools/train.py, tools/test.py) on a small real-SIRST subset:
both configs train (warm-up then scale loss) and evaluate with numbers in range, resume continues from the
checkpoint, tools/test.py --show-dir writes masks/overlays/ROC-PR, a target-free image evaluates cleanly, and the
model wrapper's modes and warm-up logic."""
from __future__ import annotations

import importlib.util
import json
import math
import re
import time
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("mmengine")
pytest.importorskip("py_irstd_metrics")

from mmengine.config import Config  # noqa: E402
from mmengine.hooks import Hook  # noqa: E402
from mmengine.logging import MessageHub  # noqa: E402
from mmengine.registry import HOOKS  # noqa: E402
from PIL import Image  # noqa: E402

import gaussconv_plugin.mmdet  # noqa: E402,F401  (registrations)
from gaussconv_plugin.conv import GaussianShapedConv2d  # noqa: E402
from gaussconv_plugin.data.seg_dataset import SIRSTSegDataset, pad_collate  # noqa: E402
from gaussconv_plugin.data.sirst import load_mask, read_split, sirst_root  # noqa: E402
from gaussconv_plugin.mmdet.segmentation import IRSTDMetric, IRSTDSegmentor, overlay_image  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
CFG = REPO / "mmdet_cfgs"
BASE = str(CFG / "unet_mshnet_base_cpu.py")
GAUSS = str(CFG / "unet_gauss_diff_cpu.py")
N_TRAIN, N_VAL, BATCH = 8, 2, 4  # 2 iterations per epoch on 64×64 crops; validation at native size (~320×240)
TINY = [
    f"train_dataloader.dataset.max_images={N_TRAIN}", "train_dataloader.dataset.crop_size=64",
    "train_dataloader.dataset.base_size=128", f"train_dataloader.batch_size={BATCH}",
    f"val_dataloader.dataset.max_images={N_VAL}", f"test_dataloader.dataset.max_images={N_VAL}",
    "train_dataloader.num_workers=0", "train_dataloader.persistent_workers=False",
    "val_dataloader.num_workers=0", "val_dataloader.persistent_workers=False",
    "test_dataloader.num_workers=0", "test_dataloader.persistent_workers=False",
    "train_cfg.max_epochs=2", "train_cfg.val_interval=2", "model.warmup_epochs=1",
    "default_hooks.checkpoint.interval=1", "default_hooks.logger.interval=1", "randomness.seed=0",
    "test_evaluator.curve_bins=10", "log_processor.window_size=1",
]


def _load(path, map_location="cpu"):
    """An MMEngine checkpoint the way MMEngine's loader reads it (weights-only, HistoryBuffer's getattr allowed)."""
    from gaussconv_plugin.mmdet.checkpoints import mmengine_checkpoint_globals

    with mmengine_checkpoint_globals():
        return torch.load(path, map_location=map_location)


def _load_tool(name: str):
    spec = importlib.util.spec_from_file_location(f"gaussconv_unet_tools_{name}", REPO / "tools" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


train_tool = _load_tool("train")
test_tool = _load_tool("test")


def _new_second():
    """MMEngine names a run (logger, MessageHub) by its config and the second it started: keep runs apart."""
    t = time.time()
    time.sleep(math.ceil(t) - t + 0.05)


def _scalars(work_dir: Path) -> list[dict]:
    rows = []
    for f in sorted(work_dir.glob("*/vis_data/scalars.json")):
        rows += [json.loads(line) for line in f.read_text().splitlines()]
    return rows


def _check_metrics(m: dict, prefix: str = "irstd/") -> None:
    for k in ("mIoU", "nIoU", "Pd"):
        v = m[prefix + k]
        assert isinstance(v, float) and 0.0 <= v <= 1.0, (k, v)
    assert 0.0 <= m[prefix + "Fa"] <= 1.0 and m[prefix + "Fa_e6"] == pytest.approx(m[prefix + "Fa"] * 1e6)


class _RecordStart(Hook):
    """Test hook: records where training starts (epoch, iter, a weight checksum)."""

    records: list = []

    def before_train(self, runner) -> None:
        model = runner.model.module if hasattr(runner.model, "module") else runner.model
        _RecordStart.records.append((runner.epoch, runner.iter, float(model.net.final.weight.detach().sum())))


if "_UNetRecordStart" not in HOOKS.module_dict:
    HOOKS.register_module(name="_UNetRecordStart", module=_RecordStart)


@pytest.fixture(scope="module", params=[BASE, GAUSS], ids=["mshnet_base", "gauss_diff"])
def trained(request, tmp_path_factory):
    work = tmp_path_factory.mktemp(Path(request.param).stem)
    _new_second()
    runner = train_tool.main([request.param, "--work-dir", str(work), "--cfg-options", *TINY])
    return request.param, work, runner


def test_train_and_validate(trained):
    cfg_file, work, runner = trained
    model = runner.model
    n_gauss = sum(isinstance(m, GaussianShapedConv2d) for m in model.modules())
    if cfg_file == GAUSS:
        assert model.loss_fn.mode == "diff" and model.net.gauss_conv == "both" and n_gauss == 18
    else:
        assert model.loss_fn.mode == "var" and model.net.gauss_conv == "none" and n_gauss == 0
    assert runner.epoch == 2 and runner.iter == 2 * math.ceil(N_TRAIN / BATCH)
    rows = _scalars(work)
    train = [r for r in rows if "loss_seg" in r]
    assert len(train) == 4 and all(math.isfinite(r["loss_seg"]) for r in train)
    assert [r["warmup"] for r in train] == [1.0, 1.0, 0.0, 0.0]  # epoch 0 warm-up (soft IoU), epoch 1 scale loss
    for r in train:  # the total is the mean of the five deep-supervision terms
        parts = [r[k] for k in ("ds_fused", "ds_side0", "ds_side1", "ds_side2", "ds_side3")]
        assert r["loss_seg"] == pytest.approx(sum(parts) / 5, rel=1e-4)
        if r["warmup"]:
            assert all(0.0 <= p <= 1.0 for p in parts)  # 1 − soft IoU
    val = [r for r in rows if "irstd/mIoU" in r]
    assert len(val) == 1  # val_interval=2: after the last epoch
    for r in val:
        _check_metrics(r)
    assert (work / "epoch_2.pth").is_file() and list(work.glob("best_irstd_mIoU_epoch_*.pth"))


def test_tools_test_writes_masks_overlays_and_curves(trained):
    cfg_file, work, _ = trained
    _new_second()
    metrics = test_tool.main([cfg_file, str(work / "epoch_2.pth"), "--work-dir", str(work), "--show-dir", "vis",
                              "--cfg-options", *TINY])
    _check_metrics(metrics)
    vis = sorted(work.glob("*/vis"))
    assert len(vis) == 1
    names = read_split(sirst_root(), "test")[:N_VAL]
    for name in names:
        gt = load_mask(sirst_root(), name)
        mask = np.asarray(Image.open(vis[0] / f"{name}_mask.png"))
        over = Image.open(vis[0] / f"{name}_overlay.png")
        assert mask.shape == gt.shape and set(np.unique(mask)) <= {0, 255}  # native size, padding removed
        assert over.mode == "RGB" and over.size == (gt.shape[1], gt.shape[0])
    for png in ("roc.png", "pr.png"):
        assert (vis[0] / png).read_bytes()[:4] == b"\x89PNG"
    curves = json.loads((vis[0] / "curves.json").read_text())
    assert len(curves["pd"]) == 10 and all(0 <= v <= 1 for v in curves["pd"])


def test_resume_continues_from_checkpoint(tmp_path):
    work = tmp_path / "resume"
    opts = [o for o in TINY if not o.startswith("train_cfg.max_epochs")]
    _new_second()
    first = train_tool.main([BASE, "--work-dir", str(work), "--cfg-options", *opts, "train_cfg.max_epochs=1"])
    assert first.epoch == 1 and (work / "epoch_1.pth").is_file()
    saved = _load(work / "epoch_1.pth", map_location="cpu")
    _RecordStart.records.clear()
    cfg = tmp_path / "resume_cfg.py"  # the base config plus a hook recording where training starts
    cfg.write_text(f"_base_ = {BASE!r}\ncustom_hooks = [dict(type='_UNetRecordStart')]\n")
    _new_second()
    second = train_tool.main([str(cfg), "--work-dir", str(work), "--resume", "--cfg-options", *opts,
                              "train_cfg.max_epochs=2"])
    # before_train runs after the resume: the loop starts at epoch 1 with epoch 1's weights, and warm-up is over
    epoch, it, wsum = _RecordStart.records[-1]
    assert (epoch, it) == (1, 2)
    assert wsum == pytest.approx(float(saved["state_dict"]["net.final.weight"].sum()), abs=1e-6)
    assert second.epoch == 2 and second.iter == 4
    resumed_rows = [r for r in _scalars(work) if "loss_seg" in r and r["epoch"] == 2]
    assert resumed_rows and all(r["warmup"] == 0.0 for r in resumed_rows)


def _init_checkpoint(tmp_path, config: str = BASE) -> Path:
    """An untrained (seed 0) checkpoint of the config's model (the base config's by default)."""
    cfg = Config.fromfile(config)
    ckpt = tmp_path / ("init.pth" if config == BASE else "init_gauss.pth")
    torch.manual_seed(0)
    torch.save({"state_dict": IRSTDSegmentor(**{k: v for k, v in cfg.model.items() if k != "type"}).state_dict()}, ckpt)
    return ckpt


@pytest.fixture(scope="module")
def target_free_root(tmp_path_factory):
    """A temporary SIRST-layout folder: two synthetic images, one of them with no target."""
    root = tmp_path_factory.mktemp("target_free")
    for sub in ("images", "masks", "idx_427"):
        (root / sub).mkdir()
    rng = np.random.default_rng(0)
    for k, has_target in enumerate([True, False]):
        img = rng.integers(60, 120, (60, 70), dtype=np.uint8)
        mask = np.zeros((60, 70), np.uint8)
        if has_target:
            mask[20:23, 30:32] = 255
            img[mask > 0] = 250
        Image.fromarray(img).save(root / "images" / f"s{k}.png")
        Image.fromarray(mask).save(root / "masks" / f"s{k}_pixels0.png")
    for split in ("trainval", "test"):
        (root / "idx_427" / f"{split}.txt").write_text("s0\ns1\n")
    return root


def test_target_free_image_loss_and_metrics(target_free_root, tmp_path):
    # loss: a batch whose every image is target-free is finite (warm-up and scale loss)
    for mode in ("var", "diff"):
        model = IRSTDSegmentor(net=dict(channels=(4, 8, 8, 16, 16), blocks=(1, 1, 1, 1), gauss_conv="both"),
                               loss=dict(mode=mode), warmup_epochs=1)
        ds = SIRSTSegDataset(target_free_root, names=["s1", "s1"], mode="train", crop_size=32)
        batch = pad_collate([ds[0], ds[1]])
        assert all(int(d["gt_mask"].sum()) == 0 for d in batch["data_samples"])
        for epoch in (0, 1):
            model.epoch = epoch
            out = model(batch["inputs"], batch["data_samples"], mode="loss")
            assert torch.isfinite(out["loss_seg"]) and out["warmup"].item() == float(epoch == 0)
            out["loss_seg"].backward()
    # evaluation through the Runner: a test set holding a target-free image runs and gives in-range metrics, Pd
    # over its one target (0 or 1); how an empty image counts (no target, its pixels false alarms) is
    # tests/test_metrics.py's
    _new_second()
    metrics = test_tool.main([BASE, str(_init_checkpoint(tmp_path)), "--work-dir", str(tmp_path), "--cfg-options",
                              *TINY, f"test_dataloader.dataset.data_root={target_free_root}"])
    _check_metrics(metrics)
    assert metrics["irstd/Pd"] in (0.0, 1.0)


def test_test_tool_refuses_a_checkpoint_of_another_model(target_free_root, tmp_path, capsys):
    """tools/test.py stops with one line (exit 2) before scoring weights the config's model does not get: a base
    checkpoint for the gauss config (σ/θ missing), a gauss checkpoint for the base config (σ/θ would be dropped),
    a foreign state_dict, a truncated file; the base checkpoint for its own config is scored."""
    base_ckpt = _init_checkpoint(tmp_path)
    foreign = tmp_path / "foreign.pth"
    torch.save({"state_dict": {"foo.weight": torch.zeros(1)}}, foreign)
    cut = tmp_path / "cut.pth"
    cut.write_bytes(base_ckpt.read_bytes()[:100])
    opts = ["--work-dir", str(tmp_path), "--cfg-options", *TINY, f"test_dataloader.dataset.data_root={target_free_root}"]
    for cfg, ckpt, says in [(GAUSS, base_ckpt, r"holds \d+ of the \d+ weights of this config's model \(missing "
                                                r"net\.[\w.]*(sigma_raw|theta)"),
                            (BASE, foreign, r"holds 0 of the \d+ weights"),
                            (BASE, _init_checkpoint(tmp_path, GAUSS), r"holds σ/θ of Gaussian-shaped convs this "
                                                                      r"config's model does not have \(net\.[\w.]*"
                                                                      r"(sigma_raw|theta).*the \*_gauss\.py twin"),
                            (BASE, cut, "cannot be read as a torch checkpoint")]:
        _new_second()
        with pytest.raises(SystemExit) as e:
            test_tool.main([cfg, str(ckpt), *opts])
        err = capsys.readouterr().err.strip()
        assert e.value.code == 2 and len(err.splitlines()) == 1, err
        assert err.startswith(f"test.py: error: ValueError: checkpoint {ckpt} "), err
        assert re.search(says, err), err
    _new_second()
    _check_metrics(test_tool.main([BASE, str(base_ckpt), *opts]))


def test_train_tool_resume_names_a_missing_or_foreign_checkpoint(tmp_path, capsys):
    """``--resume CKPT``: a missing file and a checkpoint of the other twin stop in one line naming --resume or the
    file (not the detectors' COCO hint), before any training."""
    base_ckpt = _init_checkpoint(tmp_path)
    for cfg, ckpt, says in [(BASE, tmp_path / "nope.pth", "FileNotFoundError: --resume {}: no such checkpoint; name "
                                                          "a .pth in this config's work dir, or --resume auto"),
                            (GAUSS, base_ckpt, "ValueError: checkpoint {} holds ")]:
        with pytest.raises(SystemExit) as e:
            train_tool.main([cfg, "--work-dir", str(tmp_path / "w"), "--resume", str(ckpt), "--cfg-options", *TINY])
        err = capsys.readouterr().err.strip()
        assert e.value.code == 2 and err.startswith("train.py: error: " + says.format(ckpt)), err
        assert len(err.splitlines()) == 1 and "coco" not in err.lower(), err


@pytest.mark.parametrize("workers", [0, 1])
def test_a_corrupt_image_stops_training_in_one_line(target_free_root, tmp_path, capsys, workers):
    """An image that does not decode, met while training (in the main process or in a DataLoader worker, which
    wraps the error in its traceback text): train.py prints the dataset's one line naming the file and the fix."""
    import shutil

    root = tmp_path / "broken"
    shutil.copytree(target_free_root, root)
    (root / "images" / "s1.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    opts = [o for o in TINY if not o.startswith("train_dataloader.num_workers")]
    with pytest.raises(SystemExit) as e:
        train_tool.main([BASE, "--work-dir", str(tmp_path / "w"), "--cfg-options", *opts,
                         f"train_dataloader.num_workers={workers}", f"train_dataloader.dataset.data_root={root}",
                         f"val_dataloader.dataset.data_root={root}", f"test_dataloader.dataset.data_root={root}"])
    err = capsys.readouterr().err.strip().splitlines()
    assert e.value.code == 2 and err[-1].startswith(f"train.py: error: image {root / 'images' / 's1.png'} cannot be "
                                                    "read ("), err[-3:]
    assert err[-1].endswith("replace it with a valid PNG or drop 's1' from the split list")
    # printed once, not as a traceback (other lines on stderr may come from loggers of earlier tests)
    assert sum(ln.startswith("train.py: error:") for ln in err) == 1, err
    assert not any(ln.startswith(("Original Traceback", "gaussconv_plugin.data.sirst.DataFileError", "ValueError: image"))
                   for ln in err), err


def test_cfg_options_keep_paths_with_spaces_and_commas(target_free_root, tmp_path):
    """MMEngine's DictAction deletes spaces and splits at commas; the tools keep a value naming an existing path."""
    import shutil

    root = tmp_path / "my sets, v1"
    shutil.copytree(target_free_root, root)
    args = train_tool.parse_args([BASE, "--cfg-options", f"test_dataloader.dataset.data_root={root}", "a=[1,2]",
                                  "b=3", "c=None", "d=/no such/dir", "e=(4,5)"])
    assert args.cfg_options == {"test_dataloader.dataset.data_root": str(root), "a": [1, 2], "b": 3, "c": None,
                                "d": "/nosuch/dir", "e": (4, 5)}  # all but the existing path: as MMEngine parses
    _new_second()
    metrics = test_tool.main([BASE, str(_init_checkpoint(tmp_path)), "--work-dir", str(tmp_path), "--cfg-options",
                              *TINY, f"test_dataloader.dataset.data_root={root}"])
    _check_metrics(metrics)


def test_model_modes_and_warmup_from_message_hub():
    model = IRSTDSegmentor(net=dict(channels=(4, 8, 8, 16, 16), blocks=(1, 1, 1, 1)), loss=dict(mode="diff"),
                           warmup_epochs=3)
    hub = MessageHub.get_instance("unet_warmup_probe")
    for epoch, warm in [(0, True), (2, True), (3, False), (10, False)]:
        hub.update_info("epoch", epoch)
        assert model.current_epoch() == epoch and model.in_warmup() is warm
    model.epoch = 0  # explicit override wins
    assert model.in_warmup()
    x = torch.randn(2, 1, 64, 96)
    samples = [{"gt_mask": torch.zeros(64, 96, dtype=torch.uint8), "img_shape": (50, 70), "name": "a"},
               {"gt_mask": torch.zeros(64, 96, dtype=torch.uint8), "img_shape": (64, 96), "name": "b"}]
    model.eval()
    with torch.no_grad():
        preds = model(x, samples, mode="predict")
        raw = model(x, mode="tensor")
    assert [tuple(p["pred_prob"].shape) for p in preds] == [(50, 70), (64, 96)]
    assert [tuple(p["gt_mask"].shape) for p in preds] == [(50, 70), (64, 96)]
    assert all(0 <= float(p["pred_prob"].min()) and float(p["pred_prob"].max()) <= 1 for p in preds)
    torch.testing.assert_close(preds[1]["pred_prob"], torch.sigmoid(raw[1, 0]))
    # each image alone at its own size: the same prediction whatever the batch and its padding hold
    with torch.no_grad():
        alone = model(x[:1, :, :50, :70], samples[:1], mode="predict")[0]["pred_prob"]
        other = model(torch.cat([x[:1], torch.randn(1, 1, 64, 96) * 5]), samples, mode="predict")[0]["pred_prob"]
        in_batch = torch.sigmoid(raw[0, 0, :50, :70])
    torch.testing.assert_close(preds[0]["pred_prob"], alone)
    torch.testing.assert_close(other, alone)
    assert not torch.allclose(in_batch, alone, atol=1e-4)  # what padding to the batch's size would have given
    model.train()
    fused, sides = model(x, mode="tensor")
    assert fused.shape == (2, 1, 64, 96) and [s.shape[-1] for s in sides] == [96, 48, 24, 12]
    with pytest.raises(ValueError, match="unknown mode"):
        model(x, samples, mode="bogus")
    with pytest.raises(ValueError, match="gt_mask"):
        model(x, [{}, {}], mode="loss")


def test_overlay_colours():
    gray = np.full((2, 2), 100, np.uint8)
    pred = np.array([[1, 1], [0, 0]], bool)
    gt = np.array([[1, 0], [1, 0]], bool)
    o = overlay_image(gray, pred, gt, alpha=1.0)
    assert o[0, 0].tolist() == [255, 255, 0] and o[0, 1].tolist() == [255, 0, 0]
    assert o[1, 0].tolist() == [0, 255, 0] and o[1, 1].tolist() == [100, 100, 100]


@pytest.mark.parametrize("suffix", ["cpu", "paper", "nudt_cpu", "irstd1k_cpu", "irstd1k_paper"])
def test_unet_twins_differ_in_the_conv_and_the_loss_alone(suffix, config_diff):
    """Each gauss twin is its base config with the conv placement and the loss mode (and their own settings)
    changed, nothing else: the whole configs, flattened, differ in exactly those keys."""
    fb, fg, diff = config_diff(Config.fromfile(str(CFG / f"unet_mshnet_base_{suffix}.py")),
                               Config.fromfile(str(CFG / f"unet_gauss_diff_{suffix}.py")))
    assert diff == {"model.net.gauss_conv", "model.net.gauss_kwargs.tau", "model.loss.mode",
                    "model.loss.lambda_over", "model.loss.lambda_under"}, diff
    assert (fb["model.net.gauss_conv"], fg["model.net.gauss_conv"]) == ("none", "both")
    assert (fb["model.loss.mode"], fg["model.loss.mode"]) == ("var", "diff")


def test_configs_parse_and_differ_only_where_intended():
    base, gauss = Config.fromfile(BASE), Config.fromfile(GAUSS)
    paper = Config.fromfile(str(CFG / "unet_mshnet_base_paper.py"))
    gpaper = Config.fromfile(str(CFG / "unet_gauss_diff_paper.py"))
    assert base.model.loss.mode == "var" and base.model.net.gauss_conv == "none"
    assert gauss.model.loss.mode == "diff" and gauss.model.net.gauss_conv == "both"
    assert gpaper.model.loss.mode == "diff" and gpaper.model.net.gauss_conv == "both"
    assert paper.model.loss.mode == "var" and paper.model.net.gauss_conv == "none"
    for c in (paper, gpaper):
        assert c.train_dataloader.dataset.crop_size == 256 and c.train_cfg.max_epochs == 400
        # MSHNet: --warm-epoch 5 with `epoch > warm_epoch`, i.e. epochs 0-5; batch 4 with drop_last
        assert c.model.warmup_epochs == 6 and c.train_dataloader.batch_size == 4 and c.train_dataloader.drop_last
    # IRSTD-1k at MSHNet's own protocol: base 256, train on trainval, test images resized to 256²
    ip = Config.fromfile(str(CFG / "unet_mshnet_base_irstd1k_paper.py"))
    assert (ip.train_dataloader.dataset.base_size, ip.train_dataloader.dataset.split) == (256, "trainval")
    assert ip.train_dataloader.dataset.default_root == "irstd1k" and ip.model.warmup_epochs == 6
    for dl in (ip.val_dataloader, ip.test_dataloader):
        assert (dl.dataset.split, dl.dataset.test_size, dl.dataset.default_root) == ("test", 256, "irstd1k")
    assert base.train_dataloader.dataset.data_root is None  # resolved by sirst_root() at build time
    for c in (base, gauss, paper, gpaper):
        assert c.val_dataloader.dataset.mode == "test" and c.default_hooks.visualization.type == "IRSTDVisualizationHook"
    assert IRSTDMetric.default_prefix == "irstd"
