"""Statistics over seeds: mean ± sample std, and paired per-seed differences with a 95 % t interval.

Paired difference of variant v to the reference r on metric m, over the seeds both have run:
``d_s = m(v, s) − m(r, s)``; reported as ``mean(d) ± std(d)`` and the two-sided 95 % Student-t interval
``mean(d) ± t_{0.975, n−1} · std(d)/√n`` (n seeds). An interval that covers 0 means no measurable difference at
this schedule and number of seeds. Same seed = same initialisation of the shared layers and the same data order.
"""
from __future__ import annotations

import math
import statistics

__all__ = ["mean_std", "t_quantile", "paired_difference"]


def mean_std(xs: list[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (NaN with one value)."""
    m = statistics.fmean(xs)
    return m, (statistics.stdev(xs) if len(xs) > 1 else float("nan"))


def t_quantile(df: int, q: float = 0.975) -> float:
    """Student-t quantile (SciPy)."""
    from scipy.stats import t

    return float(t.ppf(q, df))


def paired_difference(values: dict[int, float], ref: dict[int, float]) -> dict | None:
    """``{seed: value}`` of a variant and of the reference → ``{n, seeds, mean, std, ci95: (lo, hi)}``; None if
    they share no seed. With one shared seed std and the interval are NaN; so is the interval when every seed's
    difference is the same (std 0, as counts such as false alarms on a small test split can give): a t interval of
    zero width estimates nothing."""
    seeds = sorted(set(values) & set(ref))
    if not seeds:
        return None
    d = [values[s] - ref[s] for s in seeds]
    m, sd = mean_std(d)
    half = t_quantile(len(d) - 1) * sd / math.sqrt(len(d)) if len(d) > 1 and sd > 1e-12 else float("nan")
    return {"n": len(d), "seeds": seeds, "mean": m, "std": sd, "ci95": (m - half, m + half)}
