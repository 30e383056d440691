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
import sys
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

__all__ = ["build_server", "MT5Server", "Clock", "parse_clock", "run_http", "run_stdio"]

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


class _PipeLines:
    """Async line iterator over an asyncio StreamReader (what ``stdio_server`` reads from)."""

    def __init__(self, reader: Any):
        self.reader = reader

    def __aiter__(self) -> "_PipeLines":
        return self

    async def __anext__(self) -> str:
        line = await self.reader.readline()
        if not line:
            raise StopAsyncIteration
        return line.decode("utf-8", "replace")


class _FdWriter:
    """Async-looking writer straight to a file descriptor (small JSON lines; the client reads them)."""

    def __init__(self, fd: int):
        self.fd = fd

    async def write(self, text: str) -> None:
        import os

        data = memoryview(text.encode("utf-8"))
        while data:
            try:
                n = os.write(self.fd, data)
            except BlockingIOError:  # pragma: no cover - only if the fd is non-blocking
                import asyncio

                await asyncio.sleep(0.001)
                continue
            data = data[n:]

    async def flush(self) -> None:
        return None


def run_stdio(server: MCPServer) -> None:
    """Serve ``server`` over this process's stdin/stdout without a worker thread per read/write.

    The SDK's stdio transport moves every read and write through a worker thread;
    this one reads stdin with asyncio's pipe reader and writes stdout directly,
    which roughly doubles the request rate. fd 0 is pointed at /dev/null and
    fd 1 at stderr while serving, so a ``print`` in a strategy cannot corrupt the
    protocol. Falls back to the SDK's transport when stdin is not a pipe.
    """
    import asyncio
    import os
    import stat

    import anyio
    from mcp.server.stdio import stdio_server

    try:
        mode = os.fstat(0).st_mode
        usable = stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode) or stat.S_ISCHR(mode)
    except OSError:
        usable = False
    if not usable or os.environ.get("QUANTLAB_BROKER_SDK_STDIO"):
        server.run("stdio")
        return

    async def serve() -> None:
        loop = asyncio.get_running_loop()
        in_fd, out_fd = os.dup(0), os.dup(1)
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        os.close(null)
        os.dup2(2, 1)
        sys.stdout = sys.stderr
        reader = asyncio.StreamReader(limit=2**27)
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), os.fdopen(in_fd, "rb", buffering=0))
        low = server._lowlevel_server  # noqa: SLF001 - what MCPServer.run_stdio_async uses too
        async with stdio_server(_PipeLines(reader), _FdWriter(out_fd)) as (read_stream, write_stream):
            await low.run(read_stream, write_stream, low.create_initialization_options())

    anyio.run(serve)

