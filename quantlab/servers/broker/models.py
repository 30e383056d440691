"""The broker's request and result types: exactly the fields of the public MT5 MCP server.

The field lists are those of ``mcp-metatrader5-server`` 0.1.8's pydantic models
(``/work/shared/mt5-reference/mcp_mt5_models.json``); the conformance test compares the
schemas the SDK derives from these types with that server's live ``tools/list``.
Results are plain dicts shaped by these TypedDicts; :func:`only` keeps a row's model
fields and drops the store's bookkeeping columns.

Example
-------
>>> OrderRequest(action=1, symbol="EURUSD", volume=0.1, type=0, price=1.1).model_dump(exclude_none=True)
{'action': 1, 'symbol': 'EURUSD', 'volume': 0.1, 'type': 0, 'price': 1.1}
>>> only(Position, {"ticket": 1, "margin": 3.0})
{'ticket': 1}
"""
from __future__ import annotations

from typing import Any

from pydantic import BaseModel, field_validator, model_validator
from typing_extensions import NotRequired, Required, TypedDict

from . import constants as C

__all__ = ["OrderRequest", "OrderResult", "AccountInfo", "SymbolInfo", "Position", "HistoryOrder", "Deal",
           "only", "INT64_MIN", "INT64_MAX"]

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1


class OrderRequest(BaseModel):
    """An MT5 trade request, as ``order_send``/``order_check`` take it inside ``{"request": {...}}``.

    Integer constants only: ``action`` 1 DEAL, 5 PENDING, 6 SLTP, 7 MODIFY, 8 REMOVE, 10 CLOSE_BY;
    ``type`` 0 BUY, 1 SELL, 2 BUY_LIMIT, 3 SELL_LIMIT, 4 BUY_STOP, 5 SELL_STOP; volume in lots.
    DEAL and PENDING need symbol, volume, type and price (the market price for a deal: read it
    with get_symbol_info_tick; add deviation in points to bound the slippage).

    >>> try:
    ...     OrderRequest(action=1, symbol="EURUSD", volume=0.1, type=0)
    ... except ValueError as exc:
    ...     print(exc.errors()[0]["msg"])
    Value error, Create/deal orders require: price
    """

    action: int
    order: int | None = None
    position: int | None = None
    position_by: int | None = None
    symbol: str | None = None
    volume: float | None = None
    type: int | None = None
    price: float | None = None
    sl: float | None = None
    tp: float | None = None
    deviation: int | None = None
    magic: int | None = None
    comment: str | None = None
    type_time: int | None = None
    type_filling: int | None = None
    expiration: int | None = None
    stoplimit: float | None = None

    @field_validator("action", "order", "position", "position_by", "type", "deviation", "magic", "type_time",
                     "type_filling", "expiration")
    @classmethod
    def _int64(cls, v: int | None) -> int | None:
        if v is not None and not INT64_MIN <= v <= INT64_MAX:
            raise ValueError(f"{v} does not fit in 64 bits (MT5 tickets, magics and constants are 64-bit integers)")
        return v

    @field_validator("volume")
    @classmethod
    def _volume_positive(cls, v: float | None) -> float | None:
        if v is not None and v <= 0:
            raise ValueError("volume must be > 0 (in lots)")
        return v

    @field_validator("comment")
    @classmethod
    def _comment(cls, v: str | None) -> str | None:
        if v is not None and len(v) > 31:
            raise ValueError("comment must be <= 31 characters")
        if v is not None and "\x00" in v:
            raise ValueError("comment must not contain NUL characters")
        return v

    @field_validator("action")
    @classmethod
    def _action(cls, v: int) -> int:
        allowed = sorted(C.TRADE_ACTIONS.values())
        if v not in allowed:
            raise ValueError(f"action must be one of {allowed}")
        return v

    @model_validator(mode="after")
    def _by_action(self) -> "OrderRequest":
        need: tuple[str, ...] = ()
        what = ""
        if self.action in (C.TRADE_ACTION_DEAL, C.TRADE_ACTION_PENDING):
            need, what = ("symbol", "volume", "type", "price"), "Create/deal orders require"
        elif self.action == C.TRADE_ACTION_MODIFY:
            need, what = ("order", "price"), "Pending order modify requires"
        elif self.action == C.TRADE_ACTION_REMOVE:
            need, what = ("order",), "Pending order remove requires"
        elif self.action == C.TRADE_ACTION_SLTP:
            need, what = ("position",), "SL/TP modification requires"
        elif self.action == C.TRADE_ACTION_CLOSE_BY:
            need, what = ("position", "position_by"), "Close-by operation requires"
        missing = [n for n in need if getattr(self, n) is None]
        if missing:
            raise ValueError(f"{what}: " + ", ".join(missing))
        if self.action == C.TRADE_ACTION_SLTP and self.sl is None and self.tp is None:
            raise ValueError("SL/TP modification requires at least one of: sl, tp")
        if self.action == C.TRADE_ACTION_PENDING:
            if self.type in (C.ORDER_TYPE_BUY_STOP_LIMIT, C.ORDER_TYPE_SELL_STOP_LIMIT) and self.stoplimit is None:
                raise ValueError("Stop-limit pending orders require: stoplimit")
            if self.type_time == C.ORDER_TIME_SPECIFIED and self.expiration is None:
                raise ValueError("Pending orders with ORDER_TIME_SPECIFIED require: expiration")
        return self


