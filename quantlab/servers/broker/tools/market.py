"""Market-data tools: symbols, symbol info and ticks, ``symbol_select``, ``copy_rates_*`` and ``copy_ticks_*``.

Rates and ticks come back as the real server sends them: a list of records whose ``time``
is ISO-8601 with ``Z`` (ticks also ``time_msc`` with milliseconds), oldest first, and bar 0
(``start_pos=0``) is the bar still forming (:meth:`~quantlab.servers.broker.feed.Feed.forming`):
drop it to act on completed bars only. Timeframes are integer minutes (1, 5, 15, 60, 240, 1440 ...).
"""
from __future__ import annotations

import fnmatch
import json
from datetime import datetime
from typing import Annotated, Any

import numpy as np
from mcp.server.mcpserver import Context
from mcp.types import CallToolResult, TextContent

from .. import constants as C
from ..book import MAX_COUNT, Broker, TradeError
from ..models import SymbolInfo, only
from .common import epoch, inline, session, sized, threaded

__all__ = ["get_symbols", "get_symbols_by_group", "get_symbol_info", "get_symbol_info_tick", "symbol_select",
           "copy_rates_from_pos", "copy_rates_from_date", "copy_rates_range", "copy_ticks_from_pos",
           "copy_ticks_from_date", "copy_ticks_range", "rates"]

Records = Annotated[CallToolResult, list[dict[str, Any]]]
_INT_FIELDS = ("tick_volume", "spread", "real_volume")


def _records(cols: dict[str, list]) -> CallToolResult:
    """A list of records as one compact JSON text block plus ``{"result": [...]}`` structured content.

    Built by hand: the SDK's generic conversion would emit one indented text block per bar,
    which is slow for tens of thousands of bars.
    """
    keys = list(cols)
    data = [dict(zip(keys, row)) for row in zip(*cols.values())]
    return CallToolResult(content=[TextContent(type="text", text=json.dumps(data, separators=(",", ":")))],
                          structured_content={"result": data})


def _iso(t: np.ndarray) -> list[str]:
    return [s + "Z" for s in np.datetime_as_string(np.asarray(t, dtype=np.int64).astype("datetime64[s]"), unit="s")]


def _iso_ms(t_ms: np.ndarray) -> list[str]:
    return [s + "Z" for s in np.datetime_as_string(np.asarray(t_ms, dtype=np.int64).astype("datetime64[ms]"), unit="ms")]


