"""One server's connection and bookkeeping, used by :class:`AsyncMCPHub`.

:class:`Connection` is one live session owned by its own task (which enters and exits the SDK's
anyio contexts); :class:`ServerRecord` holds a server's config, transport, live connection,
counters, tools and validators, runs its ``on_connect`` calls and turns failures into the
client's errors.
"""
from __future__ import annotations

import asyncio
import builtins
import statistics
from collections import deque
from datetime import datetime, timezone
from typing import Any

from ._calls import call_text, call_value, wraps_result
from ._config import MissingVariableError, ServerConfig
from ._errors import ClientError, ConnectError, ProtocolError, TimeoutError, TransportError
from ._transports import MESSAGE_TOO_LARGE, MessageTooLarge, Transport, make_transport

__all__ = ["Connection", "ServerRecord", "ProtocolFault", "utcnow", "iso", "leaf_exception", "describe"]

_LATENCY_WINDOW = 1024


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def iso(t: datetime | None) -> str | None:
    return t.isoformat(timespec="milliseconds") if t is not None else None


def leaf_exception(exc: BaseException) -> BaseException:
    """The first real (non-cancel) exception inside nested exception groups."""
    while isinstance(exc, BaseExceptionGroup):
        inner = [e for e in exc.exceptions if not isinstance(e, asyncio.CancelledError)] or list(exc.exceptions)
        exc = inner[0]
    return exc


def describe(exc: BaseException) -> str:
    exc = leaf_exception(exc)
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


class ProtocolFault(Exception):
    """The server sent something that is not a JSON-RPC message while a call was in flight."""


class Connection:
    """One live session, owned by its own task (which enters and exits the SDK's contexts)."""

    def __init__(self, name: str, transport: Transport) -> None:
        self.name = name
        self.transport = transport
        self.client: Any = None
        self.tools: list[Any] = []
        self.dead = False
        self._stop = asyncio.Event()
        self._ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._task: asyncio.Task[None] | None = None
        self._waiters: set[asyncio.Future[str]] = set()  # one per call in flight: set when the server breaks the protocol
        self.fault: str | None = None

    async def _on_message(self, message: Any) -> None:
        """The SDK hands transport faults here (a line that is not JSON-RPC, ...): fail the calls in flight now."""
        if isinstance(message, Exception):
            self.fault = str(message)[:400] if isinstance(message, MessageTooLarge) else describe(message)[:300]
            for waiter in list(self._waiters):
                if not waiter.done():
                    waiter.set_result(self.fault)

    async def guarded(self, coro: Any) -> Any:
        """Await ``coro`` (a request), unless the server breaks the protocol first: then raise :class:`ProtocolFault`."""
        loop = asyncio.get_running_loop()
        fault: asyncio.Future[str] = loop.create_future()
        self._waiters.add(fault)
        task = loop.create_task(coro)
        try:
            await asyncio.wait({task, fault}, return_when=asyncio.FIRST_COMPLETED)
        except BaseException:
            task.cancel()
            raise
        finally:
            self._waiters.discard(fault)
        if task.done():
            fault.cancel()
            return task.result()
        task.cancel()
        raise ProtocolFault(fault.result())

    async def open(self, timeout: float) -> None:
        self._task = asyncio.create_task(self._main(), name=f"quantlab-mcp:{self.name}")
        try:
            async with asyncio.timeout(timeout):
                await asyncio.shield(self._ready)
        except builtins.TimeoutError:
            await self.aclose()
            raise builtins.TimeoutError(f"no answer to initialize within {timeout:g} s") from None
        except asyncio.CancelledError:
            await self.aclose()
            raise

    async def _main(self) -> None:
        from mcp import Client
        from mcp.types import Implementation

        try:
            client = Client(self.transport.streams(), client_info=Implementation(name="quantlab", version="0.1.0"),
                            message_handler=self._on_message)
            async with client:
                tools: list[Any] = []
                cursor = None
                while True:
                    page = await client.list_tools(cursor=cursor)
                    tools.extend(page.tools)
                    cursor = page.next_cursor
                    if not cursor:
                        break
                self.client, self.tools = client, tools
                self.transport.after_connect()
                if not self._ready.done():
                    self._ready.set_result(None)
                await self._stop.wait()
        except asyncio.CancelledError:
            if not self._ready.done():
                self._ready.cancel()
            raise
        except BaseException as exc:  # noqa: BLE001 - handed to whoever awaits the connection
            if not self._ready.done():
                self._ready.set_exception(leaf_exception(exc) if isinstance(leaf_exception(exc), Exception) else exc)
        finally:
            self.dead = True
            self.transport.after_close()

    async def aclose(self, timeout: float = 8.0) -> None:
        self.dead = True
        self._stop.set()
        task = self._task
        if task is None or task.done():
            return
        if self.client is None:  # still starting (e.g. connect timed out): no session to end politely
            self.transport.abort()
            task.cancel()
        done, _ = await asyncio.wait({task}, timeout=timeout)
        if not done:
            task.cancel()
            await asyncio.wait({task}, timeout=3.0)


