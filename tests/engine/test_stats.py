"""Metrics against hand-computed values on tiny series, and their edge cases."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from quantlab.engine import stats


R = np.array([0.01, -0.02, 0.03, 0.0])


def test_total_return_and_cagr():
    assert stats.total_return([100.0, 120.0, 90.0], cash=100.0) == pytest.approx(-0.1)
    assert stats.total_return([100.0, 120.0]) == pytest.approx(0.2)
    growth = 1.01 * 0.98 * 1.03 * 1.0
    assert stats.cagr(R, 8) == pytest.approx(growth ** (8 / 4) - 1)


def test_volatility_sharpe_sortino_by_hand():
    mean = R.mean()
    sd = math.sqrt(sum((x - mean) ** 2 for x in R) / 3)
    assert stats.volatility(R, 252) == pytest.approx(sd * math.sqrt(252))
    assert stats.sharpe(R, 252) == pytest.approx(mean / sd * math.sqrt(252))
    dd = math.sqrt((0.02 ** 2) / 4)           # downside deviation over all 4 bars
    assert stats.sortino(R, 252) == pytest.approx(mean * 252 / (dd * math.sqrt(252)))


def test_drawdown_and_duration_by_hand():
    eq = [100.0, 110.0, 99.0, 105.0, 110.0, 120.0, 108.0, 114.0]
    assert stats.max_drawdown(eq) == pytest.approx(0.1)           # 120 -> 108 and 110 -> 99 are both 10 %
    np.testing.assert_allclose(stats.drawdown(eq), [0, 0, 0.1, 1 - 105 / 110, 0, 0, 0.1, 1 - 114 / 120])
    # bars 2-3 are under the 110 peak (recovered at bar 4), bars 6-7 under 120 (still open): 2 bars each
    assert stats.max_drawdown_duration(eq) == 2
    assert stats.max_drawdown_duration([1.0, 1.0, 0.5, 0.6, 0.7, 0.8]) == 4
    assert stats.max_drawdown_duration([3.0, 1.0, 1.0, 1.0, 3.0, 2.0]) == 3
    assert stats.max_drawdown_duration([1.0, 2.0, 3.0]) == 0


def test_trade_metrics_by_hand():
    pnl = [10.0, -5.0, 0.0, 20.0, -10.0]
    assert stats.win_rate(pnl) == pytest.approx(0.4)
    assert stats.profit_factor(pnl) == pytest.approx(30 / 15)
    assert stats.expectancy(pnl) == pytest.approx(3.0)
    assert stats.profit_factor([1.0, 2.0]) == math.inf
    assert math.isnan(stats.profit_factor([]))
    assert math.isnan(stats.win_rate([]))
    assert math.isnan(stats.expectancy([]))
    assert stats.exposure([0, 0, 1, -1]) == 0.5


def test_edge_cases_are_defined_values():
    flat = np.zeros(10)
    assert stats.sharpe(flat, 252) == 0.0
    assert stats.sortino(flat, 252) == 0.0
    assert stats.sortino(np.full(5, 0.01), 252) == math.inf
    assert stats.sharpe(np.full(5, 0.01), 252) == math.inf
    one = np.array([0.05])
    assert math.isnan(stats.sharpe(one, 252)) and math.isnan(stats.volatility(one, 252))
    assert stats.max_drawdown([100.0]) == 0.0 and stats.max_drawdown_duration([100.0]) == 0


def test_compute_metrics_keys_types_and_closed_only():
    eq = pd.Series([100.0, 101.0, 99.0, 103.0])
    r = pd.Series([0.0, 0.01, -0.0198019801980198, 0.0404040404040404])
    trades = pd.DataFrame({"pnl": [3.0, -1.0], "exit_time": [pd.Timestamp("2024-01-02"), pd.NaT]})
    m = stats.compute_metrics(eq, r, [0, 1, 1, 1], trades, 252, cash=100.0)
    assert tuple(m) == stats.METRICS
    assert all(type(v) in (float, int) for v in m.values())
    assert m["trades"] == 1 and m["open_trades"] == 1
    assert m["profit_factor"] == math.inf and m["win_rate"] == 1.0   # the open loser is not counted
    assert m["exposure"] == 0.75 and m["total_return"] == pytest.approx(0.03)
    empty = stats.compute_metrics(eq, r, [0] * 4, trades.iloc[:0], 252, cash=100.0)
    assert empty["trades"] == 0 and math.isnan(empty["profit_factor"])
