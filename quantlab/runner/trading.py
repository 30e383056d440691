"""Acting on a completed bar: evaluate the deployment's signals(), size the target, trade the difference.

:meth:`Trading._act` is one deployment's bar: the target of its latest completed bar
(:meth:`Trading._evaluate`, in the deployment's sandboxed session), sized in lots, reconciled
with its own positions (by ``magic``) and sent with ``order_send({"request": ...})`` at the
tick's price with a deviation (:meth:`Trading._trade`; on a hedging account closing by
``position=<ticket>``), then committed in one SQLite transaction. A strategy failure fails
that deployment only (:meth:`Trading._fail`).
"""
from __future__ import annotations

import asyncio
import json
import time as _time
from typing import Any, Mapping

from .broker import EPS, RunnerError
from .evaluation import DeploymentSignals, StrategyFailed

__all__ = ["Trading", "DEAL_SUCCESS"]

DEAL_SUCCESS = (10008, 10009, 10010)


class Trading:
    """Mixin of :class:`~quantlab.runner.core.Runner`: one deployment's bar, and its orders."""

    def _fail(self, dep: dict[str, Any], error: str) -> None:
        sig = self._signals.pop(dep["id"], None)
        if sig is not None:
            sig.close()
        with self.store.tx():
            self.store.update("deployments", "id", dep["id"], status="failed", error=error, updated=_time.time())
            self._log(dep["id"], "error", f"strategy failed: {error}")
            self._log(dep["id"], "status", "running -> failed (its positions are kept; stop_deployment closes them)")
        dep["status"] = "failed"
        self._running = None

    async def _evaluate(self, dep: dict[str, Any], now: int, rates_cache: dict) -> tuple[float, int, int] | None:
        """The target of the latest completed bar after ``last_bar_time``: ``(target, bar_time, skipped)`` or ``None``."""
        cfg = json.loads(dep["config"] or "{}")
        lookback = int(cfg.get("lookback", self.lookback))
        timeout = float(cfg.get("timeout", self.timeout))
        last = int(dep["last_bar_time"] or 0)
        sig = self._signals.get(dep["id"])
        key = (dep["symbol"], dep["timeframe"])
        fut = rates_cache.get(key)
        if fut is None:
            fut = rates_cache[key] = asyncio.ensure_future(self._rates(dep["symbol"], dep["timeframe"], 4))
        bars = self._completed(await fut)
        times = bars["time"]
        if not len(times) or int(times[-1]) <= last:
            return None
        if sig is not None and int(times[0]) <= last:  # contiguous: only the new bars travel
            new = {k: v[times > last] for k, v in bars.items()}
            reset = False
        else:  # a fresh session (restart) or a gap: reload the whole window
            if sig is None:
                sig = await asyncio.to_thread(DeploymentSignals.load, dep["code"], dep["name"], json.loads(dep["params"]),
                                              lookback=lookback, timeout=timeout)
                self._signals[dep["id"]] = sig
            new = self._completed(await self._rates(dep["symbol"], dep["timeframe"], lookback + 2))
            reset = True
        n_new = int((new["time"] > last).sum())
        t0 = _time.perf_counter()
        targets = await sig.evaluate_async(new, reset=reset, want=1)
        self._timed("signals", t0)
        return float(targets[-1]), int(new["time"][-1]), max(0, n_new - 1)

    async def _act(self, dep: dict[str, Any], now: int, rates_cache: dict) -> int:
        """Act on the latest completed bar of one deployment; return the number of fills."""
        try:
            got = await self._evaluate(dep, now, rates_cache)
        except StrategyFailed as exc:
            self._fail(dep, str(exc))
            return 0
        except RunnerError as exc:
            self.last_error = str(exc)
            with self.store.tx():
                self._log(dep["id"], "error", f"bar skipped: {exc}", t=now)
            return 0
        if got is None:
            return 0
        target, bar_time, skipped = got
        spec = await self._spec(dep["symbol"])
        desired = self.lots(spec, target * float(dep["volume"]))
        lots = float(dep["lots"])
        fills: list[dict[str, Any]] = []
        error = None
        price = None
        if abs(desired - lots) > EPS:
            try:
                lots, mine = await self._own_positions(dep)
                if abs(desired - lots) > EPS:
                    lots, fills, error = await self._trade(dep, lots, mine, desired)
            except RunnerError as exc:
                error = str(exc)
        if fills:
            price = fills[-1]["price"]
        t0 = _time.perf_counter()
        with self.store.tx():
            if skipped:
                self._log(dep["id"], "skipped", f"{skipped} completed bar(s) were missed; acted on the latest only",
                          {"skipped": skipped}, t=bar_time)
            if abs(target - float(dep["target"])) > EPS:
                self._log(dep["id"], "signal", f"target {float(dep['target']):g} -> {target:g}", {"target": target}, t=bar_time)
            if error:
                self._log(dep["id"], "error", f"order not filled: {error}", t=bar_time)
            self._record_fills(dep, fills, bar_time)
            self.store.conn.execute(
                "INSERT OR REPLACE INTO steps (deployment_id, bar_time, target, lots, price, skipped) VALUES (?, ?, ?, ?, ?, ?)",
                (dep["id"], bar_time, target, lots, price, skipped))
            self.store.conn.execute(
                "UPDATE deployments SET lots = ?, target = ?, last_bar_time = ?, bars = bars + 1, orders = orders + ?, "
                "skipped = skipped + ?, updated = ? WHERE id = ?",
                (lots, target, bar_time, len(fills), skipped, _time.time(), dep["id"]))
        self._timed("sqlite", t0)
        dep.update(lots=lots, target=target, last_bar_time=bar_time)
        return len(fills)

    def _record_fills(self, dep: Mapping[str, Any], fills: list[dict[str, Any]], bar_time: int | None) -> None:
        for f in fills:
            self.store.insert("fills", {"deployment_id": dep["id"], "bar_time": bar_time, "deal": f.get("deal"),
                                        "order": f.get("order"), "type": f["type"], "volume": f["volume"],
                                        "price": f["price"], "position": f.get("position"), "wall_time": _time.time()})
            side = "buy" if f["type"] == 0 else "sell"
            self._log(dep["id"], "fill", f"{side} {f['volume']:g} {dep['symbol']} @ {f['price']} (deal {f.get('deal')})"
                      + (f", closing position {f['position']}" if f.get("position") else ""), f, t=bar_time)

    async def _trade(self, dep: Mapping[str, Any], lots: float, mine: list[dict[str, Any]], desired: float,
                     reason: str = "signal") -> tuple[float, list[dict[str, Any]], str | None]:
        """Send orders so the deployment holds ``desired`` lots; return (lots now, fills, error)."""
        spec = await self._spec(dep["symbol"])
        cfg = json.loads(dep["config"] or "{}")
        base = {"action": 1, "symbol": dep["symbol"], "magic": int(dep["magic"]),
                "deviation": int(cfg.get("deviation", self.deviation)),
                "comment": str(cfg.get("comment") or f"quantlab {dep['id']}")[:31]}
        requests: list[dict[str, Any]] = []
        diff = round(desired - lots, 8)
        if await self._account() and lots and (desired * lots <= 0 or abs(desired) < abs(lots)):
            need = abs(diff) if desired * lots > 0 else abs(lots)
            for p in sorted(mine, key=lambda p: int(p["ticket"]), reverse=True):
                if need <= EPS:
                    break
                v = round(min(float(p["volume"]), need), 8)
                requests.append({**base, "type": 1 - int(p["type"]), "volume": v, "position": int(p["ticket"])})
                need = round(need - v, 8)
            rest = desired if desired * lots <= 0 else 0.0
            if abs(rest) > EPS:
                requests.append({**base, "type": 0 if rest > 0 else 1, "volume": round(abs(rest), 8)})
        else:
            requests.append({**base, "type": 0 if diff > 0 else 1, "volume": round(abs(diff), 8)})
        fills: list[dict[str, Any]] = []
        for req in requests:
            tick = await self._tick(dep["symbol"])
            req["price"] = float(tick["ask"] if req["type"] == 0 else tick["bid"])
            try:
                res = await self._b("order_send", {"request": req})
            except RunnerError as exc:
                return lots, fills, f"{exc} (request {req})"
            res = res or {}
            retcode = int(res.get("retcode", 10009))
            if retcode not in DEAL_SUCCESS:
                return lots, fills, f"retcode {retcode}: {res.get('comment')} (request {req})"
            vol = float(res.get("volume") or req["volume"])
            lots = round(lots + (vol if req["type"] == 0 else -vol), 8)
            fills.append({"deal": res.get("deal"), "order": res.get("order"), "type": req["type"], "volume": vol,
                          "price": float(res.get("price") or req["price"]), "position": req.get("position"),
                          "reason": reason, "lots": lots})
        return lots, fills, None
