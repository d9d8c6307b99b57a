#!/usr/bin/env python
"""Show effective kernels of GaussianShapedConv2d: Gaussian envelope, pinwheel mask and their product.

Either for given σ/θ values::

    python tools/plot_kernels.py --k 5 --sigma 0.8 1.5 3 --theta 0 20 45 --out docs/kernels.png

or for the layers of a trained checkpoint (an Ultralytics ``.pt``, an MMEngine ``.pth``, or a pickled model);
per layer the channels with the smallest, median and largest σ are drawn::

    python tools/plot_kernels.py --checkpoint runs/detect/train/weights/best.pt --out kernels.png
"""
from __future__ import annotations

import argparse
import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

from gaussconv_plugin.masks import (  # noqa: E402
    DEFAULT_MASK_FLOOR,
    SIGMA_MIN,
    floor_mask,
    gaussian_envelope,
    pinwheel_mask_hard,
    sigma_from_raw,
)


def kernels_from_checkpoint(path: str) -> list[tuple[str, int, torch.Tensor, torch.Tensor, float]]:
    """``[(layer name, k, σ (C,), θ (C,), mask floor m₀)]`` for every GaussianShapedConv2d of a checkpoint.

    Works from the raw state dict (``*.sigma_raw`` / ``*.theta`` / ``*.weight`` keys), so no host framework is
    needed to read the file; m₀ comes from the pickled module where the checkpoint holds one (Ultralytics), else
    from the state dict's ``_extra_state`` (recorded from 2026-12-07), else it is the package default."""
    obj = torch.load(path, map_location="cpu", weights_only=False)
    if isinstance(obj, dict):
        for key in ("ema", "model", "state_dict"):
            if obj.get(key) is not None:
                obj = obj[key]
                break
    sd = obj.state_dict() if hasattr(obj, "state_dict") else obj
    floors = {n: float(m.mask_floor) for n, m in obj.named_modules() if hasattr(m, "sigma_raw")} \
        if hasattr(obj, "named_modules") else {}
    out = []
    for key, raw in sd.items():
        base = key[: -len(".sigma_raw")]
        if key.endswith(".sigma_raw") and base + ".weight" in sd:  # not the weight-free ShapedFilter2d
            k = int(sd[base + ".weight"].shape[-1])
            extra = sd.get(base + "._extra_state")  # [mask_floor, tau, sigma_min], in state dicts saved from 2026-12-07
            m0, _, smin = extra.tolist() if isinstance(extra, torch.Tensor) else (DEFAULT_MASK_FLOOR, None, SIGMA_MIN)
            out.append((base, k, sigma_from_raw(raw.float(), smin), sd[base + ".theta"].float(), floors.get(base, m0)))
    if not out:
        raise SystemExit(f"{path}: no GaussianShapedConv2d layers (no '*.sigma_raw' keys); is it a gauss model?")
    return out


def draw(rows: list[tuple[str, int, float, float, float]], out: str) -> None:
    fig, axs = plt.subplots(len(rows), 3, figsize=(7.5, 2.4 * len(rows)), squeeze=False)
    for i, (label, k, s, t, m0) in enumerate(rows):
        g = gaussian_envelope(torch.tensor([s]), k)[0, 0]
        m = floor_mask(pinwheel_mask_hard(torch.tensor([t]), k)[0, 0], m0)
        for j, (img, title) in enumerate([(g, f"G, σ={s:.2f}"), (m, f"M, θ={math.degrees(t):.1f}°, m₀={m0:g}"),
                                          (g * m, "G·M")]):
            ax = axs[i, j]
            ax.imshow(img.numpy(), cmap="inferno", vmin=0, vmax=1)
            ax.set_xticks([]), ax.set_yticks([])
            ax.set_title(title, fontsize=9)
        axs[i, 0].set_ylabel(label, fontsize=8)
    fig.tight_layout()
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    print(f"wrote {out}")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--k", type=int, default=5)
    ap.add_argument("--sigma", type=float, nargs="+", default=[0.8, 1.5, 3.0])
    ap.add_argument("--theta", type=float, nargs="+", default=[0.0, 20.0, 45.0], help="degrees")
    ap.add_argument("--floor", type=float, default=DEFAULT_MASK_FLOOR, help="mask floor m₀ (default: the package's)")
    ap.add_argument("--checkpoint", help="trained checkpoint: plot its learned kernels instead")
    ap.add_argument("--out", default="docs/kernels.png")
    a = ap.parse_args(argv)
    rows = []
    if a.checkpoint:
        for name, k, sig, th, m0 in kernels_from_checkpoint(a.checkpoint):
            order = torch.argsort(sig)
            for idx in dict.fromkeys([int(order[0]), int(order[len(order) // 2]), int(order[-1])]):
                rows.append((f"{name}[{idx}]", k, float(sig[idx]), float(th[idx]), m0))
            print(f"{name}: k={k} σ mean {sig.mean():.3f} [{sig.min():.3f}, {sig.max():.3f}], "
                  f"θ mean {math.degrees(th.mean()):.2f}° [{math.degrees(th.min()):.2f}°, {math.degrees(th.max()):.2f}°]")
    else:
        for s, t in zip(a.sigma, a.theta):
            rows.append((f"k={a.k}", a.k, s, math.radians(t), a.floor))
    draw(rows, a.out)


if __name__ == "__main__":
    main()
