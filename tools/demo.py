#!/usr/bin/env python
"""The main job on the embedded default (no downloaded data): `make demo`. Both hosts learn in a few CPU minutes.

1. Writes a synthetic infrared small-target set in the SIRST layout (``gaussconv_plugin.data.synthetic``,
   settings :data:`~gaussconv_plugin.data.synthetic.DEMO_SMALL`: 96 images 160 px wide, 1–4 Gaussian-blob
   targets of 3–5 px) to the cache (``~/.cache/gaussconv_plugin/demo``).
2. Trains the MSHNet-style U-Net with GaussianShapedConv + the diff scale loss
   (``mmdet_cfgs/unet_gauss_diff_cpu.py``) on it through ``tools/train.py`` (MMEngine Runner) and evaluates the
   last checkpoint on the held-out split through ``tools/test.py --show-dir`` (mIoU, nIoU, Pd, Fa; masks and
   overlays PNG).
3. Trains ``yolov8n-p2-gauss.yaml`` (P2–P5 head, GaussianShapedConv in layers 0–1, stock box loss) with the stock
   ``yolo`` CLI, evaluates the final weights ``last.pt`` on the held-out split (P, R, mAP50; no epoch is chosen
   on it: ``best.pt``, which Ultralytics picks by that split's per-epoch validation, is not scored) beside the
   untrained start, draws its detections on a few test images (``detections.png``) and checks that the fused model
   (GaussianShapedConv folded into plain convs) gives the same outputs.

    python tools/demo.py                      # synthetic default: 3 min 36 s measured on a 2-core CPU (one thread,
                                              # beside two other trainings); ~3 min idle with 2 threads
    python tools/demo.py --data sirst         # the same on SIRST v1 (gaussconv_plugin.data.sirst_root()): the
                                              # configs' CPU schedules, ~30 min
    python tools/demo.py --data DIR           # any folder in the SIRST or IRSTD layout (NUDT-SIRST, IRSTD-1k, ...)
    python tools/demo.py --quick              # reduced size (tests/test_demo.py): checks that both learn
    options: --epochs N --yolo-epochs N --images N --imgsz N --threads N --skip-unet --skip-yolo --out DIR

Every command it runs is printed first, so each step can be repeated by hand.

YOLO's small-box prior (synthetic data): Ultralytics initialises the DFL box branch to predict boxes 15 strides
wide (60 px at P2), made for COCO. Against a 3–5 px target such a box has IoU 0.003–0.007, so the task-aligned
assigner's metric ``score^0.5 · IoU^6`` is below 1e-13, far under the assigner's eps (1e-9): every target score is
~1e-10 and the box loss ~1e-8. A set of only small targets then never starts to learn (measured on this set: box loss
≤ 6e-8 for 20 epochs, mAP50 0). The demo therefore saves the packaged model with the box branch's bias set to
``−k·bin`` (k = 1: expected side distance 0.58 stride, boxes of ~1 stride) as ``yolo/yolov8n-p2-gauss-smallbox.pt``
and trains from it (``yolo train model=...-smallbox.pt``); nothing else differs from ``model=yolov8n-p2-gauss.yaml``.
On real data, whose larger targets start the box loss by themselves (SIRST: box loss 2–4 from epoch 1), the prior
is off by default; ``--box-prior 1`` turns it on (do, if all your targets are a few px).
"""
from __future__ import annotations

import argparse
import csv
import json
import math
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from gaussconv_plugin.data import cache_dir, make_synthetic_sirst  # noqa: E402
from gaussconv_plugin.data.synthetic import DEMO_SMALL  # noqa: E402

#: the demo's synthetic set (images 160 px wide, 1–4 blobs of s 1.2–1.8 px: masks of 6–20 px, 3–5 px across).
#: Smaller blobs (s < 1.2: 1–2 px boxes) are dropped from YOLO's training labels by Ultralytics' augmentation
#: (RandomPerspective.box_candidates keeps only boxes wider and higher than 2 px) and could never be learnt by it.
DEMO_DATA = dict(DEMO_SMALL)


