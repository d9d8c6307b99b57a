"""Tables of an ablation: ``results.json`` (every run + the summary), ``results.csv`` (a row per run) and
``ablation.md`` (mean ± std per variant, and each variant's paired per-seed difference to a reference variant:
``stock`` unless ``--reference`` names another, e.g. ``both`` for a screen of forms of ``both``). A part that ran all
four base variants (``stock``, ``gsconv``, ``diff``, ``both``) also gets their 2 × 2 contrasts (:mod:`.components`:
each component's main effect, the interaction and the simple effects), paired per seed.

In the Δ table of a part, ``*`` marks an interval that excludes 0 (paired t-test, p < 0.05, each cell on its own)
and ``†`` a difference that still holds after Holm's correction over every cell of that table (all variants × all
Δ metrics of the part: family-wise 5 %, :func:`.stats.holm`).

Re-render published tables (new marks, same runs; plots and ``results.csv`` untouched)::

    python -m tools.evidence.report docs/ablation/yolo_trainval_test docs/ablation/retina_trainval_test
    python -m tools.evidence.report --reference both docs/ablation/unet_loss_screen_train_val  # Δ to both

A folder keeps the reference it was rendered with (``meta["reference"]``, absent = ``stock``) until another is given.
"""
from __future__ import annotations

import csv
import json
import math
import os
import platform
from pathlib import Path

from gaussconv_plugin.boxmetrics import EVAL_CONF, PD_RADIUS

from .datasets import parse_split
from .components import BASE, components
from .stats import ALPHA, holm, mean_std, paired_difference
from .variants import VARIANTS

__all__ = ["METRICS", "DIFF_METRICS", "LAST_K", "ALPHA", "REFERENCE", "last_k_mean", "hardware", "summarize",
           "factorial", "markdown", "write_tables", "rerender", "reference", "machine"]

#: epochs averaged by the ``mAP50_last3`` column: the last-epoch figure alone swings by up to 0.17 mAP50 between
#: neighbouring epochs at these schedules; the mean of the last three is as free of selection and less noisy
LAST_K = 3
METRICS = {
    "yolo": [("mAP50", "mAP50"), ("mAP50_last3", f"mAP50 (last {LAST_K})"), ("mAP50-95", "mAP50-95"),
             ("precision", "P"), ("recall", "R"), ("Pd", "Pd"),
             ("Fa_per_img", "Fa / img"), ("area_ratio_median", "area P/T"),
             ("false_ge100", "false ≥ 100 px"), ("false_coarse", "false from coarse heads")],
    "unet": [("mIoU", "mIoU"), ("mIoU_last3", f"mIoU (last {LAST_K})"), ("nIoU", "nIoU"), ("Pd", "Pd"),
             ("Fa_e6", "Fa (×10⁻⁶)")],
    "retina": [("mAP50", "mAP50"), ("mAP50_last3", f"mAP50 (last {LAST_K})"), ("Pd", "Pd"),
               ("Fa_per_img", "Fa / img"), ("area_ratio_median", "area P/T"), ("false_ge100", "false ≥ 100 px")],
}
DIFF_METRICS = {"yolo": ["mAP50", "mAP50_last3", "mAP50-95", "Pd", "Fa_per_img", "false_ge100"],
                "unet": ["mIoU", "mIoU_last3", "nIoU", "Pd", "Fa_e6"],
                "retina": ["mAP50", "mAP50_last3", "Pd", "Fa_per_img", "area_ratio_median", "false_ge100"]}
#: the variant the paired differences are taken to unless a table names another (``meta["reference"]``)
REFERENCE = "stock"
NAMES = {"stock": "stock", "gsconv": "+ GaussianShapedConv", "diff": "+ diff scale loss", "both": "both"}


def last_k_mean(rec: dict, key: str = "mAP50", k: int = LAST_K) -> float | None:
    """Mean of the last ``k`` per-epoch values of ``key`` in a run's curves (None if it has fewer than ``k``)."""
    xs = (rec.get("curves") or {}).get(key) or []
    return sum(xs[-k:]) / k if len(xs) >= k else None


