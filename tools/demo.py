#!/usr/bin/env python
"""The main job on the embedded default (no downloaded data): `make demo`.

1. Writes a synthetic infrared small-target set in the SIRST layout (``gaussconv_plugin.data.synthetic``) to the
   cache (``~/.cache/gaussconv_plugin/demo``).
2. Trains the MSHNet-style U-Net with GaussianShapedConv + the diff scale loss
   (``mmdet_cfgs/unet_gauss_diff_cpu.py``) on it through ``tools/train.py`` (MMEngine Runner) and evaluates the
   last checkpoint on the held-out split through ``tools/test.py`` (mIoU, nIoU, Pd, Fa; masks + overlays PNG).
3. Trains ``yolov8n-gauss.yaml`` (diff box loss) for one epoch with the stock ``yolo`` CLI and checks that the
   fused model (GaussianShapedConv folded into plain convs) gives the same outputs.

    python tools/demo.py [--epochs 6] [--images 64] [--yolo-epochs 1] [--skip-yolo]

Every command it runs is printed first, so each step can be repeated by hand.
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from gaussconv_plugin.data import cache_dir, make_synthetic_sirst  # noqa: E402


def run(cmd: list[str], **kw) -> subprocess.CompletedProcess:
    print("$ " + " ".join(str(c) for c in cmd), flush=True)
    return subprocess.run([str(c) for c in cmd], check=True, **kw)


def unet_part(root: Path, work: Path, epochs: int) -> dict:
    from tools import test as test_tool  # noqa: E402  (same code as `python tools/test.py`)

    cfg = REPO / "mmdet_cfgs" / "unet_gauss_diff_cpu.py"
    roots = [f"{d}.dataset.data_root={root}" for d in ("train_dataloader", "val_dataloader", "test_dataloader")]
    opts = roots + [
        f"train_cfg.max_epochs={epochs}", f"train_cfg.val_interval={epochs}", "model.warmup_epochs=1",
        f"default_hooks.checkpoint.interval={epochs}", "train_dataloader.num_workers=0",
        "train_dataloader.persistent_workers=False", "val_dataloader.num_workers=0",
        "val_dataloader.persistent_workers=False", "test_dataloader.num_workers=0",
        "test_dataloader.persistent_workers=False",
    ]
    t0 = time.time()
    run([sys.executable, REPO / "tools" / "train.py", cfg, "--work-dir", work, "--cfg-options", *opts])
    train_s = time.time() - t0
    ckpt = work / f"epoch_{epochs}.pth"
    argv = [str(cfg), str(ckpt), "--work-dir", str(work), "--show-dir", str(work / "vis"), "--cfg-options", *opts]
    print("$ " + " ".join([sys.executable, str(REPO / "tools" / "test.py"), *argv]), flush=True)
    metrics = test_tool.main(argv)
    return {"metrics": metrics, "train_s": train_s, "checkpoint": ckpt, "vis": work / "vis",
            "loss_by_epoch": _loss_by_epoch(work)}


def _loss_by_epoch(work: Path) -> dict[int, float]:
    """Mean training loss per epoch from MMEngine's ``vis_data/scalars.json`` (one JSON object per log line)."""
    import json

    per: dict[int, list[float]] = {}
    for f in sorted(work.glob("*/vis_data/scalars.json")):
        for line in f.read_text().splitlines():
            rec = json.loads(line)
            if "loss" in rec and "epoch" in rec:
                per.setdefault(int(rec["epoch"]), []).append(float(rec["loss"]))
    return {e: sum(v) / len(v) for e, v in sorted(per.items())}


