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

:class:`Runner` is composed by job: :mod:`~quantlab.runner.broker` (the MT5 tool calls),
:mod:`~quantlab.runner.deployments` (deploy, list, get, journal, bars, stop),
:mod:`~quantlab.runner.trading` (one deployment's bar and its orders),
:mod:`~quantlab.runner.alerts` (the alert service) and :mod:`~quantlab.runner.evaluation`
(the sandboxed ``signals()``); this module steps the market and runs the live loop.

Example
-------
>>> import asyncio, sys
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
import os
import time as _time
from typing import Any

from quantlab.client import AsyncMCPHub

from .alerts import AlertTools
from .broker import EPS, BrokerCalls, RunnerError, epoch, iso
from .deployments import MAGIC_BASE, DeploymentTools
from .evaluation import DeploymentSignals
from .store import RunnerStore
from .trading import Trading

__all__ = ["Runner", "RunnerError", "MAGIC_BASE"]


class Runner(BrokerCalls, DeploymentTools, AlertTools, Trading):
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
                now = epoch(info["time"]) if "time" in info else await self._now(self.store.one(
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
        return {"bars": moved, "fills": fills, "time": iso(epoch(info["time"])) if info.get("time") is not None else None,
                "first_time": iso(t0), "end_of_data": end,
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
