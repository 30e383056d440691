"""The runner: stored strategies trading on any MetaTrader 5 MCP server through standard tools only.

A deployment is a strategy stored in the assets hub (loaded by commit), bound to a
symbol, a timeframe (minutes) and a ``volume`` (lots at target 1). On every
completed bar the runner

1. reads the bars with ``copy_rates_from_pos`` (bar 0, the one still forming, is dropped),
2. evaluates ``signals()`` in the deployment's sandboxed session (:mod:`quantlab.runner.evaluation`,
   never in this process; the backtest's own rule turns signals into targets),
3. sizes the target in lots (``volume_min`` / ``volume_step`` of ``get_symbol_info``),
4. reconciles with its own positions (``positions_get``, identified by the deployment's
   ``magic``) and sends the difference with ``order_send({"request": {...}})`` at the
   current ``get_symbol_info_tick`` price with a ``deviation``; on a hedging account
   (``margin_mode`` 2) it closes with ``position=<ticket>``.

On a live market it acts on the latest completed bar only and never trades missed
bars after the fact (they are journaled as skipped). On the stepped paper market,
:meth:`Runner.advance` reveals bars one at a time (the broker's ``advance``) and acts
on each, so paper matches the backtest bar by bar. After a restart it reconciles its
positions from the broker before trading.

Example
-------
>>> import asyncio, sys                                                  # doctest: +SKIP
>>> from quantlab.client import AsyncMCPHub
>>> broker = {"command": sys.executable, "args": ["-m", "quantlab.servers.broker", "--db", ":memory:"]}
>>> async def main():
...     async with AsyncMCPHub.from_config({"broker": broker}) as mcp:
...         r = await Runner.open(mcp, "broker", "runner.db", hub="./assets-hub")
...         d = await r.deploy("SMA cross", "EURUSD", 0.1)
...         await r.advance(100)
...         return (await r.get(d["deployment_id"]))["lots"]
"""
from __future__ import annotations

import asyncio
import json
import math
import os
import sys
import time as _time

import numpy as np
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Mapping

from quantlab.client import AsyncMCPHub, ClientError

from .store import RunnerStore
from .evaluation import DeploymentSignals, StrategyFailed

__all__ = ["Runner", "RunnerError", "MAGIC_BASE"]

MAGIC_BASE = 5_300_000  # deployment n trades with magic MAGIC_BASE + n
EPS = 1e-9
STATUSES = ("running", "stopped", "failed")
ALERT_KINDS = ("price_above", "price_below", "drawdown")
CONFIG_KEYS = {"lookback": int, "timeout": (int, float), "deviation": int, "comment": str}
DEAL_SUCCESS = (10008, 10009, 10010)


class RunnerError(RuntimeError):
    """A request the runner refuses, or a broker answer it cannot use; the message says what to do."""


def _epoch(t: Any) -> int:
    """Bar or tick time as epoch seconds: MT5 integers or ISO-8601 strings (``...Z``)."""
    if isinstance(t, (int, float)) and not isinstance(t, bool):
        return int(t)
    if isinstance(t, str):
        return int(datetime.fromisoformat(t.replace("Z", "+00:00")).timestamp())
    if isinstance(t, datetime):
        return int(t.timestamp())
    raise RunnerError(f"the broker returned a time the runner cannot read: {t!r}.")