def hardware(rec: dict) -> str | None:
    """What a run trained on, as far as pairing cares: the GPU's name where :func:`machine` names one, else ``"CPU"``;
    None for a record made before machines were recorded. The same seed on another device is another run (other
    kernels, another trajectory), so a paired difference only pairs runs of one hardware. CPUs are one hardware:
    every CPU runs PyTorch's fp32 kernels (its instruction set changes the rounding only), while a GPU runs its
    convolutions in TF32 by default (``torch.backends.cudnn.conv.fp32_precision``) and YOLO trains there with AMP —
    a change of precision, which is what a pair must not straddle."""
    m = rec.get("machine")
    if not m:
        return None
    return m.split(" GPU + ", 1)[0] if " GPU + " in m else "CPU"


def _same_hardware(a: dict, b: dict) -> bool:
    ha, hb = hardware(a), hardware(b)
    return ha is None or hb is None or ha == hb


def _with_derived(rec: dict) -> dict:
    """``rec`` with ``mAP50_last3`` (detectors) or ``mIoU_last3`` (U-Net), only where the run's last ``LAST_K``
    validations are the last ``LAST_K`` epochs of its schedule (a U-Net validates only its last epochs, see
    :mod:`.unet_part`; a RetinaNet run cut during a validation and resumed skips that epoch's)."""
    detector = rec["part"] in ("yolo", "retina")
    key, metric = ("mAP50_last3", "mAP50") if detector else ("mIoU_last3", "mIoU")
    curves, e = rec.get("curves") or {}, rec.get("epochs") or 0
    done = [int(x) for x in curves.get("val_epoch", curves.get("epoch", []) if detector else [])]
    ok = e >= LAST_K and done[-LAST_K:] == list(range(e - LAST_K + 1, e + 1))
    m = last_k_mean(rec, metric) if ok else None
    if m is not None:
        return {**rec, "metrics": {**rec["metrics"], key: m}}
    if done and key in rec["metrics"]:  # its curves say the last epochs were not all validated: no stale figure
        return {**rec, "metrics": {k: v for k, v in rec["metrics"].items() if k != key}}
    return rec


def check_unique(records: list[dict]) -> None:
    """One line naming the run unless each (part, variant, seed) has one record and each part one schedule, split
    and dataset: a table would otherwise pair (or average) runs of different protocols without saying so."""
    seen: dict = {}
    for r in records:
        key = (r["part"], r["variant"], r["seed"])
        if key in seen:
            raise SystemExit(f"report: two runs of {'/'.join(map(str, key))} (trained {seen[key]} and "
                             f"{r.get('finished', '?')}); keep one in the folder's records")
        seen[key] = r.get("finished", "?")
    for part in {r["part"] for r in records}:
        protocols = {(r["epochs"], json.dumps(r.get("split"), sort_keys=True),
                      (r.get("dataset") or {}).get("name", "sirst")) for r in records if r["part"] == part}
        if len(protocols) > 1:
            raise SystemExit(f"report: the {part} runs differ in epochs, split or dataset "
                             f"({'; '.join(map(str, sorted(protocols)))}); publish each protocol in its own folder")


def reference(meta: dict | None) -> str:
    """The variant a table's paired differences are taken to: ``meta["reference"]``, else :data:`REFERENCE`."""
    return (meta or {}).get("reference") or REFERENCE


