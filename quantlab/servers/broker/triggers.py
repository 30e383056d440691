"""The market clock of the paper broker: ``advance`` reveals bars, then pending orders and SL/TP trigger
bar by bar and the stop-out closes the worst position while the margin level is too low.
"""
from __future__ import annotations

from typing import Any, Iterable

from . import constants as C
from .base import STOP_OUT_LEVEL, TradeError, ms, rnd

__all__ = ["MarketClock"]


class MarketClock:
    """Mixin of :class:`~quantlab.servers.broker.book.Broker`: advance, triggers, stop-out."""

    def advance(self, bars: int) -> dict[str, Any]:
        """Reveal ``bars`` more bars; trigger pending orders and SL/TP.

        Everything happens in one transaction; on an unexpected error the clock
        and all state stay where they were.

        >>> from quantlab.servers.broker import Broker
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
                self.store.update("orders", "ticket", od["ticket"], state=C.ORDER_STATE_EXPIRED, time_done=now, time_done_msc=ms(now))
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
            fill = rnd(fill, nd)
            self.store.update("orders", "ticket", od["ticket"], state=C.ORDER_STATE_FILLED, time_done=now,
                              time_done_msc=ms(now), volume_current=0.0, price_current=fill)
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
            px, why = rnd(hit[0], nd), hit[1]
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
            "ticket": order, "time_setup": now, "time_setup_msc": ms(now), "time_done": now, "time_done_msc": ms(now),
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
