"""The paper broker as an MCP server that speaks MetaTrader 5's dialect.

Tools carry the names and arguments of the public ``mcp_mt5`` server
(``get_account_info``, ``copy_rates_from_pos``, ``order_send({"request": {...}})``,
``positions_get`` ...) with the official MetaTrader5 constants and result
fields, plus the clock (``advance``) and the deployment tools
(``deploy_strategy``, ``list_deployments``, ``get_deployment``,
``stop_deployment``, ``deployment_journal``, ``set_alert``, ``list_alerts``).

Every rejected request is a tool error whose text starts with the MT5 retcode
name and number, e.g. ``TRADE_RETCODE_INVALID_VOLUME (10014): volume 0.015 is
not a multiple of volume_step 0.01 for EURUSD; ...``; nothing is written then.

Run it::

    python -m quantlab.servers.broker --db ~/.quantlab/broker.db            # stdio
    python -m quantlab.servers.broker --db b.db --http 8765 --token-file t  # HTTP on 127.0.0.1

Example
-------
>>> from quantlab.servers.broker.book import Broker
>>> server = build_server(Broker.open(":memory:", symbols=["EURUSD"]))
>>> server.name
'quantlab-broker'
"""
from __future__ import annotations

import functools
import hmac
import json
import sys
import threading
import time
from datetime import datetime, timezone
from typing import Any, Callable, Literal

import numpy as np

from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.types import CallToolResult, TextContent

from quantlab import __version__

from . import constants as C
from .book import MAX_COUNT, Broker, TradeError
from .feed import FeedError

__all__ = ["build_server", "Clock", "parse_clock", "TokenAuth"]

INSTRUCTIONS = """Paper-trading broker with the MetaTrader 5 tool dialect (mcp_mt5 names and arguments,
official MT5 constants: ORDER_TYPE_BUY=0, SELL=1, BUY_LIMIT=2, SELL_LIMIT=3, BUY_STOP=4, SELL_STOP=5;
TRADE_ACTION_DEAL=1, PENDING=5, SLTP=6, MODIFY=7, REMOVE=8, CLOSE_BY=10; retcode 10009 = done).
Prices come from a feed that moves on a clock; with the stepped clock call advance(bars).
Deploy a strategy (Python source defining signals(data, **params) -> target positions in [-1, 1])
with deploy_strategy; it trades on every new bar with magic = its deployment id."""


def _epoch(d: datetime | int | float | str | None) -> int | None:
    if d is None:
        return None
    if isinstance(d, (int, float)) and not isinstance(d, bool):
        return int(d)
    if isinstance(d, str):
        d = datetime.fromisoformat(d.replace("Z", "+00:00"))
    if d.tzinfo is None:
        d = d.replace(tzinfo=timezone.utc)
    return int(d.timestamp())


