"""Real MMEngine Runner on a small real-SIRST subset (16 images per split, 128 px): both CPU RetinaNet configs train
and evaluate, resume continues the iteration count, tools/test.py dumps and draws, two-process torchrun training
on CPU (gloo), MMDetection's own tools/train.py with only ``custom_imports``, and one-line config errors."""
from __future__ import annotations

import importlib.util
import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import gaussconv_plugin.mmdet  # noqa: F401  (this process reads MMEngine checkpoints: the torch.load allow-list)
from gaussconv_plugin.data.coco_format import prepare_coco
from gaussconv_plugin.masks import sigma_to_raw

REPO = Path(__file__).resolve().parents[1]
CFG = REPO / "mmdet_cfgs"
BASE = str(CFG / "retinanet_r18_fpn_sirst320_cpu.py")
GAUSS = str(CFG / "retinanet_r18_fpn_sirst320_cpu_gauss.py")
N_IMAGES = 16
TINY = [  # a few iterations on 128-px inputs, no worker processes; score_thr 0 so an untrained model still
    # outputs boxes (else CocoMetric has nothing to score and returns no mAP at all)
    "train_dataloader.batch_size=4", "model.test_cfg.score_thr=0.0", "train_dataloader.num_workers=0", "train_dataloader.persistent_workers=False",
    "val_dataloader.batch_size=4", "val_dataloader.num_workers=0", "val_dataloader.persistent_workers=False",
    "test_dataloader.batch_size=4", "test_dataloader.num_workers=0", "test_dataloader.persistent_workers=False",
    "train_dataloader.dataset.pipeline.2.scale=(128,128)", "val_dataloader.dataset.pipeline.1.scale=(128,128)",
    "test_dataloader.dataset.pipeline.1.scale=(128,128)",
    "train_cfg.max_epochs=1", "train_cfg.val_interval=1", "param_scheduler.0.end=2",
    "default_hooks.logger.interval=2", "randomness.seed=0",
]


def _load(path, map_location="cpu"):
    """An MMEngine checkpoint the way MMEngine's loader reads it (weights-only, HistoryBuffer's getattr allowed)."""
    from gaussconv_plugin.mmdet.checkpoints import mmengine_checkpoint_globals

    with mmengine_checkpoint_globals():
        return torch.load(path, map_location=map_location)


