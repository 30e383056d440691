"""Hypothesis property tests of the backtest invariants."""
from __future__ import annotations

import numpy as np
import pandas as pd
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from quantlab.engine import backtest, stats

from .conftest import frame, target_strategy_code

CODE = target_strategy_code()

_n = st.integers(min_value=1, max_value=120)


@st.composite
def scenario(draw):
    n = draw(_n)
    steps = draw(arrays(np.float64, n, elements=st.floats(-0.05, 0.05, allow_nan=False)))
    close = 100.0 * np.exp(np.cumsum(steps))
    levels = draw(st.sampled_from([(0.0, 1.0), (-1.0, 0.0, 1.0), (-1.0, -0.3, 0.0, 0.5, 1.0)]))
    raw = draw(arrays(np.float64, n, elements=st.sampled_from(levels + (np.nan,))))
    fees = draw(st.sampled_from([0.0, 0.001, 0.01]))
    slip = draw(st.sampled_from([0.0, 0.0005]))
    fill = draw(st.sampled_from(["close", "next_open"]))
    return close, raw, fees, slip, fill


@settings(max_examples=150, deadline=None)
@given(scenario())
def test_invariants(sc):
    close, raw, fees, slip, fill = sc
    cash = 10_000.0
    df = frame(close)
    if fill == "next_open":     # opens between the previous close and this one
        df["open"] = np.sqrt(np.r_[close[0], close[:-1]] * close)
    r = backtest(df, CODE, params={"t": raw}, cash=cash, fees=fees, slippage=slip, fill=fill)
    eq = r.equity.to_numpy()
    assert not np.isnan(eq).any() and np.isfinite(r.returns).all()
    dd = r.drawdown.to_numpy()
    assert (dd >= 0).all()
    if (eq > 0).all():
        assert (dd <= 1).all()
    else:  # a short can lose more than the account (as in vectorbt); then nothing new is opened
        bust = int(np.flatnonzero(eq <= 0)[0])
        assert (r.trades.entry_time <= r.equity.index[bust]).all()
    # closed pnl + open pnl reconstructs the final equity
    assert np.isclose(r.trades.pnl.sum(), eq[-1] - cash, rtol=1e-9, atol=1e-6)
    # equity compounds the returns (while it is positive; below 0 returns follow vectorbt's sign flip)
    if (eq > 0).all():
        assert np.isclose(cash * np.prod(1 + r.returns.to_numpy()), eq[-1], rtol=1e-9)
    m = r.metrics
    assert m["trades"] + m["open_trades"] == len(r.trades) and m["open_trades"] <= 1
    assert 0 <= m["exposure"] <= 1 and m["max_drawdown"] >= 0
    assert m["max_drawdown_duration"] <= len(eq)
    assert (r.trades.bars_held >= 0).all() and (r.trades["size"] > 0).all()
    # flat bars hold no units; a position only exists where the target was non-zero
    held = r.positions.to_numpy() != 0
    target = np.nan_to_num(raw)
    if fill == "next_open":     # the position of bar t follows the target decided on bar t-1
        target = np.r_[0.0, target[:-1]]
    assert not (held & (target == 0)).any()
    if fees == 0 and slip == 0 and not held.any():
        assert (eq == cash).all()


@settings(max_examples=60, deadline=None)
@given(arrays(np.float64, st.integers(2, 200), elements=st.floats(1.0, 1000.0)))
def test_drawdown_duration_matches_a_loop(v):
    peak, run, best = -np.inf, 0, 0
    for x in v:
        if x >= peak:
            peak, run = x, 0
        else:
            run += 1
            best = max(best, run)
    assert stats.max_drawdown_duration(v) == best
    assert np.isclose(stats.max_drawdown(v), max(1 - x / np.maximum.accumulate(v)[i] for i, x in enumerate(v)))


@settings(max_examples=60, deadline=None)
@given(arrays(np.float64, st.integers(3, 3000), elements=st.floats(-1e6, 1e6)), st.integers(4, 300))
def test_downsample_keeps_extremes(v, max_points):
    from quantlab.engine.plotting import downsample_extremes

    s = pd.Series(v, index=pd.date_range("2024", periods=v.size, freq="1min"))
    d = downsample_extremes(s, max_points)
    assert len(d) <= max(max_points, 2) or len(s) <= max_points
    assert d.index.is_monotonic_increasing and d.index.isin(s.index).all()
    assert d.max() == s.max() and d.min() == s.min()
    assert d.iloc[0] == s.iloc[0] and d.iloc[-1] == s.iloc[-1]
