#!/usr/bin/env python
"""Speed benchmark: GaussianShapedConv2d vs nn.Conv2d vs PConv, and the vectorised location loss vs a loop.

Every row is measured side by side in one run: the candidates are timed in alternation (A, B, A, B, …) and
the median per-call time of each is reported with the ratio to the reference. Run::

    python tools/bench_conv.py              # defaults of the tables in docs/benchmark.md
    python tools/bench_conv.py --quick      # fewer repeats
    python tools/bench_conv.py --e2e-epochs 3 --threads 1   # + end-to-end rows: `yolo train` of yolov8n-gauss
                                                           #   vs yolov8n and of yolo26n-p2-gauss vs yolo26n-p2
                                                           #   on SIRST, seconds/epoch + peak memory
    python tools/bench_conv.py --e2e-epochs 3 --e2e-pairs yolo26n-p2   # only the YOLO26 pair
    python tools/bench_conv.py --e2e-epochs 3 --e2e-limit 64 --e2e-imgsz 96   # small: 64 training images
    python tools/bench_conv.py --unet       # + MSHNet U-Net rows: train step and validation forward, stock vs
                                           #   GaussianShapedConv ('both'), on the GPU if there is one

The end-to-end rows train each pair (:data:`E2E_PAIRS`: the stock twin and the gauss twin) with the stock ``yolo``
CLI in fresh processes, all models in alternation (stock, gauss, stock, gauss, … for ``--e2e-rounds``), with
``val=False``; each gauss row's ratio is to the stock row of its own pair; seconds per epoch is the median over
epochs 2..N-1 of each run (epoch 1 includes start-up, the last one the final validation), read from Ultralytics'
``results.csv``; peak memory is the child process's maximum resident set size (``wait4`` rusage).
"""
from __future__ import annotations

import argparse
import csv
import math
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn as nn

from gaussconv_plugin import GaussianShapedConv2d, PConv, ScaleIoULoss, location_loss


def location_loss_loop(pred, target):
    """MSHNet's reference LLoss: a Python loop over the batch."""
    loss = torch.tensor(0.0)
    b, _, h, w = pred.shape
    xi = torch.arange(0, w, 1).view(1, 1, w).repeat((1, h, 1)).to(pred) / w
    yi = torch.arange(0, h, 1).view(1, h, 1).repeat((1, 1, w)).to(pred) / h
    s = 1e-8
    for i in range(b):
        pcx, pcy = (xi * pred[i]).mean(), (yi * pred[i]).mean()
        tcx, tcy = (xi * target[i]).mean(), (yi * target[i]).mean()
        ang = (4 / math.pi**2) * torch.square(torch.arctan(pcy / (pcx + s)) - torch.arctan(tcy / (tcx + s)))
        pl, tl = torch.sqrt(pcx * pcx + pcy * pcy + s), torch.sqrt(tcx * tcx + tcy * tcy + s)
        loss = loss + (1 - torch.min(pl, tl) / (torch.max(pl, tl) + s) + ang) / b
    return loss


def sls_loop(logits, target):
    """MSHNet's SLS loss as published (var weight, loop location loss)."""
    pred = torch.sigmoid(logits)
    inter = (pred * target).sum((1, 2, 3))
    ps, ts = pred.sum((1, 2, 3)), target.sum((1, 2, 3))
    dis = ((ps - ts) / 2) ** 2
    alpha = (torch.min(ps, ts) + dis) / (torch.max(ps, ts) + dis)
    iou = inter / (ps + ts - inter)
    return 1 - (alpha * iou).mean() + location_loss_loop(pred, target)


def bench(fns: dict, repeats: int, warmup: int = 2) -> dict:
    for f in fns.values():
        for _ in range(warmup):
            f()
    times = {k: [] for k in fns}
    for _ in range(repeats):
        for k, f in fns.items():
            t = time.perf_counter()
            f()
            times[k].append(time.perf_counter() - t)
    return {k: statistics.median(v) for k, v in times.items()}


