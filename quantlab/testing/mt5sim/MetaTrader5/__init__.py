"""A simulated ``MetaTrader5`` module: the terminal API the public MT5 MCP server (``mt5mcp``) imports.

The real ``MetaTrader5`` package exists only for Windows next to a running terminal. This one
is our own code with the same constants, functions and result types (named tuples and numpy
structured arrays), so ``mt5mcp``'s own code can run on Linux in tests: put this folder first on
``PYTHONPATH`` of the ``mt5mcp`` process (``quantlab.testing.mt5.mt5mcp_entry`` does).

The market: EURUSD, USDJPY and XAUUSD with seeded one-minute bars; bar 0 is the bar forming
at the simulated time (``MT5SIM_NOW``, epoch seconds, default 2024-01-02T00:00:30Z), which moves
``MT5SIM_SPEED`` minutes per wall-clock second (default 0: frozen). One tick per minute.
Two accounts: 1001 netting and 1002 hedging (password ``MT5SIM_PASSWORD``, server
``SimBroker-Demo``); ``MT5SIM_ACCOUNT=hedging`` starts logged in to 1002 (default netting).
``initialize(path)`` fails unless ``path`` ends with ``terminal64.exe``; before it, every call
answers ``None`` and ``last_error()`` is ``(-10004, 'No IPC connection')``, as the real one.
Market orders fill at the current ask/bid (a ``price`` further than ``deviation`` points away is
a requote, 10004); pending orders are placed but never triggered. Deliberately independent of
quantlab's paper broker, so comparing the two compares two implementations.

The official constants and result types are :mod:`.constants` (re-exported here, as the real module
has them); this module is the terminal: market, accounts, orders. (Size: ~550 lines, one simulated
terminal over one shared state, in the order of the official API's sections.)
"""
from __future__ import annotations

import fnmatch
import os
import time as _time
from collections import namedtuple
from datetime import datetime, timezone
from typing import Any

import numpy as np

__version__ = "5.0.5735-sim"
__author__ = "quantlab (simulated terminal)"

# -- constants and result types (values and fields of the official package) --------------------------
from .constants import *  # noqa: E402,F401,F403 - the terminal module exposes them as the real one does
from .constants import _TF_MIN, AccountInfo, OrderCheckResult, OrderSendResult, SymbolInfo, TerminalInfo, Tick  # noqa: E402
from .constants import TradeDeal, TradeOrder, TradePosition, TradeRequest  # noqa: E402

# -- the simulated market and accounts --------------------------------------------------------------
_START = 1704067200  # 2024-01-01T00:00:00Z: first bar
_SPECS = {  # digits, start price, step volatility, spread points, contract size, base, profit currency
    "EURUSD": (5, 1.1000, 0.0002, 10, 100_000.0, "EUR", "USD", "Euro vs US Dollar", "Forex\\EURUSD"),
    "USDJPY": (3, 141.00, 0.03, 12, 100_000.0, "USD", "JPY", "US Dollar vs Japanese Yen", "Forex\\USDJPY"),
    "XAUUSD": (2, 2060.0, 0.6, 30, 100.0, "XAU", "USD", "Gold vs US Dollar", "Metals\\XAUUSD"),
}
PASSWORD = os.environ.get("MT5SIM_PASSWORD", "sim-password")
SERVER = "SimBroker-Demo"
_WALL0 = _time.time()
_STATE: dict[str, Any] = {"up": False, "error": (RES_E_INTERNAL_FAIL_CONNECT, "No IPC connection"),
                          "account": 1002 if os.environ.get("MT5SIM_ACCOUNT", "netting") == "hedging" else 1001,
                          "ticket": 100_000, "request_id": 0}
_ACCOUNTS: dict[int, dict[str, Any]] = {
    login: {"login": login, "hedging": hedging, "balance": 10_000.0, "positions": {}, "orders": {}, "history_orders": {},
            "deals": {}}
    for login, hedging in ((1001, False), (1002, True))
}
_SERIES: dict[str, np.ndarray] = {}


def _now() -> int:
    base = int(os.environ.get("MT5SIM_NOW", 1704153630))  # 2024-01-02T00:00:30Z
    return base + int((_time.time() - _WALL0) * float(os.environ.get("MT5SIM_SPEED", "0")) * 60)