def _guard(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Turn every anticipated failure into a tool error with an MT5 retcode; never let one escape raw."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except ToolError:
            raise
        except TradeError as exc:
            raise ToolError(str(exc)) from None
        except (FeedError, ValueError, TypeError, KeyError) as exc:
            raise ToolError(f"{C.retcode_name(C.RES_E_INVALID_PARAMS)} ({C.RES_E_INVALID_PARAMS}): {exc}") from None
        except Exception as exc:  # noqa: BLE001 - never crash the server
            raise ToolError(f"{C.retcode_name(C.TRADE_RETCODE_ERROR)} ({C.TRADE_RETCODE_ERROR}): internal error "
                            f"{type(exc).__name__}: {exc}; the request was not applied.") from None

    return wrapper


def _inline(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Run a quick tool on the event loop itself (no worker-thread hop per call); for sub-millisecond tools only."""
    guarded = _guard(fn)

    @functools.wraps(fn)
    async def wrapper(*args: Any, **kwargs: Any) -> Any:
        return guarded(*args, **kwargs)

    return wrapper


class Clock:
    """Moves the feed: ``stepped`` (only the ``advance`` tool), ``realtime`` (one bar per bar
    period) or ``accelerated:N`` (N bars per second), in a background thread.

    >>> parse_clock("accelerated:50")
    ('accelerated', 50.0)
    """

    def __init__(self, broker: Broker, spec: str = "stepped"):
        self.broker = broker
        self.mode, self.rate = parse_clock(spec)
        if self.mode == "realtime":
            self.rate = 1.0 / broker.feed.step
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.last_error: str | None = None

    def start(self) -> "Clock":
        if self.mode != "stepped" and self._thread is None:
            self._thread = threading.Thread(target=self._run, name="quantlab-broker-clock", daemon=True)
            self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        owed = 0.0
        last = time.monotonic()
        tick = min(0.1, 1.0 / max(self.rate, 1e-9))
        while not self._stop.wait(tick):
            now = time.monotonic()
            owed += (now - last) * self.rate
            last = now
            n = int(owed)
            if n <= 0:
                continue
            owed -= n
            try:
                self.broker.advance(n)
                self.last_error = None
            except Exception as exc:  # noqa: BLE001 - the clock keeps ticking; the error is reported by get_clock
                self.last_error = f"{type(exc).__name__}: {exc}"

    def info(self) -> dict[str, Any]:
        """Mode, bars per second and the last error of the background clock."""
        return {"mode": self.mode, "bars_per_second": self.rate, "last_error": self.last_error}

    def __repr__(self) -> str:
        running = self._thread is not None and self._thread.is_alive()
        return f"Clock(mode={self.mode!r}, bars_per_second={self.rate:g}, running={running})"

    def _repr_html_(self) -> str:
        import html

        return f"<code>{html.escape(repr(self))}</code>"


def parse_clock(spec: str) -> tuple[str, float]:
    """``'stepped'``, ``'realtime'`` or ``'accelerated:N'`` → ``(mode, bars_per_second)``."""
    s = (spec or "stepped").strip().lower()
    if s in ("stepped", "realtime"):
        return s, 0.0
    if s.startswith("accelerated"):
        _, _, n = s.partition(":")
        try:
            rate = float(n or 10)
        except ValueError:
            raise ValueError(f"clock {spec!r}: N in accelerated:N must be a number of bars per second.") from None
        if rate <= 0:
            raise ValueError(f"clock {spec!r}: N must be > 0.")
        return "accelerated", rate
    raise ValueError(f"unknown clock {spec!r}; use stepped, realtime or accelerated:N.")


def _rates(broker: Broker, symbol: str, timeframe: int | str, *, count: int | None = None, start_pos: int = 0,
           date_from: int | None = None, date_to: int | None = None, fmt: str = "records") -> Any:
    spec = broker.spec(symbol)
    tf = C.parse_timeframe(timeframe)
    secs = C.TIMEFRAME_MINUTES[tf] * 60
    feed = broker.feed
    if fmt not in ("records", "columns"):
        raise TradeError(C.RES_E_INVALID_PARAMS, f"format must be 'records' or 'columns', got {fmt!r}.")
    with broker.store.lock:
        vis = feed.visible(spec.name)
        end = vis
        if date_to is not None or (date_from is not None and count is not None):
            limit = (date_to if date_to is not None else date_from) // secs * secs + secs
            s = feed.base(spec.name, vis)
            end = int(np.searchsorted(s.time[:vis], limit, side="left"))
        if date_to is not None:
            if date_from is None or date_from > date_to:
                raise TradeError(C.RES_E_INVALID_PARAMS, f"date_from must be <= date_to (got {date_from} > {date_to}).")
            est = (min(date_to, feed.now) - date_from) // secs + 2
            if est > MAX_COUNT:
                raise TradeError(C.RES_E_INVALID_PARAMS,
                                 f"the range holds about {est} {tf} bars, more than the cap of {MAX_COUNT}; ask for a shorter range.")
            fr = feed.frame(spec.name, tf, max(int(est), 1), end)
            keep = fr["time"] >= date_from
            fr = {k: v[keep] for k, v in fr.items()}
        else:
            if isinstance(count, bool) or not isinstance(count, int) or count <= 0:
                raise TradeError(C.RES_E_INVALID_PARAMS, f"count must be a positive integer, got {count!r}.")
            if isinstance(start_pos, bool) or not isinstance(start_pos, int) or start_pos < 0:
                raise TradeError(C.RES_E_INVALID_PARAMS, f"start_pos must be an integer >= 0, got {start_pos!r}.")
            if count + start_pos > MAX_COUNT:
                raise TradeError(C.RES_E_INVALID_PARAMS,
                                 f"count {count} (+ start_pos {start_pos}) is above the cap of {MAX_COUNT} bars per call; page through history with start_pos.")
            fr = feed.frame(spec.name, tf, count + start_pos, end)
            if start_pos:
                fr = {k: v[:-start_pos] if start_pos < len(v) else v[:0] for k, v in fr.items()}
    cols = {k: (v.astype(np.int64).tolist() if k in ("time", "tick_volume", "spread", "real_volume") else v.tolist())
            for k, v in fr.items()}
    if fmt == "columns":
        return {"symbol": spec.name, "timeframe": tf, "count": len(cols["time"]), "columns": cols}
    keys = list(cols)
    return [dict(zip(keys, row)) for row in zip(*cols.values())]


def _bars_result(data: Any) -> CallToolResult:
    """Bars as one compact JSON text block plus structured content (``{"result": [...]}`` for records).

    Built by hand because the SDK's generic conversion would validate every bar and
    emit one indented text block per bar, which is slow for tens of thousands of bars.
    """
    text = json.dumps(data, separators=(",", ":"))
    structured = data if isinstance(data, dict) else {"result": data}
    return CallToolResult(content=[TextContent(type="text", text=text)], structured_content=structured)


def _request(args: dict[str, Any]) -> dict[str, Any]:
    """``{"request": {...}}`` or flat fields (as mcp_mt5 accepts), not both."""
    from .book import REQUEST_FIELDS

    req = args.get("request")
    flat = {k: v for k, v in args.items() if k in REQUEST_FIELDS and v is not None}
    if req is not None and flat:
        raise TradeError(C.TRADE_RETCODE_INVALID, f"pass either request={{...}} or flat fields, not both (got request and {sorted(flat)}).")
    if req is None and not flat:
        raise TradeError(C.TRADE_RETCODE_INVALID, 'no trade request: pass {"request": {"action": 1, "symbol": "EURUSD", "volume": 0.1, "type": 0}}.')
    return req if req is not None else flat


def build_server(broker: Broker, clock: Clock | None = None) -> MCPServer:
    """The :class:`MCPServer` exposing ``broker`` (stdio or HTTP is the caller's choice)."""
    clock = clock or Clock(broker, "stepped")
    mcp = MCPServer("quantlab-broker", title="quantlab paper broker (MT5 dialect)", instructions=INSTRUCTIONS,
                    version=__version__, log_level="WARNING")
    tool = mcp.tool

    # -- terminal / account -----------------------------------------------------------
    @tool()
    @_inline
    def get_account_info() -> dict[str, Any]:
        """Trading account information (MT5 account_info fields): balance, equity, margin, margin_free, margin_level, leverage, margin_mode (0 netting, 2 hedging)."""
        return broker.account_info()

    @tool()
    @_inline
    def get_terminal_info() -> dict[str, Any]:
        """Terminal information (MT5 terminal_info fields) of the paper broker, plus its clock and feed."""
        return {"community_account": False, "community_connection": False, "connected": True, "dlls_allowed": False,
                "trade_allowed": True, "tradeapi_disabled": False, "email_enabled": False, "ftp_enabled": False,
                "notifications_enabled": False, "mqid": False, "build": 4000, "maxbars": MAX_COUNT, "codepage": 0,
                "ping_last": 0, "community_balance": 0.0, "retransmission": 0.0, "company": "quantlab",
                "name": "quantlab paper broker", "language": "English", "path": broker.store.path,
                "data_path": broker.store.path, "commondata_path": broker.store.path,
                "clock": {**clock.info(), "cursor": broker.feed.cursor, "time": broker.feed.now},
                "feed": {"kind": broker.feed.kind, "source": broker.feed.source, "symbols": list(broker.feed.specs)}}

    @tool()
    @_inline
    def get_version() -> dict[str, Any]:
        """Version of the (paper) terminal: version, build, date, like MT5's version()."""
        return {"version": 500, "build": 4000, "date": "2026-01-01", "quantlab": __version__}

    # -- symbols / market data ---------------------------------------------------------------
    @tool()
    @_inline
    def get_symbols() -> list[str]:
        """All symbol names the broker quotes."""
        return list(broker.feed.specs)

    @tool()
    @_inline
    def get_symbols_by_group(group: str) -> list[str]:
        """Symbols matching a group pattern, e.g. "*", "EUR*", "*USD" (comma-separated patterns allowed, "!X" excludes)."""
        import fnmatch

        names = list(broker.feed.specs)
        pats = [p.strip().upper() for p in str(group).split(",") if p.strip()] or ["*"]
        inc = [p for p in pats if not p.startswith("!")] or ["*"]
        exc = [p[1:] for p in pats if p.startswith("!")]
        return [n for n in names if any(fnmatch.fnmatchcase(n, p) for p in inc) and not any(fnmatch.fnmatchcase(n, p) for p in exc)]

    @tool()
    @_inline
    def get_symbol_info(symbol: str) -> dict[str, Any]:
        """Symbol specification and current prices (MT5 symbol_info fields: digits, point, spread, trade_contract_size, volume_min/step/max, bid, ask ...)."""
        return broker.symbol_info(symbol)

    @tool()
    @_inline
    def get_symbol_info_tick(symbol: str) -> dict[str, Any]:
        """Latest tick of a symbol (MT5 symbol_info_tick fields: time, bid, ask, last, volume, time_msc, flags, volume_real)."""
        with broker.store.lock:
            return broker.quote(symbol)

    @tool()
    @_guard
    def copy_rates_from_pos(symbol: str, timeframe: int | str, start_pos: int, count: int,
                            format: Literal["records", "columns"] = "records") -> CallToolResult:
        """Bars of a symbol ending start_pos bars before the latest (0 = up to the latest), oldest first.

        timeframe: minutes (1, 5, 15, 60, 240, 1440 ...), an MT5 TIMEFRAME constant (16385 = H1) or a name ("H1").
        Fields: time (epoch seconds), open, high, low, close, tick_volume, spread, real_volume.
        format "records" = list of bars, "columns" = {"columns": {field: [...]}}. count is capped at 100000.
        Only completed bars up to the feed's now are returned, never the future."""
        return _bars_result(_rates(broker, symbol, timeframe, count=count, start_pos=start_pos, fmt=format))

    @tool()
    @_guard
    def copy_rates_from_date(symbol: str, timeframe: int | str, date_from: datetime | int, count: int,
                             format: Literal["records", "columns"] = "records") -> CallToolResult:
        """count bars whose open time is at or before date_from (ISO datetime, UTC if naive, or epoch seconds), oldest first."""
        return _bars_result(_rates(broker, symbol, timeframe, count=count, date_from=_epoch(date_from), fmt=format))

    @tool()
    @_guard
    def copy_rates_range(symbol: str, timeframe: int | str, date_from: datetime | int, date_to: datetime | int,
                         format: Literal["records", "columns"] = "records") -> CallToolResult:
        """Bars with open time in [date_from, date_to] (clipped to the feed's now), oldest first; at most 100000 bars."""
        return _bars_result(_rates(broker, symbol, timeframe, date_from=_epoch(date_from), date_to=_epoch(date_to), fmt=format))

    # -- trading ---------------------------------------------------------------------------
    @tool()
    @_inline
    def order_send(request: dict[str, Any] | None = None, action: int | None = None, symbol: str | None = None,
                   volume: float | None = None, type: int | None = None, price: float | None = None,
                   sl: float | None = None, tp: float | None = None, deviation: int | None = None,
                   magic: int | None = None, comment: str | None = None, type_time: int | None = None,
                   type_filling: int | None = None, expiration: int | None = None, order: int | None = None,
                   position: int | None = None, position_by: int | None = None) -> dict[str, Any]:
        """Send a trade request, MT5 order_send. Pass {"request": {...}} (or the same fields flat) with integer constants:
        action 1 DEAL (market: type 0 BUY / 1 SELL, symbol, volume in lots; optional price+deviation, sl, tp,
        position = ticket to close in hedging mode, magic, comment), 5 PENDING (type 2 BUY_LIMIT, 3 SELL_LIMIT,
        4 BUY_STOP, 5 SELL_STOP, price, optional sl/tp/type_time/expiration), 6 SLTP (position, sl, tp),
        7 MODIFY (order, price, sl, tp), 8 REMOVE (order), 10 CLOSE_BY (position, position_by; hedging).
        Returns the OrderSendResult fields: retcode (10009 done), deal, order, volume, price, bid, ask, comment,
        request_id, retcode_external, request. Rejections are tool errors starting with the retcode."""
        return broker.order_send(_request(locals()))

    @tool()
    @_inline
    def order_check(request: dict[str, Any] | None = None, action: int | None = None, symbol: str | None = None,
                    volume: float | None = None, type: int | None = None, price: float | None = None,
                    sl: float | None = None, tp: float | None = None, deviation: int | None = None,
                    magic: int | None = None, comment: str | None = None, type_time: int | None = None,
                    type_filling: int | None = None, expiration: int | None = None, order: int | None = None,
                    position: int | None = None, position_by: int | None = None) -> dict[str, Any]:
        """Check a trade request without executing it, MT5 order_check ({"request": {...}} or flat fields, as
        order_send): retcode 0 if it would be accepted (else the rejecting retcode and comment), with balance,
        equity, profit, margin, margin_free, margin_level after it."""
        return broker.order_check(_request(locals()))

    @tool()
    @_inline
    def positions_get(symbol: str | None = None, group: str | None = None) -> list[dict[str, Any]]:
        """Open positions (MT5 TradePosition fields: ticket, time, type 0 buy/1 sell, magic, volume, price_open, sl, tp, price_current, profit, symbol ...)."""
        return broker.positions(symbol, group)

    @tool()
    @_inline
    def positions_get_by_ticket(ticket: int) -> dict[str, Any]:
        """The open position with this ticket (tool error TRADE_RETCODE_POSITION_CLOSED if there is none)."""
        rows = broker.positions(ticket=ticket)
        if not rows:
            raise TradeError(C.TRADE_RETCODE_POSITION_CLOSED, f"no open position #{ticket}; list them with positions_get.")
        return rows[0]

    @tool()
    @_inline
    def orders_get(symbol: str | None = None, group: str | None = None) -> list[dict[str, Any]]:
        """Active pending orders (MT5 TradeOrder fields)."""
        return broker.orders(symbol, group)

    @tool()
    @_guard
    def history_orders_get(symbol: str | None = None, group: str | None = None, ticket: int | None = None,
                           position: int | None = None, from_date: datetime | int | None = None,
                           to_date: datetime | int | None = None) -> list[dict[str, Any]]:
        """Finished orders (filled, cancelled, expired) with optional filters; dates are feed times (epoch seconds or ISO)."""
        return broker.history_orders(symbol, group, ticket, position, _epoch(from_date), _epoch(to_date))

    @tool()
    @_guard
    def history_deals_get(symbol: str | None = None, group: str | None = None, ticket: int | None = None,
                          position: int | None = None, from_date: datetime | int | None = None,
                          to_date: datetime | int | None = None) -> list[dict[str, Any]]:
        """Deals (MT5 TradeDeal fields: ticket, order, time, type, entry 0 in/1 out/2 inout, magic, position_id, reason, volume, price, commission, profit ...)."""
        return broker.history_deals(symbol, group, ticket, position, _epoch(from_date), _epoch(to_date))

    # -- clock -------------------------------------------------------------------------------
    @tool()
    @_guard
    def advance(bars: int = 1) -> dict[str, Any]:
        """Move the market clock forward by `bars` base bars (1-minute bars for the synthetic feed): pending orders
        and SL/TP trigger, deployments trade, alerts fire. Returns the new cursor and feed time. At most 1,000,000."""
        if isinstance(bars, bool) or not isinstance(bars, int) or not 0 <= bars <= 1_000_000:
            raise TradeError(C.RES_E_INVALID_PARAMS, f"bars must be an integer in 0..1000000, got {bars!r}.")
        return broker.advance(bars)

    @tool()
    @_inline
    def get_clock() -> dict[str, Any]:
        """The market clock: mode (stepped/realtime/accelerated), bars per second, cursor (visible bars), time (epoch seconds of the latest bar)."""
        return {**clock.info(), "cursor": broker.feed.cursor, "time": broker.feed.now,
                "time_iso": datetime.fromtimestamp(broker.feed.now, timezone.utc).isoformat()}

    # -- deployments ---------------------------------------------------------------------------
    @tool()
    @_guard
    def deploy_strategy(name: str, code: str, symbol: str, volume: float, timeframe: int | str = "M1",
                        params: dict[str, Any] | None = None, config: dict[str, Any] | None = None) -> dict[str, Any]:
        """Paper-trade a strategy: `code` is Python source defining signals(data, **params) -> target positions in
        [-1, 1] per bar (data: DataFrame with open, high, low, close, volume and a UTC DatetimeIndex). On every new
        completed bar the broker trades toward target x volume lots with magic = deployment_id. signals() must be
        causal: after a gap it is evaluated once over config.lookback (default 300) bars plus all new bars.
        Deploying the same code + params + symbol again returns the running deployment (existing: true).
        Returns {deployment_id, status ('running'), ...}."""
        return broker.deployments.deploy(name, code, params, symbol, timeframe, volume, config)

    @tool()
    @_guard
    def list_deployments(status: str | None = None) -> list[dict[str, Any]]:
        """All deployments (optionally only one status: pending, running, stopped, failed) with position and PnL."""
        return broker.deployments.list(status)

    @tool()
    @_guard
    def get_deployment(deployment_id: int) -> dict[str, Any]:
        """One deployment: status, error, lots (position), target, pnl / realized_pnl / floating_pnl, trades, open positions, last journal lines."""
        return broker.deployments.get(deployment_id)

    @tool()
    @_guard
    def stop_deployment(deployment_id: int) -> dict[str, Any]:
        """Stop a deployment: close its positions through the order path and set status 'stopped'."""
        return broker.deployments.stop(deployment_id)

    @tool()
    @_guard
    def deployment_journal(deployment_id: int, limit: int = 200, after_id: int = 0, kind: str | None = None) -> list[dict[str, Any]]:
        """The deployment's trade journal, oldest first: every status change, signal (target change), order, fill,
        error and alert with feed time and wall time. Page with after_id; filter with kind."""
        return broker.deployments.journal(deployment_id, limit, after_id, kind)

    @tool()
    @_inline
    def set_alert(kind: Literal["price_above", "price_below", "drawdown"], threshold: float, symbol: str | None = None,
                  deployment_id: int | None = None) -> dict[str, Any]:
        """Set an alert that fires once into the journal: price_above / price_below (symbol's bid high/low crosses
        threshold), drawdown (a deployment's PnL, or the account's equity, falls `threshold` money below its peak)."""
        return broker.deployments.set_alert(kind, threshold, symbol, deployment_id)

    @tool()
    @_inline
    def list_alerts(deployment_id: int | None = None, status: str | None = None) -> list[dict[str, Any]]:
        """Alerts with their status (active / fired) and the message they fired with."""
        return broker.deployments.list_alerts(deployment_id, status)

    # -- resources ---------------------------------------------------------------------------------
    def _table(title: str, mapping: dict[str, int]) -> str:
        return json.dumps({"title": title, "values": mapping}, indent=1)

    @mcp.resource("mt5://timeframes", mime_type="application/json")
    def timeframes() -> str:
        """MT5 TIMEFRAME_* constants (and minutes per bar)."""
        return json.dumps({"TIMEFRAME_" + k: {"value": v, "minutes": C.TIMEFRAME_MINUTES[k]} for k, v in C.TIMEFRAMES.items()}, indent=1)

    @mcp.resource("mt5://order_types", mime_type="application/json")
    def order_types() -> str:
        """MT5 ORDER_TYPE_* constants."""
        return _table("order types", C.ORDER_TYPES)

    @mcp.resource("mt5://filling_types", mime_type="application/json")
    def filling_types() -> str:
        """MT5 ORDER_FILLING_* constants."""
        return _table("filling types", C.FILLING_TYPES)

    @mcp.resource("mt5://order_filling_types", mime_type="application/json")
    def order_filling_types() -> str:
        """MT5 ORDER_FILLING_* constants (mcp_mt5's resource name)."""
        return _table("filling types", C.FILLING_TYPES)

    @mcp.resource("mt5://order_time_types", mime_type="application/json")
    def order_time_types() -> str:
        """MT5 ORDER_TIME_* constants."""
        return _table("order time types", C.TIME_TYPES)

    @mcp.resource("mt5://trade_actions", mime_type="application/json")
    def trade_actions() -> str:
        """MT5 TRADE_ACTION_* constants."""
        return _table("trade actions", C.TRADE_ACTIONS)

    @mcp.resource("mt5://retcodes", mime_type="application/json")
    def retcodes() -> str:
        """MT5 TRADE_RETCODE_* return codes."""
        return _table("return codes", {v: k for k, v in C.RETCODES.items()})

    return mcp


class TokenAuth:
    """ASGI middleware: every HTTP request needs ``Authorization: Bearer <token>``.

    >>> TokenAuth(app=None, token="s3cret").token
    's3cret'
    """

    def __init__(self, app: Any, token: str):
        self.app = app
        self.token = token
        self._expected = f"Bearer {token}".encode()

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            auth = dict(scope.get("headers") or []).get(b"authorization", b"")
            if not hmac.compare_digest(auth, self._expected):
                body = json.dumps({"error": "unauthorized", "detail": "send 'Authorization: Bearer <token>' (see the broker's token file)"}).encode()
                await send({"type": "http.response.start", "status": 401,
                            "headers": [(b"content-type", b"application/json"), (b"www-authenticate", b"Bearer")]})
                await send({"type": "http.response.body", "body": body})
                return
        await self.app(scope, receive, send)


def run_http(server: MCPServer, port: int, token: str, host: str = "127.0.0.1") -> None:
    """Serve ``server`` over streamable HTTP at ``http://host:port/mcp`` behind :class:`TokenAuth`."""
    import uvicorn

    app = TokenAuth(server.streamable_http_app(host=host), token)
    config = uvicorn.Config(app, host=host, port=int(port), log_level="warning", lifespan="on")
    uvicorn.Server(config).run()


class _PipeLines:
    """Async line iterator over an asyncio StreamReader (what ``stdio_server`` reads from)."""

    def __init__(self, reader: Any):
        self.reader = reader

    def __aiter__(self) -> "_PipeLines":
        return self

    async def __anext__(self) -> str:
        line = await self.reader.readline()
        if not line:
            raise StopAsyncIteration
        return line.decode("utf-8", "replace")


class _FdWriter:
    """Async-looking writer straight to a file descriptor (small JSON lines; the client reads them)."""

    def __init__(self, fd: int):
        self.fd = fd

    async def write(self, text: str) -> None:
        import os

        data = memoryview(text.encode("utf-8"))
        while data:
            try:
                n = os.write(self.fd, data)
            except BlockingIOError:  # pragma: no cover - only if the fd is non-blocking
                import asyncio

                await asyncio.sleep(0.001)
                continue
            data = data[n:]

    async def flush(self) -> None:
        return None


def run_stdio(server: MCPServer) -> None:
    """Serve ``server`` over this process's stdin/stdout without a worker thread per read/write.

    The SDK's stdio transport moves every read and write through a worker thread;
    this one reads stdin with asyncio's pipe reader and writes stdout directly,
    which roughly doubles the request rate. fd 0 is pointed at /dev/null and
    fd 1 at stderr while serving, so a ``print`` in a strategy cannot corrupt the
    protocol. Falls back to the SDK's transport when stdin is not a pipe.
    """
    import asyncio
    import os
    import stat

    import anyio
    from mcp.server.stdio import stdio_server

    try:
        mode = os.fstat(0).st_mode
        usable = stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode) or stat.S_ISCHR(mode)
    except OSError:
        usable = False
    if not usable or os.environ.get("QUANTLAB_BROKER_SDK_STDIO"):
        server.run("stdio")
        return

    async def serve() -> None:
        loop = asyncio.get_running_loop()
        in_fd, out_fd = os.dup(0), os.dup(1)
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        os.close(null)
        os.dup2(2, 1)
        sys.stdout = sys.stderr
        reader = asyncio.StreamReader(limit=2**27)
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), os.fdopen(in_fd, "rb", buffering=0))
        low = server._lowlevel_server  # noqa: SLF001 - what MCPServer.run_stdio_async uses too
        async with stdio_server(_PipeLines(reader), _FdWriter(out_fd)) as (read_stream, write_stream):
            await low.run(read_stream, write_stream, low.create_initialization_options())

    anyio.run(serve)

