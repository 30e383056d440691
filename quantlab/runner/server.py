"""The runner as an MCP server: deployment tools, plus the broker's own tools passed through.

Tools: ``deploy_strategy``, ``list_deployments``, ``get_deployment``,
``stop_deployment``, ``deployment_journal``, ``deployment_bars``, ``set_alert``,
``list_alerts``, ``get_runner`` and (stepped paper broker) ``advance``. Every other
tool of the broker it is connected to (``get_symbols``, ``copy_rates_from_pos``,
``positions_get`` ...) is served under its own name with the broker's own schemas,
so a client connected to the runner sees one MT5-dialect server that also deploys.

Run it::

    python -m quantlab.runner --db runner.db --hub ./assets-hub \\
        --broker '{"command": "python", "args": ["-m", "quantlab.servers.broker", "--db", "broker.db"]}'

Example
-------
>>> server = build_server({"command": "python", "args": []}, db=":memory:")
>>> server.name
'quantlab-runner'
"""
from __future__ import annotations

import asyncio
import functools
from contextlib import asynccontextmanager
from typing import Any, AsyncIterator, Awaitable, Callable, Literal, Mapping

from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.types import Tool as MCPTool

from quantlab import __version__
from quantlab.client import AsyncMCPHub, ClientError

from .core import Runner, RunnerError

__all__ = ["build_server", "RunnerServer", "BROKER_NAME"]

BROKER_NAME = "broker"
OWN_TOOLS = ("deploy_strategy", "list_deployments", "get_deployment", "stop_deployment", "deployment_journal",
             "deployment_bars", "set_alert", "list_alerts", "get_runner", "advance")

INSTRUCTIONS = """quantlab runner: deploys strategies stored in a quantlab assets hub (by commit) to a MetaTrader 5
MCP broker and trades them on every completed bar with the standard MT5 tools. deploy_strategy(commit, symbol,
volume, timeframe) starts one; stop_deployment flattens it. The broker's own tools are available here too.
On a stepped paper broker, advance(bars) reveals bars one at a time and the deployments act on each."""