def _minutes(symbol: str) -> np.ndarray:
    """One-minute closes from the first bar up to and including the forming minute (grows with the clock)."""
    n = (_now() - _START) // 60 + 1
    have = _SERIES.get(symbol)
    if have is None or len(have) < n:
        digits, price, vol = _SPECS[symbol][:3]
        rng = np.random.default_rng(sum(map(ord, symbol)))
        steps = rng.normal(0.0, vol, size=max(n, 1) + 10_000)
        _SERIES[symbol] = np.round(price + np.cumsum(steps), digits)
    return _SERIES[symbol][:n]


def _bars(symbol: str, tf_minutes: int) -> np.ndarray:
    closes = _minutes(symbol)
    n = len(closes)
    t = _START + 60 * np.arange(n, dtype=np.int64)
    opens = np.r_[closes[0], closes[:-1]]
    wiggle = np.abs(np.random.default_rng(7).normal(0.0, _SPECS[symbol][2] / 2, n))
    highs, lows = np.maximum(opens, closes) + wiggle, np.minimum(opens, closes) - wiggle
    highs[-1], lows[-1] = max(opens[-1], closes[-1]), min(opens[-1], closes[-1])  # the forming minute so far
    secs = tf_minutes * 60
    g = (t - _START) // secs if tf_minutes < 10080 else t // secs
    starts = np.flatnonzero(np.r_[True, g[1:] != g[:-1]])
    ends = np.r_[starts[1:], n] - 1
    out = np.zeros(len(starts), dtype=RATE_DTYPE)
    out["time"] = t[starts] // secs * secs if tf_minutes >= 60 else t[starts]
    out["open"], out["close"] = opens[starts], closes[ends]
    out["high"], out["low"] = np.maximum.reduceat(highs, starts), np.minimum.reduceat(lows, starts)
    out["tick_volume"] = np.add.reduceat(np.full(n, 60, dtype=np.uint64), starts)
    out["spread"] = _SPECS[symbol][3]
    digits = _SPECS[symbol][0]
    for f in ("open", "high", "low", "close"):
        out[f] = np.round(out[f], digits)
    return out


def _tick(symbol: str) -> Tick:
    digits, _, _, spread = _SPECS[symbol][:4]
    bid = float(_minutes(symbol)[-1])
    now = _now()
    return Tick(now, bid, round(bid + spread * 10.0 ** -digits, digits), 0.0, 0, now * 1000, 6, 0.0)


def _ok(value: Any) -> Any:
    _STATE["error"] = (RES_S_OK, "Success")
    return value


def _fail(code: int, message: str) -> None:
    _STATE["error"] = (code, message)
    return None


def _up() -> bool:
    if not _STATE["up"]:
        _fail(RES_E_INTERNAL_FAIL_CONNECT, "No IPC connection")
    return _STATE["up"]


def _ts(d: Any) -> int:
    if isinstance(d, datetime):
        return int((d if d.tzinfo else d.replace(tzinfo=timezone.utc)).timestamp())
    return int(d)


def _symbol(name: Any) -> str | None:
    return name if isinstance(name, str) and name in _SPECS else None


# -- terminal ------------------------------------------------------------------------------------------
def initialize(path: str | None = None, **kwargs: Any) -> bool:
    if path is not None and not str(path).lower().endswith("terminal64.exe"):
        _fail(RES_E_INTERNAL_FAIL_INIT, "IPC initialize failed, MetaTrader 5 x64 not found")
        return False
    _STATE["up"] = True
    return _ok(True)


def login(login: int, password: str = "", server: str = "", timeout: int = 60000) -> bool:
    if not _up():
        return False
    if login not in _ACCOUNTS or password != PASSWORD or server != SERVER:
        _fail(RES_E_AUTH_FAILED, "Authorization failed")
        return False
    _STATE["account"] = login
    return _ok(True)


def shutdown() -> None:
    _STATE["up"] = False


def last_error() -> tuple[int, str]:
    return _STATE["error"]


def version() -> tuple[int, int, str] | None:
    return _ok((500, 5735, "03 Dec 2026")) if _up() else None


def terminal_info() -> TerminalInfo | None:
    if not _up():
        return None
    return _ok(TerminalInfo(False, False, True, False, True, False, False, False, False, False, 5735, 100000, 0, 0, 0.0,
                            0.0, "SimBroker", "MetaTrader 5 (simulated)", "English", "C:\\sim", "C:\\sim", "C:\\sim"))


