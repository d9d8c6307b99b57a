"""Pd by target size: where a detector's Pd gap to stock comes from, over the seeds of an ablation.

For every finished YOLO run under ``RUNS`` (an ablation folder ``.../yolo/<split>/e<E>``, holding
``<variant>/seed<k>/train/weights/last.pt``) :func:`tools.evidence.boxeval.evaluate_weights` scores the weights on
``--split`` of ``--data-root`` (any layout :func:`gaussconv_plugin.data.sirst_root` reads), with Pd counted per
bin of target box area in the image's own pixels (:meth:`gaussconv_plugin.boxmetrics.BoxTargetMetrics.pd_by_area`;
``--edges 9 25 64 144`` = up to 3×3, 5×5, 8×8, 12×12 px boxes and larger). It prints one table: per variant and
bin, the mean Pd over seeds and the paired per-seed difference to ``--reference`` with its 95 % t interval
(:func:`tools.evidence.stats.paired_difference`). With ``--work-dir`` each run's record is kept there as
``<variant>_seed<k>.json`` and reused while its weights, data, split, size and edges are unchanged; ``--out``
writes the table to a file under the command that made it::

    python -m tools.evidence.area_pd ~/.cache/gaussconv_plugin/ablation/yolo/trainval-test/e40 \\
        --data-root ../shared/data/nudt_sirst --split test --work-dir /tmp/area_pd
"""
from __future__ import annotations

import argparse
import json
import math
import re
import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a file: make `tools` and `gaussconv_plugin` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from gaussconv_plugin.boxmetrics import EVAL_CONF, PD_RADIUS  # noqa: E402  (boxeval's protocol)
from tools.evidence.stats import ALPHA, holm, mean_std, paired_difference  # noqa: E402

__all__ = ["find_runs", "score_runs", "table", "main"]

_KEY = ("weights", "root", "split", "imgsz", "conf", "radius")  # what a kept record must match to be reused


def find_runs(runs: Path) -> dict[tuple[str, int], Path]:
    """``{(variant, seed): last.pt}`` of the finished YOLO runs under ``runs`` (``<variant>/seed<k>/...``)."""
    out = {}
    for w in sorted(Path(runs).glob("*/seed*/train/weights/last.pt")):
        m = re.fullmatch(r"seed(\d+)", w.parents[2].name)
        if m and (w.parents[2] / "result.json").is_file():  # result.json: the run finished
            out[(w.parents[3].name, int(m.group(1)))] = w
    return out


def score_runs(found: dict, root, split: str, edges, imgsz: int = 320, work_dir=None) -> dict:
    """``{(variant, seed): boxeval record with Pd_by_area}``, reusing ``work_dir`` records that still match."""
    from gaussconv_plugin.boxmetrics import BoxTargetMetrics
    from gaussconv_plugin.data import sirst_root
    from tools.evidence.boxeval import evaluate_weights

    want_bins = [r["area"] for r in BoxTargetMetrics().pd_by_area(edges)]  # bad edges fail before any model runs
    root = str(sirst_root(root))
    recs = {}
    for (v, s), w in sorted(found.items()):
        cache = Path(work_dir) / f"{v}_seed{s}.json" if work_dir else None
        rec = json.loads(cache.read_text()) if cache and cache.is_file() else None
        if rec is None or tuple(rec.get(k) for k in _KEY) != (str(w), root, split, imgsz, EVAL_CONF, PD_RADIUS) \
                or [r["area"] for r in rec.get("Pd_by_area", [])] != want_bins:
            print(f"[score] {v}/seed{s}: {w}", flush=True)
            rec = evaluate_weights(w, root, split, imgsz, EVAL_CONF, PD_RADIUS, by_area=edges)
            if cache:
                cache.parent.mkdir(parents=True, exist_ok=True)
                cache.write_text(json.dumps(rec, indent=1))
        recs[(v, s)] = rec
    return recs


