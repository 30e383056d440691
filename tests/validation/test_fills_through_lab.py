"""fill= travels through Lab, the backtest server's tools and its workers, and equals the in-process numbers."""
from __future__ import annotations

import pytest

import quantlab
from quantlab import Strategy

from .conftest import SMA


@pytest.fixture(scope="module")
def sma():
    return Strategy.from_code(SMA, name="sma-fills")


def test_backtest_fill_through_the_server(lab, sma):
    df = quantlab.data.sample()
    default = lab.backtest(sma, "sample", {"fast": 12, "slow": 40}, fees=0.0005)
    close = lab.backtest(sma, "sample", {"fast": 12, "slow": 40}, fees=0.0005, fill="close")
    assert default.fill == "next_open" and close.fill == "close"
    for res, fill in ((default, "next_open"), (close, "close")):
        local = quantlab.backtest(df, sma, {"fast": 12, "slow": 40}, fees=0.0005, fill=fill)
        assert res.metrics == pytest.approx(local.metrics, rel=1e-12, nan_ok=True)
        assert res.equity.equals(local.equity)
    assert default.metrics["total_return"] != close.metrics["total_return"]
    # the first trade enters one bar later, at that bar's open
    t_close, t_next = close.trades.iloc[0], default.trades.iloc[0]
    i = df.index.get_loc(t_close.entry_time)
    assert t_next.entry_time == df.index[i + 1] and t_next.entry_price == df.open.iloc[i + 1]


def test_sweep_fill_through_the_server(lab, sma):
    grid = {"fast": [5, 10], "slow": [30, 60]}
    df = quantlab.data.sample()
    for fill in ("next_open", "close"):
        remote = lab.sweep(sma, "sample", grid, fill=fill, executor="inprocess")
        local = quantlab.sweep(sma, df, grid, fill=fill, progress=False)
        assert remote.costs["fill"] == fill
        assert remote.frame["sharpe"].tolist() == pytest.approx(local.frame["sharpe"].tolist(), rel=1e-12)
        row = local.frame.iloc[3]
        one = quantlab.backtest(df, sma, {"fast": int(row.fast), "slow": int(row.slow)}, fill=fill)
        assert row.sharpe == pytest.approx(one.metrics["sharpe"], rel=1e-12)


def test_bad_fill_is_a_tool_error(lab, sma):
    with pytest.raises(Exception, match="next_open"):
        lab.backtest(sma, "sample", fill="open")
