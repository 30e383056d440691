"""Probabilistic and deflated Sharpe ratio against values computed by hand with scipy."""
from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as sps

import quantlab
from quantlab.engine import stats

EULER = 0.5772156649015329


def _by_hand_psr(r, sr_star):
    n = r.size
    sr = r.mean() / r.std(ddof=1)
    g3 = sps.skew(r, bias=True)
    g4 = sps.kurtosis(r, fisher=False, bias=True)
    return sps.norm.cdf((sr - sr_star) * math.sqrt(n - 1) / math.sqrt(1 - g3 * sr + (g4 - 1) / 4 * sr ** 2))


@pytest.mark.parametrize("seed", range(4))
def test_psr_matches_the_formula_on_skewed_fat_tailed_returns(seed):
    rng = np.random.default_rng(seed)
    r = 0.0004 + 0.01 * rng.standard_t(4, 800) + 0.004 * (rng.exponential(1, 800) - 1) * (seed % 2 * 2 - 1)
    for star in (0.0, 0.02, -0.01):
        assert stats.probabilistic_sharpe(r, star) == pytest.approx(_by_hand_psr(r, star), rel=1e-10, abs=1e-14)
    # an annualised benchmark is divided by sqrt(P)
    assert stats.probabilistic_sharpe(r, 0.5, periods_per_year=252) == pytest.approx(
        _by_hand_psr(r, 0.5 / math.sqrt(252)), rel=1e-10)


def test_a_known_number():
    # n = 1000 normal-ish bars, SR = 0.05 per bar, skew 0, kurtosis 3: z = 0.05 * sqrt(999) / sqrt(1 + 0.5 * 0.0025)
    z = 0.05 * math.sqrt(999) / math.sqrt(1 + 0.5 * 0.05 ** 2)
    assert z == pytest.approx(1.5794, abs=1e-4)
    assert stats._psr(1000, 0.05, 0.0, 3.0, 0.0) == pytest.approx(sps.norm.cdf(z), rel=1e-12)


def test_expected_max_sharpe_and_dsr_by_hand():
    for n_trials in (2, 10, 57, 1000):
        want = (1 - EULER) * sps.norm.ppf(1 - 1 / n_trials) + EULER * sps.norm.ppf(1 - 1 / (n_trials * math.e))
        assert stats.expected_max_sharpe(n_trials, 1.0) == pytest.approx(want, rel=1e-12)
        assert stats.expected_max_sharpe(n_trials, 0.04) == pytest.approx(0.2 * want, rel=1e-12)
    assert stats.expected_max_sharpe(1, 1.0) == 0.0
    with pytest.raises(ValueError, match="trials"):
        stats.expected_max_sharpe(0, 1.0)
    rng = np.random.default_rng(3)
    r = rng.normal(0.0005, 0.01, 2000)
    n = r.size
    # default V: variance of one Sharpe estimate under the null, 1 / (n - 1)
    sr0 = math.sqrt(1 / (n - 1)) * ((1 - EULER) * sps.norm.ppf(1 - 1 / 57) + EULER * sps.norm.ppf(1 - 1 / (57 * math.e)))
    assert stats.deflated_sharpe(r, 57) == pytest.approx(_by_hand_psr(r, sr0), rel=1e-10)
    # V from the Sharpes of the variants actually tried
    tried = rng.normal(0.01, 0.03, 40)
    sr0 = math.sqrt(np.var(tried, ddof=1)) * ((1 - EULER) * sps.norm.ppf(1 - 1 / 40)
                                              + EULER * sps.norm.ppf(1 - 1 / (40 * math.e)))
    assert stats.deflated_sharpe(r, 40, trial_sharpes=tried) == pytest.approx(_by_hand_psr(r, sr0), rel=1e-10)
    assert stats.deflated_sharpe(r, 1) == pytest.approx(stats.probabilistic_sharpe(r), rel=1e-15)
    # more trials, less confidence
    dsr = [stats.deflated_sharpe(r, k) for k in (1, 10, 100, 1000)]
    assert dsr == sorted(dsr, reverse=True) and dsr[0] > 0.9 and dsr[-1] < dsr[0] - 0.2


def test_norm_ppf_matches_scipy():
    p = np.r_[1e-12, 1e-6, np.linspace(0.001, 0.999, 41), 1 - 1e-6]
    got = np.array([stats._norm_ppf(x) for x in p])
    np.testing.assert_allclose(got, sps.norm.ppf(p), rtol=1e-9, atol=1e-9)


def test_psr_is_in_the_backtest_metrics(hourly):
    from .conftest import SMA

    r = quantlab.backtest(hourly, SMA)
    assert r.metrics["psr"] == pytest.approx(stats.probabilistic_sharpe(r.returns), rel=1e-12)
    assert 0 <= r.metrics["psr"] <= 1
    flat = quantlab.backtest(hourly, "def signals(data):\n    return data.close * 0\n")
    assert math.isnan(flat.metrics["psr"])
    assert math.isnan(stats.probabilistic_sharpe([0.01, 0.02]))