@dataclass
class Settings:
    """What the demo trains (see :func:`settings`)."""
    images: int | None          # synthetic images (None: real data)
    unet_epochs: int
    unet_warmup: int
    unet_opts: list = field(default_factory=list)  # extra --cfg-options of the U-Net config
    unet_batch: int = 8          # U-Net batch size (the config's: 8)
    yolo_epochs: int = 30
    imgsz: int = 160
    yolo_batch: int = 8
    yolo_args: list = field(default_factory=list)  # extra yolo train arguments
    box_prior: float = 1.0       # small-box prior k of the DFL branch (0: off, the packaged initialisation)
    n_show: int = 6              # test images in detections.png


def settings(data: str, quick: bool = False) -> Settings:
    """The demo's settings: ``data='synthetic'`` (the default; ``quick``: the reduced size of tests/test_demo.py)
    or real data (a folder: the configs' own U-Net schedule, YOLO at imgsz 320 as ``tools/ablation.py``)."""
    if data == "synthetic":
        unet = ["train_dataloader.dataset.crop_size=96", "train_dataloader.dataset.base_size=160",
                "train_dataloader.dataset.scale_range=(1.0,1.0)", "train_dataloader.dataset.blur_prob=0"]
        yolo = ["optimizer=AdamW", "lr0=0.002", "warmup_epochs=1", "mosaic=0", "scale=0"]
        # 3 soft-IoU warm-up epochs (27 / 54 steps): after 1 (9 steps) the diff scale loss, whose α ≈ 2T/P is tiny
        # while the untrained map is grey everywhere (P ≫ T), pushed the whole map down and, for some seeds and CPUs,
        # the targets with it into saturation (seed 0, quick: target p ≈ 1e-14, pixel AUC 0.49, mIoU 0 after 20
        # epochs; 1 of 3 seeds learned by epoch 12); with 3, seeds 0–3 all did (mIoU 0.50–0.61 at epoch 12)
        # quick YOLO: batch 4 on the 36 training images = 9 steps per epoch, as the full demo's batch 8 on 72; 25
        # epochs (225 steps) are what it takes to score on the held-out split (measured: mAP50 0.224 against the
        # untrained start's 0.000; 25 epochs at batch 8 = 125 steps still scored 0.000)
        if quick:
            return Settings(images=48, unet_epochs=12, unet_warmup=3, unet_opts=unet, unet_batch=4, yolo_epochs=25,
                            yolo_batch=4, yolo_args=yolo + ["val=False"], n_show=4)
        return Settings(images=96, unet_epochs=15, unet_warmup=3, unet_opts=unet, unet_batch=4, yolo_epochs=30,
                        yolo_args=yolo)
    # real data: the U-Net config's CPU schedule (20 epochs, 2 warm-up, 128 px crops) and the ablation's YOLO recipe
    if quick:
        return Settings(images=None, unet_epochs=2, unet_warmup=1, yolo_epochs=2, imgsz=320, yolo_batch=16,
                        box_prior=0.0, n_show=4)
    return Settings(images=None, unet_epochs=20, unet_warmup=2, yolo_epochs=15, imgsz=320, yolo_batch=16,
                    box_prior=0.0)


def run(cmd: list, **kw) -> subprocess.CompletedProcess:
    print("$ " + " ".join(str(c) for c in cmd), flush=True)
    return subprocess.run([str(c) for c in cmd], check=True, **kw)


def thread_env(threads: int) -> dict:
    """This process's environment (offline switches included) with ``threads`` torch/BLAS threads."""
    from gaussconv_plugin.yolo.offline import offline_env

    return offline_env(threads=threads)


def split_names(root: Path) -> tuple[str, str]:
    """``(train, evaluation)`` splits of a dataset folder (SIRST: trainval/test, IRSTD: train/test)."""
    from gaussconv_plugin.data.layout import default_splits, detect_layout

    return default_splits(detect_layout(root))


