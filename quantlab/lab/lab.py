"""``quantlab.Lab``: the workflow in one object.

(Size: one class of workflow steps, each one coroutine with a sync and an async face; the policy,
defaults, state file, errors, deployment activity and the agent live in their own modules.)

backtest (through the backtest MCP server) → validate (a :class:`DeploymentPolicy`) →
store (the Git assets hub) → deploy (the paper broker MCP server) → record (the
hub's deployments ledger), with the agent state kept across kernel restarts.

Every step is written once, as a coroutine that runs on the MCP client's own event-loop
thread; the sync methods (for cells and scripts) and the ``a``-prefixed async twins (for
``await`` in a running loop) are two thin faces over that one implementation.

Example
-------
>>> from quantlab import Lab, Strategy
>>> lab = Lab.start("./assets-hub")                                  # doctest: +SKIP
>>> result = lab.backtest(Strategy.from_file("sma.py"), data="sample")  # doctest: +SKIP
>>> outcome = lab.store_and_deploy(result)                           # doctest: +SKIP
>>> lab.deployments()                                                # doctest: +SKIP
>>> lab.close()                                                      # doctest: +SKIP
"""
from __future__ import annotations

import asyncio
import base64
import concurrent.futures
import difflib
import functools
import html
import io
import os
import sys
import weakref
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Awaitable, Callable, ClassVar, Coroutine, Mapping

from quantlab._util import html as qh
from quantlab.client import ClientError, MCPHub, ToolError
from quantlab.engine.costs import DEFAULT_CASH, DEFAULT_FEES, DEFAULT_SLIPPAGE
from quantlab.engine.strategy import Strategy
from quantlab.hub import AssetsHub, StoredStrategy

from .defaults import BACKTEST, BROKER, RUNNER, embedded_servers, runner_entry
from .errors import LabError
from .policy import DeploymentPolicy, PolicyCheck, PolicyError
from .state import HomeLock, HubInUseError, LabState, state_from_ledger

# pandas, the engine's backtest, the broker's constants and the result types load in the steps that
# use them: a lab that only deploys, lists or stops (the command line talking to a daemon) needs none.
if TYPE_CHECKING:
    import pandas as pd

    from quantlab.engine.backtest import BacktestResult
    from quantlab.engine.sweep import SweepResult

    from .activity import DeploymentActivity
    from .results import AdvanceResult, ParityReport

__all__ = ["Lab", "LabError", "PolicyError", "DeploymentRecord", "StoreDeployOutcome", "AdvanceResult", "ParityReport"]

StepCallback = Callable[[str, str, str], None]