def unet_rows(repeats: int, size: int, batch: int, device: str) -> list[str]:
    """MSHNet U-Net (stock, ``var`` loss) vs its GaussianShapedConv twin (``both``, ``diff`` loss): one Adagrad train
    step (deep supervision) on ``batch`` random ``size``² images, and the validation forward of one image with the
    Gaussian convs unfused (kernel cached in eval) and fused into plain convs."""
    import copy

    from gaussconv_plugin import fuse_gaussian_convs
    from gaussconv_plugin.unet import MSHUNet, deep_supervision_loss

    def sync():
        if device == "cuda":
            torch.cuda.synchronize()

    torch.manual_seed(0)
    x = torch.rand(batch, 1, size, size, device=device)
    t = (torch.rand(batch, 1, size, size, device=device) > 0.995).float()
    nets = {g: MSHUNet(gauss_conv=g).to(device) for g in ("none", "both")}

    def step(g):
        net, lf = nets[g], ScaleIoULoss("var" if g == "none" else "diff")
        opt = torch.optim.Adagrad(net.parameters(), lr=0.05)

        def f():
            fused, sides = net.train()(x, return_sides=True)
            loss, _ = deep_supervision_loss(fused, sides, t, lf)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sync()
        return f

    names = {"none": "MSHNet U-Net (stock)", "both": "U-Net + GaussianShapedConv ('both')"}
    res = bench({names[g]: step(g) for g in nets}, repeats)
    out = row(f"U-Net train step, batch {batch}, {size}², {device}", res, names["none"])
    fused = copy.deepcopy(nets["both"]).eval()
    fuse_gaussian_convs(fused)
    xv = x[:1]

    def infer(net):
        net.eval()

        def f():
            with torch.no_grad():
                net(xv)
            sync()
        return f

    res = bench({names["none"]: infer(nets["none"]), names["both"] + ", unfused": infer(nets["both"]),
                 names["both"] + ", fused": infer(fused)}, repeats * 3)
    return out + row(f"U-Net validation forward, 1 image, {size}², {device}", res, names["none"])


def sigma_bound_rows(x: torch.Tensor, repeats: int) -> list[str]:
    """Cost of σ's lower bound (issue 35's coverage fix): a train step (fwd+bwd) and the envelope alone of a default
    ``GaussianShapedConv2d`` with the bound (``sigma_min`` = SIGMA_MIN) and without it (``sigma_min=0``), same
    weights, timed in alternation."""
    c = x.shape[1]
    torch.manual_seed(0)
    mods = {"sigma_min=0 (no bound)": GaussianShapedConv2d(c, c, 3, sigma_min=0.0),
            "sigma_min=0.4 (default: bound)": GaussianShapedConv2d(c, c, 3)}
    ref = next(iter(mods))
    mods[ref].load_state_dict({k: v for k, v in mods["sigma_min=0.4 (default: bound)"].state_dict().items()
                               if not k.endswith("_extra_state")})  # same weights, its own sigma_min

    def step(m):
        def f():
            m.zero_grad(set_to_none=True)
            m(x).square().mean().backward()
        return f

    def env(m):
        def f():
            m.zero_grad(set_to_none=True)
            m.envelope().sum().backward()
        return f

    out = row(f"σ bound: train step (fwd+bwd), {c} ch, {x.shape[-1]}², k=3, batch {x.shape[0]}",
              bench({k: step(m) for k, m in mods.items()}, repeats), ref)
    return out + row(f"σ bound: envelope alone (fwd+bwd), {c} ch, k=3",
                     bench({k: env(m) for k, m in mods.items()}, repeats * 20), ref)


def row(title, res, ref):
    out = []
    for k, v in res.items():
        out.append(f"| {title} | {k} | {v * 1e3:9.2f} | {v / res[ref]:5.2f}× |")
        title = ""
    return out