# ---------------------------------------------------------------------------------------------------- U-Net
def unet_part(root: Path, work: Path, s: Settings, threads: int = 1) -> dict:
    from tools import test as test_tool  # noqa: E402  (same code as `python tools/test.py`)
    from gaussconv_plugin.data import read_split

    cfg = REPO / "mmdet_cfgs" / "unet_gauss_diff_cpu.py"
    train_split, test_split = split_names(root)
    n_train = len(read_split(root, train_split))
    iters = max(1, math.ceil(n_train / s.unet_batch))
    opts = [f"{d}.dataset.data_root={root}" for d in ("train_dataloader", "val_dataloader", "test_dataloader")]
    opts += [f"train_dataloader.dataset.split={train_split}", f"val_dataloader.dataset.split={test_split}",
             f"test_dataloader.dataset.split={test_split}"]
    for d in ("train_dataloader", "val_dataloader", "test_dataloader"):
        opts += [f"{d}.num_workers=0", f"{d}.persistent_workers=False"]
    opts += [
        f"train_cfg.max_epochs={s.unet_epochs}", f"train_cfg.val_interval={s.unet_epochs + 1}",  # no validation
        f"model.warmup_epochs={s.unet_warmup}", f"default_hooks.checkpoint.interval={s.unet_epochs}",
        "default_hooks.checkpoint.save_best=None", f"train_dataloader.batch_size={s.unet_batch}",
        f"default_hooks.logger.interval={iters}",
        f"log_processor.window_size={iters}",  # one log line per epoch = the epoch's mean loss
        *s.unet_opts,
    ]
    t0 = time.time()
    run([sys.executable, REPO / "tools" / "train.py", cfg, "--work-dir", work, "--cfg-options", *opts],
        env=thread_env(threads))
    train_s = time.time() - t0
    ckpt = work / f"epoch_{s.unet_epochs}.pth"
    vis = work / "vis"
    argv = [str(cfg), str(ckpt), "--work-dir", str(work), "--show-dir", str(vis), "--cfg-options", *opts]
    print("$ " + " ".join([sys.executable, str(REPO / "tools" / "test.py"), *argv]), flush=True)
    metrics = test_tool.main(argv)
    get = lambda k: float(next((v for kk, v in metrics.items() if kk.split("/")[-1] == k), float("nan")))  # noqa: E731
    from gaussconv_plugin.data import load_mask, mask_to_boxes

    names = read_split(root, test_split)
    n_targets = sum(len(mask_to_boxes(load_mask(root, n))) for n in names)
    return {"mIoU": get("mIoU"), "nIoU": get("nIoU"), "Pd": get("Pd"), "Fa_e6": get("Fa_e6"),
            "train_s": train_s, "checkpoint": ckpt, "vis": vis, "n_test": len(names), "n_targets": n_targets,
            "overlays": sorted(vis.glob("*_overlay.png")), "loss_by_epoch": loss_by_epoch(work),
            "warmup_epochs": s.unet_warmup, "epochs": s.unet_epochs}


def loss_by_epoch(work: Path) -> dict[int, float]:
    """Mean training loss per epoch from MMEngine's ``vis_data/scalars.json`` (one JSON object per log line; the
    demo logs once per epoch with a window of one epoch, so each line is that epoch's mean)."""
    per: dict[int, list[float]] = {}
    for f in sorted(work.glob("*/vis_data/scalars.json")):
        for line in f.read_text().splitlines():
            rec = json.loads(line)
            if "loss" in rec and "epoch" in rec:
                per.setdefault(int(rec["epoch"]), []).append(float(rec["loss"]))
    return {e: sum(v) / len(v) for e, v in sorted(per.items())}


