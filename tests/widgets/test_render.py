"""Formatting and chart rendering shared by the widgets."""
from __future__ import annotations


import numpy as np
import pandas as pd
import pytest

from quantlab.lab.policy import DeploymentPolicy
from quantlab.widgets import _render as R

from .conftest import assert_html_ok, png_size


@pytest.mark.parametrize(
    "name,value,text",
    [
        ("total_return", 0.1234, "12.34%"),
        ("max_drawdown", 0.05, "5.00%"),
        ("sharpe", 1.23456, "1.23"),
        ("profit_factor", float("inf"), "∞"),
        ("trades", 42, "42"),
        ("sortino", float("nan"), "—"),
        ("win_rate", None, "—"),
        ("max_drawdown_duration", 3391, "3,391"),
    ],
)
def test_fmt_metric(name, value, text):
    assert R.fmt_metric(name, value) == text


def test_metrics_frame_badges_follow_the_policy(failing):
    check = DeploymentPolicy().check(failing)
    df = R.metrics_frame(failing.metrics, check).set_index("metric")
    assert df.loc["sharpe", "passed"] is False
    assert df.loc["max_drawdown", "passed"] is True
    assert df.loc["max_drawdown", "rule"] == "<= 25%"
    assert df.loc["cagr", "passed"] is None  # not a policy metric
    assert df.loc["total_return", "value"] == f"{failing.metrics['total_return']:.2%}"
    html = R.metrics_html(failing.metrics, check)
    assert "FAILED" in html and "✘ fail" in html and "✔ pass" in html
    assert_html_ok(html)


def test_monthly_returns_compound_each_month():
    idx = pd.date_range("2024-01-30", periods=5, freq="D")  # Jan 30, 31, Feb 1, 2, 3
    r = pd.Series([0.1, 0.1, -0.5, 0.2, 0.0], index=idx)
    table = R.monthly_returns(r)
    assert table.loc[2024, 1] == pytest.approx(1.1 * 1.1 - 1)
    assert table.loc[2024, 2] == pytest.approx(0.5 * 1.2 - 1)
    assert np.isnan(table.loc[2024, 3])
    assert R.monthly_returns(pd.Series([0.1, 0.2])) is None  # no dates -> no table


def test_million_bar_equity_chart_is_a_png_and_keeps_the_worst_drawdown():
    n = 1_000_000
    rng = np.random.default_rng(1)
    equity = pd.Series(100_000 * np.exp(np.cumsum(rng.normal(0, 1e-4, n))),
                       index=pd.date_range("2020-01-01", periods=n, freq="min"))
    dd = equity / equity.cummax() - 1
    png = R.equity_drawdown_png(equity, dd, title="1M bars")
    w, h = png_size(png)
    assert (w, h) == (800, 460)
    # the downsampled series the chart draws still holds the deepest drawdown
    from quantlab.engine.plotting import downsample_extremes

    assert downsample_extremes(dd, 2000).min() == dd.min()  # speed: benchmarks/bench_widgets.py


def test_trades_html_sorts(passing):
    html_desc = R.trades_html(passing.trades, "pnl", ascending=False, max_rows=3)
    best = passing.trades.pnl.max()
    assert R.fmt_metric("pnl", best) in html_desc.split("</tr>")[1]  # first body row holds the best trade
    assert f"showing 3 of {len(passing.trades):,} trades" in html_desc
    assert f"{len(passing.trades):,} closed trades" in html_desc  # the table says how many
    assert f"<span style='color:{R.GREEN}'>{R.fmt_metric('pnl', best)}</span>" in html_desc  # coloured, not escaped
    assert_html_ok(html_desc)


def test_equity_chart_draws_the_buy_and_hold_line(passing):
    assert passing.benchmark is not None and "benchmark_return" in passing.metrics
    plain = R.equity_drawdown_png(passing.equity, passing.drawdown)
    with_bh = R.equity_drawdown_png(passing.equity, passing.drawdown, benchmark=passing.benchmark)
    assert png_size(with_bh) == png_size(plain) and with_bh != plain
    assert R.metrics_frame(passing.metrics).set_index("metric").loc["benchmark_return", "label"] == "Buy & hold return"
