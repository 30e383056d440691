"""Paper-only extras (not on a real MT5 server): ``advance`` moves the stepped market clock, ``get_clock`` reads it."""
from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from mcp.server.mcpserver import Context

from .. import constants as C
from ..book import TradeError
from .common import inline, session, sized

__all__ = ["advance", "get_clock"]


@sized(lambda kw: not isinstance(kw.get("bars", 1), int) or kw.get("bars", 1) > 1000)
def advance(ctx: Context, bars: int = 1) -> dict[str, Any]:
    """Move the market clock forward by `bars` base bars (1-minute bars for the synthetic feed): pending orders
    and SL/TP trigger. Returns the new cursor and feed time. At most 1,000,000."""
    if isinstance(bars, bool) or not isinstance(bars, int) or not 0 <= bars <= 1_000_000:
        raise TradeError(C.RES_E_INVALID_PARAMS, f"bars must be an integer in 0..1000000, got {bars!r}.")
    return session(ctx).require().advance(bars)


@inline
def get_clock(ctx: Context) -> dict[str, Any]:
    """The market clock: mode (stepped/realtime/accelerated), bars per second, cursor (visible bars),
    time (epoch seconds of the latest bar), time_iso."""
    s = session(ctx)
    feed = s.broker.feed
    info = s.clock.info() if s.clock is not None else {"mode": "stepped", "bars_per_second": 0.0, "last_error": None}
    return {**info, "cursor": feed.cursor, "time": feed.now,
            "time_iso": datetime.fromtimestamp(feed.now, timezone.utc).isoformat()}