def _count(name: str, value: int, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise TradeError(C.RES_E_INVALID_PARAMS, f"{name} must be an integer >= {low}, got {value!r}.")
    if value > MAX_COUNT:
        raise TradeError(C.RES_E_INVALID_PARAMS, f"{name} {value} is above the cap of {MAX_COUNT} per call; page through history.")
    return value


def rates(broker: Broker, symbol: str, timeframe: int, *, count: int | None = None, start_pos: int = 0,
          date_from: int | None = None, date_to: int | None = None) -> dict[str, list]:
    """Columns of MT5 rate fields (time as ISO-8601 ``Z``), oldest first, bar 0 forming.

    ``count``/``start_pos``: the ``count`` bars ending ``start_pos`` bars before bar 0;
    ``date_from`` + ``count``: the ``count`` bars opened at or before ``date_from``;
    ``date_from`` + ``date_to``: the bars opened in that range. Never a bar from the future.

    >>> b = Broker.open(":memory:", symbols=["EURUSD"])
    >>> r = rates(b, "EURUSD", 1, count=3); len(r["time"]), r["time"][-1].endswith("Z")
    (3, True)
    """
    spec = broker.spec(symbol)
    tf = C.timeframe_from_minutes(timeframe)
    secs = C.TIMEFRAME_MINUTES[tf] * 60
    feed = broker.feed
    with broker.store.lock:
        vis = feed.visible(spec.name)
        forming = feed.forming(spec.name, tf)
        t0 = int(forming["time"][0]) if len(forming["time"]) else None
        if date_to is None and date_from is None:
            need = _count("count", count, 1) + _count("start_pos", start_pos, 0)
            if need > MAX_COUNT:
                raise TradeError(C.RES_E_INVALID_PARAMS, f"count + start_pos = {need} is above the cap of {MAX_COUNT} bars per call.")
            done = feed.frame(spec.name, tf, need - 1) if need > 1 else {k: v[:0] for k, v in forming.items()}
            fr = {k: np.concatenate([done[k], forming[k]]) for k in forming}
            n = len(fr["time"])
            fr = {k: v[max(0, n - need): n - start_pos] for k, v in fr.items()}
        else:
            assert date_from is not None
            limit = (date_to if date_to is not None else date_from) // secs * secs + secs
            s = feed.base(spec.name, vis)
            end = int(np.searchsorted(s.time[:vis], limit, side="left"))
            if date_to is not None:
                if date_from > date_to:
                    raise TradeError(C.RES_E_INVALID_PARAMS, f"date_from must be <= date_to (got {date_from} > {date_to}).")
                est = (min(date_to, feed.now) - date_from) // secs + 2
                if est > MAX_COUNT:
                    raise TradeError(C.RES_E_INVALID_PARAMS, f"the range holds about {est} {tf} bars, more than the cap "
                                     f"of {MAX_COUNT}; ask for a shorter range.")
                fr = feed.frame(spec.name, tf, max(int(est), 1), end)
            else:
                fr = feed.frame(spec.name, tf, _count("count", count, 1), end)
            if t0 is not None and date_from <= t0 <= (date_to if date_to is not None else date_from):
                fr = {k: np.concatenate([fr[k], forming[k]]) for k in forming}
            if date_to is not None:
                keep = fr["time"] >= date_from
                fr = {k: v[keep] for k, v in fr.items()}
            elif count is not None:
                fr = {k: v[-count:] for k, v in fr.items()}
    out: dict[str, list] = {"time": _iso(fr["time"])}
    for k, v in fr.items():
        if k != "time":
            out[k] = v.astype(np.int64).tolist() if k in _INT_FIELDS else v.tolist()
    return out


def _ticks(broker: Broker, symbol: str, lo: int, hi: int | None, count: int | None) -> dict[str, list]:
    spec = broker.spec(symbol)
    if count is not None:
        _count("count", count, 1)
    with broker.store.lock:
        tk = broker.feed.ticks(spec.name, lo, hi, count if count is not None else MAX_COUNT + 1, broker.config.spread)
    if len(tk["time"]) > MAX_COUNT:
        raise TradeError(C.RES_E_INVALID_PARAMS, f"the range holds more than {MAX_COUNT} ticks; ask for a shorter range.")
    t = tk["time"].astype(np.int64)
    n = len(t)
    return {"time": _iso(t), "bid": tk["bid"].tolist(), "ask": tk["ask"].tolist(), "last": tk["last"].tolist(),
            "volume": tk["volume"].astype(np.int64).tolist(), "time_msc": _iso_ms(t * 1000), "flags": [6] * n,
            "volume_real": tk["volume"].astype(float).tolist()}


@inline
def get_symbols(ctx: Context) -> list[str]:
    """All available symbols (financial instruments)."""
    return list(session(ctx).require().feed.specs)


@inline
def get_symbols_by_group(group: str, ctx: Context) -> list[str]:
    """Symbols that match a group pattern, e.g. "*", "EUR*", "*USD" (comma-separated patterns, "!X" excludes); [] if none."""
    names = list(session(ctx).require().feed.specs)
    pats = [p.strip().upper() for p in str(group).split(",") if p.strip()] or ["*"]
    inc = [p for p in pats if not p.startswith("!")] or ["*"]
    exc = [p[1:] for p in pats if p.startswith("!")]
    return [n for n in names if any(fnmatch.fnmatchcase(n, p) for p in inc) and not any(fnmatch.fnmatchcase(n, p) for p in exc)]


_SYMBOL_DEFAULTS = {"session_deals": 0, "session_buy_orders": 0, "session_sell_orders": 0, "volume": 0.0,
                    "volumehigh": 0.0, "volumelow": 0.0, "start_time": 0, "expiration_time": 0, "swap_mode": 0,
                    "swap_rollover3days": 3, "margin_hedged_use_leg": False, "order_gtc_mode": 0, "option_mode": 0,
                    "option_right": 0}


@inline
def get_symbol_info(symbol: str, ctx: Context) -> SymbolInfo:
    """Information about a symbol: digits, point, spread, contract_size, volume_min/volume_max/volume_step, bid, ask ..."""
    info = session(ctx).require().symbol_info(symbol)
    day = {"bidhigh": info["bid"], "bidlow": info["bid"], "askhigh": info["ask"], "asklow": info["ask"],
           "lasthigh": info["last"], "lastlow": info["last"]}
    return only(SymbolInfo, {**_SYMBOL_DEFAULTS, **day, **info})  # type: ignore[return-value]


@inline
def get_symbol_info_tick(symbol: str, ctx: Context) -> dict[str, Any]:
    """The latest tick of a symbol: time (epoch seconds), bid, ask, last, volume, time_msc, flags, volume_real."""
    broker = session(ctx).require()
    with broker.store.lock:
        return broker.quote(symbol)


@inline
def symbol_select(symbol: str, ctx: Context, visible: bool = True) -> bool:
    """Select a symbol in Market Watch (or remove it): True if the broker quotes it, else False."""
    broker = session(ctx).require()
    try:
        broker.spec(symbol)
    except TradeError:
        return False
    return True


@sized(lambda kw: int(kw.get("count") or 0) + int(kw.get("start_pos") or 0) > 5000)
def copy_rates_from_pos(symbol: str, timeframe: int, start_pos: int, count: int, ctx: Context) -> Records:
    """Bars of a symbol ending start_pos bars before the latest, oldest first.

    timeframe: minutes as an integer (1, 5, 15, 30, 60, 240, 1440, 10080, 43200).
    start_pos 0 = up to the most recent bar, which is still forming (drop it to act on completed bars).
    Fields: time (ISO-8601, Z), open, high, low, close, tick_volume, spread, real_volume."""
    return _records(rates(session(ctx).require(), symbol, timeframe, count=count, start_pos=start_pos))


@threaded
def copy_rates_from_date(symbol: str, timeframe: int, date_from: datetime, count: int, ctx: Context) -> Records:
    """The `count` bars opened at or before date_from, oldest first (timeframe in minutes)."""
    return _records(rates(session(ctx).require(), symbol, timeframe, count=count, date_from=epoch(date_from)))


@threaded
def copy_rates_range(symbol: str, timeframe: int, date_from: datetime, date_to: datetime, ctx: Context) -> Records:
    """The bars opened between date_from and date_to, oldest first (timeframe in minutes)."""
    return _records(rates(session(ctx).require(), symbol, timeframe, date_from=epoch(date_from), date_to=epoch(date_to)))


@threaded
def copy_ticks_from_pos(symbol: str, start_time: datetime, count: int, ctx: Context, flags: int = -1) -> Records:
    """`count` ticks from start_time on: time, bid, ask, last, volume, time_msc, flags, volume_real."""
    return _records(_ticks(session(ctx).require(), symbol, epoch(start_time), None, count))


@threaded
def copy_ticks_from_date(symbol: str, date_from: datetime, count: int, ctx: Context, flags: int = -1) -> Records:
    """`count` ticks from date_from on."""
    return _records(_ticks(session(ctx).require(), symbol, epoch(date_from), None, count))


@threaded
def copy_ticks_range(symbol: str, date_from: datetime, date_to: datetime, ctx: Context, flags: int = -1) -> Records:
    """The ticks between date_from and date_to."""
    return _records(_ticks(session(ctx).require(), symbol, epoch(date_from), epoch(date_to), None))