def summarize(records: list[dict], ref_variant: str = REFERENCE) -> dict:
    """``{part: {variant: {"n", "seeds", "epochs", metric: (mean, std), "sec_per_epoch": (mean, std),
    "paired": {metric: paired_difference to ref_variant}}}}``; std is the sample standard deviation over seeds. A
    seed is paired only where the variant and the reference (``stock`` by default) trained on the same
    :func:`hardware` (a GPU run of the reference is no pair for a CPU run of the variant), and a row whose runs
    trained on several hardware gets its s / epoch per hardware
    (``sec_per_epoch_by_hardware``) beside the meaningless pooled one.
    ``mAP50_last3`` (detectors) and ``mIoU_last3`` (U-Net) are derived here from each run's curves
    (:func:`last_k_mean`). Each paired difference carries its t-test ``p`` and ``p_holm``, Holm-adjusted over every
    paired cell of its part (variants × metrics)."""
    records = [_with_derived(r) for r in records]
    check_unique(records)
    out: dict = {}
    for part in METRICS:
        by_v = {v: sorted((r for r in records if r["part"] == part and r["variant"] == v), key=lambda r: r["seed"])
                for v in VARIANTS}
        ref = {r["seed"]: r for r in by_v.get(ref_variant, [])}
        for v, recs in by_v.items():
            if not recs:
                continue
            row = {"n": len(recs), "seeds": [r["seed"] for r in recs], "epochs": sorted({r["epochs"] for r in recs})}
            for key, _ in METRICS[part]:
                xs = [r["metrics"][key] for r in recs if key in r["metrics"]]
                if xs:
                    row[key] = mean_std(xs)
            row["sec_per_epoch"] = mean_std([r["sec_per_epoch"] for r in recs])
            secs_by_hw: dict = {}
            for r in recs:
                secs_by_hw.setdefault(hardware(r) or "?", []).append(r["sec_per_epoch"])
            if len(secs_by_hw) > 1:  # a GPU's seconds and a CPU's do not average: one figure per hardware
                row["sec_per_epoch_by_hardware"] = {h: mean_std(xs) for h, xs in sorted(secs_by_hw.items())}
            if v != ref_variant and ref:
                row["paired"] = {}
                same = {r["seed"] for r in recs if r["seed"] in ref and _same_hardware(r, ref[r["seed"]])}
                for key in DIFF_METRICS[part]:
                    vals = {r["seed"]: r["metrics"][key] for r in recs if key in r["metrics"] and r["seed"] in same}
                    refv = {s: q["metrics"][key] for s, q in ref.items() if key in q["metrics"]}
                    d = paired_difference(vals, refv)
                    if d:
                        row["paired"][key] = d
            out.setdefault(part, {})[v] = row
        cells = {(v, k): d for v, row in out.get(part, {}).items() for k, d in row.get("paired", {}).items()}
        for key, q in holm({c: d["p"] for c, d in cells.items()}).items():
            cells[key]["p_holm"] = q
    return out


def factorial(records: list[dict]) -> dict:
    """``{part: {contrast: {metric: d}}}``: :func:`.components.components` of each part whose records hold all four
    :data:`.components.BASE` variants, over the seeds where all four ran on one :func:`hardware`, for the part's
    :data:`DIFF_METRICS`; parts without them are left out."""
    records = [_with_derived(r) for r in records]
    check_unique(records)
    out: dict = {}
    for part in METRICS:
        by_vs = {(r["variant"], r["seed"]): r for r in records if r["part"] == part and r["variant"] in BASE}
        seeds = [s for s in sorted({s for _, s in by_vs})
                 if all((v, s) in by_vs for v in BASE)
                 and len({hardware(by_vs[v, s]) for v in BASE} - {None}) <= 1]
        if not seeds:
            continue
        values = {k: {v: {s: by_vs[v, s]["metrics"][k] for s in seeds if k in by_vs[v, s]["metrics"]} for v in BASE}
                  for k in DIFF_METRICS[part]}
        table = components(values)
        if table:
            out[part] = table
    return out


def _fmt(ms, digits: int) -> str:
    m, s = ms
    return f"{m:.{digits}f}" if math.isnan(s) else f"{m:.{digits}f} ± {s:.{digits}f}"


def _fmt_diff(d: dict, digits: int, row_seeds: list[int] | None = None) -> str:
    """A paired difference's cell; one over fewer seeds than its row's ``row_seeds`` names its own."""
    own = "" if row_seeds is None or d["seeds"] == row_seeds else f" (seeds {','.join(map(str, d['seeds']))})"
    lo, hi = d["ci95"]
    if math.isnan(d["std"]):
        return f"{d['mean']:+.{digits}f}{own}"
    if math.isnan(lo):  # zero spread over the seeds: no interval
        return f"{d['mean']:+.{digits}f} ± 0 (same on every seed: no interval){own}"
    mark = "" if lo <= 0 <= hi else " *"
    if d.get("p_holm", float("nan")) < ALPHA:
        mark += " †"
    return f"{d['mean']:+.{digits}f} ± {d['std']:.{digits}f} [{lo:+.{digits}f}, {hi:+.{digits}f}]{mark}{own}"


