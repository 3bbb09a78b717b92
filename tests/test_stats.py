"""Confidence intervals and paired comparisons over seeds, against values computed by hand."""

from __future__ import annotations

import math

import pytest

from regprune.analysis.stats import paired_difference, t_interval, t_quantile


@pytest.mark.parametrize("df, q", [(1, 12.706205), (2, 4.302653), (4, 2.776445), (9, 2.262157), (29, 2.045230)])
def test_t_quantile_matches_the_printed_table(df, q):
    assert t_quantile(df) == pytest.approx(q, abs=1e-6)


def test_t_quantile_other_level_and_bad_df():
    assert t_quantile(2, level=0.90) == pytest.approx(2.919986, abs=1e-6)
    with pytest.raises(ValueError, match="df=0"):
        t_quantile(0)


def test_t_interval_by_hand():
    iv = t_interval([97.0, 98.0, 99.0])  # mean 98, s = 1, half = t(2) / √3
    assert (iv.n, iv.mean, iv.std) == (3, 98.0, 1.0)
    assert iv.half == pytest.approx(2.484138, abs=1e-6)
    assert (iv.lo, iv.hi) == pytest.approx((95.515862, 100.484138), abs=1e-6)
    five = t_interval([1, 2, 3, 4, 5])  # s = √2.5, half = t(4) · √2.5 / √5
    assert five.half == pytest.approx(1.963243, abs=1e-6)


def test_t_interval_missing_values_and_one_seed():
    iv = t_interval([97.0, None, float("nan"), 99.0])  # missing values are left out, not counted as 0
    assert iv.n == 2 and iv.mean == 98.0 and iv.half == pytest.approx(12.706205 * math.sqrt(2) / math.sqrt(2))
    one = t_interval([93.5])
    assert one.n == 1 and one.mean == 93.5 and math.isnan(one.half) and math.isnan(one.lo)
    none = t_interval([])
    assert none.n == 0 and math.isnan(none.mean)


def test_paired_difference_uses_common_seeds_only():
    a = {0: 95.0, 1: 96.0, 2: 97.0, 3: 99.0}
    b = {0: 90.0, 1: 93.0, 2: 91.0, 5: 80.0}  # seeds 3 and 5 have no partner
    p = paired_difference(a, b)  # d = 5, 3, 6: mean 14/3, s = √(7/3), half = t(2) · s / √3
    assert p.n == 3 and p.diff == pytest.approx(14 / 3)
    assert p.half == pytest.approx(3.794583, abs=1e-6)
    assert p.significant  # [0.87, 8.46] excludes 0


def test_paired_difference_not_significant_when_the_interval_covers_zero():
    p = paired_difference({0: 91.0, 1: 89.0, 2: 93.0}, {0: 90.0, 1: 90.0, 2: 90.0})  # d = 1, −1, 3
    assert p.diff == pytest.approx(1.0) and p.half == pytest.approx(4.968275, abs=1e-6)
    assert not p.significant
    worse = paired_difference({0: 10.0, 1: 12.0, 2: 11.0}, {0: 90.0, 1: 91.0, 2: 92.0})
    assert worse.diff == pytest.approx(-80.0) and worse.significant  # significant in either direction
    single = paired_difference({0: 99.0}, {0: 10.0})
    assert single.n == 1 and math.isnan(single.half) and not single.significant  # one pair: no interval
    assert paired_difference({0: 99.0}, {1: 10.0}).n == 0
