"""The paper broker's core: account, orders, deals and positions with MT5 semantics.

:class:`Broker` ties a :class:`~quantlab.servers.broker.feed.Feed` (prices and
clock) to a :class:`~quantlab.servers.broker.store.Store` (SQLite, the single
source of truth). It has no MCP in it; the server wraps each method as a tool.
By job: this module holds the account, prices, money and the read-only views;
:mod:`~quantlab.servers.broker.orders` the trade requests; :mod:`~quantlab.servers.broker.triggers`
the clock with pending orders, SL/TP and the stop-out; :mod:`~quantlab.servers.broker.base` what they share.

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
import time as _time
from typing import Any, Iterable

from . import constants as C
from .base import MAX_COUNT, STOP_OUT_LEVEL, BrokerConfig, TradeError, ms
from .feed import Feed, FeedError, SymbolSpec
from .orders import OrderRequests
from .store import Store
from .triggers import MarketClock

__all__ = ["Broker", "TradeError", "BrokerConfig", "MAX_COUNT"]


class Broker(OrderRequests, MarketClock):
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
        return {"time": t, "bid": q["bid"], "ask": q["ask"], "last": q["last"], "volume": 0, "time_msc": ms(t),
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

    # -- display -----------------------------------------------------------------------
    def __repr__(self) -> str:
        return (f"Broker(db={self.store.path!r}, mode={self.config.margin_mode!r}, symbols={list(self.feed.specs)}, "
                f"now={self.now()})")

    def _repr_html_(self) -> str:
        a = self.account_info()
        return (f"<div><b>Paper broker</b> <code>{html.escape(self.store.path)}</code><br>"
                f"balance {a['balance']:.2f} · equity {a['equity']:.2f} · margin {a['margin']:.2f} {a['currency']}</div>")
