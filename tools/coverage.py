#!/usr/bin/env python
"""Blind input pixels of GaussianShapedConv2d per design, kernel size and stride (the README's coverage table).

For each mask floor m₀, k ∈ {3, 5, 7} and stride ∈ {1, 2} (and two stacked stride-2 layers), the worst fraction
of interior input pixels that no output reads over θ on a 5° grid in [−90°, 90°], measured by input-gradient
reachability through the layer's effective kernel (:func:`gaussconv_plugin.masks.blind_input_fraction`)::

    python tools/coverage.py                  # hard pinwheel (m₀ = 0) and the default floor
    python tools/coverage.py --floors 0 0.3 1

``--sigmas`` adds the table over σ (the default floor, θ every 15°) in float32 and in the half-precision dtypes
autocast casts the kernel to (the kernel's support after ``.to(dtype)``, what the conv applies); σ is given as
``softplus(σ_raw)``, before the lower bound, so ``--sigma-min 0`` shows the blind pixels without it::

    python tools/coverage.py --sigmas 0.05 0.1 0.2 0.3 0.4 1 --sigma-min 0    # before the bound (issue 35)
    python tools/coverage.py --sigmas 0.05 0.1 0.2 0.3 0.4 1                  # with it: 0.0 % everywhere
"""
from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from gaussconv_plugin import DEFAULT_MASK_FLOOR, GaussianShapedConv2d, blind_input_fraction  # noqa: E402
from gaussconv_plugin.masks import SIGMA_MIN  # noqa: E402

CASES = [(3, 1, 1), (3, 2, 1), (3, 2, 2), (5, 1, 1), (5, 2, 1), (5, 2, 2), (7, 1, 1), (7, 2, 1), (7, 2, 2)]
DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


def worst_blind(floor: float, k: int, stride: int, layers: int, n_theta: int = 37, size: int = 64,
                softplus_sigma: float | None = None, sigma_min: float = SIGMA_MIN,
                dtype: torch.dtype = torch.float32) -> tuple:
    """(worst blind fraction, number of angles with any blind pixel) over the θ grid; ``softplus_sigma`` sets
    ``σ_raw = softplus⁻¹(softplus_sigma)`` (None: the default σ₀ = k/2), ``dtype`` the kernel's applied dtype."""
    fr = []
    for t in torch.linspace(-math.pi / 2, math.pi / 2, n_theta):
        conv = GaussianShapedConv2d(1, 1, k, stride, bias=False, mask_floor=floor, sigma_min=sigma_min)
        with torch.no_grad():
            conv.weight.fill_(1.0)
            conv.theta.fill_(float(t))
            if softplus_sigma is not None:
                s = torch.tensor(softplus_sigma, dtype=torch.float64)
                conv.sigma_raw.fill_(float(s + torch.log(-torch.expm1(-s))))
        fr.append(blind_input_fraction(conv.effective_kernel().detach().to(dtype)[0, 0], stride, size, layers))
    return max(fr), sum(f > 0 for f in fr)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--floors", type=float, nargs="+", default=[0.0, DEFAULT_MASK_FLOOR])
    ap.add_argument("--sigmas", type=float, nargs="*", default=[],
                    help="also the table over these softplus(σ_raw) values (default floor, θ every 15°)")
    ap.add_argument("--sigma-min", type=float, default=SIGMA_MIN, help=f"σ's lower bound (default {SIGMA_MIN}; "
                    "0: none, the behaviour before issue 35)")
    a = ap.parse_args(argv)
    head = " | ".join(f"k={k} s={s}" + (" ×2" if n == 2 else "") for k, s, n in CASES)
    print(f"| m₀ | {head} |")
    print("|---|" + "---:|" * len(CASES))
    for m0 in a.floors:
        cells = []
        for k, s, n in CASES:
            w, cnt = worst_blind(m0, k, s, n)
            cells.append(f"{100 * w:.1f} % ({cnt}/37)")
        print(f"| {m0:g} | " + " | ".join(cells) + " |")
    if a.sigmas:
        print(f"\nm₀ = {DEFAULT_MASK_FLOOR}, sigma_min = {a.sigma_min:g}, θ every 15° (13 angles): "
              "worst blind fraction")
        print(f"\n| softplus(σ_raw) | kernel dtype | {head} |")
        print("|---|---|" + "---:|" * len(CASES))
        for sg in a.sigmas:
            for name, dt in DTYPES.items():
                cells = []
                for k, s, n in CASES:
                    w, cnt = worst_blind(DEFAULT_MASK_FLOOR, k, s, n, 13, 48, sg, a.sigma_min, dt)
                    cells.append(f"{100 * w:.1f} % ({cnt}/13)")
                print(f"| {sg:g} | {name} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
