#!/usr/bin/env python
"""Ablation on SIRST: stock / +GaussianShapedConv / +diff scale loss / both, for YOLOv8n and the MSHNet U-Net.

One command runs every (part, variant, seed) that is not done yet, then writes the tables and plots::

    python tools/ablation.py                                   # the README's schedule, 2 runs side by side
    python tools/ablation.py --parts unet --variants stock both --seeds 0 --unet-epochs 2   # a subset
    python tools/ablation.py --report-only                     # tables + plots from the runs already done

Variants (the same four words for both parts):

==========  ==========================================  =============================================
variant     YOLOv8n-P2 (``yolo_cfgs/yolov8-p2-*.yaml``)  U-Net (``mmdet_cfgs/unet_mshnet_base_cpu.py``)
==========  ==========================================  =============================================
``stock``   plain Conv, stock CIoU box loss              no Gaussian conv, MSHNet's SLS (``var``) loss
``gsconv``  GaussianShapedConv in layers 0–1, CIoU       ``gauss_conv='both'``, ``var`` loss
``diff``    plain Conv, ``scale_loss: diff``             no Gaussian conv, ``diff`` loss
``both``    GaussianShapedConv + ``scale_loss: diff``    ``gauss_conv='both'``, ``diff`` loss
==========  ==========================================  =============================================

Each run is a separate process (the stock ``yolo`` CLI, or ``tools/train.py``) with one CPU thread; ``--jobs``
runs that many side by side. A run is done when its folder holds ``result.json``; finished runs are skipped, so
an interrupted ablation resumes where it stopped (a run cut off half-way starts again from scratch).
The metrics are those of the **last** epoch on the test split (no checkpoint selection on the test split).

Outputs under ``--out`` (default ``~/.cache/gaussconv_plugin/ablation``, outside the repository):
``<part>/e<epochs>/<variant>/seed<k>/`` (weights, logs, ``result.json``), ``results.json``, ``results.csv``,
``ablation.md`` and the PNG plots; ``--publish DIR`` copies the tables and plots (not the weights) to ``DIR``.
"""
from __future__ import annotations

import argparse
import csv
import datetime as _dt
import json
import math
import os
import platform
import shutil
import statistics
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from gaussconv_plugin.data import cache_dir, sirst_root  # noqa: E402

__all__ = ["VARIANTS", "PARTS", "Run", "plan", "run_one", "collect", "summarize", "write_reports", "main"]

PARTS = ("yolo", "unet")
VARIANTS = {  # variant -> (Gaussian-shaped conv?, scale loss: None = the part's baseline loss)
    "stock": (False, None),
    "gsconv": (True, None),
    "diff": (False, "diff"),
    "both": (True, "diff"),
}
BASELINE_LOSS = {"yolo": "none", "unet": "var"}  # stock CIoU for YOLO; MSHNet's SLS for the U-Net
METRICS = {
    "yolo": [("mAP50", "mAP50"), ("mAP50-95", "mAP50-95"), ("precision", "P"), ("recall", "R")],
    "unet": [("mIoU", "mIoU"), ("nIoU", "nIoU"), ("Pd", "Pd"), ("Fa_e6", "Fa (×10⁻⁶)")],
}
DEFAULTS = {"yolo_epochs": 15, "unet_epochs": 15, "imgsz": 320, "batch": 16, "yolo_arch": "p2"}
_print_lock = threading.Lock()


def log(msg: str) -> None:
    with _print_lock:
        print(msg, flush=True)


@dataclass
class Run:
    """One training run: ``part`` × ``variant`` × ``seed`` at ``epochs``; ``dir`` holds everything it writes."""

    part: str
    variant: str
    seed: int
    epochs: int
    dir: Path
    opts: dict = field(default_factory=dict)

    @property
    def result_file(self) -> Path:
        return self.dir / "result.json"

    @property
    def done(self) -> bool:
        return self.result_file.is_file()

    @property
    def name(self) -> str:
        return f"{self.part}/{self.variant}/seed{self.seed}"


