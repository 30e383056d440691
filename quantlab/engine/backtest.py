"""Vectorised backtest of target-position signals.

(Size: one module on purpose: the execution model, its fast path and ``BacktestResult`` with its
exact JSON and paged round trip share the array helpers and change together. The signals rule
is :mod:`.signals`, the metrics :mod:`.stats`, sweeps :mod:`.sweep`.)

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

The core is numpy only, with no Python loop per bar: when every order opens
from cash and/or closes a position, equity is a cumulative product over orders;
same-direction resizing (e.g. continuous targets) is solved for all orders at
once by a fixed-point sweep; a plain loop over orders remains as the fallback
for degenerate cases (an account that goes bust).

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

import datetime as _dt
import hashlib
import html
import json
import math
from typing import Any, Mapping

import numpy as np
import pandas as pd

from quantlab._util import decode_number, encode_float, to_jsonable

from . import stats as _stats
from .costs import DEFAULT_CASH, DEFAULT_FEES, DEFAULT_SLIPPAGE  # the one default for costs (re-exported here)
from .signals import SignalError, to_targets
from .strategy import Strategy

__all__ = ["backtest", "BacktestResult", "SignalError", "infer_periods_per_year", "simulate", "execution",
           "window_metrics", "bar_returns",
           "FILLS", "DEFAULT_FILL", "DEFAULT_FEES", "DEFAULT_SLIPPAGE", "DEFAULT_CASH"]

#: The fill conventions: ``"next_open"`` (a target decided on bar t trades at bar t+1's open)
#: and ``"close"`` (at bar t's own close, vectorbt's default).
FILLS = ("next_open", "close")
#: The default: a signal computed from bar t's close cannot also trade at that close.
DEFAULT_FILL = "next_open"

TRADE_COLUMNS = ("entry_time", "exit_time", "side", "size", "entry_price", "exit_price", "pnl", "return", "bars_held")


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


def check_fill(fill: Any) -> str:
    """Validate a ``fill`` argument and return it.

    >>> check_fill("close")
    'close'
    """
    if fill not in FILLS:
        raise ValueError(f"fill must be 'next_open' (trade at the next bar's open) or 'close' (at the signal bar's "
                         f"close), got {fill!r}.")
    return fill


def execution(data: pd.DataFrame, target: np.ndarray, fill: str = DEFAULT_FILL) -> tuple[np.ndarray, np.ndarray]:
    """The targets as executed and their fill prices, for :func:`simulate`.

    ``fill="close"``: the target of bar t is filled at ``close[t]``. ``fill="next_open"``: it
    is filled at ``open[t+1]``, i.e. the executed target is shifted one bar (flat on bar 0;
    the last bar's decision never trades) and the fill price is ``open``.

    >>> df = pd.DataFrame({"open": [1.0, 2.0, 3.0], "close": [1.5, 2.5, 3.5]},
    ...                   index=pd.date_range("2024-01-01", periods=3, freq="1h"))
    >>> t, p = execution(df, np.array([1.0, 0.0, 1.0]), "next_open")
    >>> t.tolist(), p.tolist()
    ([0.0, 1.0, 0.0], [1.0, 2.0, 3.0])
    """
    close = data["close"].to_numpy(dtype=np.float64)
    if check_fill(fill) == "close":
        return target, close
    if "open" not in data.columns:
        raise ValueError("fill='next_open' needs an 'open' column in the data; add it or pass fill='close'.")
    price = data["open"].to_numpy(dtype=np.float64)
    executed = np.empty_like(target)
    if target.size:
        executed[0] = 0.0
        executed[1:] = target[:-1]
        bad = ~np.isfinite(price) & (executed != np.concatenate(([0.0], executed[:-1])))
        if bad.any():
            pos = int(np.flatnonzero(bad)[0])
            raise ValueError(f"data 'open' is NaN or infinite at {data.index[pos]}, where an order fills; "
                             "clean it with quantlab.engine.data.validate or pass fill='close'.")
    return executed, price


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
# the simulation core
# ---------------------------------------------------------------------------------------------
def _fast_path(close: np.ndarray, target: np.ndarray, chg: np.ndarray, cash: float, fees: float, slip: float,
               price: np.ndarray):
    """Every order closes a position and/or opens one from all-cash: fully vectorised."""
    n = close.size
    T = target[chg]
    c = price[chg]
    m = T.size
    sgn = np.sign(T)
    p_in = c * (1.0 + slip * sgn)                        # entry fill price of the position opened here
    uu = T / (p_in * (1.0 + fees))                       # units per unit of available cash
    cc = 1.0 - uu * p_in - np.abs(uu) * p_in * fees      # cash per unit of available cash after opening
    # exit price of position k is at change k+1, moving against the position
    q = np.full(m, np.nan)
    q[:-1] = c[1:] * (1.0 - slip * sgn[:-1])
    g = np.where(T != 0.0, cc + uu * q - np.abs(uu) * q * fees, 1.0)
    growth = np.ones(m)
    if m > 1:
        growth[1:] = np.cumprod(g[:-1])
    avail = cash * growth                                # cash available before the orders at change k
    if (avail <= 0).any():                               # bust: the order loop handles it
        return None
    units_k = uu * avail
    cash_k = np.where(T != 0.0, cc * avail, avail)
    # state 0 = initial, state k+1 holds from change k to the next change
    lengths = np.diff(np.concatenate(([0], chg, [n])))
    units = np.repeat(np.concatenate(([0.0], units_k)), lengths)
    equity = np.repeat(np.concatenate(([cash], cash_k)), lengths)
    equity += units * close
    # trades: one per change with non-zero target
    op = np.flatnonzero(T != 0.0)
    entry_idx = chg[op]
    closed = op < m - 1
    exit_idx = np.where(closed, chg[np.minimum(op + 1, m - 1)], -1)
    size = np.abs(units_k[op])
    entry_price = p_in[op]
    exit_price = np.where(closed, q[op], close[-1])
    side = sgn[op]
    exit_fees = np.where(closed, size * exit_price * fees, 0.0)
    pnl = side * (exit_price - entry_price) * size - size * entry_price * fees - exit_fees
    trades = (entry_idx, exit_idx, side, size, entry_price, exit_price, pnl)
    return equity, units, trades


def _resize_path(close: np.ndarray, target: np.ndarray, chg: np.ndarray, cash: float, fees: float, slip: float,
                 price: np.ndarray, max_iter: int = 60):
    """Targets that also resize within a direction, vectorised over orders.

    The only coupling between consecutive orders is ``x_k`` = units held before
    order ``k`` per unit of equity at that moment. Given ``x_k`` each order is a
    closed-form step (equity growth ``g_k`` and ``x_{k+1} = y_k / g_k``), so all
    steps are updated at once and iterated to the fixed point. Costs make each
    step depend on the previous one only by a factor ~``fees + slippage``, so it
    converges in a few sweeps; otherwise (or on a bust) return None for the loop.
    """
    n = close.size
    m = chg.size
    T = target[chg]
    P = np.zeros(m)
    P[1:] = T[:-1]
    c = price[chg]
    c_next = np.empty(m)
    c_next[:-1] = c[1:]
    c_next[-1] = c[-1]
    resize = (T != 0) & (P != 0) & (np.sign(T) == np.sign(P))
    opening = (T != 0) & ~resize
    closing = (P != 0) & ~resize
    sT = np.sign(T)
    p_open = c * (1.0 + slip * sT)
    a_open = T / (p_open * (1.0 + fees))
    a_lo = T / (c * (1.0 + fees))                  # decides the direction of a resize (no-slippage price)

    def co_step(x, k):
        """Close and/or open orders k given x_k: (w, y, z, q)."""
        ck = c[k]
        ax = np.abs(x)
        q = ck * (1.0 - slip * np.sign(x))                              # closing fill price
        w = 1.0 - x * ck + x * q - ax * q * fees                        # = 1 when x == 0
        ao, po = a_open[k], p_open[k]
        y = ao * w                                                      # = 0 when the target is 0
        z = w * (1.0 - ao * po - np.abs(ao) * po * fees)
        return w, y, z, q

    def rs_step(x, k):
        """Resize orders k given x_k: (y, z, p, d)."""
        ck = c[k]
        p = ck * (1.0 + slip * np.sign(a_lo[k] - x))
        y = T[k] / (p * (1.0 + fees))
        d = y - x
        z = 1.0 - x * ck - d * p - np.abs(d) * p * fees
        return y, z, p, d

    def x_next(x, k):
        out = np.empty(k.size)
        r = resize[k]
        kr, ko = k[r], k[~r]
        y, z, _, _ = rs_step(x[r], kr)
        out[r] = y / (z + y * c_next[kr])
        _, y, z, _ = co_step(x[~r], ko)
        out[~r] = y / (z + y * c_next[ko])
        return out

    # Start from the exact solution without costs; then re-evaluate only the orders whose
    # input x_k changed. x_{k+1} depends on x_k alone, so this ends with the same numbers a
    # sequential loop over orders would give, after a few sweeps of shrinking size.
    x = np.zeros(m)
    with np.errstate(divide="ignore", invalid="ignore"):
        g0 = 1.0 - T + T * c_next / c
        x[1:] = (T / c / g0)[:-1]
        active = np.arange(m - 1)
        for _ in range(max_iter):
            if active.size == 0:
                break
            new = x_next(x[active], active)
            moved = new != x[active + 1]
            x[active + 1] = new
            active = active[moved] + 1
            active = active[active < m - 1]
        else:
            return None
    kr = np.flatnonzero(resize)
    ko = np.flatnonzero(~resize)
    w_o, y_o, z_o, q_o = co_step(x[ko], ko)
    y_r, z_r, p_r, d_r = rs_step(x[kr], kr)
    y = np.empty(m)
    z = np.empty(m)
    y[ko], y[kr] = y_o, y_r
    z[ko], z[kr] = z_o, z_r
    g = z + y * c_next
    if (g[:-1] <= 0).any() or (w_o <= 0).any() or not np.isfinite(g[:-1]).all():
        return None                                                     # bust or degenerate: use the loop
    E = np.empty(m)
    E[0] = cash
    if m > 1:
        E[1:] = cash * np.cumprod(g[:-1])
    if not E[-1] > 0:                                                   # equity underflowed to 0: use the loop
        return None
    lengths = np.diff(np.concatenate(([0], chg, [n])))
    units = np.repeat(np.concatenate(([0.0], y * E)), lengths)
    equity = np.repeat(np.concatenate(([cash], z * E)), lengths)
    equity += units * close
    # trades: one per opening order; fills are summed per trade id with bincount
    tid = np.cumsum(opening) - 1                   # trade of the position held after order k
    n_tr = int(opening.sum())
    ids, units_in, value_in, units_out, value_out, flow = [], [], [], [], [], []

    def add(i, ui, vi, uo, vo, fl):
        ids.append(i); units_in.append(ui); value_in.append(vi)
        units_out.append(uo); value_out.append(vo); flow.append(fl)

    # closing fills (orders ko with x != 0) belong to the previous trade
    xE = x[ko] * E[ko]
    cmask = closing[ko]
    cu = np.abs(xE[cmask])
    qc = q_o[cmask]
    add(tid[ko[cmask] - 1], np.zeros(cu.size), np.zeros(cu.size), cu, cu * qc, xE[cmask] * qc - cu * qc * fees)
    # opening fills
    omask = opening[ko]
    yE = y_o[omask] * E[ko[omask]]
    po = p_open[ko[omask]]
    ou = np.abs(yE)
    add(tid[ko[omask]], ou, ou * po, np.zeros(ou.size), np.zeros(ou.size), -yE * po - ou * po * fees)
    # resize fills: adding to the position counts as entry, reducing as exit
    dE = d_r * E[kr]
    du = np.abs(dE)
    inc = np.sign(dE) == sT[kr]
    add(tid[kr], np.where(inc, du, 0.0), np.where(inc, du * p_r, 0.0), np.where(inc, 0.0, du),
        np.where(inc, 0.0, du * p_r), -dE * p_r - du * p_r * fees)
    ids_a = np.concatenate(ids)

    def agg(parts):
        return np.bincount(ids_a, weights=np.concatenate(parts), minlength=n_tr)[:n_tr]

    in_units, in_value = agg(units_in), agg(value_in)
    out_units, out_value, flows = agg(units_out), agg(value_out), agg(flow)
    entry_idx = chg[opening]
    close_steps = chg[closing & (tid >= 0) & (np.arange(m) > 0)]
    exit_idx = np.full(n_tr, -1, dtype=np.int64)
    exit_idx[: close_steps.size] = close_steps
    closed = exit_idx >= 0
    side = sT[opening]
    with np.errstate(divide="ignore", invalid="ignore"):
        entry_price = in_value / in_units
        exit_price = np.where(closed, out_value / np.where(out_units > 0, out_units, 1.0), close[-1])
    remaining = np.where(closed, 0.0, side * (in_units - out_units))
    pnl = flows + remaining * close[-1]
    return equity, units, (entry_idx, exit_idx, side, in_units, entry_price, exit_price, pnl)


def _slow_path(close: np.ndarray, target: np.ndarray, chg: np.ndarray, cash: float, fees: float, slip: float,
               price: np.ndarray):
    """General case with same-direction resizing: a loop over orders (not bars)."""
    n = close.size
    m = chg.size
    st_units = np.zeros(m + 1)
    st_cash = np.empty(m + 1)
    st_cash[0] = cash
    u, cs = 0.0, float(cash)
    tr: list[list[float]] = []   # entry_idx, exit_idx, side, in_units, in_value, out_units, out_value, flows
    cur: list[float] | None = None

    def fill(d: float, c: float) -> float:
        nonlocal cs
        p = c * (1.0 + slip) if d > 0 else c * (1.0 - slip)
        cs -= d * p + abs(d) * p * fees
        return p

    for k in range(m):
        i = int(chg[k])
        c = float(price[i])
        T = float(target[i])
        if u != 0.0 and (T == 0.0 or (T > 0) != (u > 0)):          # close the position
            before = cs
            p = fill(-u, c)
            cur[5] += abs(u); cur[6] += abs(u) * p; cur[7] += cs - before; cur[1] = i  # type: ignore[index]
            tr.append(cur)  # type: ignore[arg-type]
            cur, u = None, 0.0
        if T != 0.0:
            eq = cs + u * c
            if eq > 0:
                if u == 0.0:                                           # open from cash
                    p = c * (1.0 + slip * math.copysign(1.0, T))
                    d = T * eq / (p * (1.0 + fees))
                    cur = [i, -1, math.copysign(1.0, T), 0.0, 0.0, 0.0, 0.0, 0.0]
                else:                                                  # resize in the same direction
                    d0 = T * eq / (c * (1.0 + fees)) - u
                    p = c * (1.0 + slip * math.copysign(1.0, d0)) if d0 != 0 else c
                    d = T * eq / (p * (1.0 + fees)) - u
                if d != 0.0:
                    before = cs
                    p = fill(d, c)
                    if (d > 0) == (cur[2] > 0):  # type: ignore[index]
                        cur[3] += abs(d); cur[4] += abs(d) * p  # type: ignore[index]
                    else:
                        cur[5] += abs(d); cur[6] += abs(d) * p  # type: ignore[index]
                    cur[7] += cs - before  # type: ignore[index]
                    u += d
        st_units[k + 1] = u
        st_cash[k + 1] = cs
    if cur is not None and u != 0.0:
        tr.append(cur)
    lengths = np.diff(np.concatenate(([0], chg, [n])))
    units = np.repeat(st_units, lengths)
    equity = np.repeat(st_cash, lengths) + units * close
    a = np.array(tr, dtype=np.float64).reshape(-1, 8)
    entry_idx = a[:, 0].astype(np.int64)
    exit_idx = a[:, 1].astype(np.int64)
    side = a[:, 2]
    size = a[:, 3]
    with np.errstate(divide="ignore", invalid="ignore"):
        entry_price = a[:, 4] / a[:, 3]
        closed = exit_idx >= 0
        exit_price = np.where(closed, a[:, 6] / np.where(a[:, 5] > 0, a[:, 5], 1.0), close[-1])
    open_units = np.where(closed, 0.0, side * (a[:, 3] - a[:, 5]))
    pnl = a[:, 7] + open_units * close[-1]
    return equity, units, (entry_idx, exit_idx, side, size, entry_price, exit_price, pnl)


def simulate(close: np.ndarray, target: np.ndarray, cash: float = 100_000.0, fees: float = 0.0,
             slippage: float = 0.0, price: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Run the execution model on raw arrays (no validation, no pandas).

    ``target[t]`` is the position held from bar ``t``'s fill on, filled at ``price[t]``
    (default ``close[t]``); equity is valued at ``close``. For ``fill="next_open"`` the
    caller passes the targets shifted by one bar and ``price=open`` (see :func:`execution`).

    Returns ``equity``, ``units`` (position per bar) and the trade arrays
    ``entry_idx, exit_idx (-1 = open), side, size, entry_price, exit_price, pnl``.

    >>> out = simulate(np.array([1.0, 2.0, 4.0]), np.array([1.0, 1.0, 0.0]), cash=1.0)
    >>> out["equity"].tolist(), out["pnl"].tolist()
    ([1.0, 2.0, 4.0], [3.0])
    >>> simulate(np.array([1.0, 2.0, 4.0]), np.array([0.0, 1.0, 0.0]), cash=1.0, price=np.array([1.0, 1.0, 2.0]))["pnl"].tolist()
    [1.0]
    """
    close = np.asarray(close, dtype=np.float64)
    target = np.asarray(target, dtype=np.float64)
    price = close if price is None else np.asarray(price, dtype=np.float64)
    n = close.size
    prev = np.empty(n)
    if n:
        prev[0] = 0.0
        prev[1:] = target[:-1]
    chg = np.flatnonzero(target != prev)
    Tc, Tp = target[chg], prev[chg]
    resize = (Tc != 0.0) & (Tp != 0.0) & (np.sign(Tc) == np.sign(Tp))
    res = None
    if not resize.any():
        res = _fast_path(close, target, chg, float(cash), float(fees), float(slippage), price)
    elif chg.size:
        res = _resize_path(close, target, chg, float(cash), float(fees), float(slippage), price)
    if res is None:  # the account went bust (the loop refuses to open with equity <= 0) or no convergence
        res = _slow_path(close, target, chg, float(cash), float(fees), float(slippage), price)
    equity, units, (ei, xi, side, size, ep, xp, pnl) = res
    return {"equity": equity, "units": units, "entry_idx": np.asarray(ei, dtype=np.int64),
            "exit_idx": np.asarray(xi, dtype=np.int64), "side": side, "size": size,
            "entry_price": ep, "exit_price": xp, "pnl": pnl}


def bar_returns(equity: np.ndarray, cash: float) -> np.ndarray:
    """Bar returns as vectorbt's ``returns_nb`` (first against ``cash``; 0 -> ±inf; sign flip below 0)."""
    r = np.empty_like(equity)
    if equity.size == 0:
        return r
    r[0] = equity[0] / cash - 1.0
    if equity.size > 1:
        np.divide(equity[1:], equity[:-1], out=r[1:])
        r[1:] -= 1.0
    if (equity > 0).all():
        return r
    prev = np.empty_like(equity)
    prev[0] = cash
    prev[1:] = equity[:-1]
    with np.errstate(divide="ignore", invalid="ignore"):
        r = (equity - prev) / prev
    zero = prev == 0
    if zero.any():
        r[zero] = np.where(equity[zero] == 0, 0.0, np.inf * np.sign(equity[zero]))
    neg = prev < 0
    if neg.any():
        r[neg] *= -1
    return r


# ---------------------------------------------------------------------------------------------
# result
# ---------------------------------------------------------------------------------------------
def _enc_floats(a: np.ndarray) -> list:
    a = np.asarray(a, dtype=np.float64)
    if np.isfinite(a).all():
        return a.tolist()
    return [encode_float(x) for x in a.tolist()]


def _dec_floats(values: list) -> np.ndarray:
    return np.array([decode_number(x) for x in values], dtype=np.float64) if any(isinstance(x, str) for x in values) \
        else np.array(values, dtype=np.float64)


def _enc_params(params: Mapping[str, Any]) -> dict:
    """JSON-safe parameters (NaN/inf as strings, arrays as lists, other objects as their repr)."""
    return to_jsonable(dict(params), fallback=repr)


def _hash_default(o: Any) -> Any:
    if isinstance(o, (np.ndarray, pd.Series)):
        a = np.ascontiguousarray(np.asarray(o))
        return f"ndarray:{a.dtype}:{a.shape}:{hashlib.sha256(a.tobytes()).hexdigest()}"
    return repr(o)


class BacktestResult:
    """The outcome of :func:`backtest`.

    Attributes: ``metrics`` (dict of plain floats/ints, see :mod:`quantlab.engine.stats`),
    ``equity``, ``returns``, ``positions`` (units held after each bar, ``pd.Series``),
    ``trades`` (DataFrame with ``entry_time, exit_time, side, size, entry_price,
    exit_price, pnl, return, bars_held``; open trades have ``exit_time`` NaT and
    are valued at the last close), ``strategy``, ``name``, ``params``,
    ``data_ref``, ``costs`` (``cash, fees, slippage``), ``periods_per_year``,
    ``run_id``, ``created_at``, ``fill``, ``benchmark`` (buy-and-hold equity from the same
    cash, ``cash × close_t / close_0``; ``None`` on a result rebuilt by ``from_dict``);
    property ``drawdown``.

    ``to_dict()`` / ``from_dict()`` round-trip exactly through JSON.

    Example
    -------
    >>> from quantlab.engine import backtest, data
    >>> r = backtest(data.synthetic(500, seed=3), "def signals(data):\\n    return data.close * 0 + 1")
    >>> r.metrics["trades"], r.metrics["open_trades"]
    (0, 1)
    >>> BacktestResult.from_dict(r.to_dict()).equity.equals(r.equity)
    True
    """

    def __init__(self, *, metrics: dict, equity: pd.Series, returns: pd.Series, positions: pd.Series,
                 trades: pd.DataFrame, strategy: Strategy | None = None, name: str = "strategy",
                 params: Mapping[str, Any] | None = None, data_ref: str | None = None,
                 costs: Mapping[str, float] | None = None, periods_per_year: float = 252.0,
                 run_id: str | None = None, created_at: str | None = None, _data_key: Any = None,
                 code_sha256: str | None = None, fill: str = "close", benchmark: pd.Series | None = None) -> None:
        self.metrics = dict(metrics)
        self.fill = fill
        self.benchmark = benchmark
        #: with ``holdout=`` (Lab): metrics of the held-out last bars; ``metrics`` then covers the rest
        self.metrics_oos: dict | None = None
        self.holdout: dict | None = None
        self.equity = equity
        self.returns = returns
        self.positions = positions
        self.trades = trades
        self.strategy = strategy
        self.name = name
        self.params = dict(params or {})
        self.data_ref = data_ref
        self.costs = dict(costs or {"cash": 100_000.0, "fees": 0.0, "slippage": 0.0})
        self.periods_per_year = float(periods_per_year)
        self.created_at = created_at or _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
        self.code_sha256 = code_sha256 or (strategy.sha256 if strategy is not None else None)
        self._run_id = run_id
        self._data_key = _data_key

    # -- identity ------------------------------------------------------------------------------
    @property
    def run_id(self) -> str:
        """Deterministic id: sha256 of code sha, params, data (reference or content hash), costs, periods/year.

        Computed on first access (hashing 1M bars takes ~30 ms); a server may set its own.
        """
        if self._run_id is None:
            key = self._data_key
            if key is not None and not isinstance(key, str):
                from .data import content_hash
                key = content_hash(key)
            params = {k: (int(v) if isinstance(v, np.integer) else v) for k, v in self.params.items()}
            payload = json.dumps({"code": self.code_sha256, "params": params,
                                  "data": key if key is not None else self.data_ref,
                                  "costs": {k: to_jsonable(v) for k, v in self.costs.items()},
                                  "ppy": to_jsonable(self.periods_per_year), "fill": self.fill},
                                 sort_keys=True, default=_hash_default)
            self._run_id = hashlib.sha256(payload.encode()).hexdigest()[:16]
            self._data_key = None
        return self._run_id

    @run_id.setter
    def run_id(self, value: str) -> None:
        self._run_id = str(value)

    @property
    def drawdown(self) -> pd.Series:
        """Drawdown per bar as a positive fraction ``1 - equity / running peak``."""
        return pd.Series(_stats.drawdown(self.equity.to_numpy()), index=self.equity.index, name="drawdown")

    # -- serialisation -------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """Columnar, JSON-safe dict: index as int64 ns, floats as JSON numbers, NaN/inf as strings.

        >>> from quantlab.engine import backtest, data
        >>> d = backtest(data.synthetic(50, seed=1), "def signals(data):\\n    return data.close*0+1").to_dict()
        >>> sorted(d)[:4]
        ['code', 'code_sha256', 'costs', 'created_at']
        """
        t = self.trades
        return {
            "version": 1,
            "run_id": self.run_id,
            "name": self.name,
            "params": _enc_params(self.params),
            "code": self.strategy.code if self.strategy is not None else None,
            "code_sha256": self.code_sha256,
            "data_ref": self.data_ref,
            "costs": {k: to_jsonable(v) for k, v in self.costs.items()},
            "periods_per_year": to_jsonable(self.periods_per_year),
            "fill": self.fill,
            **({"metrics_oos": {k: to_jsonable(v) for k, v in self.metrics_oos.items()}, "holdout": self.holdout}
               if self.metrics_oos is not None else {}),
            "created_at": self.created_at,
            "metrics": {k: to_jsonable(v) for k, v in self.metrics.items()},
            "index": self.equity.index.asi8.tolist(),
            "equity": _enc_floats(self.equity.to_numpy()),
            "returns": _enc_floats(self.returns.to_numpy()),
            "positions": _enc_floats(self.positions.to_numpy()),
            "trades": {
                "entry_time": t["entry_time"].to_numpy(dtype="datetime64[ns]").view("int64").tolist(),
                "exit_time": [None if x == np.iinfo(np.int64).min else x
                              for x in t["exit_time"].to_numpy(dtype="datetime64[ns]").view("int64").tolist()],
                **{c: _enc_floats(t[c].to_numpy()) for c in ("size", "entry_price", "exit_price", "pnl", "return")},
                "side": t["side"].astype(str).tolist(),
                "bars_held": t["bars_held"].astype("int64").tolist(),
            },
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "BacktestResult":
        """Rebuild a result from :meth:`to_dict` output (also after ``json.dumps``/``loads``)."""
        index = pd.DatetimeIndex(np.array(d["index"], dtype="int64").view("datetime64[ns]"), name="time")
        td = d["trades"]
        trades = _trades_frame(
            pd.DatetimeIndex(np.array(td["entry_time"], dtype="int64").view("datetime64[ns]")),
            pd.DatetimeIndex(np.array([np.iinfo(np.int64).min if x is None else x for x in td["exit_time"]],
                                      dtype="int64").view("datetime64[ns]")),
            np.array(td["side"], dtype=object), *(_dec_floats(td[c]) for c in ("size", "entry_price", "exit_price",
                                                                               "pnl", "return")),
            np.array(td["bars_held"], dtype=np.int64))
        strategy = None
        if d.get("code"):
            try:
                strategy = Strategy.from_code(d["code"], name=d.get("name"))
            except Exception:  # noqa: BLE001 - keep the numbers even if the code no longer loads here
                strategy = None
        metrics = {k: decode_number(v) for k, v in d["metrics"].items()}
        out = cls(
            metrics=metrics,
            equity=pd.Series(_dec_floats(d["equity"]), index=index, name="equity"),
            returns=pd.Series(_dec_floats(d["returns"]), index=index, name="returns"),
            positions=pd.Series(_dec_floats(d["positions"]), index=index, name="position"),
            trades=trades, strategy=strategy, name=d.get("name", "strategy"),
            params={k: decode_number(v) for k, v in (d.get("params") or {}).items()}, data_ref=d.get("data_ref"),
            costs={k: decode_number(v) for k, v in (d.get("costs") or {}).items()},
            periods_per_year=decode_number(d["periods_per_year"]), run_id=d.get("run_id"),
            created_at=d.get("created_at"), code_sha256=d.get("code_sha256"), fill=d.get("fill", "close"),
        )
        if d.get("metrics_oos") is not None:
            out.metrics_oos = {k: decode_number(v) for k, v in d["metrics_oos"].items()}
            out.holdout = d.get("holdout")
        return out

    # -- display ---------------------------------------------------------------------------------
    def __repr__(self) -> str:
        m = self.metrics
        span = f"{self.equity.index[0]} .. {self.equity.index[-1]}" if len(self.equity) else "empty"
        return (f"BacktestResult(name={self.name!r}, params={self.params!r}, bars={len(self.equity)}, {span}, "
                f"total_return={m.get('total_return', float('nan')):.4g}, sharpe={m.get('sharpe', float('nan')):.4g}, "
                f"max_drawdown={m.get('max_drawdown', float('nan')):.4g}, trades={m.get('trades')})")

    def _repr_html_(self) -> str:
        pct = {"total_return", "cagr", "volatility", "max_drawdown", "win_rate", "exposure", "benchmark_return"}
        rows = []
        for k, v in self.metrics.items():
            if isinstance(v, float) and k in pct and math.isfinite(v):
                s = f"{v:.2%}"
            elif isinstance(v, float):
                s = f"{v:,.4g}"
            else:
                s = f"{v:,}"
            rows.append(f"<tr><td style='text-align:left'>{html.escape(k)}</td><td>{html.escape(s)}</td></tr>")
        params = ", ".join(f"{html.escape(str(k))}={html.escape(repr(v))}" for k, v in self.params.items()) or "—"
        cost = ", ".join(f"{k}={v:g}" for k, v in self.costs.items())
        return (f"<div><b>Backtest</b> <code>{html.escape(self.name)}</code> <small>{params} · "
                f"{len(self.equity):,} bars · {html.escape(cost)} · data {html.escape(str(self.data_ref or '—'))}"
                f"</small><table>{''.join(rows)}</table></div>")

    def plot(self, ax: Any = None):
        """Equity and drawdown chart (matplotlib); returns the Figure. Works without a display."""
        from .plotting import plot_result
        return plot_result(self, ax=ax)


def _trades_frame(entry_time, exit_time, side, size, entry_price, exit_price, pnl, ret, bars_held) -> pd.DataFrame:
    return pd.DataFrame({
        "entry_time": entry_time, "exit_time": exit_time, "side": pd.Series(side, dtype=object).to_numpy(),
        "size": size, "entry_price": entry_price, "exit_price": exit_price, "pnl": pnl,
        "return": ret, "bars_held": np.asarray(bars_held, dtype=np.int64),
    }, columns=list(TRADE_COLUMNS))


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
    trades = _trades_frame(
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
    base = float(result.costs.get("cash", 100_000.0)) if start == 0 else float(eq[start - 1])
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


# -- paged transport of to_dict() ---------------------------------------------------------------
PER_BAR_KEYS = ("index", "equity", "returns", "positions")
#: bars per page when a result travels in pages (the backtest server's ``get_run`` and its clients)
PAGE_BARS = 100_000


def join_pages(pages: "list[Mapping[str, Any]]") -> dict[str, Any]:
    """Join pages of :meth:`BacktestResult.to_dict` (each with a ``"page"`` field) into one dict.

    A server sends results of many bars in pages: the per-bar lists (:data:`PER_BAR_KEYS`)
    are split, everything else rides on the first page.

    >>> join_pages([{"index": [1], "equity": [1.0], "returns": [0.0], "positions": [0.0], "name": "x",
    ...              "page": {"next_offset": 1}},
    ...             {"index": [2], "equity": [2.0], "returns": [1.0], "positions": [1.0],
    ...              "page": {"next_offset": None}}])["equity"]
    [1.0, 2.0]
    """
    first, *rest = pages
    d = {k: (list(v) if k in PER_BAR_KEYS else v) for k, v in first.items() if k != "page"}
    for page in rest:
        for k in PER_BAR_KEYS:
            d[k].extend(page[k])
    return d


def _follow_pages(first: Mapping[str, Any]):
    """The one paging loop: yields each next offset, is sent that page, returns the joined dict."""
    pages = [first]
    nxt = (first.get("page") or {}).get("next_offset")
    while nxt is not None:
        page = yield nxt
        pages.append(page)
        nxt = (page.get("page") or {}).get("next_offset")
    return join_pages(pages)


def fetch_all_pages(first: Mapping[str, Any], fetch: Any) -> dict[str, Any]:
    """Follow ``first["page"]["next_offset"]`` with ``fetch(offset) -> page`` and join the pages.

    :func:`afetch_all_pages` is the same for an ``async`` fetch.

    >>> pages = {0: {"index": [1], "equity": [1.0], "returns": [0.0], "positions": [0.0], "name": "x",
    ...              "page": {"next_offset": 1}},
    ...          1: {"index": [2], "equity": [2.0], "returns": [1.0], "positions": [1.0], "page": {"next_offset": None}}}
    >>> fetch_all_pages(pages[0], pages.__getitem__)["equity"]
    [1.0, 2.0]
    """
    loop = _follow_pages(first)
    try:
        offset = next(loop)
        while True:
            offset = loop.send(fetch(offset))
    except StopIteration as done:
        return done.value


async def afetch_all_pages(first: Mapping[str, Any], fetch: Any) -> dict[str, Any]:
    """:func:`fetch_all_pages` with ``await fetch(offset)`` (e.g. an MCP ``get_run`` call).

    >>> import asyncio
    >>> pages = {0: {"index": [1], "equity": [1.0], "returns": [0.0], "positions": [0.0], "page": {"next_offset": 1}},
    ...          1: {"index": [2], "equity": [2.0], "returns": [1.0], "positions": [1.0], "page": {"next_offset": None}}}
    >>> async def get(offset):
    ...     return pages[offset]
    >>> asyncio.run(afetch_all_pages(pages[0], get))["index"]
    [1, 2]
    """
    loop = _follow_pages(first)
    try:
        offset = next(loop)
        while True:
            offset = loop.send(await fetch(offset))
    except StopIteration as done:
        return done.value
