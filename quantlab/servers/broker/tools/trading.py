"""Trading tools: ``order_send``, ``order_check``, positions, orders and history, with the real server's
``[]``/``null`` answers (an unknown ticket is ``null``, nothing found is ``[]``, never an error).

``order_send`` takes only ``{"request": {...}}`` (:class:`~quantlab.servers.broker.models.OrderRequest`):
flat fields are rejected, and deals and pending orders need ``price``. A rejected request is a
tool error starting with the MT5 retcode name and number and holding ``'retcode': N``, e.g.
``TRADE_RETCODE_INVALID_VOLUME (10014): volume 0.015 is not a multiple of volume_step 0.01 ...``.
"""
from __future__ import annotations

from datetime import datetime
from typing import Any

from mcp.server.mcpserver import Context

from .. import constants as C
from ..models import Deal, HistoryOrder, OrderRequest, OrderResult, Position, only
from .common import epoch, inline, session, threaded

#: MT5 TradeRequest fields, in the order the terminal reports them
TRADE_REQUEST_FIELDS = ("action", "magic", "order", "symbol", "volume", "price", "stoplimit", "sl", "tp", "deviation",
                        "type", "type_filling", "type_time", "expiration", "comment", "position", "position_by")

__all__ = ["trade_request", "order_send", "order_check", "positions_get", "positions_get_by_ticket", "orders_get",
           "orders_get_by_ticket", "history_orders_get", "history_deals_get"]


def trade_request(req: dict[str, Any]) -> dict[str, Any]:
    """The request as the terminal echoes it in a result: every TradeRequest field, 0 / "" when not given.

    >>> trade_request({"action": 1, "symbol": "EURUSD", "volume": 0.1})["position_by"]
    0
    """
    return {f: req.get(f, "" if f in ("symbol", "comment") else 0) for f in TRADE_REQUEST_FIELDS}


def _with_filling(request: OrderRequest) -> dict[str, Any]:
    """The request as a dict without unset fields, with the filling mode mt5mcp picks when it is omitted
    (IOC for deals on the broker's symbols, RETURN for pending orders)."""
    req = request.model_dump(exclude_none=True)
    if "type_filling" not in req and "symbol" in req and req["action"] in (C.TRADE_ACTION_DEAL, C.TRADE_ACTION_PENDING):
        req["type_filling"] = C.ORDER_FILLING_RETURN if req["action"] == C.TRADE_ACTION_PENDING else C.ORDER_FILLING_IOC
    return req


@inline
def order_send(request: OrderRequest, ctx: Context) -> OrderResult:
    """Send an order to the trade server. Pass the fields inside request={...}, integer constants only:
    action 1 DEAL (type 0 BUY / 1 SELL, symbol, volume in lots, price = the current ask/bid, optional
    deviation in points, sl, tp, position = ticket to close on a hedging account, magic, comment),
    5 PENDING (type 2 BUY_LIMIT, 3 SELL_LIMIT, 4 BUY_STOP, 5 SELL_STOP, price, optional sl/tp/type_time/expiration),
    6 SLTP (position, sl and/or tp), 7 MODIFY (order, price), 8 REMOVE (order), 10 CLOSE_BY (position, position_by).
    Returns retcode (10009 done, 10008 placed), deal, order, volume, price, bid, ask, comment, request_id,
    retcode_external, request. Any other retcode is a tool error holding 'retcode': N."""
    result = session(ctx).require().order_send(_with_filling(request))
    return {**result, "request": trade_request(result["request"])}  # type: ignore[return-value]


@inline
def order_check(request: OrderRequest, ctx: Context) -> dict[str, Any]:
    """Check an order without executing it (same request as order_send): retcode 0 if it would be accepted,
    else the rejecting retcode and comment, with balance, equity, profit, margin, margin_free, margin_level after it."""
    result = session(ctx).require().order_check(_with_filling(request))
    return {**result, "request": trade_request(result.get("request") or {})}


@inline
def positions_get(ctx: Context, symbol: str | None = None, group: str | None = None) -> list[Position]:
    """Open positions, optionally of one symbol or a group pattern ("*", "USD*"); [] if none."""
    rows = session(ctx).require().positions(symbol, group)
    return [only(Position, r) for r in rows]  # type: ignore[misc]


@inline
def positions_get_by_ticket(ticket: int, ctx: Context) -> Position | None:
    """The open position with this ticket, or null if there is none."""
    rows = session(ctx).require().positions(ticket=ticket)
    return only(Position, rows[0]) if rows else None  # type: ignore[return-value]


@inline
def orders_get(ctx: Context, symbol: str | None = None, group: str | None = None) -> list[dict[str, Any]]:
    """Active (pending) orders, optionally of one symbol or a group pattern; [] if none."""
    return session(ctx).require().orders(symbol, group)


@inline
def orders_get_by_ticket(ticket: int, ctx: Context) -> dict[str, Any] | None:
    """The active order with this ticket, or null if there is none."""
    rows = session(ctx).require().orders(ticket=ticket)
    return rows[0] if rows else None


@threaded
def history_orders_get(ctx: Context, symbol: str | None = None, group: str | None = None, ticket: int | None = None,
                       position: int | None = None, from_date: datetime | None = None,
                       to_date: datetime | None = None) -> list[HistoryOrder]:
    """Finished orders (filled, cancelled, expired) with optional filters; [] if none."""
    rows = session(ctx).require().history_orders(symbol, group, ticket, position, epoch(from_date), epoch(to_date))
    return [only(HistoryOrder, r) for r in rows]  # type: ignore[misc]


@threaded
def history_deals_get(ctx: Context, symbol: str | None = None, group: str | None = None, ticket: int | None = None,
                      position: int | None = None, from_date: datetime | None = None,
                      to_date: datetime | None = None) -> list[Deal]:
    """Deals with optional filters: ticket, order, time, type, entry (0 in, 1 out, 2 inout), magic, position_id,
    reason, volume, price, commission, swap, profit, fee, symbol, comment; [] if none."""
    rows = session(ctx).require().history_deals(symbol, group, ticket, position, epoch(from_date), epoch(to_date))
    return [only(Deal, r) for r in rows]  # type: ignore[misc]