def __getattr__(name: str) -> Any:
    if name in ("AdvanceResult", "ParityReport"):  # exported from here; loaded on first use
        from . import results

        return getattr(results, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


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


def _broker_id(deployment_id: Any) -> Any:
    """Broker ids travel as text in the ledger; the broker's tools take integers when they are integers."""
    text = str(deployment_id)
    return int(text) if text.isdigit() else text


def _table(rows: list[tuple[str, Any]]) -> str:
    """A key/value table whose values are already HTML."""
    return qh.kv_table((k, qh.raw(v)) for k, v in rows)


def _candidate_of(obj: Any) -> Any:
    """The generated candidate behind ``obj`` (a ``Candidate``, a ``Generation``'s best, or its result), else ``None``."""
    if hasattr(obj, "attempts") and hasattr(obj, "best"):  # a Generation: its best candidate
        best = obj.best
        if best is None:
            raise LabError(f"this generation has no candidate that passed ({obj.stop_reason}); "
                           "store one of gen.attempts with force=True, or generate again.")
        return best
    if hasattr(obj, "generation") and hasattr(obj, "checks") and hasattr(obj, "attempt"):
        return obj
    return getattr(obj, "_quantlab_candidate", None)


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


@dataclass
class DeploymentRecord:
    """One deployment as the lab knows it: the broker's id and status, the strategy commit, why it failed.

    >>> DeploymentRecord(deployment_id="d1", strategy_name="SMA", status="running").ok
    True
    """

    deployment_id: str | None
    strategy_name: str
    status: str
    commit: str | None = None
    symbol: str | None = None
    timeframe: int | None = None
    volume: float | None = None
    broker: str | None = None
    error: str | None = None
    forced: bool = False
    triggered_at: str = field(default_factory=_now)
    existing: bool = False  # True when an already-running deployment was returned instead of a new one

    @property
    def ok(self) -> bool:
        """``True`` unless the deployment failed."""
        return self.status != "failed"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def __repr__(self) -> str:
        extra = f", error={self.error!r}" if self.error else ""
        commit = self.commit[:12] if self.commit else None
        return (
            f"DeploymentRecord(id={self.deployment_id!r}, strategy={self.strategy_name!r}, status={self.status!r}, "
            f"symbol={self.symbol!r}, commit={commit!r}{extra})"
        )

    def _repr_html_(self) -> str:
        rows = [
            ("status", qh.status_html(self.status)),
            ("deployment", f"<code>{html.escape(str(self.deployment_id))}</code>"),
            ("symbol", html.escape(str(self.symbol))),
            ("commit", f"<code>{html.escape((self.commit or '')[:12])}</code>"),
            ("triggered", html.escape(self.triggered_at)),
        ]
        if self.error:
            rows.append(("error", qh.coloured(self.error, qh.RED)))
        return f"<div><b>Deployment</b> <code>{html.escape(self.strategy_name)}</code>{_table(rows)}</div>"


@dataclass
class StoreDeployOutcome:
    """What :meth:`Lab.store_and_deploy` did: the policy ``check``, the ``stored`` strategy, the deployment ``record``.

    ``ok`` is ``True`` when the strategy is stored and running on the broker; otherwise
    ``error`` says which step failed and why (the stored commit is kept either way).
    """

    check: PolicyCheck
    stored: StoredStrategy | None = None
    record: DeploymentRecord | None = None
    error: str | None = None
    steps: list[tuple[str, str, str]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.error is None and self.record is not None and self.record.ok

    def __repr__(self) -> str:
        commit = self.stored.commit[:12] if self.stored else None
        dep = self.record.deployment_id if self.record else None
        state = "ok" if self.ok else f"failed: {self.error}"
        return f"StoreDeployOutcome({state}; commit={commit!r}, deployment={dep!r}, policy={'pass' if self.check.passed else 'fail'})"

    def _repr_html_(self) -> str:
        rows = [(s, f"{html.escape(st)} {html.escape(d)}") for s, st, d in self.steps]
        head = qh.verdict(True, "stored and deployed") if self.ok else (
            f"{qh.verdict(False, 'failed')}: {html.escape(str(self.error))}")
        return f"<div>{head}{_table(rows)}</div>"


def _twins(core: Callable[..., Coroutine[Any, Any, Any]]) -> tuple[Callable[..., Any], Callable[..., Awaitable[Any]]]:
    """Make the sync method and the async twin of one core coroutine (which runs on the MCP loop)."""

    @functools.wraps(core)
    def sync(self: "Lab", *args: Any, **kwargs: Any) -> Any:
        self._check_open()
        return self.mcp.run(self._tracked(core(self, *args, **kwargs)))

    @functools.wraps(core)
    async def twin(self: "Lab", *args: Any, **kwargs: Any) -> Any:
        self._check_open()
        return await asyncio.wrap_future(self.mcp.submit(self._tracked(core(self, *args, **kwargs))))

    sync.__name__ = core.__name__.lstrip("_")
    twin.__name__ = "a" + sync.__name__
    twin.__doc__ = f"Async twin of :meth:`Lab.{sync.__name__}` (``await lab.{twin.__name__}(...)``)."
    return sync, twin


def _counted(core: Callable[..., Coroutine[Any, Any, Any]],
             trials_of: Callable[[Any], tuple[str, int]]) -> Callable[..., Coroutine[Any, Any, Any]]:
    """``core`` that also adds its trials to the hub (every backtest and sweep combination counts
    toward the deflated Sharpe of its strategy family); internal callers use ``core`` directly."""

    @functools.wraps(core)
    async def counted(self: "Lab", *args: Any, **kwargs: Any) -> Any:
        out = await core(self, *args, **kwargs)
        name, n = trials_of(out)
        await asyncio.to_thread(self.hub.record_trials, name, n)
        return out

    return counted


class Lab:
    """The quantlab workflow: backtest, validate, store, deploy, record, watch.

    Make one with :meth:`start` (embedded servers by default, or the servers of a
    ``mcpServers`` config). Sync methods for cells; ``a``-prefixed async twins.

    Example
    -------
    >>> with Lab.start("./assets-hub") as lab:                               # doctest: +SKIP
    ...     r = lab.backtest(strategy, data="sample", params={"fast": 10})
    ...     lab.store_and_deploy(r, volume=0.1)
    """

    _started: ClassVar["list[weakref.ref[Lab]]"] = []
    _home_lock: HomeLock | None = None

    def __init__(
        self,
        mcp: MCPHub,
        hub: AssetsHub,
        *,
        policy: DeploymentPolicy | None = None,
        home: str | os.PathLike[str] | None = None,
        backtest_server: str | None = BACKTEST,
        broker_server: str = BROKER,
        runner_server: str | None = None,
        progress: bool = True,
    ) -> None:
        self.mcp = mcp
        self.hub = hub
        self.policy = policy or DeploymentPolicy()
        self.home = Path(home) if home is not None else hub.quantlab_dir
        self.home.mkdir(parents=True, exist_ok=True)
        self.backtest_server = backtest_server
        self.broker_server = broker_server
        #: the runner that deploys, lists, stops and advances (by default the same server as the
        #: broker entry: a runner fronting the broker and serving its tools)
        self.runner_server = runner_server or broker_server
        self.progress = progress
        self._uploads: dict[str, str] = {}
        self._frames: dict[str, pd.DataFrame] = {}      # data reference -> the frame (look-ahead, holdout)
        self._state_file = LabState(self.state_path, rebuild=self._rebuild_state,
                                    defaults={"generations": 0, "tokens": {"input": 0, "output": 0}, "cost_usd": 0.0})
        self._state_file.read()  # a bad state.json is set aside (with a warning) now, not at the first call
        self._closed = False
        Lab._started = [r for r in Lab._started if r() is not None] + [weakref.ref(self)]

    # ----------------------------------------------------------------------- lifecycle
    @classmethod
    def start(
        cls,
        hub: str | os.PathLike[str] | AssetsHub = "./assets-hub",
        config: Mapping[str, Any] | str | os.PathLike[str] | None = None,
        *,
        clock: str = "stepped",
        policy: DeploymentPolicy | None = None,
        backtest_server: str | None = BACKTEST,
        broker_server: str = BROKER,
        progress: bool = True,
        **client_options: Any,
    ) -> "Lab":
        """Open the hub and connect the servers; return a ready lab.

        With ``config=None`` quantlab starts its own backtest and broker servers as
        subprocesses (files under ``<hub>/.git/quantlab``; the broker's market ``clock`` is
        ``"stepped"`` — bars advance with :meth:`advance` — or ``"realtime"`` /
        ``"accelerated:N"``). With a config (a ``mcpServers`` dict or a JSON/TOML path) the
        servers named ``backtest_server`` and ``broker_server`` there are used.
        ``backtest_server=None`` starts no embedded backtest server: a lab that only deploys
        stored strategies, lists, stops and advances (the command line) starts faster.
        Servers start concurrently; one that fails is reported, not fatal.

        >>> lab = Lab.start("./assets-hub")          # doctest: +SKIP
        """
        store = hub if isinstance(hub, AssetsHub) else AssetsHub(hub)
        home = store.quantlab_dir
        claim = None
        if config is None:
            try:  # the embedded broker serves this hub's database from one process: say at once who has it
                claim = HomeLock.acquire(home, store.path)
            except HubInUseError as exc:
                raise LabError(str(exc)) from None
            config = embedded_servers(home, clock=clock, hub=store.path)
            if backtest_server is None:
                del config["mcpServers"][BACKTEST]
        config, runner_server = cls._with_runner(config, home, store.path, broker_server)
        mcp = MCPHub.from_config(config, **client_options)
        try:
            report = mcp.connect_all()
            lab = cls(mcp, store, policy=policy, home=home, backtest_server=backtest_server,
                      broker_server=broker_server if broker_server in mcp.server_names else runner_server,
                      runner_server=runner_server, progress=progress)
        except BaseException:
            mcp.close()
            if claim is not None:
                claim.release()
            raise
        lab._home_lock = claim
        for name in report.failed:
            import warnings

            warnings.warn(f"quantlab: server {name!r} is not available yet: {report[name].error}", stacklevel=2)
        return lab

    @staticmethod
    def _with_runner(config: Any, home: Path, hub: Path, broker_server: str) -> tuple[dict[str, Any], str]:
        """The config the lab connects with, and the name of its runner.

        A config naming a ``runner`` is used as is. One that names only a broker gets an
        embedded runner in its place (same name): the runner connects to that broker entry
        (``on_connect`` included) and serves its tools, so the lab never opens a second
        connection to it.
        """
        from quantlab.client import load_config
        from quantlab.client._config import _read_file

        load_config(config)  # validates; the raw entries below keep ${VAR} references unexpanded
        data: Any = config if isinstance(config, Mapping) else _read_file(Path(config).expanduser())
        if "tool" in data and "mcpServers" not in data:
            data = data["tool"].get("quantlab", {})
        servers = {str(k): dict(v) for k, v in (data.get("mcpServers", data)).items()
                   if not (isinstance(v, Mapping) and v.get("disabled"))}
        if RUNNER in servers:
            return {"mcpServers": servers}, RUNNER
        entry = servers.get(broker_server)
        if entry is None:
            return {"mcpServers": servers}, broker_server
        args = [str(a) for a in entry.get("args") or []]
        if not any(a in ("quantlab.runner", "quantlab.servers.runner") for a in args):
            servers[broker_server] = runner_entry(entry, home, hub=hub)
        return {"mcpServers": servers}, broker_server

    @classmethod
    async def astart(cls, *args: Any, **kwargs: Any) -> "Lab":
        """Async twin of :meth:`start` (``lab = await Lab.astart()``)."""
        return await asyncio.to_thread(cls.start, *args, **kwargs)

    @classmethod
    def active(cls) -> "Lab | None":
        """The most recently started lab that is still open, else ``None``."""
        for ref in reversed(cls._started):
            lab = ref()
            if lab is not None and not lab._closed:
                return lab
        return None

    def _check_open(self) -> None:
        if self._closed:
            raise LabError("this lab is closed; start a new one with Lab.start().")

    def close(self) -> None:
        """Close the MCP sessions (embedded servers stop) and the hub; save the state."""
        if self._closed:
            return
        self._closed = True
        try:
            self.mcp.close()
        finally:
            try:
                self.hub.close()
            finally:
                self._release_home()

    def _release_home(self) -> None:
        lock, self._home_lock = self._home_lock, None
        if lock is not None:
            lock.release()

    def __enter__(self) -> "Lab":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # ----------------------------------------------------------------------- state
    @property
    def state_path(self) -> Path:
        """Where the agent state is kept (outside the hub's working tree)."""
        return self.home / "state.json"

    def _rebuild_state(self) -> dict[str, Any]:
        """What the hub's ledger still knows when ``state.json`` had to be rebuilt."""
        return state_from_ledger(self.hub.deployments(), self.broker_server)

    def _touch(self, deployment: DeploymentRecord | None = None) -> None:
        """Count one invocation in ``state.json`` (merged under a lock with other processes' updates)."""
        self._state_file.touch(None if deployment is None else deployment.to_dict(),
                               connections=self.mcp.state().get("servers", {}))

    async def _tracked(self, coro: Coroutine[Any, Any, Any]) -> Any:
        try:
            return await coro
        finally:
            self._touch()

    def submit(self, step: str, /, *args: Any, **kwargs: Any) -> "concurrent.futures.Future[Any]":
        """Start the Lab step ``step`` (``"generate"``, ``"backtest"``, ...) on the MCP loop thread
        without waiting; return its :class:`concurrent.futures.Future` (``cancel()`` cancels the step).

        For faces that show progress while a step runs (``%%generate``); counted in the state like
        the sync and async methods.

        >>> fut = lab.submit("generate", "trend following", model="offline")   # doctest: +SKIP
        >>> fut.result().best                                                   # doctest: +SKIP
        """
        core = getattr(getattr(type(self), step, None), "__wrapped__", None)
        if core is None or not asyncio.iscoroutinefunction(core):
            steps = sorted(n for n, v in vars(type(self)).items()
                           if asyncio.iscoroutinefunction(getattr(v, "__wrapped__", None)) and "a" + n in vars(type(self)))
            raise ValueError(f"Lab.submit: {step!r} is not a Lab step; steps: {steps}")
        self._check_open()
        return self.mcp.submit(self._tracked(core(self, *args, **kwargs)))

    def state(self) -> dict[str, Any]:
        """The agent state: ``created_at``, ``last_activity``, ``invocation_count``,
        ``mcp_connections`` (per server, from the client), ``deployments_triggered``, and the code
        agent's ``generations``, ``tokens`` (``{"input", "output"}``) and ``cost_usd``.
        Persisted in :attr:`state_path`, so it survives kernel restarts.

        >>> lab.state()["invocation_count"]        # doctest: +SKIP
        3
        """
        state = self._state_file.read()
        state["mcp_connections"] = {**state.get("mcp_connections", {}), **self.mcp.state().get("servers", {})}
        return state

    # ----------------------------------------------------------------------- helpers
    async def _call(self, server: str | None, tool: str, arguments: Mapping[str, Any] | None = None,
                    timeout: float = 30.0) -> Any:
        if server is None:
            raise LabError(f"this lab was started without a backtest server (backtest_server=None), so it cannot "
                           f"{tool.replace('_', ' ')}; start one with Lab.start(hub).")
        return await self.mcp.aio.call(server, tool, dict(arguments or {}), timeout=timeout)

    async def _data_ref(self, data: Any) -> tuple[str, str | None]:
        """A data reference the backtest server understands; uploads a DataFrame once.

        A local ``.csv``/``.parquet`` path is loaded here (readable errors from
        :func:`quantlab.engine.data.load`) and uploaded by content hash like a DataFrame."""
        import pandas as pd

        from quantlab.engine.data import content_hash, is_local_path
        from quantlab.engine.data import load as load_bars

        if is_local_path(data):
            data = await asyncio.to_thread(load_bars, data)
        if isinstance(data, str):
            return data, data
        if not isinstance(data, pd.DataFrame):
            raise TypeError(f"data must be a pandas DataFrame or a reference string such as 'sample', not {type(data).__name__}.")
        key = await asyncio.to_thread(content_hash, data)
        if key not in self._uploads:
            buf = io.BytesIO()
            await asyncio.to_thread(data.to_parquet, buf)
            answer = await self._call(self.backtest_server, "upload_data",
                                      {"data": base64.b64encode(buf.getvalue()).decode("ascii"), "format": "parquet-base64"},
                                      timeout=120.0)
            self._uploads[key] = answer["data"]
        self._frames[self._uploads[key]] = data
        return self._uploads[key], None

    @staticmethod
    def _strategy(strategy: Strategy | str, name: str | None = None) -> Strategy:
        return Strategy.coerce(strategy, name)

    # ----------------------------------------------------------------------- backtest
    async def _backtest(
        self,
        strategy: Strategy | str,
        data: Any = "sample",
        params: Mapping[str, Any] | None = None,
        *,
        cash: float = DEFAULT_CASH,
        fees: float = DEFAULT_FEES,
        slippage: float = DEFAULT_SLIPPAGE,
        periods_per_year: float | None = None,
        fill: str = "next_open",
        holdout: float | None = None,
        timeout: float = 120.0,
    ) -> BacktestResult:
        """Backtest ``strategy`` on ``data`` through the backtest server; return the full :class:`BacktestResult`.

        ``data`` is a DataFrame or a local ``"bars.csv"``/``"bars.parquet"`` path (uploaded once,
        cached by content hash) or a reference: ``"sample"``, ``"synthetic:seed=7,bars=100000"``,
        ``"file:<path under the server's data root>"``. The result equals
        :func:`quantlab.backtest` run in-process on the same inputs.

        ``holdout=0.3`` keeps the last 30 % of the bars out: ``result.metrics`` then cover the
        first 70 % (what you select on) and ``result.metrics_oos`` the held-out bars (one run on
        all bars; each part measured from the equity it starts with).

        >>> r = lab.backtest(strategy, "sample", {"fast": 10}, fees=0.0005)   # doctest: +SKIP
        >>> r.metrics["sharpe"]                                              # doctest: +SKIP
        """
        from quantlab.engine.backtest import window_metrics
        from quantlab.engine.sweep.run import holdout_start

        from . import validation as _validation

        if holdout is not None:
            holdout_start(1_000_000, holdout)            # a bad fraction fails before the run
        strat = self._strategy(strategy)
        summary = await self._backtest_summary(strat, data, params, cash=cash, fees=fees, slippage=slippage,
                                               periods_per_year=periods_per_year, fill=fill, timeout=timeout)
        result = await self._load_run(summary["run_id"], summary.get("bars", 0), strat)
        cut = holdout_start(len(result.equity), holdout)
        if cut is not None:
            ref, _ = await self._data_ref(data)
            frame = await asyncio.to_thread(_validation.local_frame, ref, self._frames)
            close = frame["close"].to_numpy() if frame is not None and len(frame) == len(result.equity) else None
            n = len(result.equity)
            result.metrics_oos = window_metrics(result, cut, n, close)
            result.metrics = window_metrics(result, 0, cut, close)
            result.holdout = {"fraction": float(holdout), "start": str(result.equity.index[cut]), "bars": n - cut}
        return result

    async def _backtest_summary(self, strat: Strategy, data: Any, params: Mapping[str, Any] | None, *,
                                cash: float = DEFAULT_CASH, fees: float = DEFAULT_FEES, slippage: float = DEFAULT_SLIPPAGE,
                                periods_per_year: float | None = None, fill: str = "next_open",
                                timeout: float = 120.0) -> dict[str, Any]:
        """Run a backtest on the server and return only its summary (``run_id``, ``bars``, ``metrics``):
        the code agent's checks need the metrics, not 100k bars of equity (fetch those with :meth:`_load_run`)."""
        ref, _ = await self._data_ref(data)
        args: dict[str, Any] = {"code": strat.code, "name": strat.name, "params": dict(params or {}), "data": ref,
                                "cash": cash, "fees": fees, "slippage": slippage, "fill": fill, "timeout": timeout}
        if periods_per_year is not None:
            args["periods_per_year"] = periods_per_year
        return await self._call(self.backtest_server, "run_backtest", args, timeout=timeout + 15)

    async def _load_run(self, run_id: str, bars: int, strat: Strategy | None = None) -> BacktestResult:
        """The full :class:`BacktestResult` of a stored run."""
        from quantlab.engine.backtest import BacktestResult

        result = BacktestResult.from_dict(await self._fetch_run(run_id, bars))
        if result.strategy is None and strat is not None:
            result.strategy = strat
        return result

    backtest, abacktest = _twins(_counted(_backtest, lambda r: (r.name, 1)))

    async def _fetch_run(self, run_id: str, bars: int) -> dict[str, Any]:
        """The whole run as ``to_dict()``; runs of many bars come in pages (one big JSON message is slow)."""
        from quantlab.engine.backtest import PAGE_BARS, afetch_all_pages

        args: dict[str, Any] = {"run_id": run_id, "part": "all"}
        if bars > PAGE_BARS:
            args.update(offset=0, limit=PAGE_BARS)

        def page(offset: int) -> Awaitable[Any]:
            return self._call(self.backtest_server, "get_run", {**args, "offset": offset, "limit": PAGE_BARS}, timeout=120.0)

        return await afetch_all_pages(await self._call(self.backtest_server, "get_run", args, timeout=120.0), page)

    async def _sweep(
        self,
        strategy: Strategy | str,
        data: Any = "sample",
        grid: Mapping[str, Any] | list[Mapping[str, Any]] | None = None,
        *,
        executor: str = "processes",
        workers: int | None = None,
        cash: float = DEFAULT_CASH,
        fees: float = DEFAULT_FEES,
        slippage: float = DEFAULT_SLIPPAGE,
        periods_per_year: float | None = None,
        fill: str = "next_open",
        holdout: float | None = None,
        timeout: float = 600.0,
    ) -> "SweepResult":
        """Run a parameter sweep on the backtest server (its ``run_sweep`` tool) and return a :class:`SweepResult`.

        The same as :func:`quantlab.sweep` but the work happens where the backtest server runs —
        a shared server on a bigger machine, or its Dask cluster (``executor="dask://HOST:PORT"``).
        ``grid`` is a dict of lists (every combination) or a list of parameter dicts.
        ``holdout=0.3`` keeps the last 30 % of the bars out of the rows' metrics (so out of
        ``best()``) and reports them per row in ``result.metrics_oos``.

        >>> res = lab.sweep(strategy, "sample", {"fast": [5, 10, 20], "slow": [50, 100]})   # doctest: +SKIP
        >>> res.best("sharpe")                                                              # doctest: +SKIP
        """
        import pandas as pd

        from quantlab.engine.sweep import SweepResult

        if grid is None:
            raise TypeError("lab.sweep needs a grid, e.g. {'fast': [5, 10], 'slow': [50, 100]}.")
        strat = self._strategy(strategy)
        ref, _ = await self._data_ref(data)
        args: dict[str, Any] = {"code": strat.code, "name": strat.name, "grid": grid if isinstance(grid, Mapping) else list(grid),
                                "data": ref, "cash": cash, "fees": fees, "slippage": slippage, "fill": fill,
                                "executor": executor, "timeout": timeout}
        if isinstance(args["grid"], Mapping):
            args["grid"] = {k: list(v) if not isinstance(v, (str, bytes)) and hasattr(v, "__iter__") else [v]
                            for k, v in args["grid"].items()}
        if workers is not None:
            args["workers"] = workers
        if periods_per_year is not None:
            args["periods_per_year"] = periods_per_year
        if holdout is not None:
            args["holdout"] = holdout
        answer = await self._call(self.backtest_server, "run_sweep", args, timeout=timeout + 30)
        return SweepResult.from_dict(answer["result"], data=data if isinstance(data, pd.DataFrame) else None)

    sweep, asweep = _twins(_counted(_sweep, lambda r: (r.strategy.name, len(r.frame))))

    def validate(self, result: Any, policy: DeploymentPolicy | None = None, *, data: Any = None) -> PolicyCheck:
        """Check a result against ``policy`` (default: :attr:`policy`), after the look-ahead check.

        For a :class:`BacktestResult` with its strategy, :func:`quantlab.check_lookahead` runs on
        the data it was backtested on (``data=`` overrides it; sandboxed when the sandbox
        exists), and ``result.metrics["causal"]`` and ``result.lookahead`` (the report) are set,
        so ``DeploymentPolicy(require_causal=True)`` can refuse look-ahead. A dict of metrics is
        checked as it is.

        >>> lab.validate(result).passed     # doctest: +SKIP
        True
        """
        self._check_causal(result, data)
        return (policy or self.policy).check(result)

    def _check_causal(self, result: Any, data: Any = None) -> None:
        import pandas as pd

        from . import validation as _validation

        strategy = getattr(result, "strategy", None)
        metrics = getattr(result, "metrics", None)
        if strategy is None or not isinstance(metrics, dict) or "causal" in metrics:
            return
        frame = data if isinstance(data, pd.DataFrame) else _validation.local_frame(
            data if isinstance(data, str) else getattr(result, "data_ref", None), self._frames)
        if frame is None:
            return                      # the policy shows "look-ahead not checked"
        report = _validation.lookahead(strategy, frame, getattr(result, "params", None))
        result.lookahead = report
        metrics["causal"] = bool(report.causal)

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

    # ----------------------------------------------------------------------- generate
    async def _generate(
        self,
        idea: str,
        data: Any = "sample",
        *,
        model: Any = None,
        max_attempts: int = 5,
        policy: DeploymentPolicy | None = None,
        budget_usd: float | None = None,
        params: Mapping[str, Any] | None = None,
        on_attempt: Callable[..., None] | None = None,
        **costs: Any,
    ) -> Any:
        """Ask a model for a strategy that implements ``idea``; check it; feed back failures; return a ``Generation``.

        ``model``: ``"openai:gpt-4.1"``, ``"anthropic:claude-..."``, any OpenAI-compatible
        endpoint (``quantlab.agent.ModelConfig(model, base_url=...)`` or ``OPENAI_BASE_URL``),
        ``"offline"`` (indicator building blocks, no LLM) or ``"replay:PATH"``; ``None`` reads
        ``quantlab.toml`` / ``[tool.quantlab.llm]`` / ``QUANTLAB_MODEL`` (else offline).
        Checks, cheapest first: parses, defines signals, sandbox, 500 synthetic bars, causal,
        backtest on ``data`` through the backtest server (``costs``: cash, fees, slippage), the
        ``policy``. Stops at the first candidate that passes, at ``max_attempts``, or before
        ``budget_usd`` would be exceeded. Nothing is stored or deployed: ``lab.store(gen.best)``.

        >>> gen = lab.generate("mean reversion on calm days", model="offline")   # doctest: +SKIP
        >>> gen.best.result.metrics["sharpe"]                                   # doctest: +SKIP
        """
        from quantlab.agent.loop import run_generation

        gen = await run_generation(self, idea, data, model=model, max_attempts=max_attempts, policy=policy,
                                   budget_usd=budget_usd, params=params, on_attempt=on_attempt, **costs)
        usage = gen.usage

        def count(state: dict[str, Any]) -> None:  # merged under the state lock, like every other update
            state["generations"] = int(state.get("generations", 0)) + 1
            tokens = state.setdefault("tokens", {"input": 0, "output": 0})
            tokens["input"] = int(tokens.get("input", 0)) + usage["input_tokens"]
            tokens["output"] = int(tokens.get("output", 0)) + usage["output_tokens"]
            state["cost_usd"] = round(float(state.get("cost_usd", 0.0)) + usage["cost_usd"], 8)

        self._state_file.update(count)
        return gen

    generate, agenerate = _twins(_generate)

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

    # ----------------------------------------------------------------------- watch
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

    # ----------------------------------------------------------------------- display
    def __repr__(self) -> str:
        servers = ", ".join(f"{n}={s.get('status')}" for n, s in self.mcp.state().get("servers", {}).items())
        return f"Lab(hub={str(self.hub.path)!r}, servers: {servers or 'none'}, policy={self.policy!r})"

    def _repr_html_(self) -> str:
        servers = self.mcp.state().get("servers", {})
        rows = [("hub", f"<code>{html.escape(str(self.hub.path))}</code>")]
        rows += [(f"server {n}", html.escape(f"{s.get('status')} ({s.get('transport')}, {s.get('tools')} tools)"))
                 for n, s in servers.items()]
        rows.append(("policy", html.escape(repr(self.policy))))
        return f"<div><b>quantlab Lab</b>{_table(rows)}</div>"