def markdown(summary: dict, meta: dict, contrasts: dict | None = None) -> str:
    """``ablation.md``: the head, a table per part of ``summary`` (:func:`summarize`) with its paired Δ table, and
    the part's 2 × 2 contrasts where ``contrasts`` (:func:`factorial`) holds them."""
    ref = reference(meta)
    split = meta.get("split", "trainval:test").split(":")
    label = meta.get("dataset_label", "SIRST v1 (idx_427)")
    if meta.get("evaluated_on"):  # tools.evidence.evaluate: the trained runs on another dataset
        head = (f"Runs of the ablation (trained on {label} `{split[0]}`) evaluated on `{meta['evaluated_on']}`, split "
                f"`{meta.get('eval_split', 'test')}`, input size {meta.get('eval_imgsz_text', 'as trained')}; final "
                "weights (last epoch), mean ± sample std over seeds.")
    else:
        head = (f"Ablation on {label}: train on `{split[0]}`, evaluate on `{split[1]}`; metrics of the last "
                "epoch, mean ± sample std over seeds.")
    notes = list(meta.get("notes") or [])
    if not notes:  # the default notes of the parts shown
        if "yolo" in summary:
            notes.append(
                "- YOLO: mAP50 etc. from the last epoch's `yolo val` inside training (batch 32, rect); Pd, Fa / img "
                "and "
                "area P/T from `python -m tools.evidence.boxeval` (one image at a time at the training size, conf ≥ "
                f"{EVAL_CONF:g}, match = box centres ≤ {PD_RADIUS:g} px apart; area P/T = median predicted/target box "
                "area of matched targets)" + (
                    "; false ≥ 100 px / from coarse heads: share of the unmatched boxes with a long side ≥ 100 px / "
                    "fired by a head coarser than the finest (P3–P5 of a P2 model)"
                    if any("false_ge100" in r for r in summary["yolo"].values()) else ""))
        if "yolo" in summary or "retina" in summary:
            notes.append(f"- mAP50 (last {LAST_K}): mean of the last {LAST_K} epochs' validation mAP50 (no epoch "
                         "chosen; less noisy than the last epoch alone)")
        if "unet" in summary:
            ev = parse_split(meta.get("split") or "trainval:test")[1]
            notes.append(f"- U-Net: mIoU (last {LAST_K}) = mean mIoU on `{ev}` of the last {LAST_K} epochs (validated "
                         "every epoch from there on; runs without those validations leave it blank)")
        if "retina" in summary:
            notes.append("- RetinaNet: mAP50 = COCO box AP at IoU 0.5 of the last epoch's validation inside training "
                         "(`CocoMetric`); Pd, Fa / img and area P/T from `python -m tools.evidence.retina_eval` "
                         "(`tools/test.py` one image at a time at the training size, score ≥ "
                         f"{EVAL_CONF:g}, same matching)" + (
                             "; false ≥ 100 px: share of the unmatched boxes with a long side ≥ 100 px"
                             if any("false_ge100" in r for r in summary["retina"].values()) else ""))
    lines = [head, "",
             f"- tables written by: `{meta['command']}`",
             *[f"- runs trained by: `{c}`" for c in meta.get("run_commands", [])],
             f"- commit of the runs: {', '.join(f'`{c}`' for c in meta.get('run_commits', [meta['commit']]))}; "
             f"runs finished on {', '.join(meta.get('run_dates', [meta['date']]))}",
             *([f"- runs trained on: {'; '.join(meta['run_machines'])}"] if meta.get("run_machines") else []),
             f"- machine{' (tables)' if meta.get('run_machines') else ''}: {meta['machine']}",
             *notes,
             f"- Δ to {ref}: paired per-seed difference, mean ± std [95 % t interval]; `*` marks an interval that "
             "excludes 0 (none is given when every seed's difference is the same); `†` marks one that still holds "
             "after Holm's correction over every cell of its Δ table (family-wise 5 %)",
             *([f"- tables re-rendered by: `{meta['rerendered_by']}` (same runs)"]
               if meta.get("rerendered_by") else []),
             ""]
    titles = {"yolo": f"YOLOv8n-{meta.get('yolo_arch', 'p2').upper()} (stock `yolo train`, imgsz {meta.get('imgsz')}, "
                      f"batch {meta.get('batch')})",
              "unet": "MSHNet U-Net (`tools/train.py mmdet_cfgs/"
                      f"{meta.get('unet_config', 'unet_mshnet_base_cpu.py')}`, "
                      "CPU schedule)",
              "retina": f"RetinaNet-R18 (`tools/train.py mmdet_cfgs/retinanet_r18_fpn_sirst320_cpu[_gauss].py`, imgsz "
                        f"{meta.get('imgsz')}, batch 4)"}
    digits = {"Fa_e6": 1, "Fa_per_img": 3, "area_ratio_median": 2, "false_ge100": 2, "false_coarse": 2}
    for part, rows in summary.items():
        cols = [(k, c) for k, c in METRICS[part] if any(k in r for r in rows.values())]
        epochs = sorted({e for r in rows.values() for e in r["epochs"]})
        lines += [f"#### {titles[part]}, {', '.join(map(str, epochs))} epochs", "",
                  "| variant | seeds | " + " | ".join(c for _, c in cols) + " | s / epoch |",
                  "|---|---|" + "---|" * len(cols) + "---|"]
        for v, r in rows.items():
            cells = [_fmt(r[k], digits.get(k, 4)) if k in r else "" for k, _ in cols]
            secs = (" / ".join(f"{_fmt(ms, 0)} ({h})" for h, ms in r["sec_per_epoch_by_hardware"].items())
                    if "sec_per_epoch_by_hardware" in r else _fmt(r["sec_per_epoch"], 0))
            lines.append(f"| {NAMES.get(v, v)} | {','.join(map(str, r['seeds']))} | " + " | ".join(cells)
                         + f" | {secs} |")
        diffs = [(v, r["paired"]) for v, r in rows.items() if r.get("paired")]
        if diffs:
            keys = [k for k in DIFF_METRICS[part] if any(k in p for _, p in diffs)]
            label = dict(METRICS[part])
            lines += ["", f"Paired difference to {ref} ({part}):", "",
                      "| variant | seeds | " + " | ".join(f"Δ {label[k]}" for k in keys) + " |",
                      "|---|---|" + "---|" * len(keys)]
            for v, p in diffs:  # the row's seeds: every seed of any of its cells; a cell over fewer names its own
                seeds = sorted({s for d in p.values() for s in d["seeds"]})
                lines.append(f"| {NAMES.get(v, v)} | {','.join(map(str, seeds))} | "
                             + " | ".join(_fmt_diff(p[k], digits.get(k, 4), seeds) if k in p else "" for k in keys)
                             + " |")
        elif len(rows) > 1 and ref not in rows:  # say so: a table without its Δ would read as "no difference"
            lines += ["", f"No paired difference ({part}): this part has no run of the reference variant `{ref}`."]
        unpaired = [v for v, r in rows.items() if v != ref and ref in rows and not r.get("paired")]
        if unpaired:  # a row missing from the Δ table would read as "not run"
            lines += ["", f"No paired difference for {', '.join(NAMES.get(v, v) for v in unpaired)} ({part}): no seed "
                      f"of it trained on the same hardware as the reference `{ref}`'s run of that seed."]
        mixed = [v for v, r in rows.items() if "sec_per_epoch_by_hardware" in r]
        if mixed:
            lines += ["", f"The means of {', '.join(NAMES.get(v, v) for v in mixed)} ({part}) pool runs of several "
                      "hardware (see the s / epoch column); the paired differences pair runs of one hardware only."]
        table = (contrasts or {}).get(part)
        if table:
            keys = [k for k in DIFF_METRICS[part] if any(k in row for row in table.values())]
            label = dict(METRICS[part])
            seeds = sorted({s for row in table.values() for d in row.values() for s in d["seeds"]})
            lines += ["", f"Which component ({part}): the 2 × 2 contrasts of stock, gsconv, diff and both, per seed "
                      f"over the seeds all four ran on one hardware ({','.join(map(str, seeds))}); mean ± std [95 % t "
                      "interval], `*` / `†` as above (Holm over this table). A main effect speaks for its component "
                      "only where the interaction is small beside it:", "",
                      "| contrast | " + " | ".join(label[k] for k in keys) + " |",
                      "|---|" + "---|" * len(keys)]
            for name, row in table.items():
                lines.append(f"| {name} | "
                             + " | ".join(_fmt_diff(row[k], digits.get(k, 4)) if k in row else "" for k in keys)
                             + " |")
        lines.append("")
    return "\n".join(lines)