def yolo_epoch_time(model: str, data: str, epochs: int, imgsz: int, batch: int, threads: int) -> tuple[float, float]:
    """Train ``model`` with the stock ``yolo`` CLI in a fresh process; ``(median s/epoch over epochs 2..N-1,
    peak RSS in MiB)``."""
    from gaussconv_plugin.yolo.offline import offline_env

    env = offline_env(threads=threads)
    with tempfile.TemporaryDirectory() as d:
        cmd = [str(Path(sys.executable).with_name("yolo")), "train", f"model={model}", f"data={data}",
               f"epochs={epochs}", f"imgsz={imgsz}", f"batch={batch}", "device=cpu", "workers=0", "val=False",
               "plots=False", "amp=False", "seed=0", f"project={d}", "name=run", "exist_ok=True"]
        proc = subprocess.Popen(cmd, cwd=d, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        err = proc.stderr.read()
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        if proc.returncode != 0:
            raise SystemExit(f"{' '.join(cmd)} failed (exit {proc.returncode}): {err.strip().splitlines()[-1:]}")
        rows = list(csv.DictReader(open(Path(d) / "run" / "results.csv")))
        t = [float(r["time"]) for r in rows]
        per = [b - a for a, b in zip(t[:-1], t[1:])][: max(1, epochs - 2)]
        return statistics.median(per), usage.ru_maxrss / 1024


#: end-to-end pairs, ``--e2e-pairs`` name -> {row label: packaged config}; the first entry is the stock twin
#: (Ultralytics' architecture and box loss, nc 1) that the second (GaussianShapedConv + diff loss) is compared with
E2E_PAIRS = {
    "yolov8n": {"yolov8n (yolov8n-base.yaml, stock loss)": "yolov8n-base.yaml",
                "yolov8n-gauss (GaussianShapedConv + diff loss)": "yolov8n-gauss.yaml"},
    "yolo26n-p2": {"yolo26n-p2 (yolo26n-p2-base.yaml, stock loss)": "yolo26n-p2-base.yaml",
                   "yolo26n-p2-gauss (GaussianShapedConv + diff loss)": "yolo26n-p2-gauss.yaml"},
}


def e2e_rows(epochs: int, rounds: int, imgsz: int, batch: int, threads: int,
             pairs: tuple[str, ...] = tuple(E2E_PAIRS), limit: int | None = None) -> list[str]:
    from gaussconv_plugin.data import cache_dir
    from gaussconv_plugin.data.yolo_format import prepare_yolo

    if epochs < 3:
        raise SystemExit("--e2e-epochs must be >= 3 (epoch 1 includes start-up and the last one the validation)")
    unknown = [p for p in pairs if p not in E2E_PAIRS]
    if unknown or not pairs:
        raise SystemExit(f"--e2e-pairs {','.join(pairs)}: unknown pair(s) {unknown}; use a comma-separated subset "
                         f"of {','.join(E2E_PAIRS)}")
    data = prepare_yolo(None, cache_dir("sirst_yolo" if limit is None else f"sirst_yolo_first{limit}"), limit=limit)
    n_train = len(list((data.parent / "images" / "train").glob("*.png")))
    data = str(data)
    models = {k: m for p in pairs for k, m in E2E_PAIRS[p].items()}
    got: dict[str, list[tuple[float, float]]] = {k: [] for k in models}
    for _ in range(rounds):
        for k, m in models.items():
            got[k].append(yolo_epoch_time(m, data, epochs, imgsz, batch, threads))
    out = ["", f"End to end ({rounds} alternating round(s) of {epochs} epochs each, val=False; ratio to the stock "
           "twin of each pair):", "",
           "| benchmark | model | s / epoch | ratio | peak RSS (MiB) | ratio |", "|---|---|---:|---:|---:|---:|"]
    for p in pairs:
        ref_key = next(iter(E2E_PAIRS[p]))
        ref = statistics.median(s for s, _ in got[ref_key])
        ref_mem = max(m for _, m in got[ref_key])
        title = (f"`yolo train` on SIRST trainval ({'first ' if limit else ''}{n_train} images), imgsz {imgsz}, "
                 f"batch {batch}, {threads} thread(s)")
        for k in E2E_PAIRS[p]:
            s, mem = statistics.median(x for x, _ in got[k]), max(x for _, x in got[k])
            out.append(f"| {title} | {k} | {s:.1f} | {s / ref:.3f}× | {mem:.0f} | {mem / ref_mem:.3f}× |")
            title = ""
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--channels", type=int, default=64)
    ap.add_argument("--size", type=int, default=160)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--repeats", type=int, default=15)
    ap.add_argument("--quick", action="store_true", help="5 repeats")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: leave as is)")
    ap.add_argument("--e2e-epochs", type=int, default=0, help="also time `yolo train` end to end (0: skip; >= 3)")
    ap.add_argument("--e2e-rounds", type=int, default=1, help="alternating rounds of the end-to-end runs")
    ap.add_argument("--e2e-imgsz", type=int, default=320)
    ap.add_argument("--e2e-batch", type=int, default=16)
    ap.add_argument("--e2e-limit", type=int, default=None,
                    help="end-to-end runs on the first N training images only (default: all 341)")
    ap.add_argument("--e2e-pairs", default=",".join(E2E_PAIRS),
                    help=f"comma-separated end-to-end pairs, of {','.join(E2E_PAIRS)} (default: all)")
    ap.add_argument("--unet", action="store_true", help="also the MSHNet U-Net rows (GPU if available)")
    ap.add_argument("--unet-size", type=int, default=256)
    ap.add_argument("--unet-batch", type=int, default=8)
    a = ap.parse_args(argv)
    if a.threads:
        torch.set_num_threads(a.threads)
    rep = 5 if a.quick else a.repeats
    torch.manual_seed(0)
    c, s, b = a.channels, a.size, a.batch
    x = torch.randn(b, c, s, s)
    lines = [
        f"torch {torch.__version__}, {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads; "
        f"median of {rep} alternating runs",
        "",
        "| benchmark | candidate | ms / call | ratio |",
        "|---|---|---:|---:|",
    ]

    conv = nn.Conv2d(c, c, 3, 1, 1)
    gs = GaussianShapedConv2d(c, c, 3)
    pc = PConv(c, c, 3)

    def step(m):
        def f():
            m.zero_grad(set_to_none=True)
            m(x).square().mean().backward()
        return f

    res = bench({"nn.Conv2d": step(conv), "GaussianShapedConv2d": step(gs), "PConv (+ its 3 BN/SiLU)": step(pc)}, rep)
    lines += row(f"train step (fwd+bwd), {c} ch, {s}², k=3, batch {b}", res, "nn.Conv2d")

    conv.eval(), gs.eval()
    fused = gs.to_conv2d().eval()

    def infer(m):
        def f():
            with torch.inference_mode():
                m(x)
        return f

    res = bench({"nn.Conv2d": infer(conv), "GaussianShapedConv2d (unfused)": infer(gs),
                 "GaussianShapedConv2d.to_conv2d()": infer(fused)}, rep)
    lines += row(f"inference, {c} ch, {s}², batch {b}", res, "nn.Conv2d")
    lines += sigma_bound_rows(x, rep)

    logits = torch.randn(16, 1, 256, 256)
    target = (torch.rand(16, 1, 256, 256) > 0.995).float()
    prob = torch.sigmoid(logits)
    sls = ScaleIoULoss("var")
    res = bench({"MSHNet reference loop": lambda: location_loss_loop(prob, target),
                 "location_loss (vectorised)": lambda: location_loss(prob, target)}, rep * 2)
    lines += row("location loss, batch 16, 256²", res, "MSHNet reference loop")
    res = bench({"MSHNet SLS (loop)": lambda: sls_loop(logits, target),
                 "ScaleIoULoss('var') + location": lambda: sls(logits, target)}, rep * 2)
    lines += row("scale IoU + location loss, batch 16, 256²", res, "MSHNet SLS (loop)")
    torch.testing.assert_close(sls(logits, target), sls_loop(logits, target), rtol=1e-5, atol=1e-5)
    if a.unet:
        lines += unet_rows(rep, a.unet_size, a.unet_batch, "cuda" if torch.cuda.is_available() else "cpu")
    if a.e2e_epochs:
        lines += e2e_rows(a.e2e_epochs, a.e2e_rounds, a.e2e_imgsz, a.e2e_batch, a.threads or torch.get_num_threads(),
                          tuple(p.strip() for p in a.e2e_pairs.split(",") if p.strip()), a.e2e_limit)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