def _acct() -> dict[str, Any]:
    return _ACCOUNTS[_STATE["account"]]


def _value(symbol: str, ptype: int, volume: float, open_: float, close: float) -> float:
    digits, _, _, _, contract, base, profit_ccy = _SPECS[symbol][:7]
    sign = 1.0 if ptype == POSITION_TYPE_BUY else -1.0
    amount = sign * (close - open_) * volume * contract
    return round(amount / close if profit_ccy == "JPY" else amount, 2)


def _margin(symbol: str, volume: float, price: float) -> float:
    contract, base = _SPECS[symbol][4], _SPECS[symbol][5]
    m = volume * contract / 100
    return round(m if base == "USD" else m * price, 2)


def _marked(p: dict[str, Any]) -> dict[str, Any]:
    tk = _tick(p["symbol"])
    cur = tk.bid if p["type"] == POSITION_TYPE_BUY else tk.ask
    return {**p, "price_current": cur, "profit": _value(p["symbol"], p["type"], p["volume"], p["price_open"], cur)}


def _totals(extra_margin: float = 0.0) -> dict[str, float]:
    a = _acct()
    ps = [_marked(p) for p in a["positions"].values()]
    profit = round(sum(p["profit"] for p in ps), 2)
    margin = round(sum(_margin(p["symbol"], p["volume"], p["price_open"]) for p in ps) + extra_margin, 2)
    equity = round(a["balance"] + profit, 2)
    return {"balance": a["balance"], "equity": equity, "profit": profit, "margin": margin,
            "margin_free": round(equity - margin, 2), "margin_level": round(equity / margin * 100, 2) if margin else 0.0}


def account_info() -> AccountInfo | None:
    if not _up():
        return None
    a, t = _acct(), _totals()
    return _ok(AccountInfo(a["login"], 0, 100, 200, 0, True, True,
                           ACCOUNT_MARGIN_MODE_RETAIL_HEDGING if a["hedging"] else ACCOUNT_MARGIN_MODE_RETAIL_NETTING,
                           2, False, t["balance"], 0.0, t["profit"], t["equity"], t["margin"], t["margin_free"],
                           t["margin_level"], 50.0, 30.0, 0.0, 0.0, 0.0, 0.0, 0.0, "Sim Trader", SERVER, "USD", "SimBroker Ltd"))


# -- symbols and market data -------------------------------------------------------------------------
def symbols_total() -> int:
    return len(_SPECS)


def symbols_get(group: str | None = None) -> tuple | None:
    if not _up():
        return None
    pats = [p.strip() for p in (group or "*").split(",") if p.strip()]
    inc = [p for p in pats if not p.startswith("!")] or ["*"]
    exc = [p[1:] for p in pats if p.startswith("!")]
    names = [n for n in _SPECS if any(fnmatch.fnmatchcase(n, p) for p in inc) and not any(fnmatch.fnmatchcase(n, p) for p in exc)]
    return _ok(tuple(symbol_info(n) for n in names))


def symbol_info(symbol: str) -> SymbolInfo | None:
    if not _up():
        return None
    if _symbol(symbol) is None:
        return _fail(RES_E_NOT_FOUND, "Terminal: Not found")
    digits, _, _, spread, contract, base, profit_ccy, desc, path = _SPECS[symbol]
    tk = _tick(symbol)
    point = 10.0 ** -digits
    tv = contract * point / (tk.bid if profit_ccy == "JPY" else 1.0)
    return SymbolInfo(False, 0, True, True, 0, 0, 0, 0, 0, 0, tk.time, digits, spread, True, 0, 0, 4, 0, 0, 0, 0, 2, 1, 3,
                      False, 15, SYMBOL_FILLING_FOK | SYMBOL_FILLING_IOC, 127, 0, 0, 0, tk.bid, tk.bid, tk.bid, tk.ask,
                      tk.ask, tk.ask, 0.0, 0.0, 0.0, 0.0, point, tv, tv, tv, point, contract, tv, tv, tv, point, contract,
                      0.01, 100.0, 0.01, 0.0, 0.0, 0.0, 0.0, 0.0, base, profit_ccy, base, desc, path, symbol)