class OrderResult(TypedDict):
    """Order execution result (MT5 ``OrderSendResult``)."""

    retcode: int
    deal: int
    order: int
    volume: float
    price: float
    bid: float
    ask: float
    comment: str
    request_id: int
    retcode_external: int
    request: dict[str, Any]


class AccountInfo(TypedDict):
    """Trading account information (MT5 ``account_info()``)."""

    login: int
    trade_mode: int
    leverage: int
    limit_orders: int
    margin_so_mode: int
    trade_allowed: bool
    trade_expert: bool
    margin_mode: int
    currency_digits: int
    fifo_close: bool
    balance: float
    credit: float
    profit: float
    equity: float
    margin: float
    margin_free: float
    margin_level: float
    margin_so_call: float
    margin_so_so: float
    margin_initial: float
    margin_maintenance: float
    assets: float
    liabilities: float
    commission_blocked: float
    name: str
    server: str
    currency: str
    company: str


class SymbolInfo(TypedDict, total=False):
    """Information about a trading symbol (MT5 ``symbol_info()``)."""

    name: Required[str]
    description: NotRequired[str | None]
    path: NotRequired[str | None]
    session_deals: NotRequired[int | None]
    session_buy_orders: NotRequired[int | None]
    session_sell_orders: NotRequired[int | None]
    volume: NotRequired[float | None]
    volumehigh: NotRequired[float | None]
    volumelow: NotRequired[float | None]
    time: NotRequired[int | None]
    digits: NotRequired[int | None]
    spread: NotRequired[int | None]
    spread_float: NotRequired[bool | None]
    trade_calc_mode: NotRequired[int | None]
    trade_mode: NotRequired[int | None]
    start_time: NotRequired[int | None]
    expiration_time: NotRequired[int | None]
    trade_stops_level: NotRequired[int | None]
    trade_freeze_level: NotRequired[int | None]
    trade_exemode: NotRequired[int | None]
    swap_mode: NotRequired[int | None]
    swap_rollover3days: NotRequired[int | None]
    margin_hedged_use_leg: NotRequired[bool | None]
    expiration_mode: NotRequired[int | None]
    filling_mode: NotRequired[int | None]
    order_mode: NotRequired[int | None]
    order_gtc_mode: NotRequired[int | None]
    option_mode: NotRequired[int | None]
    option_right: NotRequired[int | None]
    bid: NotRequired[float | None]
    bidhigh: NotRequired[float | None]
    bidlow: NotRequired[float | None]
    ask: NotRequired[float | None]
    askhigh: NotRequired[float | None]
    asklow: NotRequired[float | None]
    last: NotRequired[float | None]
    lasthigh: NotRequired[float | None]
    lastlow: NotRequired[float | None]
    point: NotRequired[float | None]
    tick_value: NotRequired[float | None]
    tick_value_profit: NotRequired[float | None]
    tick_value_loss: NotRequired[float | None]
    tick_size: NotRequired[float | None]
    contract_size: NotRequired[float | None]
    volume_min: NotRequired[float | None]
    volume_max: NotRequired[float | None]
    volume_step: NotRequired[float | None]
    swap_long: NotRequired[float | None]
    swap_short: NotRequired[float | None]
    margin_initial: NotRequired[float | None]
    margin_maintenance: NotRequired[float | None]


class Position(TypedDict):
    """Trading position information (MT5 ``TradePosition``)."""

    ticket: int
    time: int
    time_msc: int
    time_update: int
    time_update_msc: int
    type: int
    magic: int
    identifier: int
    reason: int
    volume: float
    price_open: float
    sl: float
    tp: float
    price_current: float
    swap: float
    profit: float
    symbol: str
    comment: str
    external_id: str


class HistoryOrder(TypedDict):
    """Historical order information (MT5 ``TradeOrder`` from history)."""

    ticket: int
    time_setup: int
    time_setup_msc: int
    time_expiration: int
    type: int
    type_time: int
    type_filling: int
    state: int
    magic: int
    position_id: int
    position_by_id: int
    reason: int
    volume_initial: float
    volume_current: float
    price_open: float
    sl: float
    tp: float
    price_current: float
    price_stoplimit: float
    symbol: str
    comment: str
    external_id: str


class Deal(TypedDict):
    """Deal information (MT5 ``TradeDeal``)."""

    ticket: int
    order: int
    time: int
    time_msc: int
    type: int
    entry: int
    magic: int
    position_id: int
    reason: int
    volume: float
    price: float
    commission: float
    swap: float
    profit: float
    fee: float
    symbol: str
    comment: str
    external_id: str


def only(model: type, row: dict[str, Any]) -> dict[str, Any]:
    """``row`` restricted to ``model``'s fields, in the model's order (what the real server returns)."""
    return {k: row[k] for k in model.__annotations__ if k in row}
