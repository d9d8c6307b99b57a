#!/usr/bin/env python
"""Blind input pixels of GaussianShapedConv2d per design, kernel size and stride (docs/method.md's coverage table).

For each mask floor m₀, k ∈ {3, 5, 7} and stride ∈ {1, 2} (and two stacked stride-2 layers), the worst fraction
of interior input pixels that no output reads over θ on a 5° grid in [−90°, 90°], measured by input-gradient
reachability through the layer's effective kernel (:func:`gaussconv_plugin.masks.blind_input_fraction`)::

    python tools/coverage.py                  # hard pinwheel (m₀ = 0) and the default floor
    python tools/coverage.py --floors 0 0.3 1
"""
from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from gaussconv_plugin import DEFAULT_MASK_FLOOR, GaussianShapedConv2d, blind_input_fraction  # noqa: E402

CASES = [(3, 1, 1), (3, 2, 1), (3, 2, 2), (5, 1, 1), (5, 2, 1), (5, 2, 2), (7, 1, 1), (7, 2, 1), (7, 2, 2)]


def worst_blind(floor: float, k: int, stride: int, layers: int, n_theta: int = 37, size: int = 64) -> tuple:
    """(worst blind fraction, number of angles with any blind pixel) over the θ grid."""
    fr = []
    for t in torch.linspace(-math.pi / 2, math.pi / 2, n_theta):
        conv = GaussianShapedConv2d(1, 1, k, stride, bias=False, mask_floor=floor)
        with torch.no_grad():
            conv.weight.fill_(1.0)
            conv.theta.fill_(float(t))
        fr.append(blind_input_fraction(conv.effective_kernel()[0, 0], stride, size, layers))
    return max(fr), sum(f > 0 for f in fr)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--floors", type=float, nargs="+", default=[0.0, DEFAULT_MASK_FLOOR])
    a = ap.parse_args(argv)
    print("| m₀ | " + " | ".join(f"k={k} s={s}" + (" ×2" if n == 2 else "") for k, s, n in CASES) + " |")
    print("|---|" + "---:|" * len(CASES))
    for m0 in a.floors:
        cells = []
        for k, s, n in CASES:
            w, cnt = worst_blind(m0, k, s, n)
            cells.append(f"{100 * w:.1f} % ({cnt}/37)")
        print(f"| {m0:g} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
