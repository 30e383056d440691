"""The execution model, signal checks, result object and serialisation of quantlab.engine.backtest."""
from __future__ import annotations

import io
import json
import math
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure

from quantlab.engine import BacktestResult, SignalError, Strategy, StrategyError, backtest, data
from quantlab.engine.backtest import infer_periods_per_year, simulate
from quantlab.engine.simulate import _fast_path, _slow_path

from .conftest import frame, target_strategy_code

CODE = target_strategy_code()


def run(close, t, **kw):
    """The hand-computed cases below describe the signal bar's close fill (fill="close")."""
    kw.setdefault("fill", "close")
    return backtest(frame(close), CODE, params={"t": np.asarray(t, dtype=float)}, **kw)


def reference(close, tgt, cash, fees, slip, opens=None):
    """Per-bar loop written straight from the documented convention (independent of the engine).

    With ``opens`` it follows fill="next_open": bar t trades the target decided on bar t-1 at
    ``opens[t]``, and equity is still valued at the close."""
    u, cs, prev, eq = 0.0, cash, 0.0, []
    if opens is not None:
        tgt = np.r_[0.0, np.asarray(tgt, dtype=float)[:-1]]
    for t, (v, T) in enumerate(zip(close, tgt)):
        c = v if opens is None else opens[t]
        if T != prev:
            if u != 0 and (T == 0 or np.sign(T) != np.sign(u)):
                p = c * (1 - slip * np.sign(u))
                cs += u * p - abs(u) * p * fees
                u = 0.0
            if T != 0:
                E = cs + u * c
                if E > 0:
                    if u == 0:
                        p = c * (1 + slip * np.sign(T))
                    else:
                        p = c * (1 + slip * np.sign(T * E / (c * (1 + fees)) - u))
                    d = T * E / (p * (1 + fees)) - u
                    cs -= d * p + abs(d) * p * fees
                    u += d
        prev = T
        eq.append(cs + u * v)
    return np.array(eq)


# -- hand-computed -----------------------------------------------------------------------------
def test_long_round_trip_with_fees_by_hand():
    r = run([100.0, 110.0, 121.0, 110.0], [1, 1, 0, 0], cash=1000.0, fees=0.01)
    units = 1000 / (100 * 1.01)
    np.testing.assert_allclose(r.equity, [units * 100, units * 110, units * 121 * 0.99, units * 121 * 0.99])
    np.testing.assert_allclose(r.positions, [units, units, 0, 0])
    (t,) = r.trades.itertuples(index=False)
    assert t.side == "long" and t.bars_held == 2 and t.size == pytest.approx(units)
    assert t.entry_price == 100 and t.exit_price == 121
    assert t.pnl == pytest.approx(units * 121 * 0.99 - 1000)
    assert t.__getattribute__("_7") == pytest.approx(t.pnl / (units * 100))  # return column
    assert r.metrics["trades"] == 1 and r.metrics["win_rate"] == 1.0 and r.metrics["profit_factor"] == math.inf
    assert r.metrics["total_return"] == pytest.approx(units * 121 * 0.99 / 1000 - 1)


def test_short_with_slippage_by_hand():
    r = run([100.0, 90.0, 80.0], [-1, -1, 0], cash=1000.0, fees=0.0, slippage=0.01)  # slippage alone, by hand
    units = 1000 / 99.0                                  # short sold at 100 * (1 - 1%)
    np.testing.assert_allclose(r.equity, [2000 - units * 100, 2000 - units * 90, 2000 - units * 80.8])
    (t,) = r.trades.itertuples(index=False)
    assert t.side == "short" and t.entry_price == pytest.approx(99) and t.exit_price == pytest.approx(80.8)
    assert t.pnl == pytest.approx((99 - 80.8) * units)


