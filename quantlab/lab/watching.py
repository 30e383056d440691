"""The Lab's watch steps: deployments (ledger + live status), stop, advance, activity, expected
lots and parity, each one coroutine on the MCP loop with a sync and an async face
(:mod:`quantlab.lab._twins`).

:class:`WatchSteps` is a mixin of :class:`quantlab.Lab`; use the lab, not this class.
"""
from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any, ClassVar, Mapping

from quantlab.client import ClientError
from quantlab.engine.costs import DEFAULT_FEES, DEFAULT_SLIPPAGE
from quantlab.engine.strategy import Strategy

from ._twins import _twins
from .errors import LabError
from .records import DeploymentRecord

if TYPE_CHECKING:  # pandas and the result types load in the steps that use them
    import pandas as pd

    from .activity import DeploymentActivity
    from .results import AdvanceResult, ParityReport

__all__ = ["WatchSteps"]


def _broker_id(deployment_id: Any) -> Any:
    """Broker ids travel as text in the ledger; the broker's tools take integers when they are integers."""
    text = str(deployment_id)
    return int(text) if text.isdigit() else text




class WatchSteps:
    """Deployments, stop, advance, activity, expected lots, parity (a mixin of :class:`quantlab.Lab`)."""

    async def _live_status(self, deployment_id: str) -> str | None:
        try:
            answer = await self._call(self.runner_server, "get_deployment", {"deployment_id": _broker_id(deployment_id)})
        except ClientError:
            return None
        return answer.get("status")

    #: The columns of :meth:`deployments` (the keys of :meth:`deployment_rows`).
    DEPLOYMENT_COLUMNS: ClassVar[list[str]] = ["deployment_id", "strategy_name", "symbol", "status", "position", "pnl",
                                               "trades", "commit", "triggered_at", "last_error", "status_source"]

    async def _deployment_rows(self) -> list[dict[str, Any]]:
        """The rows of :meth:`deployments` as plain dicts (times as ISO text), without pandas:
        what the command line prints. Same merge of the ledger with the runner's live status.

        >>> [(r["deployment_id"], r["status"]) for r in lab.deployment_rows()]   # doctest: +SKIP
        [('1', 'running')]
        """
        ledger = await asyncio.to_thread(self.hub.deployment_rows)
        servers = {self.runner_server, self.broker_server}
        ledger = [r for r in ledger if (r.get("broker") or self.runner_server) in servers]
        if not ledger:
            return []
        try:
            live = await self._call(self.runner_server, "list_deployments")
        except ClientError as exc:
            raise LabError(
                f"cannot list deployments: the runner {self.runner_server!r} did not answer ({type(exc).__name__}: {exc}). "
                f"The hub's ledger still has them: lab.hub.deployment_status(). Check the servers with lab.mcp.state() "
                f"(`quantlab servers` on the command line) and start a new lab if the runner is gone."
            ) from None
        live_rows = live.get("deployments", live) if isinstance(live, Mapping) else live
        by_id = {str(d["deployment_id"]): d for d in (live_rows or []) if isinstance(d, Mapping) and "deployment_id" in d}
        out = []
        for r in ledger:
            row = {c: None for c in self.DEPLOYMENT_COLUMNS}
            row.update({k: r.get(k) for k in ("strategy_name", "symbol", "status", "commit", "triggered_at")},
                       deployment_id=r.get("broker_deployment_id"), last_error=r.get("error"), status_source="ledger")
            now = by_id.get(str(row["deployment_id"]))
            if now is not None:
                row.update({c: now[c] for c in ("status", "symbol", "position", "pnl", "trades", "last_error") if c in now},
                           status_source="broker")
            out.append(row)
        return out

    deployment_rows, adeployment_rows = _twins(_deployment_rows)

    async def _deployments(self) -> pd.DataFrame:
        """Every deployment: the ledger's latest status merged with the broker's live status,
        position and PnL (``deployment_id, strategy_name, symbol, status, position, pnl, trades,
        commit, triggered_at, last_error, status_source``). If the broker cannot be reached the
        ledger is shown with ``status_source='ledger'``.

        >>> lab.deployments()[["deployment_id", "status", "pnl"]]   # doctest: +SKIP
        """
        import pandas as pd

        frame = pd.DataFrame(await self._deployment_rows(), columns=self.DEPLOYMENT_COLUMNS, dtype=object)
        frame["triggered_at"] = pd.to_datetime(frame["triggered_at"], utc=True, errors="coerce", format="ISO8601")
        return frame

    deployments, adeployments = _twins(_deployments)

    async def _stop(self, deployment_id: str) -> DeploymentRecord:
        """Stop a deployment on the broker (its positions are closed) and record ``stopped`` in the ledger.

        >>> lab.stop(rec.deployment_id).status     # doctest: +SKIP
        'stopped'
        """
        deployment_id = str(deployment_id)
        try:
            answer = await self._call(self.runner_server, "stop_deployment", {"deployment_id": _broker_id(deployment_id)})
        except ClientError as exc:
            raise LabError(f"stopping deployment {deployment_id} failed: {exc}. Its positions may still be open; "
                           "see lab.deployments() (`quantlab deployments`) and stop it again.") from None
        rows = await asyncio.to_thread(self.hub.deployment_rows)
        info = next((r for r in reversed(rows) if str(r.get("broker_deployment_id")) == deployment_id), {})
        record = DeploymentRecord(
            deployment_id=deployment_id, status=str(answer.get("status", "stopped")),
            strategy_name=str(info.get("strategy_name") or answer.get("name") or "?"), commit=info.get("commit"),
            symbol=info.get("symbol") or answer.get("symbol"), broker=self.runner_server,
        )
        await asyncio.to_thread(self.hub.record_deployment, {
            "strategy_name": record.strategy_name, "status": "stopped", "commit": record.commit,
            "broker": self.runner_server, "broker_deployment_id": deployment_id, "symbol": record.symbol,
            "backtest_results": info.get("backtest_results"),
        })
        return record

    stop, astop = _twins(_stop)

    async def _advance(self, bars: int = 1) -> AdvanceResult:
        """Step the stepped paper market ``bars`` bars, one at a time; every running deployment
        acts on each completed bar (as the backtest does). Returns an :class:`AdvanceResult`
        (bars stepped, fills, the market time, each deployment's position).

        >>> lab.advance(60)          # doctest: +SKIP
        AdvanceResult(60 bars to 2024-01-01T17:38:00Z, 4 fills; 1 deployment)
        """
        try:
            answer = await self._call(self.runner_server, "advance", {"bars": int(bars)}, timeout=120.0 + bars * 0.1)
        except ClientError as exc:
            raise LabError(f"advancing the market failed: {exc}") from None
        from .results import AdvanceResult

        return AdvanceResult.from_dict(answer)

    advance, aadvance = _twins(_advance)

    async def _activity(self, deployment_id: str, bars: int = 500, *, expected: bool = True) -> DeploymentActivity:
        """What a deployment did on the paper market: the last ``bars`` candles of its symbol and
        timeframe, its fills, the lots held and the PnL per bar, the market clock and, with
        ``expected=True``, the lots the stored strategy's backtest holds on those same candles.
        Returns a :class:`~quantlab.lab.activity.DeploymentActivity` (what the monitor draws).

        >>> lab.activity(rec.deployment_id, bars=300)   # doctest: +SKIP
        DeploymentActivity(1 'sma_cross' on EURUSD M1, running; 300 bars, 4 fills, position 0.1 lots, ...)
        """
        from quantlab.servers.broker.constants import TIMEFRAME_MINUTES, parse_timeframe

        from . import activity as A

        deployment_id = str(deployment_id)
        dep = await self._call(self.runner_server, "get_deployment", {"deployment_id": _broker_id(deployment_id)})
        symbol, timeframe = str(dep["symbol"]), parse_timeframe(dep["timeframe"])
        rates, clock, spec, account = await asyncio.gather(
            self._call(self.broker_server, "copy_rates_from_pos",  # the MT5 dialect takes minutes
                       {"symbol": symbol, "timeframe": TIMEFRAME_MINUTES[timeframe], "start_pos": 0, "count": int(bars)}),
            self._call(self.broker_server, "get_clock"),
            self._call(self.broker_server, "get_symbol_info", {"symbol": symbol}),
            self._call(self.broker_server, "get_account_info"),
        )
        journal: list[dict[str, Any]] = []
        while True:  # fills only, in pages
            page = await self._call(self.runner_server, "deployment_journal", {
                "deployment_id": _broker_id(deployment_id), "kind": "fill", "limit": 1000,
                "after_id": journal[-1]["id"] if journal else 0})
            journal.extend(page or [])
            if not page or len(page) < 1000:
                break
        candles = A.bars_frame(rates)
        fills = A.fills_frame(journal)
        position = A.position_series(candles, fills)
        pnl = A.pnl_series(candles, fills, position, float(spec.get("trade_contract_size") or spec.get("contract_size") or 1.0))
        clock_time = A.market_time((clock or {}).get("time"))
        activity = A.DeploymentActivity(
            deployment_id=deployment_id, strategy_name=str(dep.get("name")), symbol=symbol, timeframe=str(timeframe),
            status=str(dep.get("status")), volume=float(dep.get("volume") or 0.0), currency=str(account.get("currency", "")),
            market_time=clock_time, bars=candles, fills=fills,
            position=position, pnl=pnl, pnl_total=dep.get("pnl"), trades=dep.get("trades"),
            last_error=dep.get("last_error"), info=dep,
        )
        activity.info["volume_step"] = float(spec.get("volume_step") or 0.01)
        if expected:
            activity.expected = await self._expected_lots(activity)
        return activity

    activity, aactivity = _twins(_activity)

    async def _expected_lots(self, activity: DeploymentActivity) -> pd.Series | None:
        """The lots the stored strategy's backtest holds on ``activity.bars`` (the paper candles), bar by bar;
        ``None`` when there are too few bars or the deployment's commit is not in this hub.

        >>> act = lab.activity(dep_id, expected=False); lab.expected_lots(act).tail()   # doctest: +SKIP
        """
        from .activity import expected_lots

        candles = activity.bars
        if len(candles) < 2:
            return None
        ledger = await asyncio.to_thread(self.hub.deployment_status)
        rows = ledger[ledger["broker_deployment_id"].astype(str) == activity.deployment_id] if not ledger.empty else ledger
        if rows.empty or not rows.iloc[-1].get("commit"):
            return None
        code = await asyncio.to_thread(self.hub.code, rows.iloc[-1]["commit"])
        result = await self._backtest(code, candles, dict(activity.info.get("params") or {}))
        return expected_lots(result.positions, result.equity, candles["close"], activity.volume,
                             float(activity.info.get("volume_step") or 0.01))

    expected_lots, aexpected_lots = _twins(_expected_lots)

    async def _parity(self, deployment_id: Any, *, fees: float | None = None, slippage: float | None = None) -> ParityReport:
        """Does paper match the backtest? Replay the bars deployment ``deployment_id`` saw
        through the engine (on the backtest server, with the stored backtest's costs unless
        ``fees``/``slippage`` are given) and compare, bar by bar, the paper position and fills
        with the backtest's targets and fills. Returns a :class:`ParityReport`
        (``.frame``, ``.summary``, ``.differences()``, ``.matches``).

        >>> rep = lab.parity(rec.deployment_id)     # doctest: +SKIP
        >>> rep.matches, rep.summary["bars"]         # doctest: +SKIP
        (True, 120)
        """
        import pandas as pd

        from .results import ParityReport

        try:
            bars = await self._call(self.runner_server, "deployment_bars",
                                    {"deployment_id": _broker_id(deployment_id), "replay": True}, timeout=180.0)
        except ClientError as exc:
            raise LabError(f"parity of deployment {deployment_id}: {exc}") from None
        replay = bars.get("replay")
        if not replay or not bars["steps"]["bar_time"]:
            raise LabError(f"deployment {deployment_id} has not acted on any bar yet; advance the market "
                           "(lab.advance(n), `quantlab advance N`) and ask again.")
        stored = await asyncio.to_thread(self.hub.get, bars["commit"])
        costs = dict((stored.metadata.get("costs") or {}))
        data = pd.DataFrame({k: replay[k] for k in ("open", "high", "low", "close", "volume")},
                            index=pd.DatetimeIndex(pd.to_datetime(replay["time"], unit="s", utc=True), name="time"))
        code = await asyncio.to_thread(self.hub.code, stored)
        result = await self._backtest(Strategy.from_code(code, stored.name), data, bars["params"],
                                      fees=float(costs.get("fees", DEFAULT_FEES) if fees is None else fees),
                                      slippage=float(costs.get("slippage", DEFAULT_SLIPPAGE) if slippage is None else slippage))
        step = None
        try:
            info = await self._call(self.broker_server, "get_symbol_info", {"symbol": bars["symbol"]})
            step = float((info or {}).get("volume_step") or 0) or None
        except ClientError:
            pass
        return ParityReport.build(bars, result, volume_step=step)

    parity, aparity = _twins(_parity)