def yolo_part(root: Path, work: Path, epochs: int) -> dict:
    from gaussconv_plugin.data.yolo_format import prepare_yolo

    data_yaml = prepare_yolo(root, cache_dir("demo", "synthetic_yolo"))
    yolo = Path(sys.executable).with_name("yolo")
    t0 = time.time()
    run([yolo, "train", "model=yolov8n-gauss.yaml", f"data={data_yaml}", f"epochs={epochs}", "imgsz=256",
         "batch=16", "device=cpu", "workers=0", f"project={work}", "name=train", "exist_ok=True", "seed=0"],
        cwd=work)
    train_s = time.time() - t0
    best = work / "train" / "weights" / "best.pt"

    import torch
    from ultralytics import YOLO

    from gaussconv_plugin import GaussianShapedConv, GaussianShapedConv2d

    model = YOLO(str(best)).model.float().eval()
    n_gs = sum(isinstance(m, GaussianShapedConv) for m in model.modules())
    count_gs2d = lambda: sum(isinstance(m, GaussianShapedConv2d) for m in model.modules())  # noqa: E731
    x = torch.rand(1, 3, 256, 256)
    with torch.no_grad():
        y0 = model(x)[0]
        model.fuse()
        y1 = model(x)[0]
    n_left = count_gs2d()
    return {"train_s": train_s, "best": best, "gs_layers": n_gs, "gs_after_fuse": n_left,
            "fuse_max_abs_diff": float((y0 - y1).abs().max()), "results_csv": work / "train" / "results.csv"}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=64, help="synthetic images (default 64)")
    ap.add_argument("--epochs", type=int, default=6, help="U-Net epochs (default 6)")
    ap.add_argument("--yolo-epochs", type=int, default=1, help="YOLO epochs (default 1)")
    ap.add_argument("--skip-yolo", action="store_true")
    ap.add_argument("--out", default=None, help="work folder (default ~/.cache/gaussconv_plugin/demo)")
    a = ap.parse_args(argv)
    out = Path(a.out) if a.out else cache_dir("demo")
    data = make_synthetic_sirst(out / "synthetic_sirst", n=a.images, seed=0)
    print(f"synthetic IR set: {a.images} images in {data}")
    unet_dir = out / "unet_gauss_diff"
    shutil.rmtree(unet_dir, ignore_errors=True)
    u = unet_part(data, unet_dir, a.epochs)
    y = None
    if not a.skip_yolo:
        ydir = out / "yolo"
        shutil.rmtree(ydir, ignore_errors=True)
        ydir.mkdir(parents=True)
        y = yolo_part(data, ydir, a.yolo_epochs)

    m = u["metrics"]
    get = lambda k: next((v for kk, v in m.items() if kk.endswith(k)), float("nan"))  # noqa: E731
    print("\n================ demo summary ================")
    print(f"U-Net + GaussianShapedConv + diff scale loss, {a.epochs} epochs on {a.images} synthetic images "
          f"({u['train_s']:.0f} s):")
    if u["loss_by_epoch"]:
        print("  mean training loss by epoch: " + ", ".join(f"{e}: {v:.3f}" for e, v in u["loss_by_epoch"].items()))
    print(f"  test split: mIoU {get('mIoU'):.4f}  nIoU {get('nIoU'):.4f}  Pd {get('Pd'):.4f}  "
          f"Fa {get('Fa_e6'):.1f}e-6")
    print(f"  checkpoint: {u['checkpoint']}")
    print(f"  predicted masks and overlays: {u['vis']}")
    if y is not None:
        print(f"YOLOv8n-gauss (diff box loss), {a.yolo_epochs} epoch(s) with the stock yolo CLI ({y['train_s']:.0f} s):")
        print(f"  {y['gs_layers']} GaussianShapedConv layers; GaussianShapedConv2d left after model.fuse(): {y['gs_after_fuse']}; "
              f"max |fused − unfused| = {y['fuse_max_abs_diff']:.2e}")
        print(f"  weights: {y['best']}  (metrics per epoch: {y['results_csv']})")
    print("==============================================")


if __name__ == "__main__":
    os.environ.setdefault("MPLBACKEND", "Agg")
    main()
