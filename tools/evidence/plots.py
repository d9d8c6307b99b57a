"""Plots of an ablation: training curves per variant (mean over seeds, min–max band) and the learned σ/θ of the
Gaussian-shaped convs (box plots over channels × seeds, initial values dashed), plus the kernels of one model."""
from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

from .datasets import DATASETS
from .core import REPO, child_env, log
from .variants import VARIANTS

__all__ = ["COLORS", "PART_NAMES", "part_title", "dataset_title", "plot_curves", "plot_sigma_theta",
           "learned_sigma_theta", "aligned"]

_PALETTE = ["tab:gray", "tab:blue", "tab:purple", "tab:cyan", "tab:olive", "tab:pink", "tab:brown", "tab:orange",
            "gold", "tab:green", "tab:red"]
# the five rows of the tables keep one colour each; the screened designs share the rest
_MAIN = {"stock": "tab:gray", "gsconv": "tab:blue", "diff": "gold", "both": "tab:red", "pconv": "tab:green"}
_REST = [c for c in _PALETTE if c not in _MAIN.values()]
COLORS = {**{v: _REST[i % len(_REST)] for i, v in enumerate(v for v in VARIANTS if v not in _MAIN)}, **_MAIN}
PART_NAMES = {"yolo": "YOLOv8n", "unet": "U-Net", "retina": "RetinaNet-R18"}


def part_title(part: str, records: list[dict]) -> str:
    """The model of ``part`` for a figure title: ``YOLOv8n-P2`` where every YOLO record trained a ``yolov8n-p2-*``
    model (its recorded command), else the part's name."""
    cmds = [" ".join(map(str, r.get("command") or [])) for r in records]
    if part == "yolo" and cmds and all("yolov8n-p2-" in c for c in cmds):
        return "YOLOv8n-P2"
    return PART_NAMES[part]


def dataset_title(records: list[dict]) -> str:
    """The dataset(s) the records trained on, for a figure title (``SIRST v1`` for records made before runs
    recorded their dataset)."""
    names = sorted({(r.get("dataset") or {}).get("name", "sirst") for r in records})
    return " + ".join(DATASETS[n].label.split(" (")[0] if n in DATASETS else n for n in names)