def test_reversal_closes_then_opens_with_all_cash():
    r = run([100.0, 110.0, 99.0], [1, -1, -1], cash=1000.0, fees=0.001)
    u1 = 1000 / (100 * 1.001)
    after_close = u1 * 110 * 0.999
    u2 = after_close / (110 * 1.001)
    np.testing.assert_allclose(r.positions, [u1, -u2, -u2])
    assert list(r.trades.side) == ["long", "short"]
    assert r.metrics["trades"] == 1 and r.metrics["open_trades"] == 1


def test_fractional_target_and_hold_units_without_rebalancing():
    r = run([100.0, 200.0, 50.0], [0.5, 0.5, 0.5], cash=1000.0, fees=0.0)  # frictionless, by hand
    np.testing.assert_allclose(r.positions, [5.0, 5.0, 5.0])          # units held, not re-weighted
    np.testing.assert_allclose(r.equity, [1000.0, 1500.0, 750.0])


def test_next_open_fill_by_hand():
    # decided on bar 0, bought at bar 1's open 102; decided flat on bar 2, sold at bar 3's open 99
    df = frame([100.0, 110.0, 121.0, 100.0])
    df["open"] = [100.0, 102.0, 115.0, 99.0]
    r = backtest(df, CODE, params={"t": np.array([1.0, 1.0, 0.0, 0.0])}, cash=1000.0, fees=0.01)
    units = 1000 / (102 * 1.01)
    assert r.fill == "next_open"
    np.testing.assert_allclose(r.positions.to_numpy(), [0, units, units, 0])
    cash_after = units * 99 * 0.99
    np.testing.assert_allclose(r.equity.to_numpy(), [1000, units * 110, units * 121, cash_after], rtol=1e-12)
    assert r.trades.entry_price.iloc[0] == 102 and r.trades.exit_price.iloc[0] == 99
    assert r.trades.entry_time.iloc[0] == df.index[1] and r.trades.exit_time.iloc[0] == df.index[3]
    # the last bar's decision never trades
    last = backtest(df, CODE, params={"t": np.array([0.0, 0.0, 0.0, 1.0])})
    assert last.metrics["trades"] == last.metrics["open_trades"] == 0
    with pytest.raises(ValueError, match="fill must be"):
        backtest(df, CODE, params={"t": np.zeros(4)}, fill="open")
    with pytest.raises(ValueError, match="'open' column"):
        backtest(df.drop(columns="open"), CODE, params={"t": np.zeros(4)})
    assert backtest(df.drop(columns="open"), CODE, params={"t": np.zeros(4)}, fill="close").metrics["trades"] == 0


def test_nan_signal_means_flat():
    r = run([100.0, 101.0, 102.0], [np.nan, 1.0, np.nan])
    assert r.positions.iloc[0] == 0 and r.positions.iloc[2] == 0 and r.metrics["trades"] == 1


# -- the two cores against the per-bar reference -------------------------------------------------
@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("fees,slip", [(0.0, 0.0), (0.002, 0.001)])
def test_engine_matches_per_bar_reference(seed, fees, slip):
    rng = np.random.default_rng(seed)
    n = 400
    close = 100 * np.exp(np.cumsum(rng.normal(0, 0.01, n)))
    levels = np.array([-1, -0.5, 0, 0.25, 0.5, 1.0]) if seed % 2 else np.array([-1.0, 0.0, 1.0])
    tgt = pd.Series(rng.choice(levels, n)).where(rng.random(n) < 0.1).ffill().fillna(0).to_numpy()
    r = run(close, tgt, cash=10_000.0, fees=fees, slippage=slip)
    np.testing.assert_allclose(r.equity.to_numpy(), reference(close, tgt, 10_000.0, fees, slip), rtol=1e-10)
    total = r.trades.pnl.sum()
    assert total == pytest.approx(r.equity.iloc[-1] - 10_000.0, rel=1e-9, abs=1e-6)
    # next-open fills: the same targets one bar later, at opens that differ from the closes
    df = frame(close)
    df["open"] = np.r_[close[0], close[:-1]] * (1 + rng.normal(0, 0.003, n))
    nxt = backtest(df, CODE, params={"t": tgt}, cash=10_000.0, fees=fees, slippage=slip, fill="next_open")
    np.testing.assert_allclose(nxt.equity.to_numpy(), reference(close, tgt, 10_000.0, fees, slip, opens=df.open.to_numpy()),
                               rtol=1e-10)
    assert nxt.trades.pnl.sum() == pytest.approx(nxt.equity.iloc[-1] - 10_000.0, rel=1e-9, abs=1e-6)
    assert nxt.fill == "next_open" and nxt.run_id != backtest(df, CODE, params={"t": tgt}, cash=10_000.0, fees=fees,
                                                               slippage=slip, fill="close").run_id


