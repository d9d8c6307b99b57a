"""Which component makes a difference: the 2 × 2 factorial contrasts of ``stock``, ``gsconv``, ``diff`` and ``both``,
paired seed by seed.

The four base variants are a 2 × 2 design (conv: plain / GaussianShapedConv; loss: the stock one / ``diff``). For a
metric ``m`` and a seed ``s`` that all four ran (on one hardware, chosen by the caller), with ``S, G, D, B`` their
values::

    conv, main effect  = ½ (G − S + B − D)    simple effects: with the stock loss G − S, with diff B − D
    loss, main effect  = ½ (D − S + B − G)    simple effects: with the plain conv D − S, with the Gaussian conv B − G
    interaction        = B − D − G + S        (the conv's effect with ``diff`` minus its effect without it)

Each contrast is a per-seed number, reported as mean ± std with its 95 % t interval over the seeds
(:func:`.stats.paired_difference` against 0); the p-values are Holm-adjusted over every cell of the table (contrasts ×
metrics). A main effect averages the two simple effects: it answers "which component makes the gain" only where the
interaction is small beside it; the simple effects are shown for the case where it is not.
"""
from __future__ import annotations

from .stats import holm, paired_difference

__all__ = ["BASE", "CONTRASTS", "components"]

#: the four variants of the design, in the order (plain, stock loss) (conv) (loss) (both)
BASE = ("stock", "gsconv", "diff", "both")
#: (label, {variant: weight}) of each contrast, in the order of the table
CONTRASTS = [
    ("conv, main effect: ½ (gsconv − stock + both − diff)", {"gsconv": .5, "both": .5, "stock": -.5, "diff": -.5}),
    ("loss, main effect: ½ (diff − stock + both − gsconv)", {"diff": .5, "both": .5, "stock": -.5, "gsconv": -.5}),
    ("interaction: both − diff − gsconv + stock", {"both": 1, "stock": 1, "gsconv": -1, "diff": -1}),
    ("conv with the stock loss: gsconv − stock", {"gsconv": 1, "stock": -1}),
    ("conv with diff: both − diff", {"both": 1, "diff": -1}),
    ("loss with the plain conv: diff − stock", {"diff": 1, "stock": -1}),
    ("loss with GaussianShapedConv: both − gsconv", {"both": 1, "gsconv": -1}),
]


def components(values: dict[str, dict[str, dict[int, float]]]) -> dict:
    """``{metric: {variant: {seed: value}}}`` of the four :data:`BASE` variants → ``{label: {metric: d}}`` with ``d``
    :func:`.stats.paired_difference`'s dict of the contrast (``mean``, ``std``, ``ci95``, ``p``, ``seeds``) plus
    ``p_holm`` over the whole table. A metric enters over the seeds where all four variants have it; one that no
    seed has for all four is left out; ``{}`` when none is left."""
    out: dict = {}
    for key, by_v in values.items():
        if any(v not in by_v for v in BASE):
            continue
        seeds = sorted(set.intersection(*(set(by_v[v]) for v in BASE)))
        if not seeds:
            continue
        for label, w in CONTRASTS:
            c = {s: sum(wt * by_v[v][s] for v, wt in w.items()) for s in seeds}
            out.setdefault(label, {})[key] = paired_difference(c, {s: 0.0 for s in seeds})
    cells = {(label, key): d for label, row in out.items() for key, d in row.items()}
    for cell, q in holm({c: d["p"] for c, d in cells.items()}).items():
        cells[cell]["p_holm"] = q
    return out
