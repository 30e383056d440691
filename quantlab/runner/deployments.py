"""The runner's deployment tools: deploy, list, get, journal, the bars a deployment acted on, stop.

A deployment is a strategy stored in the assets hub (loaded by commit) bound to a symbol,
a timeframe and a volume; its rows live in the runner's SQLite store
(:mod:`quantlab.runner.store`). ``stop`` flattens its positions (reconciled from the
broker) before it is marked stopped.
"""
from __future__ import annotations

import asyncio
import json
import math
import time as _time
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from .broker import EPS, RunnerError, canon, iso
from .evaluation import DeploymentSignals, StrategyFailed

__all__ = ["DeploymentTools", "MAGIC_BASE", "STATUSES", "CONFIG_KEYS"]

MAGIC_BASE = 5_300_000  # deployment n trades with magic MAGIC_BASE + n
STATUSES = ("running", "stopped", "failed")
CONFIG_KEYS = {"lookback": int, "timeout": (int, float), "deviation": int, "comment": str}


class DeploymentTools:
    """Mixin of :class:`~quantlab.runner.core.Runner`: the deployment tools and the journal."""

    def _log(self, dep_id: int | None, kind: str, message: str, data: Mapping[str, Any] | None = None,
             t: int | None = None) -> None:
        self.store.insert("journal", {"deployment_id": dep_id, "time": t, "wall_time": _time.time(), "kind": kind,
                                      "message": message, "data": canon(dict(data or {}))})

    def _row(self, deployment_id: Any) -> dict[str, Any]:
        if isinstance(deployment_id, bool):
            deployment_id = None
        try:
            i = int(str(deployment_id))
        except (TypeError, ValueError):
            raise RunnerError(f"deployment_id must be an integer, got {deployment_id!r}.") from None
        row = self.store.one("SELECT * FROM deployments WHERE id = ?", (i,))
        if row is None:
            raise RunnerError(f"no deployment {i}; list them with list_deployments (`quantlab deployments`).")
        return row

    def _load(self, commit: str, hub: str | None) -> tuple[Any, str]:
        from quantlab.hub import AssetsHub

        path = hub or self.hub_path
        if not path:
            raise RunnerError("this runner has no assets hub; start it with --hub PATH or pass hub=PATH.")
        store = self._hubs.get(path)
        if store is None:
            if not Path(path).is_dir():
                raise RunnerError(f"no assets hub at {path!r}.")
            store = self._hubs[path] = AssetsHub(path)
        try:
            stored = store.get(commit)
        except Exception as exc:  # noqa: BLE001 - HubError and git's own errors
            raise RunnerError(f"cannot load {commit!r} from the hub {path}: {exc}") from None
        return stored, store.code(stored)

    async def deploy(self, commit: str, symbol: str, volume: float, timeframe: int = 1,
                     params: Mapping[str, Any] | None = None, config: Mapping[str, Any] | None = None,
                     hub: str | None = None) -> dict[str, Any]:
        """Deploy the strategy stored at ``commit`` (a commit, or a strategy name = its latest version).

        The same strategy code + params + symbol + timeframe already running is returned
        (``existing: true``) instead of starting a second one.
        """
        if isinstance(volume, bool) or not isinstance(volume, (int, float)) or not math.isfinite(volume) or volume <= 0:
            raise RunnerError(f"volume must be a positive number of lots, got {volume!r}.")
        if isinstance(timeframe, bool) or not isinstance(timeframe, int) or timeframe <= 0:
            raise RunnerError(f"timeframe must be a positive number of minutes (1, 5, 15, 60, 240, 1440 ...), got {timeframe!r}.")
        config = dict(config or {})
        bad = sorted(set(config) - set(CONFIG_KEYS))
        if bad:
            raise RunnerError(f"unknown config key(s) {bad}; allowed: {sorted(CONFIG_KEYS)}.")
        lookback = config.setdefault("lookback", self.lookback)
        if isinstance(lookback, bool) or not isinstance(lookback, int) or not 2 <= lookback <= 100_000:
            raise RunnerError(f"config.lookback must be an integer in 2..100000 (bars of history signals() sees), got {lookback!r}.")
        stored, code = await asyncio.to_thread(self._load, str(commit), hub)
        merged = {**stored.params, **dict(params or {})}
        spec = await self._spec(symbol)
        if self.lots(spec, float(volume)) == 0.0:
            raise RunnerError(f"volume {volume:g} is below {spec['name']}'s volume_min {spec['volume_min']:g} lots.")
        timeout = float(config.get("timeout", self.timeout))
        try:
            sig = await asyncio.to_thread(DeploymentSignals.load, code, stored.name, merged, lookback=lookback,
                                          timeout=timeout)
        except StrategyFailed as exc:
            raise RunnerError(f"strategy {stored.name!r} ({stored.commit[:12]}) cannot run: {exc}") from None
        resolved = sig.params
        async with self._lock:
            same = self.store.one(
                "SELECT * FROM deployments WHERE sha256 = ? AND params = ? AND symbol = ? AND timeframe = ? "
                "AND status = 'running' ORDER BY id LIMIT 1", (stored.sha256, canon(resolved), spec["name"], timeframe))
            if same is not None:
                sig.close()
                return {**await self._public(same), "existing": True}
            try:
                done = self._completed(await self._rates(spec["name"], timeframe, lookback + 2))
            except BaseException:
                sig.close()
                raise
            last = int(done["time"][-1]) if len(done["time"]) else 0
            sig.push(done, reset=True)
            t = _time.time()
            with self.store.tx():
                dep_id = self.store.insert("deployments", {
                    "name": stored.name, "commit_sha": stored.commit, "file": stored.file, "sha256": stored.sha256,
                    "code": code, "params": canon(resolved), "symbol": spec["name"], "timeframe": timeframe,
                    "volume": float(volume), "config": canon(config), "status": "running", "created": t, "updated": t,
                    "started_bar_time": last, "last_bar_time": last, "lots": 0.0, "target": 0.0})
                self.store.update("deployments", "id", dep_id, magic=MAGIC_BASE + dep_id)
                self._log(dep_id, "status", f"deployed {stored.name} ({stored.commit[:12]}) on {spec['name']} M{timeframe}, "
                          f"{volume:g} lots at target 1: running",
                          {"params": resolved, "magic": MAGIC_BASE + dep_id, "from_bar": iso(last)}, t=last)
            self._signals[dep_id] = sig
            self._running = None
            return {**await self._public(self._row(dep_id)), "existing": False}

    async def _public(self, dep: Mapping[str, Any], *, pnl: bool = False) -> dict[str, Any]:
        out = {"deployment_id": dep["id"], "name": dep["name"], "commit": dep["commit_sha"], "file": dep["file"],
               "symbol": dep["symbol"], "timeframe": dep["timeframe"], "volume": dep["volume"], "magic": dep["magic"],
               "status": dep["status"], "params": json.loads(dep["params"] or "{}"),
               "config": json.loads(dep["config"] or "{}"), "lots": dep["lots"], "position": dep["lots"],
               "target": dep["target"], "bars": dep["bars"], "orders": dep["orders"], "skipped_bars": dep["skipped"],
               "last_bar_time": iso(dep["last_bar_time"]), "started_bar_time": iso(dep["started_bar_time"]),
               "created": dep["created"], "updated": dep["updated"], "error": dep["error"], "last_error": dep["error"]}
        out["trades"] = self.store.one("SELECT count(*) AS n FROM fills WHERE deployment_id = ?", (dep["id"],))["n"]
        if pnl:
            out.update(await self._pnl(dep))
        return out

    async def _pnl(self, dep: Mapping[str, Any]) -> dict[str, Any]:
        """Realised (its deals) and floating (its open positions) PnL in account currency, from the broker."""
        try:
            deals = await self._b("history_deals_get", {"symbol": dep["symbol"]}) or []
            _, mine = await self._own_positions(dep)
        except RunnerError as exc:
            return {"pnl": None, "realized_pnl": None, "floating_pnl": None, "pnl_error": str(exc)}
        realized = sum(float(d.get("profit") or 0) + float(d.get("commission") or 0) + float(d.get("swap") or 0)
                       + float(d.get("fee") or 0) for d in deals if int(d.get("magic") or 0) == int(dep["magic"]))
        floating = sum(float(p.get("profit") or 0) + float(p.get("swap") or 0) for p in mine)
        return {"pnl": round(realized + floating, 2), "realized_pnl": round(realized, 2), "floating_pnl": round(floating, 2)}

    async def list(self, status: str | None = None) -> list[dict[str, Any]]:
        """Every deployment (or those with ``status``), oldest first, with its PnL from the broker."""
        if status is not None and status not in STATUSES:
            raise RunnerError(f"status must be one of {STATUSES}, got {status!r}.")
        rows = self.store.q("SELECT * FROM deployments" + (" WHERE status = ?" if status else "") + " ORDER BY id",
                            (status,) if status else ())
        if not rows:
            return []
        deals_by_symbol: dict[str, list] = {}
        pos_by_symbol: dict[str, list] = {}
        out = []
        for dep in rows:
            pub = await self._public(dep)
            sym = dep["symbol"]
            try:
                if sym not in deals_by_symbol:
                    deals_by_symbol[sym] = await self._b("history_deals_get", {"symbol": sym}) or []
                    pos_by_symbol[sym] = await self._b("positions_get", {"symbol": sym}) or []
                magic = int(dep["magic"])
                realized = sum(float(d.get("profit") or 0) + float(d.get("commission") or 0) + float(d.get("swap") or 0)
                               + float(d.get("fee") or 0) for d in deals_by_symbol[sym] if int(d.get("magic") or 0) == magic)
                floating = sum(float(p.get("profit") or 0) + float(p.get("swap") or 0)
                               for p in pos_by_symbol[sym] if int(p.get("magic") or 0) == magic)
                pub.update(pnl=round(realized + floating, 2), realized_pnl=round(realized, 2), floating_pnl=round(floating, 2))
            except RunnerError as exc:
                pub.update(pnl=None, realized_pnl=None, floating_pnl=None, pnl_error=str(exc))
            out.append(pub)
        return out

    async def get(self, deployment_id: Any) -> dict[str, Any]:
        """One deployment with its PnL, open positions and last journal lines."""
        dep = self._row(deployment_id)
        out = await self._public(dep, pnl=True)
        try:
            out["positions"] = (await self._own_positions(dep))[1]
        except RunnerError as exc:
            out["positions"] = None
            out["positions_error"] = str(exc)
        out["last_journal"] = self.journal(dep["id"], limit=5, last=True)
        return out

    def journal(self, deployment_id: Any, limit: int = 200, after_id: int = 0, kind: str | None = None,
                last: bool = False) -> list[dict[str, Any]]:
        """The deployment's journal, oldest first (``last=True``: the newest ``limit`` lines)."""
        if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= 10_000:
            raise RunnerError(f"limit must be an integer in 1..10000, got {limit!r}.")
        dep = self._row(deployment_id)
        sql = "SELECT * FROM journal WHERE deployment_id = ? AND id > ?" + (" AND kind = ?" if kind else "")
        args: list[Any] = [dep["id"], int(after_id)] + ([kind] if kind else [])
        sql += " ORDER BY id DESC LIMIT ?" if last else " ORDER BY id LIMIT ?"
        rows = self.store.q(sql, args + [limit])
        if last:
            rows.reverse()
        for r in rows:
            r["data"] = json.loads(r["data"] or "{}")
            r["time_iso"] = iso(r["time"])
        return rows

    async def bars(self, deployment_id: Any, replay: bool = False) -> dict[str, Any]:
        """What the deployment did on each bar it saw (columns) and its fills: the input of ``lab.parity``.

        ``replay=True`` adds the bars themselves (from ``lookback`` bars before its start to its
        last bar, from the broker) and ``signals()`` evaluated once over all of them in a fresh
        sandboxed session: the targets the backtest sees.
        """
        dep = self._row(deployment_id)
        steps = self.store.q("SELECT bar_time, target, lots, price, skipped FROM steps WHERE deployment_id = ? "
                             "ORDER BY bar_time", (dep["id"],))
        fills = self.store.q('SELECT bar_time, deal, "order", type, volume, price, position FROM fills '
                             "WHERE deployment_id = ? ORDER BY rowid", (dep["id"],))
        cols = {k: [s[k] for s in steps] for k in ("bar_time", "target", "lots", "price", "skipped")}
        cfg = json.loads(dep["config"] or "{}")
        lookback = int(cfg.get("lookback", self.lookback))
        out = {"deployment_id": dep["id"], "symbol": dep["symbol"], "timeframe": dep["timeframe"],
               "volume": dep["volume"], "params": json.loads(dep["params"]), "commit": dep["commit_sha"],
               "name": dep["name"], "lookback": lookback, "started_bar_time": dep["started_bar_time"],
               "steps": cols, "fills": fills}
        if replay and steps:
            secs = int(dep["timeframe"]) * 60
            now = await self._now(dep["symbol"])
            count = min(100_000, (now - int(dep["started_bar_time"])) // secs + lookback + 5)
            bars = await self._rates(dep["symbol"], dep["timeframe"], int(count))
            keep = bars["time"] <= int(dep["last_bar_time"])
            bars = {k: v[keep] for k, v in bars.items()}
            first = int(np.searchsorted(bars["time"], int(dep["started_bar_time"]), side="left"))
            bars = {k: v[max(0, first - lookback + 1):] for k, v in bars.items()}
            timeout = float(cfg.get("timeout", self.timeout)) * 10
            try:
                sig = await asyncio.to_thread(DeploymentSignals.load, dep["code"], dep["name"], json.loads(dep["params"]),
                                              lookback=len(bars["time"]), timeout=timeout)
                try:
                    targets = await sig.evaluate_async(bars, reset=True, want=len(bars["time"]))
                finally:
                    sig.close()
            except StrategyFailed as exc:
                raise RunnerError(f"replay: {exc}") from None
            out["replay"] = {"time": bars["time"].tolist(), "open": bars["open"].tolist(), "high": bars["high"].tolist(),
                             "low": bars["low"].tolist(), "close": bars["close"].tolist(),
                             "volume": bars["volume"].tolist(), "target": targets}
        return out

    async def stop(self, deployment_id: Any) -> dict[str, Any]:
        """Close the deployment's positions (reconciled from the broker) and mark it ``stopped``."""
        async with self._lock:
            dep = self._row(deployment_id)
            if dep["status"] == "stopped":
                return await self._public(dep)
            lots, mine = await self._own_positions(dep)
            fills: list[dict[str, Any]] = []
            error = None
            if abs(lots) > EPS:
                lots, fills, error = await self._trade(dep, lots, mine, 0.0, reason="stop")
            sig = self._signals.pop(dep["id"], None)
            if sig is not None:
                sig.close()
            with self.store.tx():
                self._record_fills(dep, fills, dep["last_bar_time"])
                self._running = None
                self.store.update("deployments", "id", dep["id"], status="stopped" if abs(lots) <= EPS else dep["status"],
                                  lots=lots, target=0.0, updated=_time.time(), orders=dep["orders"] + len(fills))
                if abs(lots) <= EPS:
                    self._log(dep["id"], "status", f"{dep['status']} -> stopped (positions closed)", {"closed_lots": dep["lots"]})
            if abs(lots) > EPS:
                raise RunnerError(f"deployment {dep['id']} could not be flattened ({lots:g} lots still open): {error}; "
                                  "it keeps its status, try stop again.")
            return await self._public(self._row(dep["id"]), pnl=True)