# ---------------------------------------------------------------------------------------------------- YOLO
def small_box_model(path: Path, k: float, cfg: str = "yolov8n-p2-gauss.yaml") -> Path:
    """Save ``cfg`` (built fresh, nc from the YAML) with the DFL box branch's bias set to ``−k·bin`` (softmax
    ``∝ e^{−k·i}``: expected side distance ``1/(e^k − 1)`` strides, 0.58 for k = 1) as a ``.pt`` to train
    from."""
    import torch
    from ultralytics import YOLO

    y = YOLO(cfg)
    det = y.model.model[-1]
    prior = (-k * torch.arange(det.reg_max, dtype=torch.float32)).repeat(4)
    for branch in det.cv2:  # box branch of each level: last conv has 4·reg_max outputs
        branch[-1].bias.data.copy_(prior)
    path.parent.mkdir(parents=True, exist_ok=True)
    y.save(str(path))
    return path


def read_results(csv_path: Path) -> list[dict]:
    """Ultralytics' ``results.csv`` as a list of ``{column: float}`` (column names stripped)."""
    with open(csv_path, newline="") as f:
        return [{k.strip(): float(v) for k, v in row.items() if v not in (None, "")} for row in csv.DictReader(f)]


def yolo_part(root: Path, work: Path, s: Settings) -> dict:
    import torch
    from ultralytics import YOLO

    from gaussconv_plugin import GaussianShapedConv, GaussianShapedConv2d
    from gaussconv_plugin.data.yolo_format import prepare_yolo

    data_yaml = prepare_yolo(root, work / "data")
    model = "yolov8n-p2-gauss.yaml"
    if s.box_prior > 0:
        print(f"# yolov8n-p2-gauss.yaml with the small-box prior k={s.box_prior} (tools/demo.py small_box_model)")
        model = small_box_model(work / "yolov8n-p2-gauss-smallbox.pt", s.box_prior)
    yolo = Path(sys.executable).with_name("yolo")
    args = [f"model={model}", f"data={data_yaml}", f"epochs={s.yolo_epochs}", f"imgsz={s.imgsz}",
            f"batch={s.yolo_batch}", "device=cpu", "workers=0", f"project={work}", "name=train", "exist_ok=True",
            "seed=0", *s.yolo_args]
    untrained = held_out(model, data_yaml, work, s, "val_untrained")  # the start, for scale: what learning adds
    t0 = time.time()
    run([yolo, "train", *args], cwd=work)
    train_s = time.time() - t0
    last = work / "train" / "weights" / "last.pt"  # the final weights: no epoch chosen on the held-out split
    rows = read_results(work / "train" / "results.csv")
    out = {**held_out(last, data_yaml, work, s, "val", yolo), "untrained": untrained,
           "train_s": train_s, "weights": last, "results_csv": work / "train" / "results.csv", "rows": rows,
           "data_yaml": data_yaml, "model": model, "epochs": s.yolo_epochs, "imgsz": s.imgsz}
    out["detections"] = draw_detections(last, data_yaml, work / "detections.png", s.imgsz, s.n_show)
    out["n_shown"] = min(s.n_show, len(list((data_yaml.parent / "images" / "val").glob("*.png"))))

    # GaussianShapedConv layers and the fused model
    net = YOLO(str(last)).model.float().eval()
    out["gs_layers"] = sum(isinstance(mm, GaussianShapedConv) for mm in net.modules())
    x = torch.rand(1, 3, s.imgsz, s.imgsz)
    with torch.no_grad():
        y0 = net(x)[0]
        net.fuse()
        y1 = net(x)[0]
    out["gs_after_fuse"] = sum(isinstance(mm, GaussianShapedConv2d) for mm in net.modules())
    out["fuse_max_abs_diff"] = float((y0 - y1).abs().max())
    out["fuse_max_rel_diff"] = out["fuse_max_abs_diff"] / max(float(y0.abs().max()), 1e-12)
    return out