def _guard(fn: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(fn)
    async def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            out = fn(*args, **kwargs)
            if asyncio.iscoroutine(out):
                out = await out
            return out
        except ToolError:
            raise
        except (RunnerError, ClientError, ValueError, TypeError, KeyError) as exc:
            raise ToolError(str(exc)) from None
        except Exception as exc:  # noqa: BLE001 - never crash the server
            raise ToolError(f"internal error {type(exc).__name__}: {exc}; nothing was changed.") from None

    return wrapper


class RunnerServer(MCPServer):
    """The runner's :class:`MCPServer`: its own tools, plus the broker's tools served under their own names
    with the broker's own schemas (:meth:`serve_broker_tools`), each call forwarded to the broker as is."""

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.broker_tools: dict[str, MCPTool] = {}
        self.forward: Callable[[str, dict[str, Any]], Awaitable[Any]] | None = None

    def serve_broker_tools(self, tools: list[MCPTool], forward: Callable[[str, dict[str, Any]], Awaitable[Any]]) -> None:
        """Serve ``tools`` (the broker's, as it lists them) through ``forward(name, arguments)``; the runner's own
        tools keep their names."""
        self.broker_tools = {t.name: t for t in tools if t.name not in OWN_TOOLS}
        self.forward = forward

    async def list_tools(self) -> list[MCPTool]:
        own = await super().list_tools()
        names = {t.name for t in own}
        return own + [t for name, t in self.broker_tools.items() if name not in names]

    async def call_tool(self, name: str, arguments: dict[str, Any], context: Context | None = None) -> Any:
        if name in self.broker_tools and name not in OWN_TOOLS and self.forward is not None:
            return await self.forward(name, arguments)
        return await super().call_tool(name, arguments, context)


def build_server(broker: Mapping[str, Any], *, db: str, hub: str | None = None, stepped: bool | None = None,
                 poll: float = 1.0, lookback: int = 300, timeout: float = 10.0, proxy: bool = True,
                 auth_token: str | None = None) -> "RunnerServer":
    """The runner's :class:`RunnerServer`, connected (in its lifespan) to the ``broker`` mcpServers entry."""

    @asynccontextmanager
    async def lifespan(server: MCPServer) -> AsyncIterator[Runner]:
        # validate=False: the runner builds every argument itself and the broker checks them anyway (no
        # client-side JSON-schema pass per call on the bar path)
        mcp = AsyncMCPHub.from_config({BROKER_NAME: dict(broker)}, max_retries=2, backoff_base=0.5, validate=False)
        live: asyncio.Task | None = None
        try:
            runner = await Runner.open(mcp, BROKER_NAME, db, hub=hub, stepped=stepped, poll=poll, lookback=lookback,
                                       timeout=timeout)
            if proxy:
                async def forward(name: str, arguments: dict[str, Any]) -> Any:
                    await mcp.connect(BROKER_NAME)
                    return await mcp.client(BROKER_NAME).call_tool(name, arguments)

                assert isinstance(server, RunnerServer)
                server.serve_broker_tools((await mcp.client(BROKER_NAME).list_tools()).tools, forward)
            if not runner.stepped:
                live = asyncio.create_task(runner.run_live())
            yield runner
        finally:
            if live is not None:
                live.cancel()
            try:
                if "runner" in locals():
                    await runner.aclose()
            finally:
                await mcp.close()

    from quantlab.servers.auth import bearer_auth

    mcp = RunnerServer("quantlab-runner", title="quantlab runner (deployments on an MT5 MCP broker)",
                    instructions=INSTRUCTIONS, version=__version__, log_level="WARNING", lifespan=lifespan,
                    **(bearer_auth(auth_token) if auth_token else {}))
    tool = mcp.tool

    def R(ctx: Context) -> Runner:
        return ctx.request_context.lifespan_context

    @tool()
    @_guard
    async def deploy_strategy(commit: str, symbol: str, volume: float, ctx: Context, timeframe: int = 1,
                              params: dict[str, Any] | None = None, config: dict[str, Any] | None = None,
                              hub: str | None = None) -> dict[str, Any]:
        """Deploy the strategy stored in the assets hub at `commit` (a commit sha, or a strategy name = its latest
        version) on `symbol`, trading `volume` lots at target 1 on `timeframe`-minute bars. `params` override the
        stored ones; config: lookback (bars signals() sees, default 300), timeout (s per signals() call), deviation
        (points), comment. The same code + params + symbol + timeframe already running is returned (existing: true).
        Returns the deployment: deployment_id, magic, status 'running', ..."""
        return await R(ctx).deploy(commit, symbol, volume, timeframe, params, config, hub)

    @tool()
    @_guard
    async def list_deployments(ctx: Context, status: Literal["running", "stopped", "failed"] | None = None) -> list[dict[str, Any]]:
        """All deployments (or one status) with position (lots), target, PnL (account currency), trades, last error."""
        return await R(ctx).list(status)

    @tool()
    @_guard
    async def get_deployment(deployment_id: int, ctx: Context) -> dict[str, Any]:
        """One deployment: status, error, lots, target, pnl / realized_pnl / floating_pnl, open positions, last journal lines."""
        return await R(ctx).get(deployment_id)

    @tool()
    @_guard
    async def stop_deployment(deployment_id: int, ctx: Context) -> dict[str, Any]:
        """Stop a deployment: close its positions (reconciled from the broker) and set status 'stopped'."""
        return await R(ctx).stop(deployment_id)

    @tool()
    @_guard
    def deployment_journal(deployment_id: int, ctx: Context, limit: int = 200, after_id: int = 0,
                           kind: str | None = None) -> list[dict[str, Any]]:
        """The deployment's journal, oldest first: status changes, signals (target changes), fills, skipped bars,
        errors, alerts, with market time and wall time. Page with after_id; filter with kind."""
        return R(ctx).journal(deployment_id, limit, after_id, kind)

    @tool()
    @_guard
    async def deployment_bars(deployment_id: int, ctx: Context, replay: bool = False) -> dict[str, Any]:
        """Every bar the deployment acted on (bar_time, target, lots after, fill price, skipped) and its fills;
        replay=true adds the bars themselves and signals() evaluated once over all of them (the backtest's view)."""
        return await R(ctx).bars(deployment_id, replay)

    @tool()
    @_guard
    def set_alert(kind: Literal["price_above", "price_below", "drawdown"], threshold: float, ctx: Context,
                  symbol: str | None = None, deployment_id: int | None = None) -> dict[str, Any]:
        """Set an alert that fires once into the journal: price_above / price_below (the symbol's bid crosses
        threshold), drawdown (a deployment's PnL falls `threshold` money below its peak)."""
        return R(ctx).set_alert(kind, threshold, symbol, deployment_id)

    @tool()
    @_guard
    def list_alerts(ctx: Context, deployment_id: int | None = None, status: str | None = None) -> list[dict[str, Any]]:
        """Alerts with their status (active / fired) and the message they fired with."""
        return R(ctx).list_alerts(deployment_id, status)

    @tool()
    @_guard
    def get_runner(ctx: Context) -> dict[str, Any]:
        """The runner itself: mode (stepped or live with its poll interval), broker tools, account mode, last error,
        and timings: where the time goes per hop (each broker tool's round trip, signals, sqlite, a whole bar)."""
        r = R(ctx)
        return {"mode": "stepped" if r.stepped else "live", "poll_seconds": r.poll, "hedging": r.hedging,
                "broker_tools": sorted(r.broker_tools), "last_error": r.last_error, "db": r.store.path, "hub": r.hub_path,
                "timings": r.timings()}

    @tool()
    @_guard
    async def advance(ctx: Context, bars: int = 1) -> dict[str, Any]:
        """Step the stepped paper broker `bars` bars one at a time; every running deployment acts on each completed
        bar. Returns bars stepped, fills, market time (ISO-8601 UTC) and each deployment's lots and target."""
        return await R(ctx).advance(bars)

    return mcp
