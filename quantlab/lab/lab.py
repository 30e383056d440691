"""``quantlab.Lab``: the workflow in one object.

backtest (through the backtest MCP server) → validate (a :class:`DeploymentPolicy`) →
store (the Git assets hub) → deploy (the paper broker MCP server) → record (the
hub's deployments ledger), with the agent state kept across kernel restarts.

Every step is written once, as a coroutine that runs on the MCP client's own event-loop
thread; the sync methods (for cells and scripts) and the ``a``-prefixed async twins (for
``await`` in a running loop) are two thin faces over that one implementation (:mod:`._twins`).
The steps live by job in their own modules, mixed into :class:`Lab` here: :mod:`.research`
(backtest, sweep, validate, generate), :mod:`.deploying` (store, deploy, store & deploy),
:mod:`.watching` (deployments, stop, advance, activity, parity). This module keeps the
lifecycle (start, close, the servers' config), the state file, the one MCP call helper and the
display; the records, policy, defaults, state, errors and results have their own modules too.

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
import concurrent.futures
import html
import os
import weakref
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Coroutine, Mapping

from quantlab.client import MCPHub
from quantlab.hub import AssetsHub

from .defaults import BACKTEST, BROKER, RUNNER, embedded_servers, runner_entry
from .deploying import DeploySteps
from .errors import LabError
from .policy import DeploymentPolicy, PolicyError
from .records import DeploymentRecord, StoreDeployOutcome, _table
from .research import ResearchSteps
from .state import HomeLock, HubInUseError, LabState, state_from_ledger
from .watching import WatchSteps

if TYPE_CHECKING:
    import pandas as pd

    from .results import AdvanceResult, ParityReport  # noqa: F401 - exported lazily (module __getattr__)

__all__ = ["Lab", "LabError", "PolicyError", "DeploymentRecord", "StoreDeployOutcome", "AdvanceResult", "ParityReport"]


def __getattr__(name: str) -> Any:
    if name in ("AdvanceResult", "ParityReport"):  # exported from here; loaded on first use
        from . import results

        return getattr(results, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


class Lab(ResearchSteps, DeploySteps, WatchSteps):
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
            names = {n: v for cls in reversed(type(self).__mro__) for n, v in vars(cls).items()}  # the step mixins too
            steps = sorted(n for n, v in names.items()
                           if asyncio.iscoroutinefunction(getattr(v, "__wrapped__", None)) and "a" + n in names)
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