def _load_tool(name: str):
    spec = importlib.util.spec_from_file_location(f"gaussconv_tools_{name}", REPO / "tools" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


train_tool = _load_tool("train")
test_tool = _load_tool("test")


def _own(work: Path) -> list[str]:
    """Per-run visualizer name: MMEngine keeps one Visualizer per name per process, and MMDetection's default
    runtime names it 'visualizer', so a second in-process Runner would log into the first one's work dir."""
    return [f"visualizer.name=vis_{work.name}"]


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def coco(tmp_path_factory):
    """A 16-image COCO subset of trainval and test, exported as GAUSSCONV_SIRST_COCO (the configs read it)."""
    out = prepare_coco(out_dir=tmp_path_factory.mktemp("sirst_coco"), limit=N_IMAGES, verbose=False)
    old = os.environ.get("GAUSSCONV_SIRST_COCO")
    os.environ["GAUSSCONV_SIRST_COCO"] = str(out)
    yield out
    if old is None:
        os.environ.pop("GAUSSCONV_SIRST_COCO", None)
    else:
        os.environ["GAUSSCONV_SIRST_COCO"] = old


def _val_metrics(work_dir: Path) -> list[dict]:
    rows = []
    for f in sorted(work_dir.glob("*/vis_data/scalars.json")):
        rows += [r for r in map(json.loads, f.read_text().splitlines()) if "coco/bbox_mAP" in r]
    return rows


def _check_map(row: dict) -> None:
    for key in ("coco/bbox_mAP", "coco/bbox_mAP_50", "coco/bbox_mAP_75", "coco/bbox_mAP_s"):
        v = row[key]
        # -1 is COCO's "no ground truth in this range": possible for a size bucket only, never for all boxes
        ok = 0.0 <= v <= 1.0 or (v == -1.0 and key == "coco/bbox_mAP_s")
        assert isinstance(v, (int, float)) and not math.isnan(v) and ok, (key, v)


def _iters_per_epoch(world_size: int = 1, batch: int = 4) -> int:
    return math.ceil(N_IMAGES / world_size / batch)


@pytest.fixture(scope="module")
def gauss_run(coco, tmp_path_factory):
    work = tmp_path_factory.mktemp("gauss_run")
    runner = train_tool.main([GAUSS, "--work-dir", str(work), "--cfg-options", *TINY, *_own(work)])
    return work, runner


def _subprocess_env(coco: Path) -> dict:
    env = dict(os.environ, GAUSSCONV_SIRST_COCO=str(coco), OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    env.pop("LOCAL_RANK", None)
    return env


# ----------------------------------------------------------------------------------------------- training
def test_gauss_config_trains_and_evaluates(gauss_run):
    work, runner = gauss_run
    n = _iters_per_epoch()
    assert runner.iter == n and runner.epoch == 1
    rows = _val_metrics(work)
    assert len(rows) == 1
    _check_map(rows[0])
    sd = _load(work / "epoch_1.pth", map_location="cpu")["state_dict"]
    assert sd["backbone.conv1.sigma_raw"].shape == (64,) and "backbone.layer1.1.conv2.theta" in sd
    assert "backbone.layer2.0.conv1.sigma_raw" not in sd  # stage 2 stays plain
    # the Gaussian parameters were trained by the Runner's optimizer
    assert not torch.equal(sd["backbone.conv1.sigma_raw"], sigma_to_raw(3.5).expand(64))
    assert type(runner.model.bbox_head.loss_bbox).__name__ == "DiffScaleIoULoss"


def test_baseline_config_trains_and_evaluates(coco, tmp_path):
    runner = train_tool.main([BASE, "--work-dir", str(tmp_path), "--cfg-options", *TINY, *_own(tmp_path)])
    assert runner.iter == _iters_per_epoch()
    rows = _val_metrics(tmp_path)
    assert len(rows) == 1
    _check_map(rows[0])
    sd = _load(tmp_path / "epoch_1.pth", map_location="cpu")["state_dict"]
    assert not any("sigma_raw" in k for k in sd)
    assert type(runner.model.bbox_head.loss_bbox).__name__ == "GIoULoss"


def test_resume_continues_iterations(gauss_run, tmp_path):
    """--resume CKPT under torch's weights_only default (--resume without a path: the MMDetection-tool test)."""
    work, _ = gauss_run
    shutil.copy(work / "epoch_1.pth", tmp_path / "epoch_1.pth")
    runner = train_tool.main([GAUSS, "--work-dir", str(tmp_path), "--resume", str(tmp_path / "epoch_1.pth"),
                              "--cfg-options", *TINY,
                              *_own(tmp_path), "train_cfg.max_epochs=2", "train_cfg.val_interval=5"])
    n = _iters_per_epoch()
    assert runner.epoch == 2 and runner.iter == 2 * n
    logs = "".join(p.read_text() for p in tmp_path.glob("*/*.log"))
    assert f"resumed epoch: 1, iter: {n}" in logs
    meta = _load(tmp_path / "epoch_2.pth", map_location="cpu")["meta"]
    assert (meta["epoch"], meta["iter"]) == (2, 2 * n)


def test_test_tool_evaluates_dumps_and_draws(gauss_run, tmp_path):
    work, _ = gauss_run
    out = tmp_path / "preds.pkl"
    metrics = test_tool.main([GAUSS, str(work / "epoch_1.pth"), "--work-dir", str(tmp_path), "--out", str(out),
                              "--show-dir", str(tmp_path / "show"), "--cfg-options", *TINY, *_own(tmp_path)])
    _check_map(metrics)
    import pickle

    preds = pickle.loads(out.read_bytes())
    assert len(preds) == N_IMAGES and "pred_instances" in preds[0]
    assert len(list((tmp_path / "show").rglob("*.png")) + list((tmp_path / "show").rglob("*.jpg"))) == N_IMAGES


# --------------------------------------------------------------------------------------- distributed / hosts
def test_torchrun_two_processes_on_cpu(coco, tmp_path):
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           str(REPO / "tools" / "train.py"), GAUSS, "--launcher", "pytorch", "--work-dir", str(tmp_path),
           "--cfg-options", *TINY]
    res = subprocess.run(cmd, cwd=tmp_path, env=_subprocess_env(coco), capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    logs = "".join(p.read_text() for p in tmp_path.glob("*/*.log"))
    assert "Distributed training: True" in logs and "backend 'gloo', rank 0/2" in logs
    meta = _load(tmp_path / "epoch_1.pth", map_location="cpu")["meta"]
    assert meta["iter"] == _iters_per_epoch(world_size=2)  # each process saw half of the 16 images
    rows = _val_metrics(tmp_path)
    assert len(rows) == 1
    _check_map(rows[0])


def test_leaving_the_process_group_frees_the_cycle_held_ddp_model_first(tmp_path):
    """``leave_process_group`` collects the DDP model that only reference cycles keep alive (as a finished runner
    does) before it destroys the group; left for interpreter exit, its gloo group aborted a rank now and then."""
    import gc

    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel as DDP

    from gaussconv_plugin.mmdet.runner import leave_process_group

    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    try:
        model = DDP(torch.nn.Conv2d(1, 2, 3))
        model(torch.randn(1, 1, 8, 8)).sum().backward()
        holder = {"model": model}
        holder["self"] = holder  # a cycle, like runner ↔ hooks
        del model, holder
        assert sum(isinstance(o, DDP) for o in gc.get_objects()) == 1
        leave_process_group()
        assert not dist.is_initialized()
        assert sum(isinstance(o, DDP) for o in gc.get_objects()) == 0
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


_WORKER = """
import json, os, runpy, sys
import torch.distributed as dist
tool, out = sys.argv[1], sys.argv[2]
before = "gaussconv_plugin" in sys.modules or "gaussconv_plugin.mmdet" in sys.modules  # (the .pth auto-hook
# of the YOLO adapter loads only gaussconv_plugin._autohook, stdlib-only, not the package)
# MMEngine 0.10's init_dist needs CUDA; with a gloo group already up, the Runner skips it
dist.init_process_group("gloo")
sys.argv = [tool] + sys.argv[3:]
runpy.run_path(tool, run_name="__main__")
from mmdet.registry import MODELS
rank = dist.get_rank()
with open(os.path.join(out, f"rank{rank}.json"), "w") as f:
    json.dump(dict(imported_before_config=before, registered=MODELS.get("GaussResNet") is not None,
                   loss_registered=MODELS.get("DiffScaleIoULoss") is not None), f)
# this script made the group, so it ends it, after freeing the cycle-held DDP model: a gloo group torn down at
# exit can abort a worker ("terminate called without an active exception", exit -6) after all above succeeded
from gaussconv_plugin.mmdet.runner import leave_process_group
leave_process_group()
"""


def test_custom_imports_register_in_every_torchrun_worker(coco, tmp_path):
    """Two workers running MMDetection's own tools/train.py under torchrun: each gets the registrations from the
    config's custom_imports alone (gaussconv_plugin is not imported before the config is read)."""
    import mmdet

    tool = Path(mmdet.__file__).parent / ".mim" / "tools" / "train.py"
    worker = tmp_path / "worker.py"
    worker.write_text(_WORKER)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", str(worker),
           str(tool), str(tmp_path), GAUSS, "--launcher", "pytorch", "--work-dir", str(tmp_path / "work"),
           "--cfg-options", *TINY, "train_cfg.val_interval=5", "model_wrapper_cfg.type=MMDistributedDataParallel",
           "model_wrapper_cfg.device_ids=None"]
    res = subprocess.run(cmd, cwd=tmp_path, env=_subprocess_env(coco), capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    for rank in (0, 1):
        info = json.loads((tmp_path / f"rank{rank}.json").read_text())
        assert info == dict(imported_before_config=False, registered=True, loss_registered=True), (rank, info)
    sd = _load(tmp_path / "work" / "epoch_1.pth", map_location="cpu")
    assert "backbone.conv1.sigma_raw" in sd["state_dict"] and sd["meta"]["iter"] == _iters_per_epoch(world_size=2)


@pytest.mark.parametrize("config", [BASE, GAUSS], ids=["base", "gauss"])
def test_mmdetection_own_train_tool_with_custom_imports_only(coco, tmp_path, config):
    """MMDetection's packaged tools/train.py (which never imports gaussconv_plugin): the config's custom_imports
    registers GaussResNet / DiffScaleIoULoss, and --resume works there too (the torch.load allow-list comes with
    the same import)."""
    import mmdet

    tool = Path(mmdet.__file__).parent / ".mim" / "tools" / "train.py"
    assert "gaussconv_plugin" not in tool.read_text()
    env = _subprocess_env(coco)
    res = subprocess.run([sys.executable, str(tool), config, "--work-dir", str(tmp_path), "--cfg-options", *TINY],
                         cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    sd = _load(tmp_path / "epoch_1.pth", map_location="cpu")["state_dict"]
    assert ("backbone.conv1.sigma_raw" in sd) == (config == GAUSS)
    _check_map(_val_metrics(tmp_path)[0])
    if config == GAUSS:
        res = subprocess.run([sys.executable, str(tool), config, "--work-dir", str(tmp_path), "--resume",
                              "--cfg-options", *TINY, "train_cfg.max_epochs=2", "train_cfg.val_interval=5"],
                             cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
        assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
        meta = _load(tmp_path / "epoch_2.pth", map_location="cpu")["meta"]
        assert meta["iter"] == 2 * _iters_per_epoch()


# -------------------------------------------------------------------------------------------------- errors
@pytest.mark.parametrize("option, expected", [
    ("model.bbox_head.loss_bbox.mode=dif",
     "unknown scale-loss mode 'dif'; use one of diff, var, ratio, sqrt, none"),
    ("model.backbone.gauss_conv_cfg.type=GausianShapedConv2d",
     "model.backbone.gauss_conv_cfg: conv type 'GausianShapedConv2d' is not registered; use 'GaussianShapedConv2d'"),
    ("model.neck.conv_cfg.type=GausianShapedConv2d",
     "model.neck.conv_cfg: conv type 'GausianShapedConv2d' is not registered; use 'GaussianShapedConv2d'"),
])
def test_config_errors_are_one_line_naming_the_fix(coco, tmp_path, capsys, option, expected):
    with pytest.raises(SystemExit) as e:
        train_tool.main([GAUSS, "--work-dir", str(tmp_path), "--cfg-options", *TINY, *_own(tmp_path), option])
    assert e.value.code == 2
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("train.py: error:")]
    assert len(err) == 1 and expected in err[0], err


def test_amp_without_gpu_fails_early_in_one_line(capsys, tmp_path):
    if torch.cuda.is_available():
        pytest.skip("checks the CPU-only message; with a GPU the paper-scale config trains with AMP")
    with pytest.raises(SystemExit) as e:
        train_tool.main([str(CFG / "retinanet_r50_fpn_sirst640_amp.py"), "--work-dir", str(tmp_path)])
    assert e.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1] == ("train.py: error: RuntimeError: AmpOptimWrapper (--amp or the config's optim_wrapper) needs a "
                       "GPU; on CPU drop --amp or pass --cfg-options optim_wrapper.type=OptimWrapper")


def test_runner_from_cfg_surfaces_the_loss_error(coco, tmp_path):
    """MMDetection's own tool path (Runner.from_cfg): the traceback ends in the same one-line message."""
    from mmengine.config import Config
    from mmengine.runner import Runner

    cfg = Config.fromfile(GAUSS)
    cfg.work_dir = str(tmp_path)
    cfg.model.bbox_head.loss_bbox.mode = "dif"
    with pytest.raises(ValueError, match="unknown scale-loss mode 'dif'; use one of diff, var, ratio, sqrt, none"):
        Runner.from_cfg(cfg)


def test_missing_dataset_is_one_line_naming_the_fix(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("GAUSSCONV_SIRST_COCO", str(tmp_path / "nowhere"))
    with pytest.raises(SystemExit) as e:
        train_tool.main([GAUSS, "--work-dir", str(tmp_path / "w"), "--cfg-options", *TINY, *_own(tmp_path / "w")])
    assert e.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1] == (f"train.py: error: FileNotFoundError: [Errno 2] No such file or directory: "
                       f"'{tmp_path / 'nowhere' / 'annotations' / 'trainval.json'}'; prepare the dataset the config "
                       "points to (python tools/prepare_sirst.py --format coco, or set GAUSSCONV_SIRST_COCO)"), err
