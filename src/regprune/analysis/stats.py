"""Statistics over seeds: mean and 95% Student-t confidence interval, and paired differences of two methods.

A replicate is one trained model (one training seed). With n replicates of a metric x, the interval is
mean(x) ± t_{0.975, n−1} · s / √n (s: sample standard deviation, ddof 1); n = 1 gives no interval. A paired
comparison of methods A and B takes the seeds both have, d_i = A_i − B_i, and the same interval on the mean
of d; it is significant only when that interval excludes 0. The t quantile is scipy's (``scipy.stats.t``).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import numpy as np
from scipy.stats import t as student_t

LEVEL = 0.95


def t_quantile(df: int, level: float = LEVEL) -> float:
    """The two-sided critical value q of Student's t with ``df`` degrees of freedom: P(|T| ≤ q) = level."""
    if df < 1:
        raise ValueError(f"df={df} must be ≥ 1")
    return float(student_t.ppf(0.5 + level / 2, df))


@dataclass(frozen=True)
class Interval:
    """Mean of n values with the half-width of its t interval (NaN when n < 2)."""

    n: int
    mean: float
    std: float
    half: float

    @property
    def lo(self) -> float:
        return self.mean - self.half

    @property
    def hi(self) -> float:
        return self.mean + self.half


def t_interval(values: Iterable[float], level: float = LEVEL) -> Interval:
    """Mean and t interval of the finite ``values`` (NaN and None are missing, not zero)."""
    x = np.array([v for v in values if v is not None and math.isfinite(float(v))], dtype=float)
    n = len(x)
    if n == 0:
        return Interval(0, math.nan, math.nan, math.nan)
    if n == 1:
        return Interval(1, float(x[0]), math.nan, math.nan)
    std = float(x.std(ddof=1))
    return Interval(n, float(x.mean()), std, t_quantile(n - 1, level) * std / math.sqrt(n))


@dataclass(frozen=True)
class Paired:
    """Mean difference A − B over the n seeds both have, its t interval, and whether it excludes 0."""

    n: int
    diff: float
    half: float

    @property
    def significant(self) -> bool:
        return self.n >= 2 and (self.diff - self.half > 0 or self.diff + self.half < 0)


def paired_difference(a: Mapping, b: Mapping, level: float = LEVEL) -> Paired:
    """A − B paired by key (the training seed) over the keys where both are finite; a pandas Series pairs by
    its index."""
    a, b = dict(a), dict(b)
    diffs = [float(a[k]) - float(b[k]) for k in sorted(set(a) & set(b), key=str)
             if _finite(a[k]) and _finite(b[k])]
    iv = t_interval(diffs, level)
    return Paired(iv.n, iv.mean, iv.half)


def _finite(v) -> bool:
    return v is not None and math.isfinite(float(v))
