"""The paper broker's core: account, orders, deals and positions with MT5 semantics.

:class:`Broker` ties a :class:`~quantlab.servers.broker.feed.Feed` (prices and
clock) to a :class:`~quantlab.servers.broker.store.Store` (SQLite, the single
source of truth). It has no MCP in it; the server wraps each method as a tool.

Rules (documented so tests can check them by hand):

* Market orders fill at the ask (buy) or bid (sell) of the latest bar, where
  bid = close and ask = bid + spread × point, moved against the trader by
  ``slippage`` points. If the request carries a ``price`` and a ``deviation``
  and the fill is further than ``deviation`` points away: ``TRADE_RETCODE_REQUOTE``.
* Profit of a position: (close − open) × volume × contract_size (sign by side),
  in the profit currency; symbols quoted against USD are already in USD, for
  USD-based pairs (``USDJPY``) the amount is divided by the closing price.
* Margin: volume × contract_size / leverage, times the open price when the
  base currency is not USD (EURUSD, XAUUSD, BTCUSD), in USD.
* Equity = balance + floating profit (buy positions valued at bid, sell at ask);
  free margin = equity − margin; margin level = equity / margin × 100.
* Pending orders and SL/TP are checked on every later bar against its
  high/low (bid prices; ask = bid + spread): a buy limit fills when the ask low
  reaches its price (at the price, or at the open if the bar gapped through),
  stops likewise on the other side; when SL and TP fall in one bar, SL wins.
* Netting accounts keep one position per symbol (adding, reducing, reversing);
  hedging accounts open a position per deal and close one by ``position``.
* Stop-out: after each ``advance``, while the margin level is below 30 % the
  position with the largest loss is closed at its current price (deal reason SO).

Example
-------
>>> b = Broker.open(":memory:", symbols=["EURUSD"], seed=7)
>>> r = b.order_send({"action": 1, "symbol": "EURUSD", "volume": 0.1, "type": 0})
>>> r["retcode"], r["price"] == r["ask"]
(10009, True)
"""
from __future__ import annotations

import html
import json
import math
import time as _time
from dataclasses import dataclass
from typing import Any, Iterable

from . import constants as C
from .feed import Feed, FeedError, SymbolSpec
from .store import Store

__all__ = ["Broker", "TradeError", "BrokerConfig"]

MAX_COUNT = 100_000  # cap on bars per copy_rates_* call
STOP_OUT_LEVEL = 30.0  # margin level (%) at which the broker closes positions (account margin_so_so)
REQUEST_FIELDS = {
    "action", "magic", "order", "symbol", "volume", "price", "stoplimit", "sl", "tp", "deviation", "type",
    "type_filling", "type_time", "expiration", "comment", "position", "position_by",
}
EPS = 1e-9


class TradeError(Exception):
    """A rejected request: an MT5 ``retcode`` and a sentence saying what to change.

    >>> str(TradeError(10014, "volume 0 is below volume_min 0.01"))
    'TRADE_RETCODE_INVALID_VOLUME (10014): volume 0 is below volume_min 0.01'
    """

    def __init__(self, retcode: int, message: str):
        super().__init__(message)
        self.retcode = int(retcode)
        self.message = message

    def __str__(self) -> str:
        return f"{C.retcode_name(self.retcode)} ({self.retcode}): {self.message}"


@dataclass
class BrokerConfig:
    """Account and execution settings, fixed when the database is created.

    >>> BrokerConfig().margin_mode
    'netting'
    """

    balance: float = 100_000.0
    leverage: int = 100
    currency: str = "USD"
    margin_mode: str = "netting"  # or "hedging"
    spread: int | None = None  # points; None = each symbol's own
    slippage: int = 0  # points, always against the trader
    commission: float = 0.0  # account currency per lot per deal
    login: int = 5_000_001
    lookback: int = 300  # default deployment lookback (bars)


def _r(x: float, nd: int) -> float:
    return float(round(x, nd))


def _ms(t: int) -> int:
    return int(t) * 1000


