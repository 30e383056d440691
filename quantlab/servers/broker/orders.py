"""Trade requests: validation, ``order_send`` / ``order_check``, deals and fills, pending orders, SL/TP,
modify, remove, close-by (the rules are in :mod:`quantlab.servers.broker.book`).
"""
from __future__ import annotations

import math
from typing import Any

from . import constants as C
from .base import EPS, REQUEST_FIELDS, Rollback, TradeError, ms, rnd
from .feed import SymbolSpec

__all__ = ["OrderRequests"]


class OrderRequests:
    """Mixin of :class:`~quantlab.servers.broker.book.Broker`: every trade request, each in one transaction."""

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

        >>> from quantlab.servers.broker import Broker
        >>> b = Broker.open(":memory:", symbols=["EURUSD"])
        >>> b.order_check({"action": 1, "symbol": "EURUSD", "volume": 0.015, "type": 0})["retcode"]
        10014
        """
        with self.store.lock:
            try:
                with self.store.tx():
                    res = self._send(request, check_only=True)
                    raise Rollback(res)
            except Rollback as rb:
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
        price = rnd(q["ask"] + slip, spec.digits) if side == C.ORDER_TYPE_BUY else rnd(q["bid"] - slip, spec.digits)
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
            "ticket": order_ticket, "time_setup": t, "time_setup_msc": ms(t), "time_done": t, "time_done_msc": ms(t),
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
                st.update("positions", "ticket", pos["ticket"], volume=left, time_update=t, time_update_msc=ms(t))
            return profit

        def open_new(vol: float, ticket: int) -> None:
            st.insert("positions", {
                "ticket": ticket, "time": t, "time_msc": ms(t), "time_update": t, "time_update_msc": ms(t),
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
                avg = rnd((cur["price_open"] * cur["volume"] + price * volume) / nv, spec.digits + 3)
                upd = dict(volume=nv, price_open=avg, time_update=t, time_update_msc=ms(t))
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
                          price_open=price, sl=sl, tp=tp, time_update=t, time_update_msc=ms(t), magic=magic)
                deals.append(dict(entry=C.DEAL_ENTRY_INOUT, position_id=cur["ticket"], volume=volume, profit=profit))
        ticket = 0
        for d in deals:
            ticket = self._next("deals")
            st.insert("deals", {
                "ticket": ticket, "order": order, "time": t, "time_msc": ms(t), "type": side, "entry": d["entry"],
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
        price = rnd(price, spec.digits)
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
            "ticket": ticket, "time_setup": t, "time_setup_msc": ms(t), "time_done": 0, "time_done_msc": 0,
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
        self.store.update("positions", "ticket", p["ticket"], sl=sl, tp=tp, time_update=t, time_update_msc=ms(t))
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
        self.store.update("orders", "ticket", o["ticket"], price_open=rnd(price, spec.digits), sl=sl, tp=tp)
        return self._result(req, C.TRADE_RETCODE_DONE, order=o["ticket"], volume=o["volume_current"], price=price, q=q)

    def _remove(self, req: dict, check_only: bool) -> dict[str, Any]:
        o = self._get_order(req)
        if check_only:
            return self._check_result(req, 0.0)
        t = self.now()
        self.store.update("orders", "ticket", o["ticket"], state=C.ORDER_STATE_CANCELED, time_done=t, time_done_msc=ms(t))
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
            "ticket": order, "time_setup": t, "time_setup_msc": ms(t), "time_done": t, "time_done_msc": ms(t),
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
