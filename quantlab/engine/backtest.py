"""Vectorised backtest of target-position signals.

:func:`backtest` checks its inputs, turns signals into targets (:mod:`.signals`), runs the execution
model (:mod:`.simulate`) and computes the metrics (:mod:`.stats`) into a :class:`BacktestResult`
(:mod:`.result`, with its exact JSON and paged round trip); names of those modules are re-exported here.

Execution convention
--------------------
* A strategy returns a *target position* per bar in ``[-1, 1]`` (fraction of
  equity; negative = short). NaN means flat (it is filled with 0).
* ``fill="next_open"`` (default): the target from bar ``t``'s signal is filled at bar
  ``t+1``'s **open** (vectorbt ``price=open`` with signals shifted one bar). ``fill="close"``:
  at bar ``t``'s own **close** (vectorbt's default ``price=close``), which assumes you can
  trade at the very price the signal was computed from. Below, "fill price" is that open or close.
* Orders happen only when the target *changes*; between changes the position
  is held in constant **units** (no per-bar rebalancing) — vectorbt's
  ``from_signals`` behaviour.
* Opening from flat, or reversing (long <-> short): the old position is closed
  first, then ``units = |target| * cash / (fill_price * (1 + fees))`` are
  bought/sold short, so cash covers price and fees exactly (as vectorbt sizes
  ``size=inf`` entries).
* Changing the size within the same direction (e.g. 0.5 -> 1.0) trades the
  difference to ``target * equity / (fill_price * (1 + fees))`` units.
* ``fees`` and ``slippage`` are fractions of traded notional: buys fill at
  ``price * (1 + slippage)``, sells at ``price * (1 - slippage)``, and each fill
  pays ``fees * |units| * fill_price``.
* Equity is ``cash + units * close`` at every bar; returns are its bar-to-bar
  changes, the first measured against the starting ``cash``. An account whose
  equity drops to 0 or below opens no new positions.

Example
-------
>>> from quantlab.engine import backtest, data, Strategy
>>> s = Strategy.from_code('''
... def signals(data, fast=10, slow=50):
...     return (data.close.rolling(fast).mean() > data.close.rolling(slow).mean()).astype(float)
... ''', name="sma")
>>> r = backtest(data.synthetic(bars=2000, seed=1), s)
>>> sorted(r.metrics)[:3]
['benchmark_return', 'cagr', 'calmar']
"""
from __future__ import annotations

import math
from typing import Any, Mapping

import numpy as np
import pandas as pd

from . import stats as _stats
from .costs import DEFAULT_CASH, DEFAULT_FEES, DEFAULT_SLIPPAGE  # the one default for costs (re-exported here)
from .result import PAGE_BARS, PER_BAR_KEYS, BacktestResult, afetch_all_pages, fetch_all_pages, join_pages, trades_frame
from .signals import SignalError, to_targets
from .simulate import DEFAULT_FILL, FILLS, bar_returns, check_fill, execution, simulate
from .strategy import Strategy

__all__ = ["backtest", "BacktestResult", "SignalError", "infer_periods_per_year", "simulate", "execution",
           "window_metrics", "bar_returns", "check_data", "check_fill",
           "FILLS", "DEFAULT_FILL", "DEFAULT_FEES", "DEFAULT_SLIPPAGE", "DEFAULT_CASH",
           "PAGE_BARS", "PER_BAR_KEYS", "join_pages", "fetch_all_pages", "afetch_all_pages"]


# ---------------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------------
def infer_periods_per_year(index: pd.DatetimeIndex) -> float:
    """Bars per year as observed in the index.

    * Evenly spaced bars (every gap equal, or a fixed ``freq``): ``365.25 days / spacing``
      (8,766 for hourly, 525,960 for minute bars, 365.25 for daily bars every day).
    * Otherwise (weekends, holidays, sessions, gaps): the bars actually observed per
      calendar year, ``(n - 1) / years spanned`` with ``years = (t_last - t_first) / 365.25 days``;
      weekday-only hourly data gives about 6,260, daily exchange data about 252.
    * Fewer than two bars: 252.

    >>> infer_periods_per_year(pd.date_range("2024-01-01", periods=10, freq="1h"))
    8766.0
    >>> hours = pd.date_range("2024-01-01", "2024-12-31 23:00", freq="1h")
    >>> round(infer_periods_per_year(hours[hours.day_of_week < 5]))
    6275
    """
    n = len(index)
    if n < 2:
        return 252.0
    i8 = index.as_unit("ns").asi8
    year = 365.25 * 86_400e9
    freq = getattr(index, "freq", None)
    if freq is not None and getattr(freq, "rule_code", None) not in ("B", "C"):
        try:
            step = float(pd.Timedelta(freq).value)
        except (ValueError, TypeError):
            step = 0.0
        if step > 0:
            return year / step
    gaps = np.diff(i8)
    span = float(i8[-1] - i8[0])
    if span <= 0:
        return 252.0
    if gaps.min() == gaps.max():
        return year / float(gaps[0])
    return (n - 1) * year / span


