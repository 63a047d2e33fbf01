"""Significance of paired differences between runs that share seeds."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats


@dataclass(frozen=True)
class TTest:
    """Result of a two-tailed paired t-test: the t statistic, its p-value and the degrees of
    freedom (pairs minus one)."""

    statistic: float
    pvalue: float
    df: int


def paired_ttest(a: Sequence[float], b: Sequence[float]) -> TTest:
    """Two-tailed paired t-test of ``mean(a - b) == 0``.

    With fewer than two pairs, or differences that are all zero, the test is undefined (NaN);
    with equal non-zero differences the statistic is infinite and the p-value 0.
    """
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.ndim != 1 or a.shape != b.shape:
        raise ValueError(f"need two 1-D samples of equal length, got {a.shape} and {b.shape}")
    n = len(a)
    if n < 2:
        return TTest(math.nan, math.nan, n - 1)

    diff = a - b
    mean, sd = float(diff.mean()), float(diff.std(ddof=1))
    if sd == 0.0:
        statistic = math.nan if mean == 0.0 else math.copysign(math.inf, mean)
    else:
        statistic = mean / (sd / math.sqrt(n))
    if math.isnan(statistic):
        return TTest(statistic, math.nan, n - 1)
    pvalue = float(min(1.0, 2.0 * stats.t.sf(abs(statistic), n - 1)))
    return TTest(statistic, pvalue, n - 1)


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (n - 1 in the denominator; 0 for a single value)."""
    x = np.asarray(values, dtype=np.float64)
    if x.size == 0:
        return math.nan, math.nan
    return float(x.mean()), float(x.std(ddof=1)) if x.size > 1 else 0.0