def _iso(t: int | None) -> str | None:
    return None if t is None else datetime.fromtimestamp(int(t), timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _unwrap(x: Any) -> Any:
    if isinstance(x, Mapping) and len(x) == 1 and "result" in x:
        return x["result"]
    return x


def _canon(x: Any) -> str:
    return json.dumps(x, sort_keys=True, default=str)


class Runner:
    """Deployments of stored strategies on one broker (an MCP server speaking the MT5 dialect).

    Make one with :meth:`open`. ``stepped=True`` means the broker's clock moves only
    through :meth:`advance`; ``False``: :meth:`run_live` polls every ``poll`` seconds;
    ``None``: stepped if the broker is a stepped paper broker (its ``get_clock``).
    """

    def __init__(self, mcp: AsyncMCPHub, broker: str, store: RunnerStore, *, hub: str | os.PathLike[str] | None = None,
                 stepped: bool | None = True, poll: float = 1.0, lookback: int = 300, timeout: float = 10.0,
                 deviation: int = 20):
        self.mcp = mcp
        self.broker = broker
        self.store = store
        self.hub_path = str(hub) if hub is not None else None
        self.stepped = stepped  # None: decided in start() from the broker's clock
        self.poll = float(poll)
        self.lookback = int(lookback)
        self.timeout = float(timeout)
        self.deviation = int(deviation)
        self._signals: dict[int, DeploymentSignals] = {}  # running deployments' sandboxed signals()
        self._specs: dict[str, dict[str, Any]] = {}
        self._hubs: dict[str, Any] = {}
        self.hedging: bool | None = None  # the broker's account is a hedging one (margin_mode 2); None: not asked yet
        self.broker_tools: set[str] = set()  # the broker's tool names (learned in start())
        self._hops: dict[str, list] = {}  # hop -> [seconds, calls] (timings())
        self._running: list[dict[str, Any]] | None = None  # running deployments (rows); None: read them again
        self._lock = asyncio.Lock()  # one bar at a time: advance, live polls and stops never interleave
        self.last_error: str | None = None

    @classmethod
    async def open(cls, mcp: AsyncMCPHub, broker: str, db: str | os.PathLike[str], **options: Any) -> "Runner":
        """Connect the broker, then reconcile every running deployment's position from it."""
        runner = cls(mcp, broker, RunnerStore(db), **options)
        await runner.start()
        return runner

    def __repr__(self) -> str:
        counts = dict(self.store.conn.execute("SELECT status, count(*) FROM deployments GROUP BY status").fetchall())
        mode = "stepped" if self.stepped else f"live, polling every {self.poll:g} s"
        return f"Runner(broker={self.broker!r}, {mode}, deployments={counts or 'none'})"

    # ------------------------------------------------------------------ broker calls
    async def _b(self, tool: str, args: Mapping[str, Any] | None = None, timeout: float = 30.0) -> Any:
        if self.broker_tools and tool not in self.broker_tools:
            raise RunnerError(f"the broker {self.broker!r} has no tool {tool!r} (it has {sorted(self.broker_tools)}); "
                              "the runner needs the standard MT5 tools get_symbol_info, copy_rates_from_pos, "
                              "get_symbol_info_tick, positions_get and order_send.")
        t0 = _time.perf_counter()
        try:
            return _unwrap(await self.mcp.call(self.broker, tool, dict(args or {}), timeout=timeout))
        except ClientError as exc:
            raise RunnerError(f"broker {self.broker!r}, {tool}: {exc}") from None
        finally:
            self._timed(tool, t0)

    def _timed(self, hop: str, t0: float) -> None:
        """Add the wall-clock time since ``t0`` to ``hop``'s total (see :meth:`timings`)."""
        tot = self._hops.get(hop)
        if tot is None:
            tot = self._hops[hop] = [0.0, 0]
        tot[0] += _time.perf_counter() - t0
        tot[1] += 1

    def timings(self) -> dict[str, dict[str, float]]:
        """Where the time goes, per hop since the runner started: ``{hop: {"calls", "total_s", "mean_ms"}}``.

        Hops: each broker tool by name (a round trip over MCP), ``signals`` (one sandboxed
        ``signals()`` evaluation, from the runner's side), ``sqlite`` (one bar's transaction)
        and ``bar`` (every running deployment acting on one completed bar, all of the above
        included). Concurrent deployments overlap, so hops of one bar can add up to more than ``bar``.

        >>> Runner(None, "broker", None).timings()                             # doctest: +SKIP
        {}
        """
        return {k: {"calls": n, "total_s": round(t, 6), "mean_ms": round(1000 * t / n, 3) if n else 0.0}
                for k, (t, n) in sorted(self._hops.items())}

    async def start(self) -> None:
        """Connect the broker, learn its tools and account mode, reconcile running deployments."""
        await self.mcp.connect(self.broker)
        self.broker_tools = {t["name"] for t in await self.mcp.tools(self.broker)}
        await self._account()
        if self.stepped is None:
            mode = None
            if {"advance", "get_clock"} <= self.broker_tools:
                mode = (await self._b("get_clock") or {}).get("mode")
            self.stepped = mode == "stepped"
        for dep in self.store.q("SELECT * FROM deployments WHERE status = 'running'"):
            try:
                lots, _ = await self._own_positions(dep)
            except RunnerError as exc:
                self.last_error = str(exc)
                continue
            with self.store.tx():
                if abs(lots - dep["lots"]) > EPS:
                    self._log(dep["id"], "reconcile", f"restart: the broker holds {lots:g} lots, the runner had {dep['lots']:g}",
                              {"broker_lots": lots, "runner_lots": dep["lots"]})
                    self.store.update("deployments", "id", dep["id"], lots=lots, updated=_time.time())
                else:
                    self._log(dep["id"], "reconcile", f"restart: position {lots:g} lots confirmed by the broker")

    async def _account(self) -> bool:
        if self.hedging is None:
            acc = await self._b("get_account_info") if "get_account_info" in self.broker_tools or not self.broker_tools else None
            self.hedging = bool(acc) and int((acc or {}).get("margin_mode", 0)) == 2
        return self.hedging

    async def _spec(self, symbol: str) -> dict[str, Any]:
        spec = self._specs.get(symbol)
        if spec is None:
            try:
                info = await self._b("get_symbol_info", {"symbol": symbol})
            except RunnerError as exc:
                raise RunnerError(f"unknown symbol {symbol!r} on broker {self.broker!r}: {exc}") from None
            if not info:
                raise RunnerError(f"unknown symbol {symbol!r} on broker {self.broker!r}; see its get_symbols.")
            spec = {k: info.get(k) for k in ("name", "volume_min", "volume_step", "volume_max", "point", "digits",
                                              "trade_contract_size", "contract_size")}
            spec["name"] = spec["name"] or symbol
            spec["volume_min"] = float(spec["volume_min"] or 0.01)
            spec["volume_step"] = float(spec["volume_step"] or 0.01)
            spec["volume_max"] = float(spec["volume_max"] or 1e9)
            self._specs[symbol] = spec
        return spec

    async def _rates(self, symbol: str, timeframe: int, count: int) -> dict[str, Any]:
        import numpy as np

        rows = await self._b("copy_rates_from_pos", {"symbol": symbol, "timeframe": int(timeframe), "start_pos": 0,
                                                     "count": int(count)})
        rows = rows or []
        if isinstance(rows, Mapping) and "columns" in rows:
            cols = rows["columns"]
            rows = [dict(zip(cols, r)) for r in zip(*cols.values())]
        out = {"time": np.array([_epoch(r["time"]) for r in rows], dtype=np.int64)}
        for f in ("open", "high", "low", "close"):
            out[f] = np.array([float(r[f]) for r in rows], dtype=np.float64)
        out["volume"] = np.array([float(r.get("tick_volume", r.get("real_volume", 0)) or 0) for r in rows], dtype=np.float64)
        return out

    @staticmethod
    def _completed(bars: dict[str, Any]) -> dict[str, Any]:
        """Drop bar 0, the bar still forming (``copy_rates_from_pos(start_pos=0)`` ends with it, as on MT5)."""
        return {k: v[:-1] for k, v in bars.items()}

    async def _tick(self, symbol: str) -> dict[str, Any]:
        tick = await self._b("get_symbol_info_tick", {"symbol": symbol})
        if not tick:
            raise RunnerError(f"the broker has no price for {symbol!r} (get_symbol_info_tick returned nothing).")
        return tick

    async def _own_positions(self, dep: Mapping[str, Any]) -> tuple[float, list[dict[str, Any]]]:
        rows = await self._b("positions_get", {"symbol": dep["symbol"]}) or []
        mine = [p for p in rows if int(p.get("magic") or 0) == int(dep["magic"])]
        lots = round(sum(float(p["volume"]) * (1 if int(p["type"]) == 0 else -1) for p in mine), 8)
        return lots, mine

    # ------------------------------------------------------------------ journal
    def _log(self, dep_id: int | None, kind: str, message: str, data: Mapping[str, Any] | None = None,
             t: int | None = None) -> None:
        self.store.insert("journal", {"deployment_id": dep_id, "time": t, "wall_time": _time.time(), "kind": kind,
                                      "message": message, "data": _canon(dict(data or {}))})

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

    @staticmethod
    def _lots(spec: Mapping[str, Any], x: float) -> float:
        step = spec["volume_step"]
        v = round(round(abs(x) / step) * step, 8)
        if v < spec["volume_min"] - EPS:
            v = 0.0
        v = min(v, spec["volume_max"])
        return math.copysign(v, x) if v else 0.0

    # ------------------------------------------------------------------ hub
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

    # ------------------------------------------------------------------ tools
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
        if self._lots(spec, float(volume)) == 0.0:
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
                "AND status = 'running' ORDER BY id LIMIT 1", (stored.sha256, _canon(resolved), spec["name"], timeframe))
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
                    "code": code, "params": _canon(resolved), "symbol": spec["name"], "timeframe": timeframe,
                    "volume": float(volume), "config": _canon(config), "status": "running", "created": t, "updated": t,
                    "started_bar_time": last, "last_bar_time": last, "lots": 0.0, "target": 0.0})
                self.store.update("deployments", "id", dep_id, magic=MAGIC_BASE + dep_id)
                self._log(dep_id, "status", f"deployed {stored.name} ({stored.commit[:12]}) on {spec['name']} M{timeframe}, "
                          f"{volume:g} lots at target 1: running",
                          {"params": resolved, "magic": MAGIC_BASE + dep_id, "from_bar": _iso(last)}, t=last)
            self._signals[dep_id] = sig
            self._running = None
            return {**await self._public(self._row(dep_id)), "existing": False}

    async def _now(self, symbol: str) -> int:
        return _epoch((await self._tick(symbol))["time"])

    async def _public(self, dep: Mapping[str, Any], *, pnl: bool = False) -> dict[str, Any]:
        out = {"deployment_id": dep["id"], "name": dep["name"], "commit": dep["commit_sha"], "file": dep["file"],
               "symbol": dep["symbol"], "timeframe": dep["timeframe"], "volume": dep["volume"], "magic": dep["magic"],
               "status": dep["status"], "params": json.loads(dep["params"] or "{}"),
               "config": json.loads(dep["config"] or "{}"), "lots": dep["lots"], "position": dep["lots"],
               "target": dep["target"], "bars": dep["bars"], "orders": dep["orders"], "skipped_bars": dep["skipped"],
               "last_bar_time": _iso(dep["last_bar_time"]), "started_bar_time": _iso(dep["started_bar_time"]),
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
            r["time_iso"] = _iso(r["time"])
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

    # ------------------------------------------------------------------ alerts
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

    # ------------------------------------------------------------------ acting on bars
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
        desired = self._lots(spec, target * float(dep["volume"]))
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

    async def _step(self, now: int) -> int:
        """Act on every running deployment at market time ``now``; return the number of fills."""
        deps = self._running_rows()
        if not deps:
            return 0
        cache: dict = {}
        counts = await asyncio.gather(*(self._act(d, now, cache) for d in deps))
        if any(d["status"] != "running" for d in deps):
            self._running = None
        return int(sum(counts))

    def _running_rows(self) -> list[dict[str, Any]]:
        """The running deployments, read once and kept (each bar updates its row in place and in SQLite);
        deploy, stop and a failure read them again."""
        if self._running is None:
            self._running = self.store.q("SELECT * FROM deployments WHERE status = 'running' ORDER BY id")
        return self._running

    def _steps_to_next_bar(self, now: int | None, base: int | None, left: int) -> int:
        """How many base bars the paper market can move before the next bar of a running deployment
        completes (1 while the base bar is not known yet; everything that is left when nothing runs)."""
        frames = sorted({int(r["timeframe"]) * 60 for r in self._running_rows()})
        if not frames:
            return left
        if now is None or not base:
            return 1
        nxt = min((now // secs + 1) * secs for secs in frames)
        return max(1, min(left, -(-(nxt - now) // base)))

    async def advance(self, bars: int = 1) -> dict[str, Any]:
        """Step the paper broker ``bars`` bars, one at a time, and act on every completed bar.

        Needs a broker with the paper-only ``advance`` tool (quantlab's paper broker).
        """
        if isinstance(bars, bool) or not isinstance(bars, int) or not 0 <= bars <= 1_000_000:
            raise RunnerError(f"bars must be an integer in 0..1000000, got {bars!r}.")
        if "advance" not in self.broker_tools:
            raise RunnerError(f"the broker {self.broker!r} has no advance tool: its market moves on its own clock "
                              "(a live or realtime market), so there is nothing to step.")
        fills = moved = 0
        t0 = None
        end = False
        info: dict[str, Any] = {}
        now = base = None
        async with self._lock:
            while moved < bars:
                # Base bars in which no running deployment's bar completes change nothing for the
                # deployments: step over them in one call (the broker still checks its pending
                # orders and SL/TP on every base bar), and act exactly where a bar completes.
                step = self._steps_to_next_bar(now, base, bars - moved)
                info = await self._b("advance", {"bars": step}, timeout=60.0)
                advanced = int(info.get("advanced", step))
                if advanced <= 0:
                    end = True
                    break
                moved += advanced
                before = now
                now = _epoch(info["time"]) if "time" in info else await self._now(self.store.one(
                    "SELECT symbol FROM deployments LIMIT 1")["symbol"])
                if before is not None and advanced == 1 and now > before:
                    base = now - before  # the broker's base bar, learned from a single step
                t0 = t0 or now
                t1 = _time.perf_counter()
                fills += await self._step(now)
                self._timed("bar", t1)
                if advanced < step:
                    end = True
                    break
            if moved:
                await self._alerts(now)
        end = end or bool(info.get("end_of_data"))
        deps = self.store.q("SELECT id, name, symbol, status, lots, target, error FROM deployments WHERE status != 'stopped' ORDER BY id")
        return {"bars": moved, "fills": fills, "time": _iso(_epoch(info["time"])) if info.get("time") is not None else None,
                "first_time": _iso(t0), "end_of_data": end,
                "deployments": [{"deployment_id": d["id"], "name": d["name"], "symbol": d["symbol"], "status": d["status"],
                                 "lots": d["lots"], "target": d["target"], "error": d["error"]} for d in deps]}

    async def poll_once(self) -> int:
        """One live pass: act on the latest completed bar of every running deployment (missed bars are skipped)."""
        async with self._lock:
            deps = self.store.q("SELECT DISTINCT symbol FROM deployments WHERE status = 'running'")
            fills = 0
            for row in deps:
                now = await self._now(row["symbol"])
                cache: dict = {}
                for d in self.store.q("SELECT * FROM deployments WHERE status = 'running' AND symbol = ? ORDER BY id",
                                      (row["symbol"],)):
                    fills += await self._act(d, now, cache)
            if deps:
                await self._alerts(now)
            return fills

    async def run_live(self) -> None:
        """Poll forever (every ``poll`` seconds); errors are kept in ``last_error`` and retried."""
        while True:
            try:
                await self.poll_once()
                self.last_error = None
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - a live loop keeps going; the error is reported
                self.last_error = f"{type(exc).__name__}: {exc}"
            await asyncio.sleep(self.poll)

    async def aclose(self) -> None:
        for sig in self._signals.values():
            await asyncio.to_thread(sig.close)
        self._signals.clear()
        for h in self._hubs.values():
            try:
                h.close()
            except Exception:  # noqa: BLE001
                pass
        self.store.close()
