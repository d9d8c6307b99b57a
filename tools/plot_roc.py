#!/usr/bin/env python
"""Draw ROC (Pd vs Fa) and PR curves from threshold sweeps written by the U-Net test run, overlaying models.

    python tools/test.py mmdet_cfgs/unet_gauss_diff_cpu.py CKPT --show-dir vis     # writes vis/curves.json
    python tools/plot_roc.py base=work_dirs/a/<ts>/vis/curves.json gauss=work_dirs/b/<ts>/vis/curves.json \
        --out-dir work_dirs/compare [--prefix sirst_]

Each positional argument is ``LABEL=PATH`` or ``PATH`` (label: the file's parent folder names). The sweep comes
from ``IRSTDMetric(curve_bins=N)`` (the U-Net configs' test evaluator: 50 thresholds evenly spaced in logit
space); see :mod:`gaussconv_plugin.metrics` for the definitions. Writes ``<prefix>roc.png`` and ``<prefix>pr.png``.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from gaussconv_plugin.metrics import load_curves, plot_curves


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="plot_roc.py", description="ROC/PR PNGs from curves.json sweeps")
    p.add_argument("curves", nargs="+", help="LABEL=curves.json or curves.json (one per model)")
    p.add_argument("--out-dir", required=True, help="folder for roc.png and pr.png")
    p.add_argument("--prefix", default="", help="file-name prefix")
    return p.parse_args(argv)


def main(argv=None) -> list[Path]:
    args = parse_args(argv)
    runs, labelled = {}, False
    for item in args.curves:
        label, _, path = item.rpartition("=")
        path = Path(path)
        if not path.is_file():
            print(f"plot_roc.py: error: {path} not found; pass the curves.json written by tools/test.py --show-dir",
                  file=sys.stderr)
            raise SystemExit(2)
        c = load_curves(path)
        if "thresholds" not in c:
            print(f"plot_roc.py: error: {path} holds no threshold sweep; set test_evaluator.curve_bins > 0",
                  file=sys.stderr)
            raise SystemExit(2)
        labelled |= bool(label)
        runs[label or "/".join(path.parent.parts[-3:]) or path.stem] = c
    single = len(runs) == 1 and not labelled
    paths = plot_curves(next(iter(runs.values())) if single else runs, args.out_dir, args.prefix)
    for p in paths:
        print(p)
    return paths


if __name__ == "__main__":
    main()