def symbol_info_tick(symbol: str) -> Tick | None:
    if not _up():
        return None
    if _symbol(symbol) is None:
        return _fail(RES_E_NOT_FOUND, "Terminal: Not found")
    return _ok(_tick(symbol))


def symbol_select(symbol: str, enable: bool = True) -> bool:
    if not _up():
        return False
    return bool(_ok(True)) if _symbol(symbol) else bool(_fail(RES_E_NOT_FOUND, "Terminal: Not found") or False)


def _rates_check(symbol: str, timeframe: int) -> np.ndarray | None:
    if not _up():
        return None
    if _symbol(symbol) is None or timeframe not in _TF_MIN:
        return _fail(RES_E_INVALID_PARAMS, "Terminal: Invalid params")
    return _bars(symbol, _TF_MIN[timeframe])


def copy_rates_from_pos(symbol: str, timeframe: int, start_pos: int, count: int) -> np.ndarray | None:
    bars = _rates_check(symbol, timeframe)
    if bars is None:
        return None
    end = len(bars) - int(start_pos)
    return _ok(bars[max(0, end - int(count)):max(0, end)].copy())


def copy_rates_from(symbol: str, timeframe: int, date_from: Any, count: int) -> np.ndarray | None:
    bars = _rates_check(symbol, timeframe)
    if bars is None:
        return None
    end = int(np.searchsorted(bars["time"], _ts(date_from), side="right"))
    return _ok(bars[max(0, end - int(count)):end].copy())


def copy_rates_range(symbol: str, timeframe: int, date_from: Any, date_to: Any) -> np.ndarray | None:
    bars = _rates_check(symbol, timeframe)
    if bars is None:
        return None
    lo, hi = _ts(date_from), _ts(date_to)
    return _ok(bars[(bars["time"] >= lo) & (bars["time"] <= hi)].copy())


def _ticks(symbol: str) -> np.ndarray | None:
    if not _up():
        return None
    if _symbol(symbol) is None:
        return _fail(RES_E_INVALID_PARAMS, "Terminal: Invalid params")
    closes = _minutes(symbol)
    digits, spread = _SPECS[symbol][0], _SPECS[symbol][3]
    t = _START + 60 * np.arange(len(closes), dtype=np.int64) + 30
    keep = t <= _now()
    out = np.zeros(int(keep.sum()), dtype=TICK_DTYPE)
    out["time"], out["bid"] = t[keep], closes[keep]
    out["ask"] = np.round(closes[keep] + spread * 10.0 ** -digits, digits)
    out["time_msc"], out["flags"] = t[keep] * 1000, 6
    return out


def copy_ticks_from(symbol: str, date_from: Any, count: int, flags: int) -> np.ndarray | None:
    ticks = _ticks(symbol)
    if ticks is None:
        return None
    lo = int(np.searchsorted(ticks["time"], _ts(date_from), side="left"))
    return _ok(ticks[lo:lo + int(count)].copy())


def copy_ticks_range(symbol: str, date_from: Any, date_to: Any, flags: int) -> np.ndarray | None:
    ticks = _ticks(symbol)
    if ticks is None:
        return None
    return _ok(ticks[(ticks["time"] >= _ts(date_from)) & (ticks["time"] <= _ts(date_to))].copy())


# -- positions, orders, history -------------------------------------------------------------------------
def _select(rows: list[dict[str, Any]], symbol: str | None, group: str | None, ticket: int | None) -> list[dict[str, Any]]:
    if symbol is not None:
        rows = [r for r in rows if r["symbol"] == symbol]
    if group is not None:
        rows = [r for r in rows if any(fnmatch.fnmatchcase(r["symbol"], g.strip()) for g in group.split(","))]
    if ticket is not None:
        rows = [r for r in rows if r["ticket"] == ticket]
    return rows


def positions_total() -> int:
    return len(_acct()["positions"])


def positions_get(symbol: str | None = None, group: str | None = None, ticket: int | None = None) -> tuple | None:
    if not _up():
        return None
    rows = _select([_marked(p) for p in _acct()["positions"].values()], symbol, group, ticket)
    return _ok(tuple(TradePosition(**r) for r in rows))


def orders_total() -> int:
    return len(_acct()["orders"])


