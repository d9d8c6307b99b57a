#!/usr/bin/env python
"""Speed benchmark: GaussianShapedConv2d vs nn.Conv2d vs PConv, and the vectorised location loss vs a loop.

Every row is measured side by side in one run: the candidates are timed in alternation (A, B, A, B, …) and
the median per-call time of each is reported with the ratio to the reference. Run::

    python tools/bench_conv.py              # defaults of the table in README.md
    python tools/bench_conv.py --quick      # fewer repeats
"""
from __future__ import annotations

import argparse
import math
import platform
import statistics
import time

import torch
import torch.nn as nn

from gaussconv_plugin import GaussianShapedConv2d, ScaleIoULoss, location_loss


class PConv(nn.Module):
    """Pinwheel-shaped conv of Yang et al. (AAAI 2025), re-implemented for comparison: four asymmetrically
    padded 1×k / k×1 branches with c2/4 channels each, concatenated and merged by a 2×2 conv (no BN/act)."""

    def __init__(self, c1: int, c2: int, k: int = 3, s: int = 1):
        super().__init__()
        p = [(k, 0, 1, 0), (0, k, 0, 1), (0, 1, k, 0), (1, 0, 0, k)]
        self.pad = nn.ModuleList(nn.ZeroPad2d(q) for q in p)
        self.cw = nn.Conv2d(c1, c2 // 4, (1, k), s, 0, bias=False)
        self.ch = nn.Conv2d(c1, c2 // 4, (k, 1), s, 0, bias=False)
        self.cat = nn.Conv2d(c2, c2, 2, 1, 0, bias=False)

    def forward(self, x):
        yw0, yw1 = self.cw(self.pad[0](x)), self.cw(self.pad[1](x))
        yh0, yh1 = self.ch(self.pad[2](x)), self.ch(self.pad[3](x))
        return self.cat(torch.cat([yw0, yw1, yh0, yh1], 1))


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


def row(title, res, ref):
    out = []
    for k, v in res.items():
        out.append(f"| {title} | {k} | {v * 1e3:9.2f} | {v / res[ref]:5.2f}× |")
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

    res = bench({"nn.Conv2d": step(conv), "GaussianShapedConv2d": step(gs), "PConv": step(pc)}, rep)
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
    print("\n".join(lines))


if __name__ == "__main__":
    main()