class ServerRecord:
    """Per-server bookkeeping: config, transport, live connection, counters, tools and validators."""

    def __init__(self, config: ServerConfig) -> None:
        self.config = config
        self.transport = make_transport(config)
        self.conn: Connection | None = None
        self.status = "configured"
        self.connected_at: datetime | None = None
        self.calls = 0
        self.errors = 0
        self.last_error: str | None = None
        self.latencies: deque[float] = deque(maxlen=_LATENCY_WINDOW)
        self.tools: dict[str, Any] = {}
        self.validators: dict[str, Any] = {}
        self.unwrap: dict[str, bool] = {}
        self._lock: asyncio.Lock | None = None

    @property
    def lock(self) -> asyncio.Lock:
        if self._lock is None:
            self._lock = asyncio.Lock()
        return self._lock

    def record_error(self, exc: BaseException) -> None:
        self.errors += 1
        self.last_error = str(exc).splitlines()[0][:300] if str(exc) else type(exc).__name__

    def set_tools(self, tools: list[Any]) -> None:
        """Take a fresh tool list: specs by name, whether each result is wrapped; validators rebuilt lazily."""
        self.tools = {t.name: t for t in tools}
        self.validators.clear()
        self.unwrap = {t.name: wraps_result(t.name, t.output_schema) for t in tools}

    def snapshot(self) -> dict[str, Any]:
        lat = list(self.latencies)
        return {
            "status": self.status,
            "transport": self.config.transport,
            "target": self.config.target,
            "pid": self.transport.pid,
            "connected_at": iso(self.connected_at),
            "tools": len(self.tools),
            "calls": self.calls,
            "errors": self.errors,
            "last_error": self.last_error,
            "median_latency_ms": round(statistics.median(lat) * 1000, 3) if lat else None,
        }

    async def run_on_connect(self, conn: Connection, timeout: float) -> None:
        """Run the server's ``on_connect`` calls in order on a fresh connection.

        ``${VAR}`` are read from the environment here and live only in this frame; any text
        shown afterwards (a tool error, a bad answer) has the substituted values scrubbed.
        A call fails when it raises, reports a tool error, or answers ``False``/``None``
        (MT5's ``initialize``/``login`` say failure that way).
        """
        name = self.config.name
        steps = self.config.on_connect
        for i, step in enumerate(steps, 1):
            what = f"on_connect step {i} of {len(steps)} ({step.tool!r}) on server {name!r}"
            try:
                arguments, secrets = step.resolve()
            except MissingVariableError as exc:
                raise ConnectError(f"{what}: {exc}; set it in the environment of this process (its value is "
                                   f"read at connect time and never stored).", server=name, target=self.config.target,
                                   attempts=1) from None
            if step.tool not in self.tools:
                raise ConnectError(f"{what}: the server has no tool {step.tool!r} (tools: {sorted(self.tools)}); "
                                   f"fix or remove that on_connect entry.", server=name, target=self.config.target, attempts=1)
            problem: str | None = None
            try:
                result = await conn.client.call_tool(step.tool, arguments, read_timeout_seconds=timeout)
            except Exception as exc:  # noqa: BLE001 - reported below, scrubbed
                problem = f"the call failed: {describe(leaf_exception(exc))}"
            else:
                if result.is_error:
                    problem = f"the tool reported an error: {call_text(result) or 'no message'}"
                else:
                    value = call_value(result, self.unwrap.get(step.tool, False))
                    if value is False or value is None:
                        problem = f"it answered {value!r} (failure)"
            del arguments
            if problem is not None:
                for secret in secrets:
                    problem = problem.replace(secret, "***")
                raise ConnectError(f"{what}: {problem}. Check that entry's arguments in the server's config"
                                   + (f" and the environment variables {step.variables}" if step.variables else "") + ".",
                                   server=name, target=self.config.target, attempts=1)

    def connect_error(self, attempts: int, cause: BaseException | None) -> ConnectError:
        """The :class:`ConnectError` after the last attempt: command or URL, attempts, cause, stderr tail."""
        cfg = self.config
        tail = self.transport.stderr_tail()
        what = f"command: {cfg.target}" if cfg.transport == "stdio" else f"url: {cfg.url}"
        msg = (
            f"could not connect to MCP server {cfg.name!r} ({cfg.transport}, {what}) "
            f"after {attempts} attempt{'s' if attempts != 1 else ''}; last cause: "
            f"{describe(cause) if cause else 'unknown'}"
        )
        if tail:
            msg += "\n--- last lines of the server's stderr ---\n" + tail
        if cfg.transport == "stdio":
            msg += "\nCheck that the command runs on its own in a terminal."
        else:
            msg += "\nCheck that the server is up, the URL (usually ending in /mcp) and any Authorization header."
        return ConnectError(msg, server=cfg.name, target=cfg.target, attempts=attempts, cause=cause, stderr=tail)

    async def call_failed(self, conn: Connection, tool: str, timeout: float | None, exc: BaseException) -> ClientError:
        """Map a failed call to the documented error; a lost connection is closed (the next call reconnects)."""
        from mcp.shared.exceptions import MCPError
        from mcp.types import CONNECTION_CLOSED, REQUEST_TIMEOUT

        name = self.config.name
        leaf = leaf_exception(exc)
        err: ClientError
        if isinstance(leaf, MCPError) and leaf.code == MESSAGE_TOO_LARGE or (
                isinstance(leaf, ProtocolFault) and "max_message_bytes" in str(leaf)):
            text = leaf.error.message if isinstance(leaf, MCPError) else str(leaf)
            err = ProtocolError(f"{tool!r}: {text}.", server=name, tool=tool)
        elif isinstance(leaf, ProtocolFault):
            err = ProtocolError(
                f"server {name!r} ({self.config.transport}: {self.config.target}) broke the MCP protocol during "
                f"{tool!r}: {leaf}. The call was abandoned at once; the server answers with something that is not "
                f"a JSON-RPC message (a stray print() to stdout, or a bug in the server).",
                server=name, tool=tool,
            )
        elif isinstance(leaf, MCPError) and leaf.code == REQUEST_TIMEOUT:
            err = TimeoutError(
                f"tool {tool!r} on server {name!r} did not answer within {timeout:g} s; the call was cancelled "
                f"and the connection stays usable. Pass a larger timeout= if the tool is just slow.",
                server=name, tool=tool, limit=timeout,
            )
        elif isinstance(leaf, MCPError) and leaf.code != CONNECTION_CLOSED:
            err = ProtocolError(f"server {name!r} rejected the call to {tool!r}: {leaf} (code {leaf.code})", server=name, tool=tool)
        else:
            tail = self.transport.stderr_tail(5)
            err = TransportError(
                f"the connection to MCP server {name!r} ({self.config.transport}: {self.config.target}) was lost "
                f"during {tool!r}: {describe(leaf)}. The server probably exited or became unreachable; "
                f"the next call reconnects automatically." + (f"\n--- last lines of the server's stderr ---\n{tail}" if tail else ""),
                server=name, tool=tool,
            )
            self.status = "dead"
            if self.conn is conn:
                self.conn = None
            await conn.aclose(timeout=4.0)
        self.record_error(err)
        return err
