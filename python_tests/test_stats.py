"""The paired t-test against scipy.stats.ttest_rel, and its undefined cases."""

import math

import numpy as np
import pytest
from scipy import stats

from sgfd_ext.stats import mean_std, paired_ttest


@pytest.mark.parametrize("n,shift,seed", [(2, 0.1, 0), (5, 0.0, 1), (5, 0.02, 2), (10, -0.3, 3),
                                          (30, 0.05, 4)])
def test_matches_scipy(n, shift, seed):
    rng = np.random.default_rng(seed)
    a = rng.normal(0.13, 0.01, n)
    b = a + shift + rng.normal(0, 0.05, n)
    ours = paired_ttest(b, a)
    ref = stats.ttest_rel(b, a)
    assert ours.df == n - 1
    assert ours.statistic == pytest.approx(float(ref.statistic), rel=1e-10)
    assert ours.pvalue == pytest.approx(float(ref.pvalue), rel=1e-10, abs=1e-300)


def test_known_value():
    # Differences 1, 2, 3: mean 2, sd 1, t = 2 / (1 / sqrt 3); two-tailed with 2 df.
    res = paired_ttest([2, 4, 6], [1, 2, 3])
    assert res.statistic == pytest.approx(2 * math.sqrt(3))
    assert res.pvalue == pytest.approx(2 * stats.t.sf(2 * math.sqrt(3), 2))


def test_degenerate_cases():
    assert math.isnan(paired_ttest([0.1], [0.2]).pvalue)
    res = paired_ttest([1, 2, 3], [1, 2, 3])
    assert math.isnan(res.statistic) and math.isnan(res.pvalue)
    res = paired_ttest([2, 3, 4], [1, 2, 3])
    assert res.statistic == math.inf and res.pvalue == 0.0
    with pytest.raises(ValueError):
        paired_ttest([1, 2], [1, 2, 3])


def test_mean_std_uses_sample_deviation():
    assert mean_std([1.0, 2.0, 3.0]) == pytest.approx((2.0, 1.0))
    assert mean_std([0.5]) == (0.5, 0.0)
    assert all(math.isnan(v) for v in mean_std([]))