def write_tables(records: list[dict], out: Path, meta: dict) -> dict:
    records = [_with_derived(r) for r in records]
    summary, contrasts = summarize(records, reference(meta)), factorial(records)
    (out / "results.json").write_text(json.dumps({"meta": meta, "runs": records, "summary": summary,
                                                  **({"components": contrasts} if contrasts else {})}, indent=1))
    keys = sorted({k for r in records for k in r["metrics"]})
    with (out / "results.csv").open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["part", "variant", "seed", "epochs", "dataset", "train_split", "eval_split", *keys,
                    "sec_per_epoch", "wall_s", "commit", "weights"])
        for r in records:
            sp = r.get("split", {"train": "trainval", "eval": "test"})
            ds = r.get("dataset") or {"name": "sirst"}  # runs made before datasets were recorded: SIRST v1
            w.writerow([r["part"], r["variant"], r["seed"], r["epochs"], ds["name"], sp["train"], sp["eval"],
                        *[r["metrics"].get(k, "") for k in keys], r["sec_per_epoch"], r["wall_s"], r["commit"],
                        r["weights"]])
    (out / "ablation.md").write_text(markdown(summary, meta, contrasts))
    return summary


def rerender(folder: Path, command: str, ref_variant: str | None = None) -> dict:
    """Rewrite ``folder``'s ``results.json`` summary and ``ablation.md`` from the runs and meta it holds (what this
    module's current version marks, e.g. the Holm ``†``), recording ``command`` as ``meta["rerendered_by"]``; with
    ``ref_variant`` the paired differences are taken to that variant (recorded as ``meta["reference"]``), else to the
    folder's own reference. Runs, ``results.csv`` and plots are left as they are. Returns the summary."""
    path = Path(folder) / "results.json"
    if not path.is_file():
        raise SystemExit(f"report: no results.json in {folder}: pass a folder that tools/ablation.py --publish wrote")
    data = json.loads(path.read_text())
    meta = {**data["meta"], "rerendered_by": command}
    if ref_variant is not None:
        check_reference(ref_variant, data["runs"], path)
        meta = {k: v for k, v in meta.items() if k != "reference"}
        if ref_variant != REFERENCE:  # the default stays implicit: tables rendered before the option read the same
            meta["reference"] = ref_variant
    summary, contrasts = summarize(data["runs"], reference(meta)), factorial(data["runs"])
    path.write_text(json.dumps({"meta": meta, "runs": data["runs"], "summary": summary,
                                **({"components": contrasts} if contrasts else {})}, indent=1))
    (Path(folder) / "ablation.md").write_text(markdown(summary, meta, contrasts))
    return summary