def check_data(data: Any, hint: str = "(see quantlab.engine.data.validate)") -> pd.DataFrame:
    """``data`` if it is a non-empty OHLCV DataFrame with a DatetimeIndex; else ``TypeError`` /
    ``ValueError`` saying what to pass (``hint`` ends the first message).

    >>> check_data([1, 2])
    Traceback (most recent call last):
    ...
    TypeError: data must be an OHLCV pandas DataFrame with a 'close' column (see quantlab.engine.data.validate).
    """
    if not isinstance(data, pd.DataFrame) or "close" not in data.columns:
        raise TypeError(f"data must be an OHLCV pandas DataFrame with a 'close' column {hint}.")
    if not isinstance(data.index, pd.DatetimeIndex):
        raise TypeError("data must have a DatetimeIndex; use quantlab.engine.data.validate(df) to normalise it.")
    if len(data) == 0:
        raise ValueError("data has no bars.")
    return data


# ---------------------------------------------------------------------------------------------
# entry point
# ---------------------------------------------------------------------------------------------
def backtest(data: pd.DataFrame, strategy: Strategy | str, params: Mapping[str, Any] | None = None,
             cash: float = DEFAULT_CASH, fees: float = DEFAULT_FEES, slippage: float = DEFAULT_SLIPPAGE,
             periods_per_year: float | None = None, data_ref: str | None = None,
             fill: str = DEFAULT_FILL, sandbox: Any = False, data_hash: str | None = None) -> BacktestResult:
    """Backtest ``strategy`` on OHLCV ``data`` (see the module docstring for the execution convention).

    ``strategy`` is a :class:`Strategy` or its source code. ``params`` overrides
    its defaults. ``fees``/``slippage`` are fractions of traded notional.
    ``fill`` is ``"next_open"`` (default: a target decided on bar t trades at bar t+1's
    open) or ``"close"`` (at bar t's close, vectorbt's default; optimistic, since the
    signal is computed from that same close).
    ``periods_per_year`` defaults to :func:`infer_periods_per_year`.
    ``data_ref`` records where the data came from (e.g. ``"sample"``).
    ``sandbox=True`` (or a :class:`~quantlab.engine.sandbox.SandboxLimits` / dict of limits)
    evaluates ``signals`` in the strategy sandbox instead of this process (see
    ``docs/sandbox.md``); the default runs your own code here, in your own kernel.
    ``data_hash``: ``content_hash(data)`` when the caller already has it (a server caching its
    data), so the run id is computed without hashing the bars again (the id is the same).

    Raises :class:`SignalError` if the signals have the wrong shape, index or range.

    Example
    -------
    >>> from quantlab.engine import data
    >>> r = backtest(data.sample(), "def signals(data, n=24):\\n    return (data.close > data.close.rolling(n).mean()) * 1.0",
    ...              fees=0.0001, data_ref="sample")
    >>> r.metrics["trades"] > 0
    True
    """
    strategy = Strategy.coerce(strategy)
    if sandbox is not False and sandbox is not None:
        from . import sandbox as _sandbox

        if not isinstance(strategy, _sandbox.SandboxedStrategy):
            limits = None if sandbox is True else sandbox
            strategy = _sandbox.load(strategy, limits=limits)
    check_data(data)
    cash = float(cash)
    fees = float(fees)
    slippage = float(slippage)
    if not (cash > 0 and math.isfinite(cash)):
        raise ValueError(f"cash must be a positive number, got {cash}.")
    if not (0.0 <= fees < 1.0) or not (0.0 <= slippage < 1.0):
        raise ValueError(f"fees and slippage are fractions of traded notional in [0, 1), got fees={fees}, "
                         f"slippage={slippage}.")
    check_fill(fill)
    resolved = strategy.resolve_params(params)
    # a shallow copy (no data copied under copy-on-write) keeps the caller's frame unchanged
    sig = strategy.function(data.copy(deep=False), **resolved)
    target = to_targets(sig, data, strategy.name)
    close = data["close"].to_numpy(dtype=np.float64)
    if not np.isfinite(close).all():
        raise ValueError("data 'close' contains NaN or infinite values; clean it with quantlab.engine.data.validate.")
    ppy = float(periods_per_year) if periods_per_year is not None else infer_periods_per_year(data.index)
    executed, price = execution(data, target, fill)
    out = simulate(close, executed, cash, fees, slippage, price=price)
    equity, units = out["equity"], out["units"]
    rets = bar_returns(equity, cash)
    idx = data.index if data.index.unit == "ns" else data.index.as_unit("ns")
    n = idx.size
    ei, xi = out["entry_idx"], out["exit_idx"]
    closed = xi >= 0
    with np.errstate(divide="ignore", invalid="ignore"):
        tret = out["pnl"] / (out["size"] * out["entry_price"])
    bars_held = np.where(closed, xi, n - 1) - ei
    i8 = idx.asi8
    exit_ns = np.where(closed, i8[np.where(closed, xi, 0)], np.iinfo(np.int64).min)
    trades = trades_frame(
        pd.DatetimeIndex(i8[ei].view("datetime64[ns]")), pd.DatetimeIndex(exit_ns.view("datetime64[ns]")),
        np.where(out["side"] > 0, "long", "short"), out["size"], out["entry_price"], out["exit_price"],
        out["pnl"], tret, bars_held)
    metrics = _stats.compute_metrics(equity, rets, units, trades, ppy, cash=cash, close=close)
    idx_out = idx
    if idx_out.name != "time":
        idx_out = idx_out.rename("time")
    return BacktestResult(
        metrics=metrics,
        equity=pd.Series(equity, index=idx_out, name="equity", copy=False),
        returns=pd.Series(rets, index=idx_out, name="returns", copy=False),
        positions=pd.Series(units, index=idx_out, name="position", copy=False),
        trades=trades, strategy=strategy, name=strategy.name, params=resolved, data_ref=data_ref,
        costs={"cash": cash, "fees": fees, "slippage": slippage}, periods_per_year=ppy, _data_key=data if data_hash is None else str(data_hash), fill=fill,
        benchmark=pd.Series(close * (cash / close[0]), index=idx_out, name="benchmark"),
    )


