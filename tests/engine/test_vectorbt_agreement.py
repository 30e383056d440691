"""quantlab agrees with vectorbt's ``Portfolio.from_signals`` on random data, for both fills.

Targets in {-1, 0, 1} are turned into vectorbt's entry/exit/short-entry/short-exit
signals; both get the same periods per year (vectorbt: freq=1h, year_freq=365 days).
``fill="close"`` is vectorbt's ``price=close``; ``fill="next_open"`` is ``price=open`` with
the signals shifted one bar (opens that differ from the previous close).
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from quantlab.engine import backtest, data

from .conftest import target_strategy_code

pytestmark = pytest.mark.filterwarnings("ignore:The inplace keyword")

PPY = 365 * 24
CASES = [(seed, longshort, fees, slip, fill) for fill in ("close", "next_open")
         for seed, (longshort, fees, slip) in enumerate(
    [(False, 0.0, 0.0), (False, 0.001, 0.0), (True, 0.0, 0.0), (True, 0.002, 0.0),
     (False, 0.001, 0.0005), (True, 0.001, 0.0005)])]


def _targets(rng, n, longshort):
    levels = [-1.0, 0.0, 1.0] if longshort else [0.0, 1.0]
    raw = pd.Series(rng.choice(levels, size=n)).where(rng.random(n) < 0.12)
    return raw.ffill().fillna(0.0).to_numpy()


@pytest.fixture(scope="module")
def pairs(vbt):
    out = []
    for seed, longshort, fees, slip, fill in CASES:
        rng = np.random.default_rng(100 + seed)
        df = data.synthetic(400, seed=seed, freq="1h")
        df["open"] = df["open"] * (1 + rng.normal(0, 0.002, len(df)))   # a gap between close and next open
        tgt = _targets(rng, len(df), longshort)
        executed = tgt if fill == "close" else np.r_[0.0, tgt[:-1]]
        prev = np.r_[0.0, executed[:-1]]
        pf = vbt.Portfolio.from_signals(
            df.close, entries=(executed > 0) & (prev <= 0), exits=(executed <= 0) & (prev > 0),
            short_entries=(executed < 0) & (prev >= 0), short_exits=(executed >= 0) & (prev < 0),
            price=df.close if fill == "close" else df.open, fees=fees, slippage=slip, init_cash=100_000.0,
            freq="1h")
        r = backtest(df, target_strategy_code(), params={"t": tgt}, cash=100_000.0, fees=fees, slippage=slip,
                     periods_per_year=PPY, fill=fill)
        out.append((pf, r))
    return out


@pytest.mark.parametrize("case", range(len(CASES)))
def test_metrics_agree_with_vectorbt(pairs, case):
    pf, r = pairs[case]
    st = pf.stats()
    m = r.metrics
    assert m["trades"] == st["Total Closed Trades"] and m["open_trades"] == st["Total Open Trades"]
    assert m["trades"] >= 5
    expected = {
        "total_return": st["Total Return [%]"] / 100,
        "sharpe": st["Sharpe Ratio"],
        "sortino": st["Sortino Ratio"],
        "calmar": st["Calmar Ratio"],
        "max_drawdown": st["Max Drawdown [%]"] / 100,
        "win_rate": st["Win Rate [%]"] / 100,
        "profit_factor": st["Profit Factor"],
        "expectancy": st["Expectancy"],
        "cagr": pf.annualized_return(),
        "volatility": pf.annualized_volatility(),
    }
    for k, v in expected.items():
        assert m[k] == pytest.approx(v, rel=1e-9, abs=1e-12), k
    assert m["max_drawdown_duration"] == st["Max Drawdown Duration"] / pd.Timedelta("1h")


@pytest.mark.parametrize("case", range(len(CASES)))
def test_series_and_trades_agree_with_vectorbt(pairs, case):
    pf, r = pairs[case]
    np.testing.assert_allclose(r.equity.to_numpy(), pf.value().to_numpy(), rtol=1e-11)
    np.testing.assert_allclose(r.returns.to_numpy(), pf.returns().to_numpy(), rtol=1e-9, atol=1e-15)
    np.testing.assert_allclose(r.positions.to_numpy(), pf.assets().to_numpy(), rtol=1e-11, atol=1e-12)
    tr = pf.trades.records_readable
    assert len(tr) == len(r.trades)
    np.testing.assert_allclose(r.trades.pnl.to_numpy(), tr["PnL"].to_numpy(), rtol=1e-9)
    np.testing.assert_allclose(r.trades["return"].to_numpy(), tr["Return"].to_numpy(), rtol=1e-9)
    np.testing.assert_allclose(r.trades.entry_price.to_numpy(), tr["Avg Entry Price"].to_numpy(), rtol=1e-12)
    np.testing.assert_allclose(r.trades["size"].to_numpy(), tr["Size"].to_numpy(), rtol=1e-11)
    assert (r.trades.entry_time.to_numpy() == tr["Entry Timestamp"].to_numpy()).all()
    assert list(r.trades.side) == [d.lower() for d in tr["Direction"]]