def orders_get(symbol: str | None = None, group: str | None = None, ticket: int | None = None) -> tuple | None:
    if not _up():
        return None
    return _ok(tuple(TradeOrder(**r) for r in _select(list(_acct()["orders"].values()), symbol, group, ticket)))


def _history(table: str, tcol: str, pcol: str, kwargs: dict[str, Any]) -> tuple | None:
    if not _up():
        return None
    rows = _select(list(_acct()[table].values()), kwargs.get("symbol"), kwargs.get("group"), kwargs.get("ticket"))
    if kwargs.get("position") is not None:
        rows = [r for r in rows if r[pcol] == kwargs["position"]]
    lo, hi = kwargs.get("from", kwargs.get("date_from")), kwargs.get("to", kwargs.get("date_to"))
    if lo is not None:
        rows = [r for r in rows if r[tcol] >= _ts(lo)]
    if hi is not None:
        rows = [r for r in rows if r[tcol] <= _ts(hi)]
    return _ok(tuple(rows))


def history_orders_get(*args: Any, **kwargs: Any) -> tuple | None:
    rows = _history("history_orders", "time_setup", "position_id", kwargs)
    return None if rows is None else tuple(TradeOrder(**r) for r in rows)


def history_deals_get(*args: Any, **kwargs: Any) -> tuple | None:
    rows = _history("deals", "time", "position_id", kwargs)
    return None if rows is None else tuple(TradeDeal(**r) for r in rows)


# -- trading ------------------------------------------------------------------------------------------
def _request(req: dict[str, Any]) -> TradeRequest:
    full = {f: req.get(f, 0) for f in TradeRequest._fields}
    full["symbol"], full["comment"] = req.get("symbol", ""), req.get("comment", "")
    return TradeRequest(**full)


def _result(retcode: int, req: dict[str, Any], comment: str, **kw: Any) -> OrderSendResult:
    _STATE["request_id"] += 1
    tk = _tick(req["symbol"]) if _symbol(req.get("symbol")) else Tick(0, 0.0, 0.0, 0.0, 0, 0, 0, 0.0)
    return OrderSendResult(retcode, kw.get("deal", 0), kw.get("order", 0), kw.get("volume", 0.0), kw.get("price", 0.0),
                           tk.bid, tk.ask, comment, _STATE["request_id"], 0, _request(req))


def _next() -> int:
    _STATE["ticket"] += 1
    return _STATE["ticket"]


def _validate(req: dict[str, Any]) -> tuple[int, str] | None:
    action = req.get("action")
    if action in (TRADE_ACTION_DEAL, TRADE_ACTION_PENDING):
        if _symbol(req.get("symbol")) is None:
            return TRADE_RETCODE_INVALID, "Invalid request"
        v = req.get("volume", 0)
        if not 0.01 - 1e-9 <= v <= 100.0 or abs(round(v / 0.01) * 0.01 - v) > 1e-9:
            return TRADE_RETCODE_INVALID_VOLUME, "Invalid volume"
        if action == TRADE_ACTION_DEAL and req.get("type") not in (ORDER_TYPE_BUY, ORDER_TYPE_SELL):
            return TRADE_RETCODE_INVALID, "Invalid request"
        if action == TRADE_ACTION_DEAL and req.get("type_filling", ORDER_FILLING_IOC) not in (ORDER_FILLING_FOK, ORDER_FILLING_IOC):
            return TRADE_RETCODE_INVALID_FILL, "Unsupported filling mode"
    return None


def order_check(request: dict[str, Any]) -> OrderCheckResult | None:
    if not _up():
        return None
    bad = _validate(request)
    extra = 0.0
    if bad is None and request.get("action") == TRADE_ACTION_DEAL and not request.get("position"):
        tk = _tick(request["symbol"])
        extra = _margin(request["symbol"], request["volume"], tk.ask)
    t = _totals(extra)
    if bad is None and t["margin_free"] < 0:
        bad = (TRADE_RETCODE_NO_MONEY, "No money")
    return _ok(OrderCheckResult(bad[0] if bad else 0, t["balance"], t["equity"], t["profit"], t["margin"],
                                t["margin_free"], t["margin_level"], bad[1] if bad else "Done", _request(request)))