def table(recs: dict, reference: str = "stock") -> str:
    """Markdown: per variant and area bin, targets, Pd mean ± std over seeds, paired Δ Pd to ``reference``
    (``*``: its 95 % t interval excludes 0; ``†``: it still does after Holm's correction over every Δ cell of the
    table, :func:`.stats.holm`)."""
    variants = sorted({v for v, _ in recs}, key=lambda v: (v != reference, v))
    bins = [r["area"] for r in next(iter(recs.values()))["Pd_by_area"]]
    pd = {(v, s): [r["Pd"] for r in rec["Pd_by_area"]] for (v, s), rec in recs.items()}
    rows, diffs = [], {}
    for v in variants:
        seeds = sorted(s for w, s in recs if w == v)
        for i, b in enumerate(bins):
            vals = {s: pd[(v, s)][i] for s in seeds if not math.isnan(pd[(v, s)][i])}
            m, sd = mean_std(list(vals.values())) if vals else (float("nan"), float("nan"))
            n_t = recs[(v, seeds[0])]["Pd_by_area"][i]["targets"]
            d = None if v == reference else paired_difference(
                vals, {s: pd[(reference, s)][i] for s in seeds if (reference, s) in pd})
            if d is not None:
                diffs[(v, i)] = d
            rows.append((v, seeds, i, b, n_t, m, sd, d))
    adjusted = holm({k: d["p"] for k, d in diffs.items()})
    lines = ["| variant | seeds | target area (px²) | targets | Pd | Δ Pd to " + reference + " [95 % t] |",
             "|---|---|---|---|---|---|"]
    for v, seeds, i, b, n_t, m, sd, d in rows:
        dtxt = "" if d is None else (f"{d['mean']:+.3f} [{d['ci95'][0]:+.3f}, {d['ci95'][1]:+.3f}]"
                                     + (" *" if d["ci95"][0] > 0 or d["ci95"][1] < 0 else "")
                                     + (" †" if adjusted[(v, i)] < ALPHA else ""))
        lines.append(f"| {v} | {','.join(map(str, seeds))} | {b} | {n_t} | {m:.3f} ± {sd:.3f} | {dtxt} |")
    return "\n".join(lines)


def main(argv=None) -> str:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", help="ablation folder yolo/<split>/e<E> holding <variant>/seed<k>/ runs")
    ap.add_argument("--data-root", default=None, help="dataset to score on (default: the shared SIRST v1)")
    ap.add_argument("--split", default="test")
    ap.add_argument("--imgsz", type=int, default=320)
    ap.add_argument("--edges", type=float, nargs="+", default=[9, 25, 64, 144], metavar="PX2")
    ap.add_argument("--reference", default="stock")
    ap.add_argument("--work-dir", default=None, help="keep and reuse each run's record here")
    ap.add_argument("--out", default=None, help="also write the table (under the command that made it) to this file")
    a = ap.parse_args(argv)
    found = find_runs(Path(a.runs))
    if not found:
        raise SystemExit(f"no finished YOLO run under {a.runs}; pass an ablation folder such as "
                         "~/.cache/gaussconv_plugin/ablation/yolo/trainval-test/e40")
    if a.reference not in {v for v, _ in found}:
        raise SystemExit(f"--reference {a.reference} has no run under {a.runs}; pass one of "
                         f"{sorted({v for v, _ in found})}")
    md = table(score_runs(found, a.data_root, a.split, a.edges, a.imgsz, a.work_dir), a.reference)
    print(md)
    if a.out:
        cmd = "python -m tools.evidence.area_pd " + " ".join(argv if argv is not None else sys.argv[1:])
        Path(a.out).write_text(f"Pd by target box area (px², each image's own pixels), conf ≥ {EVAL_CONF:g}, "
                               f"centres ≤ {PD_RADIUS:g} px; mean ± std over seeds, Δ paired per seed, 95 % t "
                               f"(`*`: excludes 0; `†`: still after Holm's correction over the table's Δ cells).\n\n"
                               f"- made by: `{cmd}`\n\n{md}\n")
    return md


if __name__ == "__main__":
    main()
