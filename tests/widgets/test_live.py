"""The monitor chart's pieces: candles merged without losing extremes, position and PnL rebuilt from fills."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from quantlab.lab import activity as A
from quantlab.widgets import _live


def candles(n=1000, seed=1):
    rng = np.random.default_rng(seed)
    close = 1.1 + np.cumsum(rng.normal(0, 1e-3, n))
    open_ = np.r_[close[0], close[:-1]]
    return pd.DataFrame({"open": open_, "high": np.maximum(open_, close) + 1e-4, "low": np.minimum(open_, close) - 1e-4,
                         "close": close}, index=pd.date_range("2024-01-01", periods=n, freq="min"))


def test_downsampled_candles_keep_every_extreme_and_the_ends():
    bars = candles()
    small = _live.downsample_ohlc(bars, 37)
    assert len(small) <= 37
    assert small["high"].max() == bars["high"].max() and small["low"].min() == bars["low"].min()
    assert small["open"].iloc[0] == bars["open"].iloc[0] and small["close"].iloc[-1] == bars["close"].iloc[-1]


def test_pnl_from_fills_marks_the_position_to_each_close():
    bars = candles(10)
    t = bars.index
    fills = pd.DataFrame({"time": [t[2], t[5]], "side": ["buy", "sell"], "volume": [0.1, 0.1],
                          "price": [bars.close.iloc[2], bars.close.iloc[5]], "lots": [0.1, 0.0], "message": ""})
    pos = A.position_series(bars, fills)
    assert pos.tolist() == [0, 0, 0.1, 0.1, 0.1, 0, 0, 0, 0, 0]
    pnl = A.pnl_series(bars, fills, pos, 100_000)
    expected = (bars.close.iloc[5] - bars.close.iloc[2]) * 0.1 * 100_000
    assert pnl.iloc[-1] == pytest.approx(expected)
    assert pnl.iloc[3] == pytest.approx((bars.close.iloc[3] - bars.close.iloc[2]) * 0.1 * 100_000)
    # a window that starts while the position is open marks it from the window's first close
    late = bars.iloc[4:]
    pnl_late = A.pnl_series(late, fills, A.position_series(late, fills), 100_000)
    assert pnl_late.iloc[-1] == pytest.approx((bars.close.iloc[5] - bars.close.iloc[4]) * 0.1 * 100_000)


def test_a_chart_without_bars_says_so():
    empty = A.bars_frame([])
    act = A.DeploymentActivity("1", "s", "EURUSD", "M1", "running", 0.1, "USD", None, empty, A.fills_frame([]),
                               A.position_series(empty, A.fills_frame([])), A.pnl_series(empty, A.fills_frame([]),
                               A.position_series(empty, A.fills_frame([])), 1.0))
    assert "no bars yet" in _live.activity_svg(act)