def order_send(request: dict[str, Any]) -> OrderSendResult | None:
    if not _up():
        return None
    if not isinstance(request, dict) or "action" not in request:
        return _fail(RES_E_INVALID_PARAMS, "Invalid params")
    req = dict(request)
    bad = _validate(req)
    if bad:
        return _ok(_result(bad[0], req, bad[1]))
    a, now = _acct(), _now()
    action = req["action"]
    if action == TRADE_ACTION_DEAL:
        return _ok(_deal(a, req, now))
    if action == TRADE_ACTION_PENDING:
        tk = _tick(req["symbol"])
        ticket = _next()
        a["orders"][ticket] = {
            "ticket": ticket, "time_setup": now, "time_setup_msc": now * 1000, "time_done": 0, "time_done_msc": 0,
            "time_expiration": req.get("expiration", 0), "type": req["type"], "type_time": req.get("type_time", 0),
            "type_filling": req.get("type_filling", ORDER_FILLING_RETURN), "state": ORDER_STATE_PLACED,
            "magic": req.get("magic", 0), "position_id": 0, "position_by_id": 0, "reason": 3,
            "volume_initial": req["volume"], "volume_current": req["volume"], "price_open": req["price"],
            "sl": req.get("sl", 0.0), "tp": req.get("tp", 0.0), "price_current": tk.bid,
            "price_stoplimit": req.get("stoplimit", 0.0), "symbol": req["symbol"], "comment": req.get("comment", ""),
            "external_id": ""}
        return _ok(_result(TRADE_RETCODE_DONE, req, "Request executed", order=ticket, volume=req["volume"],
                           price=req["price"]))
    if action == TRADE_ACTION_REMOVE:
        o = a["orders"].pop(req.get("order"), None)
        if o is None:
            return _ok(_result(TRADE_RETCODE_INVALID_ORDER, req, "Invalid order"))
        a["history_orders"][o["ticket"]] = {**o, "state": ORDER_STATE_CANCELED, "time_done": now, "time_done_msc": now * 1000}
        return _ok(_result(TRADE_RETCODE_DONE, req, "Request executed", order=o["ticket"]))
    if action == TRADE_ACTION_MODIFY:
        o = a["orders"].get(req.get("order"))
        if o is None:
            return _ok(_result(TRADE_RETCODE_INVALID_ORDER, req, "Invalid order"))
        o.update(price_open=req["price"], sl=req.get("sl", o["sl"]), tp=req.get("tp", o["tp"]))
        return _ok(_result(TRADE_RETCODE_DONE, req, "Request executed", order=o["ticket"]))
    if action == TRADE_ACTION_SLTP:
        p = a["positions"].get(req.get("position"))
        if p is None:
            return _ok(_result(TRADE_RETCODE_POSITION_CLOSED, req, "Position doesn't exist"))
        p.update(sl=req.get("sl", p["sl"]), tp=req.get("tp", p["tp"]), time_update=now, time_update_msc=now * 1000)
        return _ok(_result(TRADE_RETCODE_DONE, req, "Request executed"))
    if action == TRADE_ACTION_CLOSE_BY:
        if not a["hedging"]:
            return _ok(_result(TRADE_RETCODE_HEDGE_PROHIBITED, req, "Close by is for hedging accounts"))
        p, q = a["positions"].get(req.get("position")), a["positions"].get(req.get("position_by"))
        if p is None or q is None or p["type"] == q["type"] or p["symbol"] != q["symbol"]:
            return _ok(_result(TRADE_RETCODE_INVALID, req, "Invalid request"))
        vol = min(p["volume"], q["volume"])
        for x, other in ((p, q), (q, p)):
            _book(a, x["symbol"], 1 - x["type"], vol, other["price_open"] if x is p else x["price_open"],
                  x.get("magic", 0), "close by", now, order=0, position=x)
        return _ok(_result(TRADE_RETCODE_DONE, req, "Request executed", volume=vol))
    return _ok(_result(TRADE_RETCODE_INVALID, req, "Invalid request"))


