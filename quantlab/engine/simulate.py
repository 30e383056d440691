"""The execution model: which targets trade at which price (:func:`execution`), and the numpy core that
turns targets into equity, units and trades (:func:`simulate`) for :func:`~quantlab.engine.backtest.backtest`,
sweeps and walk-forward folds alike. The convention is described in :mod:`quantlab.engine.backtest`.

The core has no Python loop per bar: when every order opens from cash and/or closes a position,
equity is a cumulative product over orders; same-direction resizing (e.g. continuous targets) is
solved for all orders at once by a fixed-point sweep; a plain loop over orders remains as the
fallback for degenerate cases (an account that goes bust).

>>> out = simulate(np.array([1.0, 2.0, 4.0]), np.array([1.0, 1.0, 0.0]), cash=100.0, fees=0.0)
>>> out["equity"].tolist()
[100.0, 200.0, 400.0]
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from .costs import DEFAULT_CASH, DEFAULT_FEES, DEFAULT_SLIPPAGE

__all__ = ["simulate", "execution", "bar_returns", "check_fill", "FILLS", "DEFAULT_FILL"]

#: The fill conventions: ``"next_open"`` (a target decided on bar t trades at bar t+1's open)
#: and ``"close"`` (at bar t's own close, vectorbt's default).
FILLS = ("next_open", "close")
#: The default: a signal computed from bar t's close cannot also trade at that close.
DEFAULT_FILL = "next_open"


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


def simulate(close: np.ndarray, target: np.ndarray, cash: float = DEFAULT_CASH, fees: float = DEFAULT_FEES,
             slippage: float = DEFAULT_SLIPPAGE, price: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Run the execution model on raw arrays (no validation, no pandas).

    ``target[t]`` is the position held from bar ``t``'s fill on, filled at ``price[t]``
    (default ``close[t]``); equity is valued at ``close``. For ``fill="next_open"`` the
    caller passes the targets shifted by one bar and ``price=open`` (see :func:`execution`).

    Returns ``equity``, ``units`` (position per bar) and the trade arrays
    ``entry_idx, exit_idx (-1 = open), side, size, entry_price, exit_price, pnl``.

    >>> out = simulate(np.array([1.0, 2.0, 4.0]), np.array([1.0, 1.0, 0.0]), cash=1.0, fees=0.0)
    >>> out["equity"].tolist(), out["pnl"].tolist()
    ([1.0, 2.0, 4.0], [3.0])
    >>> simulate(np.array([1.0, 2.0, 4.0]), np.array([0.0, 1.0, 0.0]), cash=1.0, fees=0.0, price=np.array([1.0, 1.0, 2.0]))["pnl"].tolist()
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