def plan(out: Path, parts, variants, seeds, yolo_epochs: int, unet_epochs: int, **opts) -> list[Run]:
    """The runs of an ablation, interleaved so that side-by-side jobs mix parts and variants."""
    for p in parts:
        if p not in PARTS:
            raise SystemExit(f"unknown part {p!r}; choose from {', '.join(PARTS)}")
    for v in variants:
        if v not in VARIANTS:
            raise SystemExit(f"unknown variant {v!r}; choose from {', '.join(VARIANTS)}")
    runs = []
    for s in seeds:
        for v in variants:
            for p in parts:
                e = yolo_epochs if p == "yolo" else unet_epochs
                runs.append(Run(p, v, int(s), int(e), Path(out) / p / f"e{e}" / v / f"seed{s}", dict(opts)))
    return runs


# ----------------------------------------------------------------------------------------------- YOLO part
def yolo_model_yaml(run: Run) -> Path:
    """Write the variant's model YAML into the run folder: the packaged P2 (or P3–P5) twin with ``scale_loss``
    set. Named ``yolov8n-…`` so Ultralytics picks the ``n`` scale."""
    import yaml

    gauss, loss = VARIANTS[run.variant]
    arch = run.opts.get("yolo_arch", DEFAULTS["yolo_arch"])
    stem = "yolov8-p2" if arch == "p2" else "yolov8"
    src = REPO / "yolo_cfgs" / f"{stem}-{'gauss' if gauss else 'base'}.yaml"
    cfg = yaml.safe_load(src.read_text())
    cfg["scale_loss"] = loss or BASELINE_LOSS["yolo"]
    dst = run.dir / f"{stem.replace('yolov8', 'yolov8n')}-{run.variant}.yaml"
    dst.write_text(f"# ablation variant {run.variant!r}: {src.name} with scale_loss={cfg['scale_loss']}\n"
                   + yaml.safe_dump(cfg, sort_keys=False))
    return dst


def yolo_data_yaml(opts: dict) -> Path:
    from gaussconv_plugin.data.yolo_format import prepare_yolo

    limit = opts.get("limit")
    sub = "sirst_yolo" if not limit else f"sirst_yolo_limit{limit}"
    return Path(prepare_yolo(opts.get("data_root"), cache_dir(sub), limit=limit))


def yolo_command(run: Run, data_yaml: Path) -> list[str]:
    o = run.opts
    yolo = Path(sys.executable).with_name("yolo")
    return [str(yolo), "train", f"model={yolo_model_yaml(run)}", f"data={data_yaml}", f"epochs={run.epochs}",
            f"imgsz={o.get('imgsz', DEFAULTS['imgsz'])}", f"batch={o.get('batch', DEFAULTS['batch'])}",
            f"device={o.get('device', 'cpu')}", "workers=0", f"seed={run.seed}", "deterministic=True",
            f"project={run.dir}", "name=train", "exist_ok=True", "plots=False", "amp=False"]


def yolo_result(run: Run) -> dict:
    rows = list(csv.DictReader((run.dir / "train" / "results.csv").open()))
    rows = [{k.strip(): v for k, v in r.items()} for r in rows]
    if not rows:
        raise RuntimeError(f"{run.dir}/train/results.csv has no epochs")
    last = rows[-1]
    times = [float(r["time"]) for r in rows]
    per_epoch = [b - a for a, b in zip([0.0] + times[:-1], times)]
    curves = {k: [float(r[c]) for r in rows] for k, c in [
        ("box_loss", "train/box_loss"), ("cls_loss", "train/cls_loss"), ("dfl_loss", "train/dfl_loss"),
        ("mAP50", "metrics/mAP50(B)"), ("mAP50-95", "metrics/mAP50-95(B)")]}
    return {
        "metrics": {"mAP50": float(last["metrics/mAP50(B)"]), "mAP50-95": float(last["metrics/mAP50-95(B)"]),
                    "precision": float(last["metrics/precision(B)"]), "recall": float(last["metrics/recall(B)"])},
        "epochs_done": len(rows),
        "sec_per_epoch": statistics.median(per_epoch),
        "curves": {"epoch": [int(float(r["epoch"])) for r in rows], **curves},
        "weights": str(run.dir / "train" / "weights" / "last.pt"),
    }