def _deal(a: dict[str, Any], req: dict[str, Any], now: int) -> OrderSendResult:
    sym, side, vol = req["symbol"], req["type"], round(req["volume"], 2)
    tk = _tick(sym)
    price = tk.ask if side == ORDER_TYPE_BUY else tk.bid
    point = 10.0 ** -_SPECS[sym][0]
    if req.get("price") and req.get("deviation") is not None and abs(price - req["price"]) > req["deviation"] * point + 1e-12:
        return _result(TRADE_RETCODE_REQUOTE, req, "Requote")
    target = None
    if req.get("position"):
        target = a["positions"].get(req["position"])
        if target is None:
            return _result(TRADE_RETCODE_POSITION_CLOSED, req, "Position doesn't exist")
        if target["type"] == side or vol > target["volume"] + 1e-9:
            return _result(TRADE_RETCODE_INVALID_CLOSE_VOLUME, req, "Invalid close volume")
    if target is None and (a["hedging"] or not any(p["symbol"] == sym for p in a["positions"].values())):
        t = _totals(_margin(sym, vol, price))
        if t["margin_free"] < 0:
            return _result(TRADE_RETCODE_NO_MONEY, req, "No money")
    order = _next()
    a["history_orders"][order] = {
        "ticket": order, "time_setup": now, "time_setup_msc": now * 1000, "time_done": now, "time_done_msc": now * 1000,
        "time_expiration": 0, "type": side, "type_time": 0, "type_filling": req.get("type_filling", ORDER_FILLING_IOC),
        "state": ORDER_STATE_FILLED, "magic": req.get("magic", 0), "position_id": 0, "position_by_id": 0, "reason": 3,
        "volume_initial": vol, "volume_current": 0.0, "price_open": price, "sl": req.get("sl", 0.0),
        "tp": req.get("tp", 0.0), "price_current": price, "price_stoplimit": 0.0, "symbol": sym,
        "comment": req.get("comment", ""), "external_id": ""}
    deal = _book(a, sym, side, vol, price, req.get("magic", 0), req.get("comment", ""), now, order=order, position=target,
                 sl=req.get("sl", 0.0), tp=req.get("tp", 0.0))
    return _result(TRADE_RETCODE_DONE, req, "Request executed", deal=deal, order=order, volume=vol, price=price)


def _book(a: dict[str, Any], sym: str, side: int, vol: float, price: float, magic: int, comment: str, now: int, *,
          order: int, position: dict[str, Any] | None, sl: float = 0.0, tp: float = 0.0) -> int:
    """Book one deal: open, add to, reduce, close or (netting) reverse a position; returns the deal ticket."""
    ps = a["positions"]
    if position is None and not a["hedging"]:
        position = next((p for p in ps.values() if p["symbol"] == sym), None)
    profit, entry = 0.0, DEAL_ENTRY_IN
    if position is None:
        ticket = order or _next()
        ps[ticket] = {"ticket": ticket, "time": now, "time_msc": now * 1000, "time_update": now,
                      "time_update_msc": now * 1000, "type": side, "magic": magic, "identifier": ticket, "reason": 3,
                      "volume": vol, "price_open": price, "sl": sl, "tp": tp, "swap": 0.0, "symbol": sym,
                      "comment": comment, "external_id": ""}
        pid = ticket
    elif position["type"] == side:  # netting: add
        nv = round(position["volume"] + vol, 2)
        position.update(price_open=round((position["price_open"] * position["volume"] + price * vol) / nv, 6), volume=nv,
                        time_update=now, time_update_msc=now * 1000)
        pid = position["ticket"]
    else:
        pid = position["ticket"]
        closed = min(vol, position["volume"])
        profit = _value(sym, position["type"], closed, position["price_open"], price)
        left = round(position["volume"] - vol, 2)
        if left > 1e-9:
            position.update(volume=left, time_update=now, time_update_msc=now * 1000)
            entry = DEAL_ENTRY_OUT
        elif left < -1e-9:  # reversal (netting only)
            position.update(type=side, volume=-left, price_open=price, time_update=now, time_update_msc=now * 1000)
            entry = DEAL_ENTRY_INOUT
        else:
            del ps[pid]
            entry = DEAL_ENTRY_OUT
    a["balance"] = round(a["balance"] + profit, 2)
    deal = _next()
    a["deals"][deal] = {"ticket": deal, "order": order, "time": now, "time_msc": now * 1000, "type": side,
                        "entry": entry, "magic": magic, "position_id": pid, "reason": 3, "volume": vol, "price": price,
                        "commission": 0.0, "swap": 0.0, "profit": profit, "fee": 0.0, "symbol": sym, "comment": comment,
                        "external_id": ""}
    if order in a["history_orders"]:
        a["history_orders"][order]["position_id"] = pid
    return deal
