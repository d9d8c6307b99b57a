#!/usr/bin/env python
"""Plot the scale weight α(P, T), the loss 1 − α·IoU and dL/dP versus P/T for every mode.

The IoU of a prediction of area P nested in (P < T) or containing (P > T) a target of area T is min/max, the
best case for a given area. Gradients come from autograd through :func:`gaussconv_plugin.scale_weight`.

    python tools/plot_scale_loss.py --out docs/scale_loss.png [--target-area 100]
"""
from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

from gaussconv_plugin.losses import SCALE_MODES, scale_weight  # noqa: E402


def curves(target_area: float, lo: float = 0.02, hi: float = 3.0, n: int = 600):
    """``(P/T, {mode: (α, loss, dL/dP·T)})`` for nested boxes/masks."""
    r = torch.linspace(lo, hi, n, dtype=torch.float64)
    out = {}
    for mode in SCALE_MODES:
        p = (r * target_area).clone().requires_grad_(True)
        t = torch.tensor(target_area, dtype=torch.float64)
        alpha = scale_weight(p, t, mode).double()
        iou = torch.minimum(p, t) / torch.maximum(p, t)
        loss = 1 - alpha * iou
        (g,) = torch.autograd.grad(loss.sum(), p)
        out[mode] = (alpha.detach(), loss.detach(), g * target_area)
    return r, out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="docs/scale_loss.png")
    ap.add_argument("--target-area", type=float, default=100.0, help="T in pixels (default 100)")
    a = ap.parse_args(argv)
    r, cs = curves(a.target_area)
    fig, axs = plt.subplots(1, 3, figsize=(15, 4.2))
    for mode, (alpha, loss, g) in cs.items():
        style = dict(lw=2.2 if mode == "diff" else 1.3, ls="--" if mode == "var" else "-")
        axs[0].plot(r, alpha, label=mode, **style)
        axs[1].plot(r, loss, label=mode, **style)
        axs[2].plot(r, g, label=mode, **style)
    axs[0].set_title(f"scale weight α(P, T), T = {a.target_area:g}")
    axs[1].set_title("loss 1 − α·IoU (nested masks)")
    axs[2].set_title("dL/dP · T")
    axs[2].set_ylim(-4, 4)
    for ax in axs:
        ax.axvline(1.0, color="k", lw=0.6)
        ax.set_xlabel("P / T")
        ax.grid(alpha=0.3)
    axs[0].legend()
    fig.tight_layout()
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(a.out, dpi=110)
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
