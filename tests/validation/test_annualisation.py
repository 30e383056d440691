"""Periods per year from the bars observed (issue 15), and the buy-and-hold benchmark."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

import quantlab
from quantlab.engine import BacktestResult, infer_periods_per_year

from .conftest import SMA


def test_weekday_hourly_sample_is_annualised_by_its_own_bar_count(hourly):
    weekly = 24 * 5 * 365.25 / 7                      # ~6,261 weekday hours a year
    ppy = infer_periods_per_year(hourly.index)
    assert ppy == pytest.approx(weekly, rel=0.01)
    r = quantlab.backtest(hourly, SMA)
    assert r.periods_per_year == ppy
    # Sharpe scales with sqrt(P): the 24/7 assumption overstated it by ~18 %
    r24 = quantlab.backtest(hourly, SMA, periods_per_year=8766)
    assert r24.metrics["sharpe"] / r.metrics["sharpe"] == pytest.approx(math.sqrt(8766 / ppy), rel=1e-9)
    assert r24.metrics["sharpe"] / r.metrics["sharpe"] > 1.17


def test_explicit_periods_per_year_wins(hourly):
    assert quantlab.backtest(hourly, SMA, periods_per_year=252).periods_per_year == 252
    res = quantlab.sweep(SMA, hourly, {"fast": [5]}, progress=False, periods_per_year=252)
    assert res.costs["periods_per_year"] == 252


def test_buy_and_hold_benchmark(hourly):
    r = quantlab.backtest(hourly, SMA, cash=50_000)
    close = hourly.close.to_numpy()
    assert r.metrics["benchmark_return"] == pytest.approx(close[-1] / close[0] - 1, rel=1e-12)
    assert r.benchmark.iloc[0] == 50_000 and r.benchmark.iloc[-1] == pytest.approx(50_000 * close[-1] / close[0])
    assert r.benchmark.index.equals(r.equity.index)
    back = BacktestResult.from_dict(r.to_dict())
    assert back.metrics["benchmark_return"] == r.metrics["benchmark_return"]
    pd.testing.assert_series_equal(back.benchmark, r.benchmark, check_exact=True, check_freq=False)  # travels too
    row = quantlab.sweep(SMA, hourly, {"fast": [10]}, progress=False).frame.iloc[0]
    assert row["benchmark_return"] == r.metrics["benchmark_return"]
    assert "benchmark_return" in r._repr_html_()
    assert np.isnan(quantlab.engine.stats.compute_metrics(r.equity, r.returns, r.positions, r.trades, 252)
                    ["benchmark_return"])