def plot_curves(records: list[dict], out: Path) -> list[Path]:
    """Training curves per variant (mean over seeds, band = min..max): one PNG per part."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    panels = {"yolo": [("epoch", "box_loss", "train box loss"), ("epoch", "cls_loss", "train cls loss"),
                       ("epoch", "mAP50", "eval mAP50"), ("epoch", "mAP50-95", "eval mAP50-95")],
              "unet": [("epoch", "loss", "train loss (mean per epoch)"), ("val_epoch", "mIoU", "eval mIoU"),
                       ("val_epoch", "Pd", "eval Pd")],
              "retina": [("epoch", "loss", "train loss (mean per epoch)"), ("epoch", "loss_bbox", "train box loss"),
                         ("val_epoch", "mAP50", "eval mAP50")]}
    written = []
    for part, cols in panels.items():
        recs = [r for r in records if r["part"] == part]
        if not recs:
            continue
        fig, axs = plt.subplots(1, len(cols), figsize=(4 * len(cols), 3.2))
        for ax, (xk, yk, title) in zip(axs, cols):
            for v in VARIANTS:
                rs = [r["curves"] for r in recs if r["variant"] == v]
                if not rs:
                    continue
                x, y = aligned(rs, xk, yk)
                n = len(x)
                if n == 0:
                    continue
                ax.plot(x, y.mean(0), color=COLORS[v], label=f"{v} (n={len(rs)})", marker="." if n < 8 else None)
                if len(rs) > 1:
                    ax.fill_between(x, y.min(0), y.max(0), color=COLORS[v], alpha=0.15)
            ax.set_title(title, fontsize=10)
            ax.set_xlabel("epoch")
            ax.grid(alpha=0.3)
        axs[0].legend(fontsize=8)
        fig.suptitle(f"{part_title(part, recs)} on {dataset_title(recs)}: training curves per variant", fontsize=11)
        fig.tight_layout()
        p = out / f"curves_{part}.png"
        fig.savefig(p, dpi=110)
        plt.close(fig)
        written.append(p)
    return written


def aligned(curves: list[dict], xk: str, yk: str) -> tuple[list, "np.ndarray"]:
    """The epochs every run of ``curves`` has a ``yk`` value at (``xk`` its epochs), and the ``(runs, epochs)``
    array of those values: runs are averaged on the epoch, not the position (a run that skipped a validation when
    it was cut and resumed, or stopped early, is not averaged against another epoch's value)."""
    import numpy as np

    maps = [dict(zip(c.get(xk, []), c.get(yk, []))) for c in curves]
    x = sorted(set.intersection(*(set(m) for m in maps))) if maps else []
    return x, np.array([[m[e] for e in x] for m in maps], dtype=float).reshape(len(maps), len(x))


def learned_sigma_theta(weights: str) -> list[tuple[str, int, list[float], list[float]]]:
    """``[(layer, k, σ per channel, θ per channel in degrees)]`` of the GaussianShapedConv2d layers of a checkpoint."""
    from tools.plot_kernels import kernels_from_checkpoint

    return [(name, k, s.tolist(), [math.degrees(t) for t in th.tolist()])
            for name, k, s, th, _ in kernels_from_checkpoint(weights)]


def plot_sigma_theta(records: list[dict], out: Path) -> list[Path]:
    """Learned σ and θ per GaussianShapedConv layer (box plot over channels, all seeds of a variant pooled), with
    the initial values (σ₀ = k/2, θ₀ = 0) as dashed lines. One PNG per part with Gaussian variants."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    for part in ("yolo", "unet", "retina"):
        recs = [r for r in records
                if r["part"] == part and VARIANTS[r["variant"]].gauss and Path(r["weights"]).is_file()]
        if not recs:
            continue
        by_v: dict[str, dict[str, tuple[int, list, list]]] = {}
        for r in recs:
            for name, k, s, t in learned_sigma_theta(r["weights"]):
                d = by_v.setdefault(r["variant"], {})
                _, s0, t0 = d.get(name, (k, [], []))
                d[name] = (k, s0 + s, t0 + t)
        layers = sorted({n for d in by_v.values() for n in d}, key=lambda n: [int(x) if x.isdigit() else x
                                                                               for x in n.replace(".", " ").split()])
        fig, axs = plt.subplots(2, 1, figsize=(max(6, 0.9 * len(layers) * len(by_v) + 2), 6.5), sharex=True)
        width = 0.8 / max(1, len(by_v))
        for j, (v, d) in enumerate(sorted(by_v.items())):
            pos = [i + (j - (len(by_v) - 1) / 2) * width for i in range(len(layers))]
            for ax, idx in ((axs[0], 1), (axs[1], 2)):
                data = [d[n][idx] if n in d else [] for n in layers]
                bp = ax.boxplot(data, positions=pos, widths=width * 0.9, patch_artist=True, showfliers=False)
                for b in bp["boxes"]:
                    b.set_facecolor(COLORS[v]), b.set_alpha(0.5)
            axs[0].plot([], [], color=COLORS[v], lw=6, alpha=0.5, label=v)
        ks = [next(d[n][0] for d in by_v.values() if n in d) for n in layers]
        for i, k in enumerate(ks):
            axs[0].hlines(k / 2, i - 0.45, i + 0.45, colors="k", linestyles="dashed", lw=0.8)
        axs[1].axhline(0.0, color="k", ls="--", lw=0.8)
        axs[0].set_ylabel("σ (taps)")
        axs[1].set_ylabel("θ (degrees)")
        axs[1].set_xticks(range(len(layers)))
        axs[1].set_xticklabels([f"{n}\n(k={k})" for n, k in zip(layers, ks)], rotation=30, ha="right", fontsize=7)
        axs[0].legend(fontsize=8)
        axs[0].set_title(f"{part_title(part, recs)} on {dataset_title(recs)}: learned σ and θ per GaussianShapedConv "
                         f"layer\n(box: channels × seeds; dashed: initial value)", fontsize=10)
        for ax in axs:
            ax.grid(alpha=0.3)
        fig.tight_layout()
        p = out / f"sigma_theta_{part}.png"
        fig.savefig(p, dpi=110)
        plt.close(fig)
        written.append(p)
        # the kernels themselves, for the 'both' (else first) variant's first seed
        pick = sorted(recs, key=lambda r: (r["variant"] != "both", r["seed"]))[0]
        kp = out / f"kernels_{part}_{pick['variant']}_seed{pick['seed']}.png"
        cmd = [sys.executable, str(REPO / "tools" / "plot_kernels.py"), "--checkpoint", pick["weights"],
               "--out", str(kp)]
        log("$ " + " ".join(cmd))
        subprocess.run(cmd, check=True, env=child_env(1), cwd=REPO, stdout=subprocess.DEVNULL)
        written.append(kp)
    return written