# ---------------------------------------------------------------------------------------------- U-Net part
def unet_command(run: Run) -> list[str]:
    gauss, loss = VARIANTS[run.variant]
    o = run.opts
    root = str(sirst_root(o.get("data_root")))
    val_every = max(1, int(o.get("val_interval") or max(1, run.epochs // 5)))
    opts = [f"{d}.dataset.data_root={root}" for d in ("train_dataloader", "val_dataloader", "test_dataloader")]
    opts += [f"model.net.gauss_conv={'both' if gauss else 'none'}", f"model.loss.mode={loss or BASELINE_LOSS['unet']}",
             f"train_cfg.max_epochs={run.epochs}", f"train_cfg.val_interval={val_every}",
             f"model.warmup_epochs={min(2, max(0, run.epochs - 1))}", f"randomness.seed={run.seed}",
             f"default_hooks.checkpoint.interval={run.epochs}", "default_hooks.checkpoint.save_best=None",
             "default_hooks.logger.interval=5"]
    for d in ("train_dataloader", "val_dataloader", "test_dataloader"):
        opts += [f"{d}.num_workers=0", f"{d}.persistent_workers=False"]
    if o.get("limit"):
        opts += [f"{d}.dataset.max_images={o['limit']}" for d in ("train_dataloader", "val_dataloader")]
    return [sys.executable, str(REPO / "tools" / "train.py"), str(REPO / "mmdet_cfgs" / "unet_mshnet_base_cpu.py"),
            "--work-dir", str(run.dir), "--cfg-options", *opts]


def unet_result(run: Run) -> dict:
    scalars = sorted(run.dir.glob("*/vis_data/scalars.json"), key=lambda p: p.stat().st_mtime)
    if not scalars:
        raise RuntimeError(f"{run.dir}: no */vis_data/scalars.json (did the training run?)")
    train: dict[int, list[float]] = {}
    val: dict[int, dict] = {}
    for line in scalars[-1].read_text().splitlines():
        rec = json.loads(line)
        if "loss" in rec and "epoch" in rec:
            train.setdefault(int(rec["epoch"]), []).append(float(rec["loss"]))
        elif "irstd/mIoU" in rec:
            val[int(rec["step"])] = {k.split("/", 1)[1]: float(v) for k, v in rec.items() if k.startswith("irstd/")}
    if run.epochs not in val:
        raise RuntimeError(f"{run.dir}: no validation at the last epoch {run.epochs} in {scalars[-1]}")
    last = val[run.epochs]
    epochs = sorted(train)
    return {
        "metrics": {k: last[k] for k in ("mIoU", "nIoU", "Pd", "Fa_e6")},
        "epochs_done": max(epochs) if epochs else 0,
        "curves": {"epoch": epochs, "loss": [sum(train[e]) / len(train[e]) for e in epochs],
                   "val_epoch": sorted(val), "mIoU": [val[e]["mIoU"] for e in sorted(val)],
                   "Pd": [val[e]["Pd"] for e in sorted(val)]},
        "weights": str(run.dir / f"epoch_{run.epochs}.pth"),
    }


# ------------------------------------------------------------------------------------------------- driving
def _git_commit() -> str:
    try:
        c = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                           check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(REPO), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True).stdout.strip()
        return c + ("+dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def child_env(threads: int) -> dict:
    """Environment of the child runs: Ultralytics offline switches and ``threads`` CPU threads."""
    from gaussconv_plugin.yolo.offline import offline_env

    return offline_env(threads=threads)


def run_one(run: Run, data_yaml: Path | None = None, threads: int = 1, invoked_by: str = "") -> dict:
    """Train one run in a child process (skipped if its ``result.json`` exists) and return its result record."""
    if run.done:
        return json.loads(run.result_file.read_text())
    if run.dir.exists():
        shutil.rmtree(run.dir)  # a run cut off half-way starts again
    run.dir.mkdir(parents=True)
    cmd = yolo_command(run, data_yaml) if run.part == "yolo" else unet_command(run)
    (run.dir / "command.txt").write_text(" ".join(cmd) + "\n")
    log(f"[start] {run.name} ({run.epochs} epochs): {run.dir}/log.txt")
    commit = _git_commit()
    t0 = time.time()
    with (run.dir / "log.txt").open("w") as fh:
        proc = subprocess.run(cmd, cwd=run.dir, env=child_env(threads), stdout=fh, stderr=subprocess.STDOUT)
    wall = time.time() - t0
    if proc.returncode != 0:
        tail = (run.dir / "log.txt").read_text(errors="replace").strip().splitlines()[-1:]
        raise RuntimeError(f"{run.name} failed (exit {proc.returncode}): {tail[0] if tail else ''} — "
                           f"see {run.dir}/log.txt; rerun the same command to retry it")
    res = yolo_result(run) if run.part == "yolo" else unet_result(run)
    rec = {"part": run.part, "variant": run.variant, "seed": run.seed, "epochs": run.epochs, "wall_s": round(wall, 1),
           "threads": threads, "commit": commit, "finished": _dt.datetime.now().isoformat(timespec="seconds"),
           "command": cmd, "ablation_command": invoked_by, **res}
    if run.part == "unet":
        rec["sec_per_epoch"] = round(wall / max(1, run.epochs), 1)
    run.result_file.write_text(json.dumps(rec, indent=1))
    m = ", ".join(f"{k} {v:.4g}" for k, v in rec["metrics"].items())
    log(f"[done]  {run.name}: {m} ({wall / 60:.1f} min)")
    return rec


def collect(runs: list[Run]) -> list[dict]:
    return [json.loads(r.result_file.read_text()) for r in runs if r.done]


def _mean_std(xs: list[float]) -> tuple[float, float]:
    m = statistics.fmean(xs)
    return m, (statistics.stdev(xs) if len(xs) > 1 else float("nan"))


def summarize(records: list[dict]) -> dict:
    """``{part: {variant: {"n": seeds, "seeds": [...], metric: (mean, std), "sec_per_epoch": (mean, std)}}}``;
    std is the sample standard deviation over seeds (NaN with one seed)."""
    out: dict = {}
    for part in PARTS:
        for v in VARIANTS:
            recs = sorted((r for r in records if r["part"] == part and r["variant"] == v), key=lambda r: r["seed"])
            if not recs:
                continue
            row = {"n": len(recs), "seeds": [r["seed"] for r in recs], "epochs": sorted({r["epochs"] for r in recs})}
            for key, _ in METRICS[part]:
                row[key] = _mean_std([r["metrics"][key] for r in recs])
            row["sec_per_epoch"] = _mean_std([r["sec_per_epoch"] for r in recs])
            out.setdefault(part, {})[v] = row
    return out


def _fmt(ms: tuple[float, float], digits: int) -> str:
    m, s = ms
    return f"{m:.{digits}f}" if math.isnan(s) else f"{m:.{digits}f} ± {s:.{digits}f}"


def markdown(summary: dict, meta: dict) -> str:
    lines = [f"Ablation on SIRST v1 (idx_427: train `trainval` 341 images, test `test` 86 images), "
             f"metrics of the last epoch, mean ± sample std over seeds.", "",
             f"- tables written by: `{meta['command']}`",
             *[f"- runs trained by: `{c}`" for c in meta.get("run_commands", [])],
             f"- commit of the runs: {', '.join(f'`{c}`' for c in meta.get('run_commits', [meta['commit']]))}; "
             f"runs finished on {', '.join(meta.get('run_dates', [meta['date']]))}",
             f"- machine: {meta['machine']}", ""]
    titles = {"yolo": f"YOLOv8n-{meta.get('yolo_arch', 'p2').upper()} (stock `yolo train`, imgsz {meta.get('imgsz')}, "
                      f"batch {meta.get('batch')})",
              "unet": "MSHNet U-Net (`tools/train.py mmdet_cfgs/unet_mshnet_base_cpu.py`, CPU schedule)"}
    names = {"stock": "stock", "gsconv": "+ GaussianShapedConv", "diff": "+ diff scale loss", "both": "both"}
    for part, rows in summary.items():
        digits = {"Fa_e6": 1}
        cols = METRICS[part]
        epochs = sorted({e for r in rows.values() for e in r["epochs"]})
        lines += [f"#### {titles[part]}, {', '.join(map(str, epochs))} epochs", "",
                  "| variant | seeds | " + " | ".join(c for _, c in cols) + " | s / epoch |",
                  "|---|---|" + "---|" * len(cols) + "---|"]
        for v, r in rows.items():
            cells = [_fmt(r[k], digits.get(k, 4)) for k, _ in cols]
            lines.append(f"| {names[v]} | {','.join(map(str, r['seeds']))} | " + " | ".join(cells)
                         + f" | {_fmt(r['sec_per_epoch'], 0)} |")
        lines.append("")
    return "\n".join(lines)


def write_tables(records: list[dict], out: Path, meta: dict) -> dict:
    summary = summarize(records)
    (out / "results.json").write_text(json.dumps({"meta": meta, "runs": records, "summary": summary}, indent=1))
    keys = sorted({k for r in records for k in r["metrics"]})
    with (out / "results.csv").open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["part", "variant", "seed", "epochs", *keys, "sec_per_epoch", "wall_s", "commit", "weights"])
        for r in records:
            w.writerow([r["part"], r["variant"], r["seed"], r["epochs"], *[r["metrics"].get(k, "") for k in keys],
                        r["sec_per_epoch"], r["wall_s"], r["commit"], r["weights"]])
    (out / "ablation.md").write_text(markdown(summary, meta))
    return summary


# --------------------------------------------------------------------------------------------------- plots
COLORS = {"stock": "tab:gray", "gsconv": "tab:blue", "diff": "tab:orange", "both": "tab:red"}


def plot_curves(records: list[dict], out: Path) -> list[Path]:
    """Training curves per variant (mean over seeds, band = min..max): one PNG per part."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    panels = {"yolo": [("epoch", "box_loss", "train box loss"), ("epoch", "cls_loss", "train cls loss"),
                       ("epoch", "mAP50", "test mAP50"), ("epoch", "mAP50-95", "test mAP50-95")],
              "unet": [("epoch", "loss", "train loss (mean per epoch)"), ("val_epoch", "mIoU", "test mIoU"),
                       ("val_epoch", "Pd", "test Pd")]}
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
                n = min(len(c[yk]) for c in rs)
                if n == 0:
                    continue
                y = np.array([c[yk][:n] for c in rs], dtype=float)
                x = rs[0][xk][:n]
                ax.plot(x, y.mean(0), color=COLORS[v], label=f"{v} (n={len(rs)})", marker="." if n < 8 else None)
                if len(rs) > 1:
                    ax.fill_between(x, y.min(0), y.max(0), color=COLORS[v], alpha=0.15)
            ax.set_title(title, fontsize=10)
            ax.set_xlabel("epoch")
            ax.grid(alpha=0.3)
        axs[0].legend(fontsize=8)
        fig.suptitle(f"{'YOLOv8n' if part == 'yolo' else 'U-Net'} on SIRST: training curves per variant", fontsize=11)
        fig.tight_layout()
        p = out / f"curves_{part}.png"
        fig.savefig(p, dpi=110)
        plt.close(fig)
        written.append(p)
    return written


def learned_sigma_theta(weights: str) -> list[tuple[str, int, list[float], list[float]]]:
    """``[(layer, k, σ per channel, θ per channel in degrees)]`` of the GaussianShapedConv2d layers of a checkpoint."""
    from tools.plot_kernels import kernels_from_checkpoint

    return [(name, k, s.tolist(), [math.degrees(t) for t in th.tolist()])
            for name, k, s, th in kernels_from_checkpoint(weights)]


def plot_sigma_theta(records: list[dict], out: Path) -> list[Path]:
    """Learned σ and θ per GaussianShapedConv layer (box plot over channels, all seeds of a variant pooled), with
    the initial values (σ₀ = k/2, θ₀ = 0) as dashed lines. One PNG per part with Gaussian variants."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    for part in PARTS:
        recs = [r for r in records if r["part"] == part and VARIANTS[r["variant"]][0] and Path(r["weights"]).is_file()]
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
        axs[0].set_title(f"{'YOLOv8n' if part == 'yolo' else 'U-Net'}: learned σ and θ per GaussianShapedConv layer "
                         f"\n(box: channels × seeds; dashed: initial value)", fontsize=10)
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
        cmd = [sys.executable, str(REPO / "tools" / "plot_kernels.py"), "--checkpoint", pick["weights"], "--out", str(kp)]
        log("$ " + " ".join(cmd))
        subprocess.run(cmd, check=True, env=child_env(1), cwd=REPO, stdout=subprocess.DEVNULL)
        written.append(kp)
    return written


def write_reports(runs: list[Run], out: Path, meta: dict, publish: Path | None = None) -> dict:
    records = collect(runs)
    if not records:
        raise SystemExit(f"no finished runs under {out}; run without --report-only first")
    meta = dict(meta, run_commits=sorted({r["commit"] for r in records}),
                run_commands=sorted({r["ablation_command"] for r in records if r.get("ablation_command")}),
                run_dates=sorted({r["finished"][:10] for r in records}))
    summary = write_tables(records, out, meta)
    pngs = plot_curves(records, out) + plot_sigma_theta(records, out)
    if publish:
        publish.mkdir(parents=True, exist_ok=True)
        for f in [out / "results.json", out / "results.csv", out / "ablation.md", *pngs]:
            shutil.copy2(f, publish / f.name)
        log(f"tables and plots copied to {publish}")
    return summary


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import torch

    return f"{os.cpu_count()}-core CPU ({cpu}), Python {platform.python_version()}, torch {torch.__version__}"


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--parts", nargs="+", default=list(PARTS), choices=PARTS)
    ap.add_argument("--variants", nargs="+", default=list(VARIANTS), help="subset of: " + " ".join(VARIANTS))
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1])
    ap.add_argument("--epochs", type=int, default=None, help="epochs for both parts (overrides the two below)")
    ap.add_argument("--yolo-epochs", type=int, default=DEFAULTS["yolo_epochs"])
    ap.add_argument("--unet-epochs", type=int, default=DEFAULTS["unet_epochs"])
    ap.add_argument("--yolo-arch", choices=("p2", "p3"), default=DEFAULTS["yolo_arch"],
                    help="p2: yolov8-p2-* (P2–P5 outputs, default); p3: yolov8-* (P3–P5)")
    ap.add_argument("--imgsz", type=int, default=DEFAULTS["imgsz"])
    ap.add_argument("--batch", type=int, default=DEFAULTS["batch"])
    ap.add_argument("--jobs", type=int, default=2, help="runs side by side (default 2)")
    ap.add_argument("--threads", type=int, default=1, help="CPU threads per run (default 1)")
    ap.add_argument("--data-root", default=None, help="SIRST folder (default: gaussconv_plugin.data.sirst_root())")
    ap.add_argument("--limit", type=int, default=None, help="use only the first N images per split (smoke runs)")
    ap.add_argument("--out", default=None, help="results folder (default ~/.cache/gaussconv_plugin/ablation)")
    ap.add_argument("--publish", default=None, help="also copy tables + plots (no weights) to this folder")
    ap.add_argument("--report-only", action="store_true", help="only write tables/plots from finished runs")
    a = ap.parse_args(argv)
    if a.epochs is not None:
        a.yolo_epochs = a.unet_epochs = a.epochs
    if min(a.yolo_epochs, a.unet_epochs) < 1 or a.jobs < 1 or a.threads < 1:
        raise SystemExit("--epochs/--yolo-epochs/--unet-epochs, --jobs and --threads must be >= 1")
    out = Path(a.out) if a.out else cache_dir("ablation")
    out.mkdir(parents=True, exist_ok=True)
    root = sirst_root(a.data_root)
    opts = {"data_root": str(root), "imgsz": a.imgsz, "batch": a.batch, "yolo_arch": a.yolo_arch, "limit": a.limit}
    runs = plan(out, a.parts, a.variants, a.seeds, a.yolo_epochs, a.unet_epochs, **opts)
    meta = {"command": "python tools/ablation.py " + " ".join(argv if argv is not None else sys.argv[1:]),
            "commit": _git_commit(), "date": _dt.date.today().isoformat(), "machine": machine(),
            "data_root": str(root), "threads_per_run": a.threads, "jobs": a.jobs, **opts}
    todo = [r for r in runs if not r.done]
    log(f"ablation: {len(runs)} runs ({len(runs) - len(todo)} done), {a.jobs} side by side × {a.threads} thread(s); "
        f"results in {out}")
    if todo and not a.report_only:
        data_yaml = yolo_data_yaml(opts) if any(r.part == "yolo" for r in todo) else None
        errors = []

        def work(r: Run):
            try:
                run_one(r, data_yaml, a.threads, meta["command"])
            except Exception as e:  # keep the other runs going; report at the end
                errors.append(str(e))
                log(f"[fail]  {e}")

        with ThreadPoolExecutor(max_workers=a.jobs) as ex:
            list(ex.map(work, todo))
        if errors:
            write_reports(runs, out, meta, Path(a.publish) if a.publish else None) if collect(runs) else None
            raise SystemExit(f"{len(errors)} run(s) failed; first: {errors[0]}")
    summary = write_reports(runs, out, meta, Path(a.publish) if a.publish else None)
    print((out / "ablation.md").read_text())
    print("trained weights (kept out of git):")
    for r in collect(runs):
        print(f"  {r['part']}/{r['variant']}/seed{r['seed']}: {r['weights']}")
    return summary


if __name__ == "__main__":
    os.environ.setdefault("MPLBACKEND", "Agg")
    main()
