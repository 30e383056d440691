"""What one deployment did on the paper market: :class:`DeploymentActivity`.

:meth:`quantlab.Lab.activity` builds it from public broker tools (the deployment,
its fills from the journal, the market's candles, the market clock) and, when
asked, the backtest's *expected* position for the same candles (the stored
strategy backtested through the backtest server on exactly those bars), so the
paper position and the one the backtest would hold can be drawn side by side.

Units: prices in the symbol's quote currency, positions in lots (negative =
short), PnL in the account currency.

Example
-------
>>> act = lab.activity(rec.deployment_id, bars=300)       # doctest: +SKIP
>>> act.fills[["time", "side", "lots", "price"]].tail(3)   # doctest: +SKIP
>>> act.market_time                                         # doctest: +SKIP
Timestamp('2024-01-01 17:29:00')
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np
import pandas as pd

__all__ = ["DeploymentActivity", "utc_naive", "market_time", "bars_frame", "fills_frame", "position_series", "pnl_series", "expected_lots"]

FILL_COLUMNS = ["time", "side", "volume", "price", "lots", "message"]


@dataclass
class DeploymentActivity:
    """One deployment on the paper market, ready to chart.

    ``bars`` (open/high/low/close indexed by bar open time, market time, UTC),
    ``fills`` (time, side ``buy``/``sell``, volume and lots held after the fill, price),
    ``position`` (lots held after each bar), ``expected`` (lots the backtest would hold
    after each bar, ``None`` if not computed), ``pnl`` (account currency, since the
    first bar shown, marked to each bar's close), ``pnl_total`` and ``trades`` as the
    broker reports them, ``market_time`` (the paper market's clock, not the wall clock).
    """

    deployment_id: str
    strategy_name: str
    symbol: str
    timeframe: str
    status: str
    volume: float
    currency: str
    market_time: pd.Timestamp | None
    bars: pd.DataFrame
    fills: pd.DataFrame
    position: pd.Series
    pnl: pd.Series
    pnl_total: float | None = None
    trades: int | None = None
    expected: pd.Series | None = None
    last_error: str | None = None
    info: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def lots(self) -> float:
        """Lots held now (negative = short)."""
        return float(self.position.iloc[-1]) if len(self.position) else 0.0

    def __repr__(self) -> str:
        clock = self.market_time.strftime("%Y-%m-%d %H:%M") if self.market_time is not None else "?"
        pnl = "?" if self.pnl_total is None else f"{self.pnl_total:,.2f} {self.currency}"
        return (f"DeploymentActivity({self.deployment_id} {self.strategy_name!r} on {self.symbol} {self.timeframe}, "
                f"{self.status}; {len(self.bars)} bars, {len(self.fills)} fills, position {self.lots:g} lots, "
                f"PnL {pnl}; market time {clock})")


def utc_naive(times: Any) -> pd.DatetimeIndex:
    """Market times (epoch seconds or ISO-8601 strings such as ``'2024-01-01T12:21:00Z'``) as naive UTC.

    >>> utc_naive([0]).tolist() == utc_naive(["1970-01-01T00:00:00Z"]).tolist()
    True
    """
    values = list(times) if not isinstance(times, (pd.Index, np.ndarray, pd.Series)) else times
    if len(values) and isinstance(values[0], str):
        return pd.DatetimeIndex(pd.to_datetime(values, utc=True, format="ISO8601").tz_convert(None))
    return pd.DatetimeIndex(pd.to_datetime(np.asarray(values, dtype="int64"), unit="s"))


def market_time(value: Any) -> pd.Timestamp | None:
    """One market time (epoch seconds or ISO-8601) as a naive UTC timestamp (``None`` stays ``None``)."""
    return None if value is None else utc_naive([value])[0]


def bars_frame(rates: Any) -> pd.DataFrame:
    """MT5 rates (a list of dicts with epoch-second ``time``) as an OHLC(+volume) frame indexed by time.

    >>> bars_frame([{"time": 0, "open": 1, "high": 2, "low": 0.5, "close": 1.5, "tick_volume": 3}]).close.tolist()
    [1.5]
    """
    rows = rates.get("result", rates) if isinstance(rates, Mapping) else rates
    df = pd.DataFrame(list(rows or []))
    if df.empty:
        return pd.DataFrame(columns=["open", "high", "low", "close", "volume"], index=pd.DatetimeIndex([], name="time"))
    out = df[["open", "high", "low", "close"]].astype(float)
    out["volume"] = df.get("tick_volume", df.get("real_volume", 0))
    out.index = utc_naive(df["time"].tolist())
    out.index.name = "time"
    return out


def fills_frame(journal: Any) -> pd.DataFrame:
    """The ``fill`` lines of a deployment journal as a frame (time, side, volume, price, lots, message)."""
    rows = []
    for line in journal or []:
        if line.get("kind") != "fill":
            continue
        data = line.get("data") or {}
        if isinstance(data, str):
            import json

            data = json.loads(data or "{}")
        side = {0: "buy", 1: "sell"}.get(data.get("type"), "close")
        rows.append({"time": line["time"], "side": side, "volume": data.get("volume"), "price": data.get("price"),
                     "lots": data.get("lots"), "message": line.get("message", "")})
    df = pd.DataFrame(rows, columns=FILL_COLUMNS)
    df["time"] = utc_naive(df["time"].tolist()) if len(df) else pd.DatetimeIndex([])
    for col in ("volume", "price", "lots"):
        df[col] = pd.to_numeric(df[col], errors="coerce")
    return df


def position_series(bars: pd.DataFrame, fills: pd.DataFrame, start_lots: float = 0.0) -> pd.Series:
    """Lots held after each bar: the ``lots`` of the last fill at or before the bar's time."""
    if len(bars) == 0:
        return pd.Series([], index=bars.index, dtype=float, name="lots")
    known = fills.dropna(subset=["lots"]) if len(fills) else fills
    if len(known) == 0:
        return pd.Series(start_lots, index=bars.index, dtype=float, name="lots")
    t = known["time"].to_numpy(dtype="datetime64[ns]")
    pos = np.searchsorted(t, bars.index.to_numpy(dtype="datetime64[ns]"), side="right") - 1
    lots = known["lots"].to_numpy(dtype=float)
    values = np.where(pos >= 0, lots[np.clip(pos, 0, None)], start_lots)
    return pd.Series(values, index=bars.index, name="lots")


def pnl_series(bars: pd.DataFrame, fills: pd.DataFrame, position: pd.Series, contract_size: float) -> pd.Series:
    """PnL since the first bar shown, marked to each bar's close (quote currency × contract size).

    Cash flows of the fills inside the window plus the open position at the close; the
    position held before the window is marked from the first bar's close.
    """
    if len(bars) == 0:
        return pd.Series([], index=bars.index, dtype=float, name="pnl")
    close = bars["close"].to_numpy(dtype=float)
    lots = position.to_numpy(dtype=float)
    cash = np.zeros(len(bars))
    inside = fills[fills["time"] >= bars.index[0]] if len(fills) else fills
    if len(inside):
        signed = np.where(inside["side"].to_numpy() == "buy", 1.0, -1.0) * inside["volume"].to_numpy(dtype=float)
        flow = -signed * inside["price"].to_numpy(dtype=float)
        at = np.searchsorted(bars.index.to_numpy(dtype="datetime64[ns]"), inside["time"].to_numpy(dtype="datetime64[ns]"),
                             side="right") - 1
        np.add.at(cash, np.clip(at, 0, None), np.nan_to_num(flow))
    lots_before = _lots_before(lots, inside)
    value = (np.cumsum(cash) + lots * close - lots_before * close[0]) * contract_size
    return pd.Series(value, index=bars.index, name="pnl")


def _lots_before(lots: np.ndarray, inside: pd.DataFrame) -> float:
    """Lots held before the first bar shown (the position at the end less the fills inside the window)."""
    if not len(lots):
        return 0.0
    if not len(inside):
        return float(lots[0])
    first = inside.iloc[0]
    signed = (1.0 if first["side"] == "buy" else -1.0) * float(first["volume"])
    return float(first["lots"]) - signed if pd.notna(first["lots"]) else float(lots[0])


def expected_lots(units: pd.Series, equity: pd.Series, close: pd.Series, volume: float, step: float = 0.01) -> pd.Series:
    """The backtest's position (units of the asset) as lots of a deployment of ``volume`` lots.

    The backtest's exposure (``units × close / equity``, the target in [-1, 1]) times
    ``volume``, rounded to the broker's lot ``step``.

    >>> idx = pd.RangeIndex(2)
    >>> expected_lots(pd.Series([0.0, 50.0], idx), pd.Series([100.0, 100.0], idx), pd.Series([2.0, 2.0], idx), 0.1).tolist()
    [0.0, 0.1]
    """
    exposure = (units * close / equity.where(equity != 0)).fillna(0.0).clip(-1.0, 1.0)
    lots = np.round(exposure.to_numpy(dtype=float) * volume / step) * step
    return pd.Series(np.round(lots, 8), index=units.index, name="expected lots")
