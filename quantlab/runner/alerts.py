"""The runner's alert service: price and drawdown alerts that fire once into the journal.

Checked after every bar the runner processes (:meth:`AlertTools._alerts`): ``price_above``
/ ``price_below`` watch a symbol's bid, ``drawdown`` a deployment's PnL below its peak.
"""
from __future__ import annotations

import math
import time as _time

from .broker import RunnerError

__all__ = ["AlertTools", "ALERT_KINDS"]

ALERT_KINDS = ("price_above", "price_below", "drawdown")


class AlertTools:
    """Mixin of :class:`~quantlab.runner.core.Runner`: set_alert, list_alerts and the check after each bar."""

    def set_alert(self, kind: str, threshold: float, symbol: str | None = None, deployment_id: int | None = None) -> dict:
        """An alert that fires once into the journal (checked after every bar the runner processes)."""
        if kind not in ALERT_KINDS:
            raise RunnerError(f"kind must be one of {ALERT_KINDS}, got {kind!r}.")
        if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not math.isfinite(threshold) or threshold <= 0:
            raise RunnerError(f"threshold must be a positive number, got {threshold!r}.")
        dep = self._row(deployment_id) if deployment_id is not None else None
        if kind.startswith("price"):
            symbol = symbol or (dep or {}).get("symbol")
            if not symbol:
                raise RunnerError("a price alert needs a symbol (or a deployment_id whose symbol to watch).")
        elif dep is None:
            raise RunnerError("a drawdown alert needs a deployment_id.")
        with self.store.tx():
            aid = self.store.insert("alerts", {"deployment_id": dep["id"] if dep else None, "symbol": symbol, "kind": kind,
                                               "threshold": float(threshold), "status": "active", "created": _time.time(),
                                               "fired_time": None, "message": None, "peak": None})
            self._log(dep["id"] if dep else None, "alert", f"alert {aid} set: {kind} {threshold:g}" + (f" on {symbol}" if symbol else ""))
        return self.store.one("SELECT * FROM alerts WHERE id = ?", (aid,)) or {}

    def list_alerts(self, deployment_id: int | None = None, status: str | None = None) -> list[dict]:
        conds, args = [], []
        if deployment_id is not None:
            conds.append("deployment_id = ?")
            args.append(int(deployment_id))
        if status:
            conds.append("status = ?")
            args.append(status)
        return self.store.q("SELECT * FROM alerts" + (" WHERE " + " AND ".join(conds) if conds else "") + " ORDER BY id", args)

    async def _alerts(self, now: int) -> None:
        alerts = self.store.q("SELECT * FROM alerts WHERE status = 'active'")
        for a in alerts:
            msg = None
            try:
                if a["kind"] in ("price_above", "price_below"):
                    tick = await self._tick(a["symbol"])
                    bid = float(tick["bid"])
                    if a["kind"] == "price_above" and bid >= a["threshold"]:
                        msg = f"{a['symbol']} bid {bid} >= {a['threshold']:g}"
                    elif a["kind"] == "price_below" and bid <= a["threshold"]:
                        msg = f"{a['symbol']} bid {bid} <= {a['threshold']:g}"
                else:
                    dep = self._row(a["deployment_id"])
                    value = (await self._pnl(dep))["pnl"]
                    if value is None:
                        continue
                    peak = max(a["peak"] if a["peak"] is not None else value, value)
                    if peak - value >= a["threshold"]:
                        msg = (f"drawdown alert: deployment {dep['id']} PnL {value:.2f} is {peak - value:.2f} below its "
                               f"peak {peak:.2f} (threshold {a['threshold']:g})")
                    self.store.update("alerts", "id", a["id"], peak=peak)
            except RunnerError:
                continue
            if msg:
                with self.store.tx():
                    self.store.update("alerts", "id", a["id"], status="fired", fired_time=now, message=msg)
                    self._log(a["deployment_id"], "alert", msg, {"alert_id": a["id"], "kind": a["kind"]}, t=now)