def held_out(weights, data_yaml: Path, work: Path, s: Settings, name: str, yolo: Path | None = None) -> dict:
    """P, R, mAP50, mAP50-95 of ``weights`` (a ``.pt`` or a model YAML) on the held-out split (= ``yolo val``, in
    this process; the command is printed where ``yolo`` is given). One class, scored class-agnostic
    (``single_cls``), so that an untrained start with the YAML's 80 classes is scored on the same terms."""
    from ultralytics import YOLO

    if yolo is not None:
        print(f"$ {yolo} val model={weights} data={data_yaml} imgsz={s.imgsz} batch={s.yolo_batch} device=cpu "
              "single_cls=True plots=False")
    m = YOLO(str(weights)).val(data=str(data_yaml), imgsz=s.imgsz, batch=s.yolo_batch, device="cpu", workers=0,
                               single_cls=True, plots=False, project=str(work), name=name, exist_ok=True,
                               verbose=False)
    box = m.box
    return {"P": float(box.mp), "R": float(box.mr), "mAP50": float(box.map50), "mAP50_95": float(box.map)}


def draw_detections(weights: Path, data_yaml: Path, out_png: Path, imgsz: int, n: int = 6, conf: float = 0.25,
                    cols: int = 3) -> Path:
    """One grid PNG of the first ``n`` validation images with the ground-truth boxes (green) and the predicted
    boxes with ``conf ≥ conf`` (red, confidence above). Small images are enlarged (nearest) so that 3-px boxes show;
    PIL only (its built-in font), no download."""
    from PIL import Image, ImageDraw, ImageFont
    from ultralytics import YOLO

    val_dir = data_yaml.parent / "images" / "val"
    files = sorted(val_dir.glob("*.png"), key=lambda p: (len(p.stem), p.stem))[:n]
    results = YOLO(str(weights)).predict([str(f) for f in files], imgsz=imgsz, conf=conf, device="cpu",
                                         verbose=False)
    try:
        font = ImageFont.load_default(size=14)  # Pillow's embedded font (FreeType), nothing downloaded
    except (TypeError, ValueError, OSError):
        font = ImageFont.load_default()
    tiles = []
    for f, r in zip(files, results):
        im = Image.open(f).convert("RGB")
        w, h = im.size
        z = max(1, 480 // max(w, h))
        im = im.resize((w * z, h * z), Image.NEAREST)
        d = ImageDraw.Draw(im)
        lab = data_yaml.parent / "labels" / "val" / f"{f.stem}.txt"
        for line in (lab.read_text().splitlines() if lab.is_file() else []):
            _, cx, cy, bw, bh = map(float, line.split())
            x1, y1 = (cx - bw / 2) * w * z, (cy - bh / 2) * h * z
            d.rectangle([x1 - 2, y1 - 2, x1 + bw * w * z + 2, y1 + bh * h * z + 2], outline=(0, 255, 0), width=1)
        for (x1, y1, x2, y2), c in zip(r.boxes.xyxy.tolist(), r.boxes.conf.tolist()):
            d.rectangle([x1 * z, y1 * z, x2 * z, y2 * z], outline=(255, 0, 0), width=2)
            d.text((x2 * z + 3, max(0, y1 * z - 14)), f"{c:.2f}", fill=(255, 64, 64), font=font)
        d.text((3, 3), f.stem, fill=(255, 255, 0), font=font)
        tiles.append(im)
    if not tiles:
        return out_png
    tw, th = max(t.width for t in tiles), max(t.height for t in tiles)
    rows = math.ceil(len(tiles) / cols)
    grid = Image.new("RGB", (cols * tw, rows * th), (32, 32, 32))
    for i, t in enumerate(tiles):
        grid.paste(t, ((i % cols) * tw, (i // cols) * th))
    grid.save(out_png)
    return out_png


# ---------------------------------------------------------------------------------------------------- summary
def summary(data_line: str, u: dict | None, y: dict | None, total_s: float, threads: int) -> list[str]:
    """The lines of the demo summary."""
    L = ["", "================ demo summary ================", data_line]
    if u is not None:
        L.append(f"U-Net (MSHNet) + GaussianShapedConv + diff scale loss, mmdet_cfgs/unet_gauss_diff_cpu.py, "
                 f"{_epochs(u['epochs'])} ({u['train_s']:.0f} s):")
        if u["loss_by_epoch"]:
            le = u["loss_by_epoch"]
            w = u["warmup_epochs"]
            shown = list(le.items())
            if len(shown) > 8:
                shown = shown[:max(w, 1) + 2] + [(None, None)] + shown[-3:]
            txt = ", ".join("…" if e is None else f"{e}: {v:.3f}" for e, v in shown)
            L.append(f"  mean training loss by epoch: {txt}  (epochs ≤ {w}: soft-IoU warm-up)")
        L.append(f"  test split ({u['n_test']} images, {u['n_targets']} targets): mIoU {u['mIoU']:.3f}  "
                 f"nIoU {u['nIoU']:.3f}  Pd {u['Pd']:.3f}  Fa {u['Fa_e6']:.1f}e-6")
        L.append(f"  weights: {u['checkpoint']}")
        L.append(f"  predicted masks and overlays ({len(u['overlays'])} images, *_mask.png, *_overlay.png): {u['vis']}")
    if y is not None:
        rows = y["rows"]
        L.append(f"YOLOv8n-P2 + GaussianShapedConv (yolov8n-p2-gauss.yaml), {_epochs(y['epochs'])} "
                 f"at imgsz {y['imgsz']} with the stock yolo CLI ({y['train_s']:.0f} s):")
        if rows:
            f0, f1 = rows[0], rows[-1]
            nan = float("nan")
            L.append(f"  training loss, epoch 1 → {len(rows)}: box {f0.get('train/box_loss', nan):.3f} → "
                     f"{f1.get('train/box_loss', nan):.3f}, cls {f0.get('train/cls_loss', nan):.3f} → "
                     f"{f1.get('train/cls_loss', nan):.3f}")
        L.append(f"  test split (last.pt, the final weights): P {y['P']:.3f}  R {y['R']:.3f}  "
                 f"mAP50 {y['mAP50']:.3f}  mAP50-95 {y['mAP50_95']:.3f}  (untrained start: mAP50 "
                 f"{y['untrained']['mAP50']:.3f})")
        L.append(f"  {y['gs_layers']} GaussianShapedConv layers; GaussianShapedConv2d left after model.fuse(): "
                 f"{y['gs_after_fuse']}; max |fused − unfused| = {y['fuse_max_abs_diff']:.1e} "
                 f"({y['fuse_max_rel_diff']:.0e} of the largest output)")
        L.append(f"  weights: {y['weights']}  (metrics per epoch: {y['results_csv']})")
        L.append(f"  detections on {y['n_shown']} test images (green: ground truth, red: predictions, conf ≥ 0.25): "
                 f"{y['detections']}")
    L.append("next step, your own data (SIRST or IRSTD layout: images/, masks/, split lists):")
    L.append("  python tools/prepare_sirst.py --data-root YOUR_DATA --out YOUR_DATA_yolo && "
             "yolo train model=yolov8n-p2-gauss.yaml data=YOUR_DATA_yolo/data.yaml imgsz=320 epochs=50")
    L.append("  (or the whole demo on it: python tools/demo.py --data YOUR_DATA)")
    L.append(f"total {total_s:.0f} s ({threads} thread(s) for the U-Net; the yolo CLI picks its own)")
    L.append("==============================================")
    return L


def _rng(v) -> str:
    lo, hi = v
    return f"{lo}" if lo == hi else f"{lo}–{hi}"


def _epochs(n: int) -> str:
    return f"{n} epoch" + ("" if n == 1 else "s")


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default="synthetic",
                    help="'synthetic' (default, written to the cache), 'sirst' (SIRST v1 at "
                         "gaussconv_plugin.data.sirst_root()), 'nudt_sirst', or a dataset folder (SIRST/IRSTD layout)")
    ap.add_argument("--quick", action="store_true",
                    help="reduced size (tests/test_demo.py): shows that both learn, not how well")
    ap.add_argument("--images", type=int, default=None, help="synthetic images (default 96; --quick 48)")
    ap.add_argument("--epochs", type=int, default=None, help="U-Net epochs (default 15; --quick 12; real data 20)")
    ap.add_argument("--yolo-epochs", type=int, default=None, help="YOLO epochs (default 30; --quick 25; real data 15)")
    ap.add_argument("--imgsz", type=int, default=None, help="YOLO image size (default 160; real data 320)")
    ap.add_argument("--box-prior", type=float, default=None,
                    help="small-box prior k of YOLO's box branch, 0 = off (default 1 on synthetic data, 0 on real)")
    ap.add_argument("--threads", type=int, default=None,
                    help="torch threads of the U-Net (default: min(2, CPU count)); the yolo CLI uses its own "
                         "(CPU count − 1, at most 8)")
    ap.add_argument("--skip-unet", action="store_true")
    ap.add_argument("--skip-yolo", action="store_true")
    ap.add_argument("--out", default=None, help="work folder (default ~/.cache/gaussconv_plugin/demo[_<data>])")
    a = ap.parse_args(argv)
    t_start = time.time()
    from gaussconv_plugin.yolo.offline import offline_env

    os.environ.update(offline_env())  # before Ultralytics is imported: no update checks, no font download
    from tools.evidence.core import MALLOC_VARS

    for k, v in MALLOC_VARS.items():  # the training children's allocator: the ablation runner's (docs/benchmark.md)
        os.environ.setdefault(k, v)
    threads = a.threads or min(2, os.cpu_count() or 1)
    import torch

    torch.set_num_threads(threads)
    synthetic = a.data == "synthetic"
    s = settings("synthetic" if synthetic else "real", a.quick)
    for k, v in (("images", a.images), ("unet_epochs", a.epochs), ("yolo_epochs", a.yolo_epochs),
                 ("imgsz", a.imgsz), ("box_prior", a.box_prior)):
        if v is not None:
            setattr(s, k, v)
    if synthetic:
        out = Path(a.out) if a.out else cache_dir("demo")
        root = make_synthetic_sirst(out / "synthetic_sirst", n=s.images, seed=0, **DEMO_DATA)
        d = DEMO_DATA
        data_line = (f"data: {s.images} synthetic IR images ({_rng(d['width'])} × {_rng(d['height'])} px, "
                     f"{_rng(d['n_targets'])} Gaussian-blob targets of s = {_rng(d['sigma'])} px: masks 3–5 px "
                     f"across; SIRST layout): {root}")
    else:
        from gaussconv_plugin.data import dataset_root

        root = (dataset_root(None, a.data) if a.data in ("sirst", "nudt_sirst") else Path(a.data)).resolve()
        if not root.is_dir():
            ap.error(f"--data {a.data}: {root} is not a folder")
        out = Path(a.out) if a.out else cache_dir(f"demo_{root.name}")
        data_line = f"data: {root}"
    print(data_line, flush=True)
    u = y = None
    if not a.skip_unet:
        unet_dir = out / "unet_gauss_diff"
        shutil.rmtree(unet_dir, ignore_errors=True)
        u = unet_part(root, unet_dir, s, threads)
    if not a.skip_yolo:
        ydir = out / "yolo"
        shutil.rmtree(ydir, ignore_errors=True)
        ydir.mkdir(parents=True)
        y = yolo_part(root, ydir, s)
        torch.set_num_threads(threads)  # Ultralytics' select_device() resets it
    lines = summary(data_line, u, y, time.time() - t_start, threads)
    print("\n".join(lines), flush=True)
    return {"unet": u, "yolo": y, "settings": s, "summary": lines, "root": root, "out": out}


if __name__ == "__main__":
    os.environ.setdefault("MPLBACKEND", "Agg")
    main()
