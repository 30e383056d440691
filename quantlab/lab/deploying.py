"""The Lab's deploy steps: store (the Git assets hub), deploy (through the runner), store & deploy,
each one coroutine on the MCP loop with a sync and an async face (:mod:`quantlab.lab._twins`).

:class:`DeploySteps` is a mixin of :class:`quantlab.Lab`; use the lab, not this class.
"""
from __future__ import annotations

import asyncio
import difflib
import functools
import sys
from typing import TYPE_CHECKING, Any, Callable, Mapping

from quantlab.client import ClientError, ToolError
from quantlab.hub import StoredStrategy

from ._twins import _twins
from .errors import LabError
from .policy import DeploymentPolicy, PolicyError
from .records import DeploymentRecord, StoreDeployOutcome

if TYPE_CHECKING:
    from quantlab.engine.backtest import BacktestResult

__all__ = ["DeploySteps"]

StepCallback = Callable[[str, str, str], None]


def _bar_minutes(bar_seconds: Any, name: str) -> int:
    """The deployment timeframe (minutes) for a backtest's bar size; 1 minute when it is unknown."""
    from quantlab.servers.broker.constants import TIMEFRAME_MINUTES

    if bar_seconds is None:
        return 1
    minutes = float(bar_seconds) / 60.0
    if minutes not in TIMEFRAME_MINUTES.values():
        supported = ", ".join(str(m) for m in sorted(TIMEFRAME_MINUTES.values()))
        raise LabError(f"{name!r} was backtested on {minutes:g}-minute bars, which the broker does not offer "
                       f"({supported}); pass timeframe=… explicitly.")
    return int(minutes)


def _is_backtest_result(obj: Any) -> bool:
    """``isinstance(obj, BacktestResult)`` without loading the engine (no engine loaded: no result)."""
    module = sys.modules.get("quantlab.engine.backtest")
    return module is not None and isinstance(obj, module.BacktestResult)


def _candidate_of(obj: Any) -> Any:
    """The generated candidate behind ``obj`` (a ``Candidate``, a ``Generation``'s best, or its result), else ``None``."""
    gen = sys.modules.get("quantlab.agent.generation")
    if gen is None:  # the code agent never ran in this process: nothing here was generated
        return None
    if isinstance(obj, gen.Generation):  # its best candidate
        best = obj.best
        if best is None:
            raise LabError(f"this generation has no candidate that passed ({obj.stop_reason}); "
                           "store one of gen.attempts with force=True, or generate again.")
        return best
    if isinstance(obj, gen.Candidate):
        return obj
    return obj.generated_by if _is_backtest_result(obj) else None


def _generation_store_args(candidate: Any) -> dict[str, Any]:
    """hub.store keywords for a generated candidate: transcript beside it, trailers, provenance."""
    gen = candidate.generation
    transcript = gen.transcript_jsonl().encode("utf-8")
    import hashlib

    sha = hashlib.sha256(transcript).hexdigest()
    return {
        "source": {"type": "generator", "generator": "quantlab.agent", "model": gen.model, "idea": gen.idea},
        "trailers": {"Quantlab-Model": gen.model, "Quantlab-Attempts": str(len(gen.attempts)),
                     "Quantlab-Transcript-SHA256": sha},
        "attachments": {".transcript.jsonl": transcript},
        "extra_metadata": {"generation": {"model": gen.model, "attempts": len(gen.attempts), "attempt": candidate.attempt,
                                          "usage": gen.usage, "transcript_sha256": sha, "idea": gen.idea}},
    }