def check_reference(ref_variant: str, records: list[dict], where) -> None:
    """One line naming ``where`` and the fix unless some run of ``records`` is of variant ``ref_variant``."""
    order = list(VARIANTS)
    have = sorted({r["variant"] for r in records}, key=lambda v: (order.index(v) if v in order else len(order), v))
    if ref_variant not in have:
        raise SystemExit(f"--reference {ref_variant}: {where} holds no run of it; choose one of its variants: "
                         f"{', '.join(have)}")


def main(argv: list[str] | None = None) -> None:
    import argparse
    import shlex
    import sys

    ap = argparse.ArgumentParser(prog="python -m tools.evidence.report",
                                 description="Re-render published ablation tables from their results.json")
    ap.add_argument("folders", nargs="+", type=Path, help="folders holding a results.json (docs/ablation/...)")
    ap.add_argument("--reference", default=None, metavar="VARIANT", choices=list(VARIANTS),
                    help="take the paired differences to this variant (default: the folder's own, stock unless it "
                         "was rendered with another)")
    args = ap.parse_args(argv)
    command = "python -m tools.evidence.report " + " ".join(
        shlex.quote(str(f)) for f in (argv if argv is not None else sys.argv[1:]))
    missing = [str(f) for f in args.folders if not (f / "results.json").is_file()]
    if missing:  # before any folder is rewritten
        ap.error(f"no results.json in {', '.join(missing)}: pass folders that tools/ablation.py --publish wrote")
    if args.reference is not None:  # every folder must hold the reference, before any is rewritten
        for f in args.folders:
            check_reference(args.reference, json.loads((f / "results.json").read_text())["runs"], f / "results.json")
    for f in args.folders:
        rerender(f, command, args.reference)
        print(f"re-rendered {f / 'ablation.md'}")


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

    gpu = f"{torch.cuda.get_device_name(0)} GPU + " if torch.cuda.is_available() else ""
    return f"{gpu}{os.cpu_count()}-core CPU ({cpu}), Python {platform.python_version()}, torch {torch.__version__}"


if __name__ == "__main__":
    main()