def test_fast_and_slow_cores_agree():
    rng = np.random.default_rng(5)
    n = 500
    close = 50 * np.exp(np.cumsum(rng.normal(0, 0.02, n)))
    tgt = pd.Series(rng.choice([-1.0, 0.0, 0.7], n)).where(rng.random(n) < 0.1).ffill().fillna(0).to_numpy()
    prev = np.r_[0.0, tgt[:-1]]
    chg = np.flatnonzero(tgt != prev)
    fe, fu, ft = _fast_path(close, tgt, chg, 1e5, 0.001, 0.0005, close)
    se, su, st = _slow_path(close, tgt, chg, 1e5, 0.001, 0.0005, close)
    np.testing.assert_allclose(fe, se, rtol=1e-12)
    np.testing.assert_allclose(fu, su, rtol=1e-12)
    for a, b in zip(ft, st):
        np.testing.assert_allclose(a, b, rtol=1e-10)


def test_bust_account_opens_nothing_more():
    close = [100.0, 300.0, 300.0, 100.0, 90.0]
    r = run(close, [-1, -1, 0, 1, 1], cash=1000.0)
    assert np.isfinite(r.equity).all() and r.equity.iloc[2] < 0
    assert (r.positions.iloc[2:] == 0).all() and len(r.trades) == 1


# -- edge cases ---------------------------------------------------------------------------------
def test_edge_cases_give_values_not_exceptions():
    one = run([100.0], [1.0])
    assert one.metrics["open_trades"] == 1 and math.isnan(one.metrics["sharpe"])
    flat = run([100.0, 101.0, 99.0], [0, 0, 0])
    m = flat.metrics
    assert m["trades"] == 0 and m["total_return"] == 0 and m["sharpe"] == 0 and m["max_drawdown"] == 0
    assert math.isnan(m["profit_factor"]) and m["exposure"] == 0
    winners = run([1.0, 2.0, 3.0, 4.0, 5.0, 6.0], [1, 0, 1, 0, 1, 0])
    assert winners.metrics["profit_factor"] == math.inf and winners.metrics["win_rate"] == 1.0


# -- signal validation --------------------------------------------------------------------------
@pytest.mark.parametrize("body,match", [
    ("return data.close.iloc[:-1] * 0", "values but the data has"),
    ("return data.close * 0 + 2", "outside \\[-1, 1\\]"),
    ("return (data.close * 0).replace(0, float('inf'))", "infinite"),
    ("return None", "returned None"),
    ("return data[['open', 'close']] * 0", "2 columns"),
    ("import pandas as pd\n    return pd.Series(0.0, index=data.index + pd.Timedelta('1s'))", "index does not match"),
    ("return data.close.astype(str)", "not numeric"),
    ("import numpy as np\n    return np.zeros((len(data), 2))", "shape"),
])
def test_bad_signals_raise_signal_error(body, match):
    df = data.synthetic(20, seed=0)
    with pytest.raises(SignalError, match=match):
        backtest(df, f"def signals(data):\n    {body}\n")