def window_metrics(result: BacktestResult, start: int, stop: int | None = None, close: Any = None) -> dict[str, Any]:
    """Metrics of bars ``[start, stop)`` of a run, as if the account started there with the equity it had.

    Returns, equity and positions are the run's own on those bars; trades are those closed
    inside the window (open = not closed by its last bar). ``close`` (the instrument's closes
    over the whole run) gives ``benchmark_return``; else the run's ``benchmark`` is used if it
    has one. Used for ``holdout=`` (in-sample vs out-of-sample metrics of one run).

    >>> from quantlab.engine import data
    >>> r = backtest(data.synthetic(400, seed=1), "def signals(data):\\n    return data.close * 0 + 1")
    >>> round(window_metrics(r, 0, 400)["total_return"] - r.metrics["total_return"], 12)
    0.0
    """
    n = len(result.equity)
    stop = n if stop is None else int(stop)
    start = int(start)
    if not 0 <= start < stop <= n:
        raise ValueError(f"window [{start}, {stop}) is not inside the run's {n} bars.")
    eq = result.equity.to_numpy()
    base = float(result.costs.get("cash", DEFAULT_CASH)) if start == 0 else float(eq[start - 1])
    t = result.trades
    idx = result.equity.index
    t_lo, t_hi = idx[start], idx[stop - 1]
    exits = t["exit_time"]
    entered = t["entry_time"] <= t_hi
    closed_in = exits.notna() & (exits >= t_lo) & (exits <= t_hi)
    open_at_end = entered & (exits.isna() | (exits > t_hi))
    trades = t[closed_in | open_at_end].copy()
    trades.loc[open_at_end[closed_in | open_at_end].to_numpy(), "exit_time"] = pd.NaT
    if close is None and result.benchmark is not None:
        close = result.benchmark.to_numpy()
    c = None if close is None else np.asarray(close, dtype=np.float64)[start:stop]
    return _stats.compute_metrics(eq[start:stop], result.returns.to_numpy()[start:stop],
                                  result.positions.to_numpy()[start:stop], trades, result.periods_per_year,
                                  cash=base, close=c)