class DeploySteps:
    """Store, deploy, and store & deploy (a mixin of :class:`quantlab.Lab`)."""

    # ----------------------------------------------------------------------- store
    async def _store(self, result: BacktestResult, source: Any = None, *, allow_secrets: bool = False,
                     force: bool = False) -> StoredStrategy:
        """Store the result's strategy in the hub (commit message with the metrics); return the record.

        The same code with the same parameters is stored only once: storing it again returns
        the existing record. A generated candidate (``gen.best``, or its ``.result``) is stored
        with its transcript beside it (``<name>_<ts>.transcript.jsonl``) and the trailers
        ``Quantlab-Model``, ``Quantlab-Attempts``, ``Quantlab-Transcript-SHA256``; one that did not
        pass its checks needs ``force=True``.

        >>> stored = lab.store(result)        # doctest: +SKIP
        >>> stored.commit[:7]                 # doctest: +SKIP
        """
        candidate = _candidate_of(result)
        extra: dict[str, Any] = {}
        if candidate is not None:
            if not candidate.passed and not force:
                check = self.policy.check(candidate.metrics) if candidate.metrics else None
                if check is not None and not check.passed:
                    raise PolicyError(check)
                raise LabError(f"attempt {candidate.attempt} ({candidate.name!r}) did not pass its checks "
                               f"({candidate.status}); store it anyway with force=True.")
            result = await candidate.aresult()
            extra = _generation_store_args(candidate)
            source = source or extra.pop("source")
            extra.pop("source", None)
        strategy = getattr(result, "strategy", None)
        if strategy is None:
            raise LabError("this result carries no strategy code; backtest a Strategy (lab.backtest or quantlab.backtest) and store that result.")
        from . import validation as _validation

        existing = await asyncio.to_thread(self.hub.find, strategy.sha256, result.params)
        if existing is not None:
            return existing
        await asyncio.to_thread(self._check_causal, result)
        trials = await asyncio.to_thread(self.hub.trials, strategy.name)
        added, trailers = _validation.store_annotations(result, trials)
        result.metrics.update(added)
        extra["trailers"] = {**trailers, **(extra.get("trailers") or {})}
        return await asyncio.to_thread(functools.partial(self.hub.store, strategy, result, source or "notebook cell",
                                                         allow_secrets, **extra))

    store, astore = _twins(_store)

    # ----------------------------------------------------------------------- deploy
    async def _symbols(self) -> list[str]:
        """The broker's symbols; the first is the default for :meth:`deploy`."""
        answer = await self._call(self.broker_server, "get_symbols")
        if isinstance(answer, Mapping):
            answer = answer.get("symbols", answer.get("result", []))
        return [s if isinstance(s, str) else s.get("name") for s in answer]

    symbols, asymbols = _twins(_symbols)

    async def _check_symbol(self, symbol: str) -> None:
        """Raise :class:`LabError` unless the broker trades ``symbol`` (before anything is stored or sent).
        A broker that cannot be reached is not asked: the deploy step reports that (and keeps the commit)."""
        try:
            symbols = await self._symbols()
        except ClientError:
            return
        if symbol in symbols:
            return
        close = difflib.get_close_matches(str(symbol).upper(), symbols, n=3, cutoff=0.5)
        hint = f"did you mean {', '.join(map(repr, close))}? " if close else ""
        listed = ", ".join(symbols[:12]) + ("…" if len(symbols) > 12 else "")
        raise LabError(f"the broker {self.broker_server!r} has no symbol {symbol!r}; {hint}it trades {listed or 'nothing'} "
                       f"(lab.symbols() lists them). Nothing was stored or deployed.")

    async def _resolve_stored(self, target: Any) -> StoredStrategy:
        if isinstance(target, StoredStrategy):
            return target
        if _is_backtest_result(target) or _candidate_of(target) is not None:
            return await self._store(target)
        return await asyncio.to_thread(self.hub.get, target)

    def _running_for(self, commit: str, symbol: str) -> dict[str, Any] | None:
        rows = [r for r in self.hub.deployment_rows(commit)
                if r["commit"] == commit and r["status"] == "running" and r["symbol"] == symbol]
        return rows[-1] if rows else None

    async def _deploy(
        self,
        target: Any,
        symbol: str | None = None,
        timeframe: int | None = None,
        volume: float = 0.1,
        *,
        policy: DeploymentPolicy | None = None,
        force: bool = False,
        config: Mapping[str, Any] | None = None,
    ) -> DeploymentRecord:
        """Deploy a stored strategy (a :class:`StoredStrategy`, a hub commit or name, or a
        :class:`BacktestResult`, which is stored first) to the paper broker.

        The policy is checked against the stored metrics; a failing strategy needs
        ``force=True`` (recorded in the ledger). Every outcome is appended to the hub's
        ledger: ``pending``, then ``running`` or ``failed`` with the reason. Deploying the
        same commit on the same symbol again returns the running deployment.
        Raises :class:`LabError` when the broker refuses or cannot be reached (the ledger
        says ``failed``; the commit is kept; call again once the broker is back).
        ``timeframe`` (minutes) defaults to the stored backtest's bar size (1 when unknown).

        >>> rec = lab.deploy(stored, symbol="EURUSD", volume=0.1)   # doctest: +SKIP
        >>> rec.status                                              # doctest: +SKIP
        'running'
        """
        stored = await self._resolve_stored(target)
        metrics = dict(stored.metrics)
        if (policy or self.policy).require_causal and "causal" not in metrics:   # stored before the check existed
            from . import validation as _validation

            frame = await asyncio.to_thread(_validation.local_frame, stored.metadata.get("data_ref"), self._frames)
            if frame is not None:
                code = await asyncio.to_thread(self.hub.load, stored.commit)
                report = await asyncio.to_thread(_validation.lookahead, code, frame, stored.params)
                metrics["causal"] = bool(report.causal)
        check = (policy or self.policy).check(metrics)
        if not check.passed and not force:
            raise PolicyError(check)
        if symbol is None:
            symbols = await self._symbols()
            if not symbols:
                raise LabError(f"the broker {self.broker_server!r} lists no symbols; pass symbol=… explicitly.")
            symbol = symbols[0]
        else:
            await self._check_symbol(symbol)
        if timeframe is None:
            timeframe = _bar_minutes(stored.metadata.get("bar_seconds"), stored.name)
        base = dict(strategy_name=stored.name, commit=stored.commit, symbol=symbol, timeframe=int(timeframe),
                    volume=float(volume), broker=self.runner_server, forced=bool(force and not check.passed))
        running = await asyncio.to_thread(self._running_for, stored.commit, symbol)
        if running is not None:
            live = await self._live_status(str(running.get("broker_deployment_id")))
            if live == "running":
                return DeploymentRecord(deployment_id=str(running["broker_deployment_id"]), status="running",
                                        existing=True, **base)
        record = DeploymentRecord(deployment_id=None, status="pending", **base)
        ledger = dict(strategy_name=stored.name, backtest_results=stored.metrics, status="pending", commit=stored.commit,
                      broker=self.runner_server, forced=record.forced, policy=check.to_dict(), symbol=symbol,
                      timeframe=record.timeframe, volume=record.volume, triggered_at=record.triggered_at)
        await asyncio.to_thread(self.hub.record_deployment, ledger)
        failure: ClientError | None = None
        try:
            answer = await self._call(self.runner_server, "deploy_strategy", {
                "commit": stored.commit, "symbol": symbol, "volume": float(volume), "timeframe": int(timeframe),
                "params": stored.params, "hub": str(self.hub.path),
                "config": {"comment": f"quantlab {stored.commit[:8]}", **dict(config or {})},
            }, timeout=60.0)
        except ClientError as exc:
            failure = exc
            record.status, record.error = "failed", f"{type(exc).__name__}: {exc}"
        else:
            record.deployment_id = str(answer.get("deployment_id"))
            status = str(answer.get("status", "running"))
            record.status = "running" if status in ("pending", "running") else status
            record.error = answer.get("error") or answer.get("last_error")
            record.existing = bool(answer.get("existing"))
        ledger.update(status=record.status, broker_deployment_id=record.deployment_id, error=record.error)
        await asyncio.to_thread(self.hub.record_deployment, ledger)
        self._touch(record)
        if record.status == "failed":
            refused = isinstance(failure, ToolError)  # the runner answered and refused; else it was not reached
            advice = ("fix the request and deploy again" if refused
                      else "deploy again once the broker is reachable (nothing will be stored twice)")
            raise LabError(
                f"deploying {stored.name!r} (commit {stored.commit[:12]}) to {self.broker_server!r} failed: "
                f"{(record.error or '').rstrip('.')}. The commit is kept and the ledger says 'failed'; {advice}."
            )
        return record

    deploy, adeploy = _twins(_deploy)

    async def _store_and_deploy(
        self,
        result: BacktestResult,
        symbol: str | None = None,
        timeframe: int | None = None,
        volume: float = 0.1,
        policy: DeploymentPolicy | None = None,
        force: bool = False,
        on_step: StepCallback | None = None,
        source: Any = None,
    ) -> StoreDeployOutcome:
        """Validate → store → deploy → record, reporting each step; return a :class:`StoreDeployOutcome`.

        A result that fails the policy raises :class:`PolicyError` unless ``force=True``.
        A ``symbol`` the broker does not trade raises :class:`LabError` before anything is stored.
        ``timeframe`` (minutes) defaults to the backtest's bar size.
        If the deploy fails, the commit stays, the ledger says ``failed`` with the reason and
        the outcome carries the error; calling again for the same code and params neither
        stores nor deploys twice. ``on_step(step, status, detail)`` is called for
        ``validate``, ``store``, ``deploy``, ``record`` with ``start``/``done``/``failed``.

        >>> outcome = lab.store_and_deploy(result, volume=0.1)     # doctest: +SKIP
        >>> outcome.ok, outcome.stored.commit[:7], outcome.record.deployment_id   # doctest: +SKIP
        """
        from tqdm.auto import tqdm

        policy = policy or self.policy
        # a caller that follows the steps itself (the deploy panel) gets no bar in some other cell
        bar = tqdm(total=4, desc="store & deploy", disable=not self.progress or on_step is not None, leave=False)
        steps: list[tuple[str, str, str]] = []

        def step(name: str, status: str, detail: str = "") -> None:
            steps.append((name, status, detail))
            if status != "start":
                bar.update(1)
            bar.set_postfix_str(f"{name}: {status}")
            if on_step is not None:
                on_step(name, status, detail)

        candidate = _candidate_of(result)
        if candidate is not None and not candidate.metrics:
            raise LabError(f"attempt {candidate.attempt} ({candidate.name!r}) has no backtest result ({candidate.status}).")
        try:
            step("validate", "start")
            checked = await candidate.aresult() if candidate is not None else result  # fetched here, on the loop
            await asyncio.to_thread(self._check_causal, checked)
            check = policy.check(candidate.metrics if candidate is not None else result)
            if not check.passed and not force:
                step("validate", "failed", "; ".join(check.failures))
                raise PolicyError(check)
            try:
                if symbol is not None:
                    await self._check_symbol(symbol)  # before anything is stored
                if timeframe is None:  # the backtest's own bars, so "100 bars" means the same time on paper
                    from quantlab.engine.data import bar_size

                    step_size = bar_size(result.equity.index)
                    timeframe = _bar_minutes(step_size.total_seconds() if step_size is not None else None, result.name)
            except LabError as exc:
                step("validate", "failed", str(exc))
                raise
            step("validate", "done", "passed" if check.passed else "failed, forced")
            outcome = StoreDeployOutcome(check=check, steps=steps)
            step("store", "start")
            try:
                outcome.stored = await self._store(result, source, force=force)
            except Exception as exc:  # noqa: BLE001 - reported in the outcome
                step("store", "failed", str(exc))
                outcome.error = f"store failed: {exc}"
                return outcome
            step("store", "done", outcome.stored.commit[:12])
            step("deploy", "start")
            try:
                outcome.record = await self._deploy(outcome.stored, symbol, timeframe, volume, policy=policy, force=force)
            except LabError as exc:
                step("deploy", "failed", str(exc))
                outcome.error = str(exc)
                step("record", "done", "ledger: failed")
                return outcome
            step("deploy", "done", str(outcome.record.deployment_id))
            step("record", "done", f"ledger: {outcome.record.status}")
            return outcome
        finally:
            bar.close()

    store_and_deploy, astore_and_deploy = _twins(_store_and_deploy)