class Broker:
    """A paper-trading MT5-like broker over a feed and a SQLite store.

    Open one with :meth:`open`; every public method that changes state runs in
    a single transaction. ``order_send``/``order_check`` take MT5 request dicts.

    >>> b = Broker.open(":memory:", symbols=["EURUSD"])
    >>> b.account_info()["balance"]
    100000.0
    """

    def __init__(self, store: Store, feed: Feed, config: BrokerConfig):
        self.store = store
        self.feed = feed
        self.config = config
        self._at: int | None = None  # cursor step being processed during advance()
        self._request_id = 0
        self._hedging = config.margin_mode == "hedging"
        self.notes: list[str] = []  # what Broker.open ignored when reopening a database


    # -- construction ----------------------------------------------------------------
    @classmethod
    def open(
        cls,
        db: str,
        *,
        symbols: list[str] | None = None,
        feed: str = "synthetic",
        seed: int = 7,
        history: int = 1000,
        config: BrokerConfig | None = None,
        explicit: set[str] | None = None,
    ) -> "Broker":
        """Open (or create) the broker stored in ``db``.

        A new database records the feed and account settings; reopening an
        existing one restores them (and the clock position), ignoring the
        arguments that would change them; ``broker.notes`` says what was ignored
        (for ``config``, only the fields named in ``explicit``, if given).
        """
        store = Store(db)
        notes: list[str] = []
        with store.tx():
            saved = store.get_meta("config")
            if saved is None:
                cfg = config or BrokerConfig()
                if cfg.margin_mode not in ("netting", "hedging"):
                    raise ValueError(f"margin_mode must be 'netting' or 'hedging', got {cfg.margin_mode!r}.")
                fd = Feed.synthetic(symbols, seed=seed, history=history) if feed == "synthetic" else Feed.replay(feed, symbols, history=history)
                store.set_meta("config", {"broker": cfg.__dict__, "feed": {"kind": fd.kind, "seed": fd.seed, "source": fd.source,
                                                                            "symbols": list(fd.specs), "history": history}})
                store.set_meta("cursor", fd.cursor)
                store.set_meta("created", _time.time())
                store.insert("account", {
                    "id": 1, "login": cfg.login, "name": "quantlab paper", "server": "quantlab-paper", "company": "quantlab",
                    "currency": cfg.currency, "leverage": cfg.leverage,
                    "margin_mode": C.ACCOUNT_MARGIN_MODE_RETAIL_HEDGING if cfg.margin_mode == "hedging" else C.ACCOUNT_MARGIN_MODE_RETAIL_NETTING,
                    "balance": cfg.balance, "deposit": cfg.balance, "commission": cfg.commission,
                })
            else:
                cfg = BrokerConfig(**saved["broker"])
                f = saved["feed"]
                if symbols and [s.upper() for s in symbols] != f["symbols"]:
                    notes.append(f"{db} already exists with symbols {f['symbols']}; ignoring --symbols {symbols}.")
                if feed != "synthetic" and f["kind"] == "synthetic" or feed == "synthetic" and f["kind"] != "synthetic":
                    notes.append(f"{db} already exists with feed {f['source']!r}; ignoring --feed {feed!r}.")
                diff = sorted(k for k in cfg.__dict__ if config is not None and cfg.__dict__[k] != config.__dict__[k]
                              and (explicit is None or k in explicit))
                if diff:
                    notes.append(f"{db} keeps its account settings; ignoring new values for {', '.join(diff)}.")
                fd = (Feed.synthetic(f["symbols"], seed=f["seed"], history=f["history"]) if f["kind"] == "synthetic"
                      else Feed.replay(f["source"], f["symbols"], history=f["history"]))
                fd.cursor = int(store.get_meta("cursor", fd.cursor))
        broker = cls(store, fd, cfg)
        broker.notes = notes
        return broker

    # -- prices ----------------------------------------------------------------------
    def spec(self, symbol: Any) -> SymbolSpec:
        if not isinstance(symbol, str) or not symbol:
            raise TradeError(C.TRADE_RETCODE_INVALID, f"symbol must be a name like 'EURUSD', got {symbol!r}.")
        try:
            return self.feed.spec(symbol)
        except FeedError as exc:
            raise TradeError(C.TRADE_RETCODE_INVALID, str(exc)) from None

    def _step(self) -> int:
        return self.feed.cursor if self._at is None else self._at

    def now(self) -> int:
        """Feed time (epoch seconds) of the bar being processed / the latest bar."""
        return self.feed.time_at(self._step())

    def quote(self, symbol: str) -> dict[str, Any]:
        """Current bid/ask of ``symbol`` (MT5 tick fields).

        >>> b = Broker.open(":memory:", symbols=["EURUSD"])
        >>> q = b.quote("EURUSD"); round(q["ask"] - q["bid"], 5)
        0.0001
        """
        spec = self.spec(symbol)
        i = self.feed.visible(spec.name, self._step()) - 1
        q = self.feed.quote(spec.name, i, self.config.spread)
        t = self.now()
        return {"time": t, "bid": q["bid"], "ask": q["ask"], "last": q["last"], "volume": 0, "time_msc": _ms(t),
                "flags": 6, "volume_real": 0.0}

    # -- money -----------------------------------------------------------------------
    def _usd(self, spec: SymbolSpec, amount: float, price: float) -> float:
        if spec.currency_profit == self.config.currency or not spec.currency_profit:
            return amount
        if spec.currency_base == self.config.currency and price > 0:
            return amount / price
        return amount

    def _profit(self, spec: SymbolSpec, ptype: int, volume: float, open_: float, close: float) -> float:
        sign = 1.0 if ptype == C.POSITION_TYPE_BUY else -1.0
        return round(self._usd(spec, sign * (close - open_) * volume * spec.contract_size, close), 2)

    def _margin(self, spec: SymbolSpec, volume: float, price: float) -> float:
        base = volume * spec.contract_size / self.config.leverage
        return base if spec.currency_base == self.config.currency else base * price

    def _positions(self, where: str = "", args: Iterable = ()) -> list[dict[str, Any]]:
        return self.store.q(f"SELECT * FROM positions {where} ORDER BY ticket", list(args))

    def _mark(self, pos: dict[str, Any], quotes: dict[str, dict] | None = None) -> dict[str, Any]:
        spec = self.feed.spec(pos["symbol"])
        q = (quotes or {}).get(pos["symbol"]) or self.quote(pos["symbol"])
        if quotes is not None:
            quotes[pos["symbol"]] = q
        cur = q["bid"] if pos["type"] == C.POSITION_TYPE_BUY else q["ask"]
        out = dict(pos)
        out["price_current"] = cur
        out["profit"] = self._profit(spec, pos["type"], pos["volume"], pos["price_open"], cur)
        out["margin"] = round(self._margin(spec, pos["volume"], pos["price_open"]), 2)
        return out

    def _totals(self, extra_margin: float = 0.0) -> dict[str, float]:
        acc = self.store.one("SELECT * FROM account WHERE id = 1")
        quotes: dict[str, dict] = {}
        profit = margin = 0.0
        for p in self._positions():
            m = self._mark(p, quotes)
            profit += m["profit"]
            margin += m["margin"]
        if not self._hedging:
            pass
        margin += extra_margin
        equity = acc["balance"] + profit
        return {"balance": round(acc["balance"], 2), "profit": round(profit, 2), "equity": round(equity, 2),
                "margin": round(margin, 2), "margin_free": round(equity - margin, 2),
                "margin_level": round(equity / margin * 100, 2) if margin > 0 else 0.0}

    # -- read-only tools ---------------------------------------------------------------
    def account_info(self) -> dict[str, Any]:
        """MT5 ``account_info()`` fields.

        >>> Broker.open(":memory:", symbols=["EURUSD"]).account_info()["margin_free"]
        100000.0
        """
        with self.store.lock:
            acc = self.store.one("SELECT * FROM account WHERE id = 1")
            t = self._totals()
            n_orders = self.store.scalar("SELECT count(*) FROM orders WHERE state = ?", (C.ORDER_STATE_PLACED,))
        return {
            "login": acc["login"], "trade_mode": C.ACCOUNT_TRADE_MODE_DEMO, "leverage": acc["leverage"],
            "limit_orders": 500, "margin_so_mode": C.ACCOUNT_STOPOUT_MODE_PERCENT, "trade_allowed": True,
            "trade_expert": True, "margin_mode": acc["margin_mode"], "currency_digits": 2, "fifo_close": False,
            "balance": t["balance"], "credit": 0.0, "profit": t["profit"], "equity": t["equity"], "margin": t["margin"],
            "margin_free": t["margin_free"], "margin_level": t["margin_level"], "margin_so_call": 50.0,
            "margin_so_so": STOP_OUT_LEVEL, "margin_initial": 0.0, "margin_maintenance": 0.0, "assets": 0.0, "liabilities": 0.0,
            "commission_blocked": 0.0, "name": acc["name"], "server": acc["server"], "currency": acc["currency"],
            "company": acc["company"], "orders_active": n_orders,
        }

    def symbol_info(self, symbol: str) -> dict[str, Any]:
        """MT5 ``symbol_info()`` fields for ``symbol``."""
        spec = self.spec(symbol)
        with self.store.lock:
            q = self.quote(spec.name)
        sp = self.config.spread if self.config.spread is not None else spec.spread
        tick_value = spec.contract_size * spec.point
        if spec.currency_base == self.config.currency:
            tick_value = tick_value / q["bid"]
        return {
            "name": spec.name, "description": spec.description, "path": spec.path, "visible": True, "select": True,
            "time": q["time"], "digits": spec.digits, "spread": sp, "spread_float": False,
            "trade_calc_mode": spec.calc_mode, "trade_mode": C.SYMBOL_TRADE_MODE_FULL, "trade_stops_level": 0,
            "trade_freeze_level": 0, "trade_exemode": C.SYMBOL_TRADE_EXECUTION_MARKET,
            "filling_mode": C.SYMBOL_FILLING_FOK | C.SYMBOL_FILLING_IOC, "expiration_mode": 15, "order_mode": 127,
            "bid": q["bid"], "ask": q["ask"], "last": q["last"], "point": spec.point,
            "tick_value": tick_value, "tick_value_profit": tick_value, "tick_value_loss": tick_value,
            "trade_tick_value": tick_value, "trade_tick_size": spec.point, "tick_size": spec.point,
            "trade_contract_size": spec.contract_size, "contract_size": spec.contract_size,
            "volume_min": spec.volume_min, "volume_max": spec.volume_max, "volume_step": spec.volume_step,
            "swap_long": 0.0, "swap_short": 0.0, "margin_initial": 0.0, "margin_maintenance": 0.0,
            "currency_base": spec.currency_base, "currency_profit": spec.currency_profit,
            "currency_margin": spec.currency_margin or spec.currency_base,
        }

    def positions(self, symbol: str | None = None, group: str | None = None, ticket: int | None = None,
                  magic: int | None = None) -> list[dict[str, Any]]:
        """Open positions (MT5 ``positions_get``), marked to the current prices.

        >>> b = Broker.open(":memory:", symbols=["EURUSD"])
        >>> _ = b.order_send({"action": 1, "symbol": "EURUSD", "volume": 0.1, "type": 1})
        >>> [(p["type"], p["volume"]) for p in b.positions()]
        [(1, 0.1)]
        """
        where, args = self._filters(symbol, group, ticket, magic)
        with self.store.lock:
            quotes: dict[str, dict] = {}
            rows = [self._mark(p, quotes) for p in self._positions(where, args)]
        for r in rows:
            r.pop("margin", None)
        return rows

    def orders(self, symbol: str | None = None, group: str | None = None, ticket: int | None = None) -> list[dict[str, Any]]:
        """Active pending orders (MT5 ``orders_get``)."""
        where, args = self._filters(symbol, group, ticket, None, base=f"state = {C.ORDER_STATE_PLACED}")
        with self.store.lock:
            return self.store.q(f"SELECT * FROM orders {where} ORDER BY ticket", args)

    def history_orders(self, symbol=None, group=None, ticket=None, position=None, date_from=None, date_to=None,
                       limit: int = 10_000) -> list[dict[str, Any]]:
        """Finished orders (filled, cancelled, expired), MT5 ``history_orders_get``."""
        where, args = self._filters(symbol, group, ticket, None, base=f"state != {C.ORDER_STATE_PLACED}")
        where, args = self._range(where, args, "time_done", position, date_from, date_to, "position_id")
        with self.store.lock:
            return self.store.q(f"SELECT * FROM orders {where} ORDER BY ticket LIMIT ?", [*args, limit])

    def history_deals(self, symbol=None, group=None, ticket=None, position=None, date_from=None, date_to=None,
                      magic=None, limit: int = 10_000) -> list[dict[str, Any]]:
        """Deals, MT5 ``history_deals_get``."""
        where, args = self._filters(symbol, group, ticket, magic)
        where, args = self._range(where, args, "time", position, date_from, date_to, "position_id")
        with self.store.lock:
            return self.store.q(f"SELECT * FROM deals {where} ORDER BY ticket LIMIT ?", [*args, limit])

    @staticmethod
    def _filters(symbol, group, ticket, magic, base: str = "") -> tuple[str, list]:
        conds, args = ([base] if base else []), []
        if symbol is not None:
            conds.append("symbol = ?")
            args.append(str(symbol).upper())
        if group:
            conds.append("(" + " OR ".join("symbol GLOB ?" for _ in group.split(",")) + ")")
            args.extend(g.strip().upper() for g in group.split(","))
        if ticket is not None:
            conds.append("ticket = ?")
            args.append(int(ticket))
        if magic is not None:
            conds.append("magic = ?")
            args.append(int(magic))
        return ("WHERE " + " AND ".join(conds)) if conds else "", args

    @staticmethod
    def _range(where, args, tcol, position, date_from, date_to, pcol) -> tuple[str, list]:
        conds = [where[6:]] if where else []
        if position is not None:
            conds.append(f"{pcol} = ?")
            args.append(int(position))
        if date_from is not None:
            conds.append(f"{tcol} >= ?")
            args.append(int(date_from))
        if date_to is not None:
            conds.append(f"{tcol} <= ?")
            args.append(int(date_to))
        return ("WHERE " + " AND ".join(conds)) if conds else "", args

    # -- request validation --------------------------------------------------------------
    def _check_volume(self, spec: SymbolSpec, volume: Any) -> float:
        if isinstance(volume, bool) or not isinstance(volume, (int, float)) or not math.isfinite(volume):
            raise TradeError(C.TRADE_RETCODE_INVALID_VOLUME, f"volume must be a number of lots, got {volume!r}.")
        v = float(volume)
        if v < spec.volume_min - EPS:
            raise TradeError(C.TRADE_RETCODE_INVALID_VOLUME,
                             f"volume {v:g} is below volume_min {spec.volume_min:g} for {spec.name}; send at least {spec.volume_min:g} lots.")
        if v > spec.volume_max + EPS:
            raise TradeError(C.TRADE_RETCODE_INVALID_VOLUME,
                             f"volume {v:g} is above volume_max {spec.volume_max:g} for {spec.name}; split the order.")
        steps = v / spec.volume_step
        if abs(steps - round(steps)) > 1e-6:
            raise TradeError(C.TRADE_RETCODE_INVALID_VOLUME,
                             f"volume {v:g} is not a multiple of volume_step {spec.volume_step:g} for {spec.name}; "
                             f"round it, e.g. {round(round(steps) * spec.volume_step, 8):g}.")
        return round(round(steps) * spec.volume_step, 8)

    @staticmethod
    def _num(req: dict, key: str, default: float = 0.0) -> float:
        v = req.get(key, default)
        if v is None:
            return default
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            raise TradeError(C.TRADE_RETCODE_INVALID, f"{key} must be a number, got {v!r}.")
        return float(v)

    @staticmethod
    def _int(req: dict, key: str, default: int | None = None) -> int | None:
        v = req.get(key, default)
        if v is None:
            return default
        if isinstance(v, bool) or not isinstance(v, (int, float)) or int(v) != v:
            raise TradeError(C.TRADE_RETCODE_INVALID, f"{key} must be an integer, got {v!r}.")
        return int(v)

    def _check_stops(self, spec: SymbolSpec, side: int, ref: float, sl: float, tp: float, what: str) -> None:
        """side: 0 buy / 1 sell; ref: price the stops are compared with."""
        nd = spec.digits
        if sl < 0 or tp < 0:
            raise TradeError(C.TRADE_RETCODE_INVALID_STOPS, "sl and tp must be positive prices (or 0 for none).")
        if side == C.ORDER_TYPE_BUY:
            if sl and sl >= ref:
                raise TradeError(C.TRADE_RETCODE_INVALID_STOPS, f"sl {sl:.{nd}f} of a buy must be below {what} {ref:.{nd}f}.")
            if tp and tp <= ref:
                raise TradeError(C.TRADE_RETCODE_INVALID_STOPS, f"tp {tp:.{nd}f} of a buy must be above {what} {ref:.{nd}f}.")
        else:
            if sl and sl <= ref:
                raise TradeError(C.TRADE_RETCODE_INVALID_STOPS, f"sl {sl:.{nd}f} of a sell must be above {what} {ref:.{nd}f}.")
            if tp and tp >= ref:
                raise TradeError(C.TRADE_RETCODE_INVALID_STOPS, f"tp {tp:.{nd}f} of a sell must be below {what} {ref:.{nd}f}.")

    def _normalize(self, request: Any) -> dict[str, Any]:
        if not isinstance(request, dict):
            raise TradeError(C.TRADE_RETCODE_INVALID, f"request must be an object like {{'action': 1, ...}}, got {type(request).__name__}.")
        unknown = sorted(set(request) - REQUEST_FIELDS)
        if unknown:
            raise TradeError(C.TRADE_RETCODE_INVALID, f"unknown request field(s) {unknown}; allowed: {sorted(REQUEST_FIELDS)}.")
        req = {k: v for k, v in request.items() if v is not None}
        action = self._int(req, "action")
        if action not in C.TRADE_ACTIONS.values():
            raise TradeError(C.TRADE_RETCODE_INVALID,
                             f"action {request.get('action')!r} is not a trade action; use one of {C.TRADE_ACTIONS}.")
        req["action"] = action
        if "comment" in req and (not isinstance(req["comment"], str) or len(req["comment"]) > 31):
            raise TradeError(C.TRADE_RETCODE_INVALID, "comment must be a string of at most 31 characters.")
        return req

    # -- order_send / order_check ----------------------------------------------------------
    def order_check(self, request: dict[str, Any]) -> dict[str, Any]:
        """MT5 ``order_check``: validate ``request`` and report the account after it.

        Returns ``retcode`` 0 if the request would be accepted, else the
        rejecting retcode with ``comment``; nothing is written.

        >>> b = Broker.open(":memory:", symbols=["EURUSD"])
        >>> b.order_check({"action": 1, "symbol": "EURUSD", "volume": 0.015, "type": 0})["retcode"]
        10014
        """
        with self.store.lock:
            try:
                with self.store.tx():
                    res = self._send(request, check_only=True)
                    raise _Rollback(res)
            except _Rollback as rb:
                return rb.result
            except TradeError as exc:
                t = self._totals()
                return {"retcode": exc.retcode, "balance": t["balance"], "equity": t["equity"], "profit": t["profit"],
                        "margin": t["margin"], "margin_free": t["margin_free"], "margin_level": t["margin_level"],
                        "comment": str(exc), "request": request if isinstance(request, dict) else {}}

    def order_send(self, request: dict[str, Any], *, reason: int = C.ORDER_REASON_CLIENT) -> dict[str, Any]:
        """MT5 ``order_send``: execute ``request`` in one transaction.

        Raises :class:`TradeError` (retcode + sentence) when rejected; nothing is written then.
        """
        with self.store.tx():
            return self._send(request, reason=reason)

    def _result(self, req: dict, retcode: int, *, deal: int = 0, order: int = 0, volume: float = 0.0,
                price: float = 0.0, q: dict | None = None, comment: str = "Request executed") -> dict[str, Any]:
        self._request_id += 1
        return {"retcode": retcode, "deal": deal, "order": order, "volume": volume, "price": price,
                "bid": (q or {}).get("bid", 0.0), "ask": (q or {}).get("ask", 0.0), "comment": comment,
                "request_id": self._request_id, "retcode_external": 0, "request": req}

    def _send(self, request: Any, *, check_only: bool = False, reason: int = C.ORDER_REASON_CLIENT) -> dict[str, Any]:
        req = self._normalize(request)
        action = req["action"]
        if action == C.TRADE_ACTION_DEAL:
            return self._deal(req, check_only, reason)
        if action == C.TRADE_ACTION_PENDING:
            return self._pending(req, check_only)
        if action == C.TRADE_ACTION_SLTP:
            return self._sltp(req, check_only)
        if action == C.TRADE_ACTION_MODIFY:
            return self._modify(req, check_only)
        if action == C.TRADE_ACTION_REMOVE:
            return self._remove(req, check_only)
        return self._close_by(req, check_only)

    def _check_result(self, req: dict, extra_margin: float, comment: str = "Done") -> dict[str, Any]:
        t = self._totals(extra_margin)
        return {"retcode": 0, "balance": t["balance"], "equity": t["equity"], "profit": t["profit"], "margin": t["margin"],
                "margin_free": t["margin_free"], "margin_level": t["margin_level"], "comment": comment, "request": req}

    def _deal(self, req: dict, check_only: bool, reason: int) -> dict[str, Any]:
        spec = self.spec(req.get("symbol"))
        req["symbol"] = spec.name
        side = self._int(req, "type")
        if side not in (C.ORDER_TYPE_BUY, C.ORDER_TYPE_SELL):
            raise TradeError(C.TRADE_RETCODE_INVALID,
                             f"type {req.get('type')!r} is not a market order type; TRADE_ACTION_DEAL takes ORDER_TYPE_BUY (0) or ORDER_TYPE_SELL (1).")
        volume = self._check_volume(spec, req.get("volume"))
        q = self.quote(spec.name)
        slip = self.config.slippage * spec.point
        price = _r(q["ask"] + slip, spec.digits) if side == C.ORDER_TYPE_BUY else _r(q["bid"] - slip, spec.digits)
        want = self._num(req, "price")
        dev = self._int(req, "deviation")
        if want < 0:
            raise TradeError(C.TRADE_RETCODE_INVALID_PRICE, f"price {want} must be positive.")
        if want > 0 and dev is not None and abs(price - want) > dev * spec.point + EPS:
            raise TradeError(C.TRADE_RETCODE_REQUOTE,
                             f"the market moved: fill price {price} is more than {dev} points from the requested {want}; "
                             f"re-read the tick and resend.")
        sl, tp = self._num(req, "sl"), self._num(req, "tp")
        pos_ticket = self._int(req, "position")
        pos = None
        if pos_ticket is not None:
            pos = self.store.one("SELECT * FROM positions WHERE ticket = ?", (pos_ticket,))
            if pos is None:
                raise TradeError(C.TRADE_RETCODE_POSITION_CLOSED, f"position #{pos_ticket} does not exist (closed or never opened); list them with positions_get.")
            if pos["symbol"] != spec.name:
                raise TradeError(C.TRADE_RETCODE_INVALID, f"position #{pos_ticket} is on {pos['symbol']}, not {spec.name}.")
            if pos["type"] == side:
                raise TradeError(C.TRADE_RETCODE_INVALID,
                                 f"position #{pos_ticket} is a {'buy' if side == 0 else 'sell'}; close it with the opposite type.")
            if volume > pos["volume"] + EPS:
                raise TradeError(C.TRADE_RETCODE_INVALID_CLOSE_VOLUME,
                                 f"volume {volume:g} exceeds position #{pos_ticket}'s {pos['volume']:g} lots.")
        elif (sl or tp):
            ref = q["bid"] if side == C.ORDER_TYPE_BUY else q["ask"]
            self._check_stops(spec, side, ref, sl, tp, "the market")
        # margin after the deal
        extra = self._margin_delta(spec, side, volume, price, pos)
        if extra > 0:
            t = self._totals(extra)
            if t["margin_free"] < 0:
                raise TradeError(C.TRADE_RETCODE_NO_MONEY,
                                 f"not enough money: {volume:g} lots of {spec.name} need {extra:.2f} {self.config.currency} margin, "
                                 f"free margin is {t['margin_free'] + extra:.2f}; lower the volume.")
        if check_only:
            return self._check_result(req, extra)
        order_ticket = self._next("orders")
        t = self.now()
        magic = self._int(req, "magic", 0)
        comment = req.get("comment", "")
        self.store.insert("orders", {
            "ticket": order_ticket, "time_setup": t, "time_setup_msc": _ms(t), "time_done": t, "time_done_msc": _ms(t),
            "time_expiration": 0, "type": side, "type_time": self._int(req, "type_time", 0),
            "type_filling": self._int(req, "type_filling", C.ORDER_FILLING_FOK), "state": C.ORDER_STATE_FILLED,
            "magic": magic, "position_id": 0, "position_by_id": 0, "reason": reason, "volume_initial": volume,
            "volume_current": 0.0, "price_open": price, "sl": sl, "tp": tp, "price_current": price, "price_stoplimit": 0.0,
            "symbol": spec.name, "comment": comment, "external_id": "",
        })
        deal = self._fill(spec, side, volume, price, magic=magic, comment=comment, reason=reason, order=order_ticket,
                          position=pos, sl=sl, tp=tp)
        return self._result(req, C.TRADE_RETCODE_DONE, deal=deal, order=order_ticket, volume=volume, price=price, q=q)

    def _margin_delta(self, spec: SymbolSpec, side: int, volume: float, price: float, pos: dict | None) -> float:
        if pos is not None:  # closing a given position frees margin
            return -self._margin(spec, volume, pos["price_open"])
        if self._hedging:
            return self._margin(spec, volume, price)
        cur = self.store.one("SELECT * FROM positions WHERE symbol = ?", (spec.name,))
        if cur is None or cur["type"] == side:
            return self._margin(spec, volume, price)
        if volume <= cur["volume"] + EPS:
            return -self._margin(spec, volume, cur["price_open"])
        return self._margin(spec, volume - cur["volume"], price) - self._margin(spec, cur["volume"], cur["price_open"])

    def _next(self, table: str) -> int:
        base = {"orders": 1_000_000, "deals": 2_000_000}[table]
        return max(base, int(self.store.scalar(f"SELECT max(ticket) FROM {table}") or base)) + 1

    def _fill(self, spec: SymbolSpec, side: int, volume: float, price: float, *, magic: int, comment: str,
              reason: int, order: int, position: dict | None = None, sl: float = 0.0, tp: float = 0.0) -> int:
        """Book a deal of ``volume`` at ``price``; returns the deal ticket. Updates positions and balance."""
        t = self.now()
        comm = -round(self.config.commission * volume, 2)
        deals: list[dict] = []
        st = self.store

        def close_part(pos: dict, vol: float) -> float:
            profit = self._profit(spec, pos["type"], vol, pos["price_open"], price)
            left = round(pos["volume"] - vol, 8)
            if left <= EPS:
                st.x("DELETE FROM positions WHERE ticket = ?", (pos["ticket"],))
            else:
                st.update("positions", "ticket", pos["ticket"], volume=left, time_update=t, time_update_msc=_ms(t))
            return profit

        def open_new(vol: float, ticket: int) -> None:
            st.insert("positions", {
                "ticket": ticket, "time": t, "time_msc": _ms(t), "time_update": t, "time_update_msc": _ms(t),
                "type": side, "magic": magic, "identifier": ticket,
                "reason": C.POSITION_REASON_EXPERT if reason == C.ORDER_REASON_EXPERT else C.POSITION_REASON_CLIENT,
                "volume": vol, "price_open": price, "sl": sl, "tp": tp, "swap": 0.0, "symbol": spec.name,
                "comment": comment, "external_id": "",
            })

        if position is not None:  # close (part of) a given position
            profit = close_part(position, volume)
            deals.append(dict(entry=C.DEAL_ENTRY_OUT, position_id=position["ticket"], volume=volume, profit=profit))
        elif self._hedging:
            open_new(volume, order)
            deals.append(dict(entry=C.DEAL_ENTRY_IN, position_id=order, volume=volume, profit=0.0))
        else:
            cur = st.one("SELECT * FROM positions WHERE symbol = ?", (spec.name,))
            if cur is None:
                open_new(volume, order)
                deals.append(dict(entry=C.DEAL_ENTRY_IN, position_id=order, volume=volume, profit=0.0))
            elif cur["type"] == side:
                nv = round(cur["volume"] + volume, 8)
                avg = _r((cur["price_open"] * cur["volume"] + price * volume) / nv, spec.digits + 3)
                upd = dict(volume=nv, price_open=avg, time_update=t, time_update_msc=_ms(t))
                if sl:
                    upd["sl"] = sl
                if tp:
                    upd["tp"] = tp
                st.update("positions", "ticket", cur["ticket"], **upd)
                deals.append(dict(entry=C.DEAL_ENTRY_IN, position_id=cur["ticket"], volume=volume, profit=0.0))
            elif volume <= cur["volume"] + EPS:
                profit = close_part(cur, volume)
                deals.append(dict(entry=C.DEAL_ENTRY_OUT, position_id=cur["ticket"], volume=volume, profit=profit))
            else:  # reversal: close all, open the rest on the other side, same position id
                profit = self._profit(spec, cur["type"], cur["volume"], cur["price_open"], price)
                st.update("positions", "ticket", cur["ticket"], type=side, volume=round(volume - cur["volume"], 8),
                          price_open=price, sl=sl, tp=tp, time_update=t, time_update_msc=_ms(t), magic=magic)
                deals.append(dict(entry=C.DEAL_ENTRY_INOUT, position_id=cur["ticket"], volume=volume, profit=profit))
        ticket = 0
        for d in deals:
            ticket = self._next("deals")
            st.insert("deals", {
                "ticket": ticket, "order": order, "time": t, "time_msc": _ms(t), "type": side, "entry": d["entry"],
                "magic": magic, "position_id": d["position_id"], "reason": reason, "volume": d["volume"], "price": price,
                "commission": comm, "swap": 0.0, "profit": d["profit"], "fee": 0.0, "symbol": spec.name,
                "comment": comment, "external_id": "",
            })
            st.x("UPDATE account SET balance = round(balance + ?, 2) WHERE id = 1", (d["profit"] + comm,))
        st.x("UPDATE orders SET position_id = ? WHERE ticket = ?", (deals[-1]["position_id"], order))
        return ticket

    def _pending(self, req: dict, check_only: bool) -> dict[str, Any]:
        spec = self.spec(req.get("symbol"))
        req["symbol"] = spec.name
        otype = self._int(req, "type")
        if otype in (C.ORDER_TYPE_BUY_STOP_LIMIT, C.ORDER_TYPE_SELL_STOP_LIMIT):
            raise TradeError(C.TRADE_RETCODE_INVALID_ORDER, "stop-limit orders are not supported by the paper broker; use a limit or stop order.")
        if otype not in (C.ORDER_TYPE_BUY_LIMIT, C.ORDER_TYPE_SELL_LIMIT, C.ORDER_TYPE_BUY_STOP, C.ORDER_TYPE_SELL_STOP):
            raise TradeError(C.TRADE_RETCODE_INVALID_ORDER,
                             f"type {req.get('type')!r} is not a pending order type; use 2 BUY_LIMIT, 3 SELL_LIMIT, 4 BUY_STOP or 5 SELL_STOP.")
        volume = self._check_volume(spec, req.get("volume"))
        price = self._num(req, "price")
        q = self.quote(spec.name)
        self._check_pending_price(spec, otype, price, q)
        price = _r(price, spec.digits)
        sl, tp = self._num(req, "sl"), self._num(req, "tp")
        side = C.ORDER_TYPE_BUY if otype in (C.ORDER_TYPE_BUY_LIMIT, C.ORDER_TYPE_BUY_STOP) else C.ORDER_TYPE_SELL
        self._check_stops(spec, side, price, sl, tp, "the order price")
        type_time = self._int(req, "type_time", C.ORDER_TIME_GTC)
        expiration = self._int(req, "expiration", 0)
        if type_time == C.ORDER_TIME_SPECIFIED and expiration <= self.now():
            raise TradeError(C.TRADE_RETCODE_INVALID_EXPIRATION, f"expiration {expiration} is not after the current time {self.now()}.")
        if check_only:
            return self._check_result(req, 0.0)
        ticket = self._next("orders")
        t = self.now()
        self.store.insert("orders", {
            "ticket": ticket, "time_setup": t, "time_setup_msc": _ms(t), "time_done": 0, "time_done_msc": 0,
            "time_expiration": (expiration if type_time == C.ORDER_TIME_SPECIFIED
                                else (t // 86_400 + 1) * 86_400 if type_time == C.ORDER_TIME_DAY else 0),
            "type": otype, "type_time": type_time,
            "type_filling": self._int(req, "type_filling", C.ORDER_FILLING_RETURN), "state": C.ORDER_STATE_PLACED,
            "magic": self._int(req, "magic", 0), "position_id": 0, "position_by_id": 0, "reason": C.ORDER_REASON_CLIENT,
            "volume_initial": volume, "volume_current": volume, "price_open": price, "sl": sl, "tp": tp,
            "price_current": q["ask"] if side == 0 else q["bid"], "price_stoplimit": 0.0, "symbol": spec.name,
            "comment": req.get("comment", ""), "external_id": "",
        })
        return self._result(req, C.TRADE_RETCODE_DONE, order=ticket, volume=volume, price=price, q=q, comment="Request executed (order placed)")

    def _check_pending_price(self, spec: SymbolSpec, otype: int, price: float, q: dict) -> None:
        nd = spec.digits
        if price <= 0:
            raise TradeError(C.TRADE_RETCODE_INVALID_PRICE, "a pending order needs a positive price.")
        rules = {
            C.ORDER_TYPE_BUY_LIMIT: (price < q["ask"], f"a buy limit must be below the ask {q['ask']:.{nd}f}"),
            C.ORDER_TYPE_SELL_LIMIT: (price > q["bid"], f"a sell limit must be above the bid {q['bid']:.{nd}f}"),
            C.ORDER_TYPE_BUY_STOP: (price > q["ask"], f"a buy stop must be above the ask {q['ask']:.{nd}f}"),
            C.ORDER_TYPE_SELL_STOP: (price < q["bid"], f"a sell stop must be below the bid {q['bid']:.{nd}f}"),
        }
        ok, msg = rules[otype]
        if not ok:
            raise TradeError(C.TRADE_RETCODE_INVALID_PRICE, f"price {price:.{nd}f} is on the wrong side: {msg}.")

    def _get_order(self, req: dict) -> dict:
        ticket = self._int(req, "order")
        if ticket is None:
            raise TradeError(C.TRADE_RETCODE_INVALID, "this action needs 'order' (the pending order's ticket).")
        o = self.store.one("SELECT * FROM orders WHERE ticket = ?", (ticket,))
        if o is None or o["state"] != C.ORDER_STATE_PLACED:
            raise TradeError(C.TRADE_RETCODE_INVALID_ORDER if o is None else C.TRADE_RETCODE_ORDER_CHANGED,
                             f"order #{ticket} is not an active pending order; list them with orders_get.")
        return o

    def _get_position(self, req: dict, key: str = "position") -> dict:
        ticket = self._int(req, key)
        if ticket is None:
            raise TradeError(C.TRADE_RETCODE_INVALID, f"this action needs '{key}' (a position ticket).")
        p = self.store.one("SELECT * FROM positions WHERE ticket = ?", (ticket,))
        if p is None:
            raise TradeError(C.TRADE_RETCODE_POSITION_CLOSED, f"position #{ticket} does not exist (closed or never opened); list them with positions_get.")
        return p

    def _sltp(self, req: dict, check_only: bool) -> dict[str, Any]:
        p = self._get_position(req)
        spec = self.feed.spec(p["symbol"])
        sl, tp = self._num(req, "sl"), self._num(req, "tp")
        q = self.quote(spec.name)
        self._check_stops(spec, p["type"], q["bid"] if p["type"] == 0 else q["ask"], sl, tp, "the market")
        if abs(sl - p["sl"]) < EPS and abs(tp - p["tp"]) < EPS:
            raise TradeError(C.TRADE_RETCODE_NO_CHANGES, f"position #{p['ticket']} already has sl={sl:g} tp={tp:g}.")
        if check_only:
            return self._check_result(req, 0.0)
        t = self.now()
        self.store.update("positions", "ticket", p["ticket"], sl=sl, tp=tp, time_update=t, time_update_msc=_ms(t))
        return self._result(req, C.TRADE_RETCODE_DONE, q=q)

    def _modify(self, req: dict, check_only: bool) -> dict[str, Any]:
        o = self._get_order(req)
        spec = self.feed.spec(o["symbol"])
        price = self._num(req, "price", o["price_open"]) or o["price_open"]
        q = self.quote(spec.name)
        self._check_pending_price(spec, o["type"], price, q)
        sl, tp = self._num(req, "sl"), self._num(req, "tp")
        side = 0 if o["type"] in (C.ORDER_TYPE_BUY_LIMIT, C.ORDER_TYPE_BUY_STOP) else 1
        self._check_stops(spec, side, price, sl, tp, "the order price")
        if check_only:
            return self._check_result(req, 0.0)
        self.store.update("orders", "ticket", o["ticket"], price_open=_r(price, spec.digits), sl=sl, tp=tp)
        return self._result(req, C.TRADE_RETCODE_DONE, order=o["ticket"], volume=o["volume_current"], price=price, q=q)

    def _remove(self, req: dict, check_only: bool) -> dict[str, Any]:
        o = self._get_order(req)
        if check_only:
            return self._check_result(req, 0.0)
        t = self.now()
        self.store.update("orders", "ticket", o["ticket"], state=C.ORDER_STATE_CANCELED, time_done=t, time_done_msc=_ms(t))
        return self._result(req, C.TRADE_RETCODE_DONE, order=o["ticket"], volume=o["volume_current"])

    def _close_by(self, req: dict, check_only: bool) -> dict[str, Any]:
        if not self._hedging:
            raise TradeError(C.TRADE_RETCODE_HEDGE_PROHIBITED, "TRADE_ACTION_CLOSE_BY needs a hedging account; this one nets positions.")
        a = self._get_position(req, "position")
        b = self._get_position(req, "position_by")
        if a["symbol"] != b["symbol"] or a["type"] == b["type"]:
            raise TradeError(C.TRADE_RETCODE_INVALID, "close-by needs two opposite positions on the same symbol.")
        if check_only:
            return self._check_result(req, 0.0)
        spec = self.feed.spec(a["symbol"])
        vol = min(a["volume"], b["volume"])
        order = self._next("orders")
        t = self.now()
        self.store.insert("orders", {
            "ticket": order, "time_setup": t, "time_setup_msc": _ms(t), "time_done": t, "time_done_msc": _ms(t),
            "time_expiration": 0, "type": C.ORDER_TYPE_CLOSE_BY, "type_time": 0, "type_filling": 0,
            "state": C.ORDER_STATE_FILLED, "magic": self._int(req, "magic", 0), "position_id": a["ticket"],
            "position_by_id": b["ticket"], "reason": C.ORDER_REASON_CLIENT, "volume_initial": vol, "volume_current": 0.0,
            "price_open": b["price_open"], "sl": 0.0, "tp": 0.0, "price_current": b["price_open"], "price_stoplimit": 0.0,
            "symbol": spec.name, "comment": req.get("comment", ""), "external_id": "",
        })
        # a is closed at b's open price, b at its own open price (zero profit): net = the spread between them
        deal = self._fill(spec, b["type"], vol, b["price_open"], magic=a["magic"], comment="close by", reason=C.DEAL_REASON_CLIENT,
                          order=order, position=a)
        self._fill(spec, a["type"], vol, b["price_open"], magic=b["magic"], comment="close by", reason=C.DEAL_REASON_CLIENT,
                   order=order, position=b)
        return self._result(req, C.TRADE_RETCODE_DONE, deal=deal, order=order, volume=vol, price=b["price_open"])

    # -- the clock ---------------------------------------------------------------------
    def advance(self, bars: int) -> dict[str, Any]:
        """Reveal ``bars`` more bars; trigger pending orders and SL/TP.

        Everything happens in one transaction; on an unexpected error the clock
        and all state stay where they were.

        >>> b = Broker.open(":memory:", symbols=["EURUSD"], history=10)
        >>> b.advance(5)["cursor"]
        15
        """
        bars = int(bars)
        if bars < 0:
            raise TradeError(C.RES_E_INVALID_PARAMS, f"bars must be >= 0, got {bars}.")
        with self.store.tx():
            old = self.feed.cursor
            revealed = self.feed.advance(bars)
            new = self.feed.cursor
            try:
                fills = self._process(old, new) if revealed else []
                self.store.set_meta("cursor", new)
            except BaseException:
                self.feed.cursor = old
                raise
            finally:
                self._at = None
        return {"advanced": revealed, "cursor": new, "time": self.now(), "fills": len(fills),
                "end_of_data": self.feed.length is not None and new >= self.feed.length}

    def _process(self, old: int, new: int) -> list[int]:
        """Walk cursor steps (old, new]: pending orders and SL/TP trigger bar by bar."""
        fills: list[int] = []
        trig = self._load_triggers()
        steps: Iterable[int] = range(old + 1, new + 1) if trig else ()
        last_i = {s: self.feed.visible(s, old) - 1 for s in trig}
        for c in steps:
            self._at = c
            if trig:
                changed = False
                for sym in list(trig):
                    i = self.feed.visible(sym, c) - 1
                    if i > last_i[sym]:
                        last_i[sym] = i
                        if self._check_triggers(sym, i, trig[sym], fills):
                            changed = True
                if changed:
                    trig = self._load_triggers()
                    last_i = {s: last_i.get(s, self.feed.visible(s, c) - 1) for s in trig}
        self._at = new
        fills.extend(self._stop_out())
        return fills

    def _has_stops(self) -> bool:
        return bool(self.store.scalar("SELECT 1 FROM positions WHERE sl > 0 OR tp > 0 LIMIT 1"))

    def _load_triggers(self) -> dict[str, dict[str, list]]:
        trig: dict[str, dict[str, list]] = {}
        for o in self.store.q("SELECT * FROM orders WHERE state = ?", (C.ORDER_STATE_PLACED,)):
            trig.setdefault(o["symbol"], {"orders": [], "positions": []})["orders"].append(o)
        for p in self.store.q("SELECT * FROM positions WHERE sl > 0 OR tp > 0"):
            trig.setdefault(p["symbol"], {"orders": [], "positions": []})["positions"].append(p)
        return trig

    def _check_triggers(self, sym: str, i: int, t: dict[str, list], fills: list[int]) -> bool:
        spec = self.feed.spec(sym)
        bt, o, h, l, c = self.feed.bar(sym, i)
        sp = (self.config.spread if self.config.spread is not None else spec.spread) * spec.point
        ao, ah, al = o + sp, h + sp, l + sp
        nd = spec.digits
        fired = False
        now = self.now()
        for od in t["orders"]:
            typ, px = od["type"], od["price_open"]
            if od["time_expiration"] and now >= od["time_expiration"]:
                self.store.update("orders", "ticket", od["ticket"], state=C.ORDER_STATE_EXPIRED, time_done=now, time_done_msc=_ms(now))
                fired = True
                continue
            fill = None
            if typ == C.ORDER_TYPE_BUY_LIMIT and al <= px:
                fill, side = min(px, ao), 0
            elif typ == C.ORDER_TYPE_BUY_STOP and ah >= px:
                fill, side = max(px, ao), 0
            elif typ == C.ORDER_TYPE_SELL_LIMIT and h >= px:
                fill, side = max(px, o), 1
            elif typ == C.ORDER_TYPE_SELL_STOP and l <= px:
                fill, side = min(px, o), 1
            if fill is None:
                continue
            fill = _r(fill, nd)
            self.store.update("orders", "ticket", od["ticket"], state=C.ORDER_STATE_FILLED, time_done=now,
                              time_done_msc=_ms(now), volume_current=0.0, price_current=fill)
            fills.append(self._fill(spec, side, od["volume_initial"], fill, magic=od["magic"], comment=od["comment"],
                                    reason=C.DEAL_REASON_CLIENT, order=od["ticket"], sl=od["sl"], tp=od["tp"]))
            fired = True
        for p in t["positions"]:
            if not self.store.scalar("SELECT 1 FROM positions WHERE ticket = ?", (p["ticket"],)):
                continue
            p = self.store.one("SELECT * FROM positions WHERE ticket = ?", (p["ticket"],))
            hit = None
            if p["type"] == C.POSITION_TYPE_BUY:  # closes at bid
                if p["sl"] and l <= p["sl"]:
                    hit = (min(p["sl"], o), C.DEAL_REASON_SL)
                elif p["tp"] and h >= p["tp"]:
                    hit = (max(p["tp"], o), C.DEAL_REASON_TP)
            else:  # closes at ask
                if p["sl"] and ah >= p["sl"]:
                    hit = (max(p["sl"], ao), C.DEAL_REASON_SL)
                elif p["tp"] and al <= p["tp"]:
                    hit = (min(p["tp"], ao), C.DEAL_REASON_TP)
            if hit is None:
                continue
            px, why = _r(hit[0], nd), hit[1]
            fills.append(self._close_position(p, px, why, f"[{'sl' if why == C.DEAL_REASON_SL else 'tp'} {px}]"))
            fired = True
        return fired

    def _close_position(self, p: dict, px: float, why: int, comment: str) -> int:
        """Close position ``p`` at ``px`` by the broker (SL, TP, stop-out): an order and a deal."""
        spec = self.feed.spec(p["symbol"])
        now = self.now()
        side = 1 - p["type"]
        order = self._next("orders")
        self.store.insert("orders", {
            "ticket": order, "time_setup": now, "time_setup_msc": _ms(now), "time_done": now, "time_done_msc": _ms(now),
            "time_expiration": 0, "type": side, "type_time": 0, "type_filling": C.ORDER_FILLING_FOK,
            "state": C.ORDER_STATE_FILLED, "magic": p["magic"], "position_id": p["ticket"], "position_by_id": 0,
            "reason": why, "volume_initial": p["volume"], "volume_current": 0.0, "price_open": px, "sl": 0.0, "tp": 0.0,
            "price_current": px, "price_stoplimit": 0.0, "symbol": spec.name, "comment": comment, "external_id": "",
        })
        deal = self._fill(spec, side, p["volume"], px, magic=p["magic"], comment=comment, reason=why, order=order, position=p)
        return deal

    def _stop_out(self) -> list[int]:
        """Close the worst position while the margin level is below ``margin_so_so`` (30 %)."""
        deals: list[int] = []
        while True:
            t = self._totals()
            if t["margin"] <= 0 or t["equity"] / t["margin"] * 100 >= STOP_OUT_LEVEL:
                return deals
            quotes: dict[str, dict] = {}
            worst = min((self._mark(p, quotes) for p in self._positions()), key=lambda m: m["profit"])
            level = t["equity"] / t["margin"] * 100
            deals.append(self._close_position(worst, worst["price_current"], C.DEAL_REASON_SO, f"[so {level:.1f}%]"))

    # -- display -----------------------------------------------------------------------
    def __repr__(self) -> str:
        return (f"Broker(db={self.store.path!r}, mode={self.config.margin_mode!r}, symbols={list(self.feed.specs)}, "
                f"now={self.now()})")

    def _repr_html_(self) -> str:
        a = self.account_info()
        return (f"<div><b>Paper broker</b> <code>{html.escape(self.store.path)}</code><br>"
                f"balance {a['balance']:.2f} · equity {a['equity']:.2f} · margin {a['margin']:.2f} {a['currency']}</div>")


class _Rollback(Exception):
    def __init__(self, result: dict):
        self.result = result


def dumps(x: Any) -> str:
    return json.dumps(x, default=str)