def test_signal_error_is_value_error_and_arrays_are_accepted():
    assert issubclass(SignalError, ValueError)
    df = data.synthetic(30, seed=0)
    r = backtest(df, "import numpy as np\ndef signals(data):\n    return np.ones(len(data))")
    assert r.metrics["open_trades"] == 1
    with pytest.raises(StrategyError, match="unknown parameter"):
        backtest(df, "def signals(data, n=1):\n    return data.close*0", params={"m": 2})


def test_bad_arguments():
    df = data.synthetic(10, seed=0)
    with pytest.raises(ValueError, match="fees"):
        backtest(df, CODE, params={"t": np.zeros(10)}, fees=-0.1)
    with pytest.raises(ValueError, match="cash"):
        backtest(df, CODE, params={"t": np.zeros(10)}, cash=0)


# -- periods per year -----------------------------------------------------------------------------
def test_infer_periods_per_year():
    # evenly spaced: 365.25 days / spacing
    assert infer_periods_per_year(pd.date_range("2024", periods=50, freq="1min")) == 365.25 * 24 * 60
    assert infer_periods_per_year(pd.date_range("2024-01-01", periods=60, freq="D")) == 365.25
    assert infer_periods_per_year(pd.DatetimeIndex(pd.date_range("2024", periods=50, freq="1h").to_numpy())) == 8766
    # otherwise: bars observed per calendar year (issue 15: weekday-only data is not 8,766 bars a year)
    bdays = pd.bdate_range("2021-01-01", "2024-12-31")
    assert infer_periods_per_year(bdays) == pytest.approx(len(bdays) / 4, rel=2e-3)   # ~261
    irregular = pd.DatetimeIndex(pd.date_range("2024", periods=50, freq="1h").delete([3, 7, 9]))
    assert infer_periods_per_year(irregular) == pytest.approx(46 / 49 * 8766)
    r = backtest(data.sample(), CODE, params={"t": np.zeros(4000)})
    assert 6200 < r.periods_per_year < 6300         # weekday-only hourly bars: ~24 x 5 x 52.18


# -- the result object ----------------------------------------------------------------------------
def _result():
    df = data.sample()
    code = "import numpy as np\ndef signals(data, n=24):\n    return np.sign(data.close - data.close.rolling(n).mean())\n"
    return backtest(df, Strategy.from_code(code, name="sign"), fees=0.0005, slippage=0.0001, data_ref="sample")


def test_to_dict_round_trips_exactly_through_json():
    r = _result()
    d = json.loads(json.dumps(r.to_dict(), allow_nan=False))
    r2 = BacktestResult.from_dict(d)
    for a in ("equity", "returns", "positions", "benchmark"):  # benchmark: buy-and-hold equity travels too
        pd.testing.assert_series_equal(getattr(r, a), getattr(r2, a), check_exact=True, check_freq=False)
    pd.testing.assert_frame_equal(r.trades, r2.trades, check_exact=True)
    assert r2.metrics == r.metrics and r2.params == r.params and r2.costs == r.costs
    assert (r2.run_id, r2.name, r2.data_ref, r2.created_at) == (r.run_id, r.name, r.data_ref, r.created_at)
    assert r2.strategy == r.strategy and r2.periods_per_year == r.periods_per_year
    assert r2.trades.exit_time.isna().sum() == 1                       # the open trade survives as NaT


def test_round_trip_of_nan_and_inf_metrics():
    r = run([1.0, 2.0, 3.0, 4.0], [1, 0, 1, 1])
    r.metrics["nan_probe"] = float("nan")
    d = json.loads(json.dumps(r.to_dict(), allow_nan=False))
    r2 = BacktestResult.from_dict(d)
    assert r2.metrics["profit_factor"] == math.inf and math.isnan(r2.metrics["nan_probe"])


