"""The paper broker as an MCP server speaking strictly the public MetaTrader 5 MCP server's dialect.

Its 26 MT5 tools (:data:`~quantlab.servers.broker.tools.MT5_TOOLS`) have the names, argument
names and types, ``required`` lists and result fields of ``mcp-metatrader5-server`` 0.1.8
(``mt5mcp``), checked against its live schemas by ``tests/broker/test_conformance.py``;
unknown arguments are refused as they are there. Paper-only extras: ``advance`` and
``get_clock`` (the stepped market clock). Strategies do not run here: the runner
(:mod:`quantlab.runner`) trades them through these tools like any client.

Run it::

    python -m quantlab.servers.broker --db ~/.quantlab/broker.db            # stdio
    python -m quantlab.servers.broker --db b.db --http 8765 --token-file t  # HTTP on 127.0.0.1

Example
-------
>>> from quantlab.servers.broker.book import Broker
>>> server = build_server(Broker.open(":memory:", symbols=["EURUSD"]))
>>> server.name
'quantlab-broker'
"""
from __future__ import annotations

import contextlib
import json
from typing import Any, AsyncIterator

from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.types import Tool as MCPTool

from quantlab import __version__

from . import constants as C
from .book import Broker
from .clock import Clock, parse_clock
from .tools import MT5_TOOLS, PAPER_TOOLS
from .tools.common import Session

__all__ = ["build_server", "MT5Server", "Clock", "parse_clock", "run_http"]

INSTRUCTIONS = """Paper-trading broker speaking the MetaTrader 5 MCP server's dialect (mt5mcp tool names, arguments
and results; official MT5 constants: ORDER_TYPE_BUY=0, SELL=1, BUY_LIMIT=2, SELL_LIMIT=3, BUY_STOP=4, SELL_STOP=5;
TRADE_ACTION_DEAL=1, PENDING=5, SLTP=6, MODIFY=7, REMOVE=8, CLOSE_BY=10; retcode 10009 = done).
Call initialize() first as on a real terminal. order_send takes {"request": {...}} with a price for deals and
pending orders. Rates: time is ISO-8601 with Z and bar 0 is the bar still forming; timeframes are minutes.
Paper-only: the market moves on a clock; with the stepped clock call advance(bars)."""


class MT5Server(MCPServer):
    """An :class:`MCPServer` whose tools refuse arguments they do not declare, as FastMCP servers do
    (their input schemas say ``additionalProperties: false``), and whose ``{"result": ...}``-wrapped
    outputs carry FastMCP's ``x-fastmcp-wrap-result`` mark, so clients of either see one dialect."""

    _declared: dict[str, frozenset[str]] | None = None

    async def list_tools(self) -> list[MCPTool]:
        tools = await super().list_tools()
        for t in tools:
            t.input_schema = {**t.input_schema, "additionalProperties": False}
            out = t.output_schema
            if out and out.get("title") == f"{t.name}Output" and list(out.get("properties") or {}) == ["result"]:
                t.output_schema = {**out, "x-fastmcp-wrap-result": True}
        return tools

    async def call_tool(self, name: str, arguments: dict[str, Any], context: Context | None = None) -> Any:
        if self._declared is None:
            self._declared = {t.name: frozenset((t.input_schema.get("properties") or {})) for t in await super().list_tools()}
        known = self._declared.get(name)
        if known is not None and not known.issuperset(arguments):
            extra = sorted(set(arguments) - known)
            raise ToolError(f"{C.retcode_name(C.RES_E_INVALID_PARAMS)} ({C.RES_E_INVALID_PARAMS}): unexpected "
                            f"argument(s) {extra} for {name}; it takes {sorted(known)}"
                            + ('; pass the order fields inside {"request": {...}}' if name in ("order_send", "order_check") else "")
                            + ".")
        return await super().call_tool(name, arguments, context)


def build_server(broker: Broker, clock: Clock | None = None, *, auth_token: str | None = None) -> MT5Server:
    """The :class:`MT5Server` exposing ``broker`` (stdio or HTTP is the caller's choice).

    ``auth_token``: over HTTP, every request needs ``Authorization: Bearer <auth_token>`` (the SDK's
    own check, see :mod:`quantlab.servers.auth`).

    Its lifespan hands every session a :class:`~quantlab.servers.broker.tools.common.Session` over the
    shared broker and clock; tools read it through their context. Deployments are not here: the
    runner (:mod:`quantlab.runner`) trades strategies through these tools like any other client.
    """
    clock = clock or Clock(broker, "stepped")

    @contextlib.asynccontextmanager
    async def lifespan(_: MCPServer) -> AsyncIterator[Session]:
        yield Session(broker, clock)

    from quantlab.servers.auth import bearer_auth

    mcp = MT5Server("quantlab-broker", title="quantlab paper broker (MT5 dialect)", instructions=INSTRUCTIONS,
                    version=__version__, log_level="WARNING", lifespan=lifespan,
                    **(bearer_auth(auth_token) if auth_token else {}))
    for fn in [*MT5_TOOLS, *PAPER_TOOLS]:
        mcp.add_tool(fn)
    _resources(mcp)
    return mcp


def _resources(mcp: MCPServer) -> None:
    def table(title: str, mapping: dict[str, int]) -> str:
        return json.dumps({"title": title, "values": mapping}, indent=1)

    @mcp.resource("mt5://timeframes", mime_type="application/json")
    def timeframes() -> str:
        """Timeframes in minutes, as the timeframe argument takes them (with the TIMEFRAME_* names)."""
        return json.dumps({"TIMEFRAME_" + k: v for k, v in C.TIMEFRAME_MINUTES.items()}, indent=1)

    @mcp.resource("mt5://order_types", mime_type="application/json")
    def order_types() -> str:
        """MT5 ORDER_TYPE_* constants."""
        return table("order types", C.ORDER_TYPES)

    @mcp.resource("mt5://order_filling_types", mime_type="application/json")
    def order_filling_types() -> str:
        """MT5 ORDER_FILLING_* constants."""
        return table("filling types", C.FILLING_TYPES)

    @mcp.resource("mt5://order_time_types", mime_type="application/json")
    def order_time_types() -> str:
        """MT5 ORDER_TIME_* constants."""
        return table("order time types", C.TIME_TYPES)

    @mcp.resource("mt5://trade_actions", mime_type="application/json")
    def trade_actions() -> str:
        """MT5 TRADE_ACTION_* constants."""
        return table("trade actions", C.TRADE_ACTIONS)

    @mcp.resource("mt5://tick_flags", mime_type="application/json")
    def tick_flags() -> str:
        """MT5 COPY_TICKS_* flags."""
        return table("tick flags", {"COPY_TICKS_ALL": -1, "COPY_TICKS_INFO": 1, "COPY_TICKS_TRADE": 2})

    @mcp.resource("mt5://retcodes", mime_type="application/json")
    def retcodes() -> str:
        """MT5 TRADE_RETCODE_* return codes."""
        return table("return codes", {v: k for k, v in C.RETCODES.items()})


def run_http(server: MCPServer, port: int, host: str = "127.0.0.1") -> None:
    """Serve ``server`` over streamable HTTP at ``http://host:port/mcp``.

    Build the server with ``build_server(..., auth_token=...)``: the bearer-token check is the
    SDK's own (see :mod:`quantlab.servers.auth`).
    """
    import uvicorn

    config = uvicorn.Config(server.streamable_http_app(host=host), host=host, port=int(port), log_level="warning", lifespan="on")
    uvicorn.Server(config).run()
