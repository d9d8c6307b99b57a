"""Statistics over seeds: mean ± sample std, and paired per-seed differences with a 95 % t interval.

Paired difference of variant v to the reference r on metric m, over the seeds both have run:
``d_s = m(v, s) − m(r, s)``; reported as ``mean(d) ± std(d)`` and the two-sided 95 % Student-t interval
``mean(d) ± t_{0.975, n−1} · std(d)/√n`` (n seeds). An interval that covers 0 means no measurable difference at
this schedule and number of seeds. Same seed = same initialisation of the shared layers and the same data order.

The interval is the paired t-test: it excludes 0 exactly when the two-sided p-value
``p = 2 · (1 − F_{t, n−1}(|mean(d)| · √n / std(d)))`` is below 0.05. A table of several variants × metrics holds
many such tests, so one interval excluding 0 among them is expected by chance now and then; :func:`holm` adjusts
the p-values of one table for that (Holm's step-down method: the family-wise error rate stays at 5 % over the
whole table, for any dependence between its cells).
"""
from __future__ import annotations

import math
import statistics

__all__ = ["ALPHA", "mean_std", "t_quantile", "paired_difference", "holm"]

#: level of the tables' marks: the 95 % interval (``*``, each cell on its own) and Holm's family-wise ``†``
ALPHA = 0.05


def mean_std(xs: list[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (NaN with one value)."""
    m = statistics.fmean(xs)
    return m, (statistics.stdev(xs) if len(xs) > 1 else float("nan"))


def t_quantile(df: int, q: float = 0.975) -> float:
    """Student-t quantile (SciPy)."""
    from scipy.stats import t

    return float(t.ppf(q, df))


def paired_difference(values: dict[int, float], ref: dict[int, float]) -> dict | None:
    """``{seed: value}`` of a variant and of the reference → ``{n, seeds, mean, std, ci95: (lo, hi), p}``; None if
    they share no seed. ``p`` is the two-sided paired t-test's p-value (``p < 0.05`` ⇔ the interval excludes 0).
    With one shared seed std, the interval and p are NaN; so are the interval and p when every seed's difference is
    the same (std 0, as counts such as false alarms on a small test split can give): a t interval of zero width
    estimates nothing."""
    seeds = sorted(set(values) & set(ref))
    if not seeds:
        return None
    d = [values[s] - ref[s] for s in seeds]
    m, sd = mean_std(d)
    n, nan = len(d), float("nan")
    if n > 1 and sd > 1e-12:
        from scipy.stats import t

        se = sd / math.sqrt(n)
        half, p = t_quantile(n - 1) * se, float(2 * t.sf(abs(m) / se, n - 1))
    else:
        half = p = nan
    return {"n": n, "seeds": seeds, "mean": m, "std": sd, "ci95": (m - half, m + half), "p": p}


def holm(pvalues: dict) -> dict:
    """Holm–Bonferroni adjusted p-values: ``{key: p}`` → ``{key: p_adj}`` over the family of the non-NaN ``p``
    (NaN stays NaN and does not count as a test). Sorted ascending ``p_(1) ≤ … ≤ p_(k)``, the adjusted value is
    ``p̃_(i) = min(1, max_{j ≤ i} (k − j + 1) · p_(j))``; ``p̃ < α`` rejects with family-wise error ≤ α.
    Example: ``{a: 0.01, b: 0.04, c: 0.03}`` → ``{a: 0.03, b: 0.06, c: 0.06}``."""
    tested = sorted(((p, k) for k, p in pvalues.items() if not math.isnan(p)), key=lambda x: x[0])
    out = {k: float("nan") for k in pvalues}
    running = 0.0
    for i, (p, k) in enumerate(tested):
        running = max(running, min(1.0, (len(tested) - i) * p))
        out[k] = running
    return out