def test_run_id_is_deterministic_across_processes():
    r = _result()
    assert r.run_id == _result().run_id and len(r.run_id) == 16
    other = backtest(data.sample(), r.strategy, params={"n": 12}, fees=0.0005, slippage=0.0001, data_ref="sample")
    assert other.run_id != r.run_id
    code = ("import numpy as np\nfrom quantlab.engine import backtest, data, Strategy\n"
            f"s = Strategy.from_code({r.strategy.code!r}, name='sign')\n"
            "print(backtest(data.sample(), s, fees=0.0005, slippage=0.0001, data_ref='sample').run_id)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == r.run_id


def test_repr_html_and_plot():
    r = _result()
    assert "BacktestResult(name='sign'" in repr(r) and "sharpe=" in repr(r)
    h = r._repr_html_()
    assert "<table>" in h and "max_drawdown" in h and "sign" in h
    fig = r.plot()
    assert isinstance(fig, Figure) and len(fig.axes) == 2
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    assert buf.getvalue()[:4] == b"\x89PNG"
    dd = r.drawdown
    assert dd.between(0, 1).all() and dd.max() == pytest.approx(r.metrics["max_drawdown"])


def test_simulate_on_raw_arrays():
    out = simulate(np.array([1.0, 2.0, 4.0]), np.array([1.0, 1.0, 0.0]), cash=1.0, fees=0.0)
    assert out["equity"].tolist() == [1.0, 2.0, 4.0] and out["pnl"].tolist() == [3.0]


@pytest.mark.parametrize("fees,slip", [(0.0, 0.0), (0.001, 0.0005), (0.02, 0.01)])
def test_vectorised_resizing_equals_the_order_loop(fees, slip):
    import sys

    bt = sys.modules["quantlab.engine.simulate"]
    rng = np.random.default_rng(11)
    n = 2000
    close = 100 * np.exp(np.cumsum(rng.normal(0, 0.01, n)))
    tgt = pd.Series(rng.choice([-1, -0.4, 0, 0.3, 0.6, 1.0], n)).where(rng.random(n) < 0.3).ffill().fillna(0).to_numpy(copy=True)
    tgt[::7] = np.clip(tgt[::7] + 0.05, -1, 1)         # many small same-direction changes
    prev = np.r_[0.0, tgt[:-1]]
    chg = np.flatnonzero(tgt != prev)
    price = close * (1 + rng.normal(0, 0.002, n))      # fills at another price (an open) than the valuation
    vec = bt._resize_path(close, tgt, chg, 1e4, fees, slip, price)
    loop = bt._slow_path(close, tgt, chg, 1e4, fees, slip, price)
    assert vec is not None
    np.testing.assert_allclose(vec[0], loop[0], rtol=1e-12)
    np.testing.assert_allclose(vec[1], loop[1], rtol=1e-12, atol=1e-12)
    for a, b in zip(vec[2], loop[2]):
        np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-9)


def test_continuous_targets_reconstruct_equity():
    df = data.synthetic(5000, seed=4)
    code = ("def signals(data, n=20):\n    z = (data.close - data.close.rolling(n).mean()) / data.close.rolling(n).std()\n"
            "    return (-z / 3).clip(-1, 1)\n")
    r = backtest(df, code, fees=0.0002, slippage=0.0001)
    assert r.trades.pnl.sum() == pytest.approx(r.equity.iloc[-1] - 100_000, rel=1e-9, abs=1e-6)
    assert r.metrics["exposure"] > 0.9 and np.isfinite(r.trades.entry_price).all()


def test_strategy_cannot_change_the_callers_frame():
    df = data.synthetic(100, seed=1)
    before = df.copy()
    code = "def signals(data):\n    data['extra'] = 1.0\n    data['close'] = data['close'] * 2\n    return data.close * 0\n"
    backtest(df, code)
    pd.testing.assert_frame_equal(df, before)


def test_a_result_stored_before_the_benchmark_travelled_still_loads():
    r = _result()
    d = json.loads(json.dumps(r.to_dict(), allow_nan=False))
    del d["benchmark"]
    r2 = BacktestResult.from_dict(d)
    assert r2.benchmark is None and r2.equity.equals(r.equity)
    assert "benchmark" not in r2.to_dict()
