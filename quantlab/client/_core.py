"""``AsyncMCPHub``: the one async core. Named connections to several MCP servers at once.

(Size: connecting, retrying, schema checks and the call path all work on one per-server record
(``_Server``); errors, config, transports, state tables and the sync face have their own modules.)

Every connection is owned by one long-lived task on the loop that opened it (the SDK's
anyio task groups and cancel scopes are entered and exited by that same task), so a
session opened in one notebook cell keeps working in later cells, and calls may come
from any task on that loop.

Example
-------
>>> import asyncio, sys
>>> from quantlab.client import AsyncMCPHub
>>> async def main():
...     cfg = {"mcpServers": {"time": {"command": sys.executable, "args": ["-m", "mcp_server_time"]}}}
...     async with AsyncMCPHub.from_config(cfg) as hub:
...         now = await hub.call("time", "get_current_time", {"timezone": "UTC"})
...         return now["timezone"]
>>> asyncio.run(main())
'UTC'
"""
from __future__ import annotations

import asyncio
import builtins
import difflib
import statistics
import time
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Iterator, Mapping

from quantlab._util import to_jsonable

from ._config import ConfigSource, MissingVariableError, ServerConfig, load_config
from ._errors import (
    ArgumentsError,
    ClientError,
    ConnectError,
    ProtocolError,
    ServerNotFoundError,
    TimeoutError,
    ToolError,
    ToolNotFoundError,
    TransportError,
)
from ._state import html_tables, text_tables
from ._transports import MESSAGE_TOO_LARGE, MessageTooLarge, Transport, make_transport

__all__ = ["AsyncMCPHub", "ConnectResult", "ConnectReport", "backoff_delays", "wraps_result"]

_LATENCY_WINDOW = 1024


def backoff_delays(max_retries: int = 3, base: float = 1.0, cap: float = 8.0) -> list[float]:
    """The waits between connection attempts: ``base * 2**i`` capped at ``cap``, one per retry.

    >>> backoff_delays()
    [1.0, 2.0, 4.0]
    >>> backoff_delays(5, base=1.0, cap=8.0)
    [1.0, 2.0, 4.0, 8.0, 8.0]
    """
    return [float(min(cap, base * (2**i))) for i in range(max(0, int(max_retries)))]


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _iso(t: datetime | None) -> str | None:
    return t.isoformat(timespec="milliseconds") if t is not None else None


def _leaf(exc: BaseException) -> BaseException:
    """The first real (non-cancel) exception inside nested exception groups."""
    while isinstance(exc, BaseExceptionGroup):
        inner = [e for e in exc.exceptions if not isinstance(e, asyncio.CancelledError)] or list(exc.exceptions)
        exc = inner[0]
    return exc


def _describe(exc: BaseException) -> str:
    exc = _leaf(exc)
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


@dataclass
class ConnectResult:
    """The outcome of connecting one server: ``ok``, ``seconds``, ``tools`` (names), ``attempts``, ``error``.

    >>> ConnectResult("time", ok=True, seconds=0.5, tools=["get_current_time"], attempts=1)
    ConnectResult('time': ok, 1 tools in 0.50 s)
    """

    server: str
    ok: bool
    seconds: float
    tools: list[str] = field(default_factory=list)
    attempts: int = 0
    error: ClientError | None = None

    def __repr__(self) -> str:
        if self.ok:
            return f"ConnectResult({self.server!r}: ok, {len(self.tools)} tools in {self.seconds:.2f} s)"
        return f"ConnectResult({self.server!r}: FAILED after {self.attempts} attempts: {self.error})"


class ConnectReport(dict):
    """``{server: ConnectResult}`` from :meth:`AsyncMCPHub.connect_all`; one failure never hides another.

    >>> r = ConnectReport({"a": ConnectResult("a", ok=True, seconds=0.1)})
    >>> r.ok, r.failed
    (['a'], [])
    >>> r.raise_for_errors()
    """

    @property
    def ok(self) -> list[str]:
        """Names of the servers that connected."""
        return [k for k, v in self.items() if v.ok]

    @property
    def failed(self) -> list[str]:
        """Names of the servers that did not."""
        return [k for k, v in self.items() if not v.ok]

    def raise_for_errors(self) -> None:
        """Raise a :class:`ConnectError` if any server failed; it lists every failure, not just the first.

        >>> ConnectReport().raise_for_errors()  # nothing failed: nothing raised
        """
        errors = [self[k].error for k in self.failed]
        if not errors:
            return
        first = errors[0]
        assert first is not None
        if len(errors) == 1:
            raise first
        msg = f"{len(errors)} of {len(self)} MCP servers failed to connect ({', '.join(self.failed)}):\n\n" + "\n\n".join(
            str(e) for e in errors
        )
        raise ConnectError(
            msg, server=first.server, target=getattr(first, "target", None), attempts=getattr(first, "attempts", 0),
            cause=getattr(first, "cause", None), stderr=getattr(first, "stderr", ""),
        )

    def _rows(self) -> list[dict[str, Any]]:
        return [
            {
                "server": k,
                "ok": "yes" if v.ok else "NO",
                "seconds": f"{v.seconds:.2f}",
                "tools": len(v.tools),
                "attempts": v.attempts,
                "error": "" if v.ok else (str(v.error).splitlines()[0] if v.error else ""),
            }
            for k, v in self.items()
        ]

    def __repr__(self) -> str:
        return text_tables([("connect", self._rows())])

    def _repr_html_(self) -> str:
        return html_tables([("connect", self._rows())])


class _Fault(Exception):
    """The server sent something that is not a JSON-RPC message while a call was in flight."""


class _Connection:
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
            self.fault = str(message)[:400] if isinstance(message, MessageTooLarge) else _describe(message)[:300]
            for waiter in list(self._waiters):
                if not waiter.done():
                    waiter.set_result(self.fault)

    async def guarded(self, coro: Any) -> Any:
        """Await ``coro`` (a request), unless the server breaks the protocol first: then raise :class:`_Fault`."""
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
        raise _Fault(fault.result())

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
        from mcp_types import Implementation

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
                self._ready.set_exception(_leaf(exc) if isinstance(_leaf(exc), Exception) else exc)
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


class _Server:
    """Per-server bookkeeping: config, transport, live connection, counters, tools and validators."""

    def __init__(self, config: ServerConfig) -> None:
        self.config = config
        self.transport = make_transport(config)
        self.conn: _Connection | None = None
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

    def snapshot(self) -> dict[str, Any]:
        lat = list(self.latencies)
        return {
            "status": self.status,
            "transport": self.config.transport,
            "target": self.config.target,
            "pid": self.transport.pid,
            "connected_at": _iso(self.connected_at),
            "tools": len(self.tools),
            "calls": self.calls,
            "errors": self.errors,
            "last_error": self.last_error,
            "median_latency_ms": round(statistics.median(lat) * 1000, 3) if lat else None,
        }


class AsyncMCPHub:
    """Named connections to several MCP servers, with retry/backoff, timeouts, schema checks and reconnects.

    Make one with :meth:`from_config` and use it as an async context manager (or call
    :meth:`close`). Servers connect on first use, or all at once with :meth:`connect_all`.

    Parameters
    ----------
    servers : ``{name: ServerConfig | mcpServers entry}``
    max_retries : connection retries after the first attempt (default 3).
    backoff_base, backoff_cap : waits between attempts are ``base * 2**i`` capped (1, 2, 4 ... 8 s).
    connect_timeout : seconds one attempt may take to spawn and initialize (default 30).
    validate : check arguments against each tool's input schema before sending (default True).

    Example
    -------
    >>> import asyncio, sys
    >>> async def main():
    ...     cfg = {"time": {"command": sys.executable, "args": ["-m", "mcp_server_time"]}}
    ...     async with AsyncMCPHub.from_config(cfg) as hub:
    ...         report = await hub.connect_all()
    ...         return report.ok, sorted(t["name"] for t in await hub.tools("time"))
    >>> asyncio.run(main())
    (['time'], ['convert_time', 'get_current_time'])
    """

    def __init__(
        self,
        servers: Mapping[str, ServerConfig | Mapping[str, Any]] | None = None,
        *,
        max_retries: int = 3,
        backoff_base: float = 1.0,
        backoff_cap: float = 8.0,
        connect_timeout: float = 30.0,
        validate: bool = True,
    ) -> None:
        self._servers: dict[str, _Server] = {}
        for name, cfg in (servers or {}).items():
            if not isinstance(cfg, ServerConfig):
                cfg = ServerConfig.from_entry(name, cfg)
            self._servers[name] = _Server(cfg)
        self.max_retries = int(max_retries)
        self.backoff_base = float(backoff_base)
        self.backoff_cap = float(backoff_cap)
        self.connect_timeout = float(connect_timeout)
        self.validate = bool(validate)
        self.created_at = _now()
        self.last_activity: datetime | None = None
        self.invocation_count = 0
        self._closed = False

    # -- construction -------------------------------------------------------------------
    @classmethod
    def from_config(cls, config: ConfigSource = None, **options: Any) -> "AsyncMCPHub":
        """Build a hub from a ``mcpServers`` dict, a JSON/TOML file path, or ``None`` (the cwd's
        ``quantlab.toml`` / ``pyproject.toml [tool.quantlab]``). ``options`` go to the constructor.

        >>> AsyncMCPHub.from_config({"mcpServers": {"t": {"command": "python"}}}).server_names
        ['t']
        """
        return cls(load_config(config), **options)

    @property
    def server_names(self) -> list[str]:
        """Configured server names, in configuration order."""
        return list(self._servers)

    @property
    def config(self) -> dict[str, Any]:
        """The configuration as a ``{"mcpServers": {...}}`` dict.

        >>> AsyncMCPHub.from_config({"a": {"url": "http://h/mcp"}}).config
        {'mcpServers': {'a': {'url': 'http://h/mcp'}}}
        """
        return {"mcpServers": {k: s.config.to_entry() for k, s in self._servers.items()}}

    def server_config(self, name: str) -> ServerConfig:
        """The parsed :class:`ServerConfig` of server ``name`` (transport, target, ...).

        >>> AsyncMCPHub.from_config({"a": {"url": "http://h/mcp"}}).server_config("a").transport
        'http'
        """
        return self._server(name).config

    @property
    def child_pids(self) -> list[int]:
        """The process ids of the stdio servers this hub started and still holds."""
        return [s.transport.pid for s in self._servers.values() if s.transport.pid]

    def backoff_delays(self) -> list[float]:
        """This hub's waits between connection attempts (``[1.0, 2.0, 4.0]`` by default)."""
        return backoff_delays(self.max_retries, self.backoff_base, self.backoff_cap)

    def _server(self, name: str) -> _Server:
        try:
            return self._servers[name]
        except KeyError:
            close = difflib.get_close_matches(name, self._servers, n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise ServerNotFoundError(
                f"no MCP server named {name!r} is configured (configured: {sorted(self._servers) or 'none'}).{hint}",
                server=name,
            ) from None

    def add_server(self, name: str, entry: ServerConfig | Mapping[str, Any]) -> None:
        """Configure one more server (``{"command", "args", "env", "cwd"}`` or ``{"url", "headers"}``).

        >>> hub = AsyncMCPHub()
        >>> hub.add_server("t", {"command": "python"}); hub.server_names
        ['t']
        """
        if name in self._servers and self._servers[name].conn is not None:
            raise ValueError(f"server {name!r} is connected; disconnect it before replacing its config")
        cfg = entry if isinstance(entry, ServerConfig) else ServerConfig.from_entry(name, entry)
        self._servers[name] = _Server(cfg)

    # -- connecting ---------------------------------------------------------------------
    async def connect(self, name: str, *, max_retries: int | None = None) -> ConnectResult:
        """Connect ``name`` (no-op if connected), retrying with exponential backoff.

        Raises :class:`ConnectError` naming the server, the command or URL, the attempts,
        the last cause and (stdio) the last lines of the server's stderr.
        """
        srv = self._server(name)
        t0 = time.perf_counter()
        attempts = await self._ensure(srv, max_retries=max_retries)
        return ConnectResult(name, ok=True, seconds=time.perf_counter() - t0, tools=list(srv.tools), attempts=attempts)

    async def _ensure(self, srv: _Server, max_retries: int | None = None) -> int:
        conn = srv.conn
        if conn is not None and not conn.dead:
            return 0
        if self._closed:
            raise ClientError("this hub is closed; make a new one", server=srv.config.name)
        async with srv.lock:
            conn = srv.conn
            if conn is not None and not conn.dead:
                return 0
            if conn is not None:  # dead: release what is left before reconnecting
                srv.conn = None
                await conn.aclose()
            retries = self.max_retries if max_retries is None else int(max_retries)
            delays = backoff_delays(retries, self.backoff_base, self.backoff_cap)
            last: BaseException | None = None
            srv.status = "connecting"
            for attempt in range(1, len(delays) + 2):
                # a fresh transport per attempt: an old connection's teardown never touches the new one
                srv.transport = make_transport(srv.config)
                conn = _Connection(srv.config.name, srv.transport)
                try:
                    await conn.open(self.connect_timeout)
                except asyncio.CancelledError:
                    srv.status = "failed"
                    raise
                except Exception as exc:  # noqa: BLE001 - every cause is retried, then reported
                    last = exc
                    if attempt <= len(delays):
                        await asyncio.sleep(delays[attempt - 1])
                    continue
                srv.tools = {t.name: t for t in conn.tools}
                srv.validators.clear()
                srv.unwrap = {t.name: wraps_result(t.name, t.output_schema) for t in conn.tools}
                try:
                    await self._on_connect(srv, conn)
                except ConnectError as exc:  # the server answered: retrying the same calls would not help
                    await conn.aclose()
                    srv.status = "failed"
                    srv.record_error(exc)
                    raise
                srv.conn = conn
                srv.status = "connected"
                srv.connected_at = _now()
                return attempt
            srv.status = "failed"
            err = self._connect_error(srv, attempts=len(delays) + 1, cause=last)
            srv.record_error(err)
            raise err

    async def _on_connect(self, srv: _Server, conn: _Connection) -> None:
        """Run the server's ``on_connect`` calls in order on a fresh connection.

        ``${VAR}`` are read from the environment here and live only in this frame; any text
        shown afterwards (a tool error, a bad answer) has the substituted values scrubbed.
        A call fails when it raises, reports a tool error, or answers ``False``/``None``
        (MT5's ``initialize``/``login`` say failure that way).
        """
        name = srv.config.name
        steps = srv.config.on_connect
        for i, step in enumerate(steps, 1):
            what = f"on_connect step {i} of {len(steps)} ({step.tool!r}) on server {name!r}"
            try:
                arguments, secrets = step.resolve()
            except MissingVariableError as exc:
                raise ConnectError(f"{what}: {exc}; set it in the environment of this process (its value is "
                                   f"read at connect time and never stored).", server=name, target=srv.config.target,
                                   attempts=1) from None
            if step.tool not in srv.tools:
                raise ConnectError(f"{what}: the server has no tool {step.tool!r} (tools: {sorted(srv.tools)}); "
                                   f"fix or remove that on_connect entry.", server=name, target=srv.config.target, attempts=1)
            problem: str | None = None
            try:
                result = await conn.client.call_tool(step.tool, arguments, read_timeout_seconds=self.connect_timeout)
            except Exception as exc:  # noqa: BLE001 - reported below, scrubbed
                problem = f"the call failed: {_describe(_leaf(exc))}"
            else:
                if result.is_error:
                    problem = f"the tool reported an error: {_text(result) or 'no message'}"
                else:
                    value = _value(result, srv.unwrap.get(step.tool, False))
                    if value is False or value is None:
                        problem = f"it answered {value!r} (failure)"
            del arguments
            if problem is not None:
                for secret in secrets:
                    problem = problem.replace(secret, "***")
                raise ConnectError(f"{what}: {problem}. Check that entry's arguments in the server's config"
                                   + (f" and the environment variables {step.variables}" if step.variables else "") + ".",
                                   server=name, target=srv.config.target, attempts=1)

    def _connect_error(self, srv: _Server, attempts: int, cause: BaseException | None) -> ConnectError:
        cfg = srv.config
        tail = srv.transport.stderr_tail()
        what = f"command: {cfg.target}" if cfg.transport == "stdio" else f"url: {cfg.url}"
        msg = (
            f"could not connect to MCP server {cfg.name!r} ({cfg.transport}, {what}) "
            f"after {attempts} attempt{'s' if attempts != 1 else ''}; last cause: "
            f"{_describe(cause) if cause else 'unknown'}"
        )
        if tail:
            msg += "\n--- last lines of the server's stderr ---\n" + tail
        if cfg.transport == "stdio":
            msg += "\nCheck that the command runs on its own in a terminal."
        else:
            msg += "\nCheck that the server is up, the URL (usually ending in /mcp) and any Authorization header."
        return ConnectError(msg, server=cfg.name, target=cfg.target, attempts=attempts, cause=cause, stderr=tail)

    async def connect_all(self, *, max_retries: int | None = None) -> ConnectReport:
        """Connect every configured server concurrently; return a :class:`ConnectReport` (never raises
        for a single server: look at ``report.failed`` or call ``report.raise_for_errors()``)."""

        async def one(name: str) -> ConnectResult:
            t0 = time.perf_counter()
            try:
                return await self.connect(name, max_retries=max_retries)
            except ClientError as exc:
                attempts = exc.attempts if isinstance(exc, ConnectError) else 0
                return ConnectResult(name, ok=False, seconds=time.perf_counter() - t0, attempts=attempts, error=exc)

        results = await asyncio.gather(*(one(n) for n in self._servers))
        return ConnectReport({r.server: r for r in results})

    async def disconnect(self, name: str) -> None:
        """Close the session with ``name`` (the process of a stdio server exits). It reconnects on next use."""
        srv = self._server(name)
        async with srv.lock:
            conn, srv.conn = srv.conn, None
            if conn is not None:
                await conn.aclose()
            srv.status = "disconnected"

    async def close(self) -> None:
        """Disconnect every server; the hub cannot be used afterwards."""
        self._closed = True
        await asyncio.gather(*(self.disconnect(n) for n in self._servers), return_exceptions=True)

    async def __aenter__(self) -> "AsyncMCPHub":
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.close()

    # -- calling ------------------------------------------------------------------------
    async def call(
        self,
        server: str,
        tool: str,
        arguments: Mapping[str, Any] | None = None,
        timeout: float | None = 30.0,
    ) -> Any:
        """Call ``tool`` on ``server`` and return its structured result as plain Python.

        The structured content (dict; the ``{"result": x}`` wrapper that the SDK and FastMCP
        put around non-object returns is removed, see :func:`wraps_result`) if the tool has one, else the text content. Raises
        :class:`ArgumentsError` (bad arguments, nothing sent), :class:`ToolError` (the tool
        reported an error), :class:`TimeoutError` (after ``timeout`` s; the connection stays
        usable) or :class:`TransportError` (the server died; the next call reconnects).
        """
        srv = self._servers.get(server) or self._server(server)
        conn = srv.conn
        if conn is None or conn.dead:
            await self._ensure(srv)
            conn = srv.conn
            assert conn is not None
        # numpy values, tuples, timestamps, paths -> plain JSON; NaN/inf -> "nan"/"inf" (quantlab._util.jsonsafe)
        args = {str(k): to_jsonable(v, fallback=_as_is) for k, v in arguments.items()} if arguments else {}
        if self.validate:
            validator = srv.validators.get(tool)
            if validator is None:
                validator = await self._validator(srv, tool)
            if validator is not False and not validator.is_valid(args):
                err = _arguments_error(server, tool, validator, args)
                srv.record_error(err)
                raise err
        self.invocation_count += 1
        srv.calls += 1
        t0 = time.perf_counter()
        try:
            result = await conn.guarded(conn.client.call_tool(tool, args, read_timeout_seconds=timeout))
        except Exception as exc:  # noqa: BLE001 - mapped to the documented hierarchy below
            raise await self._call_failed(srv, conn, tool, timeout, exc) from exc
        finally:
            srv.latencies.append(time.perf_counter() - t0)
            self.last_activity = _now()
        if result.is_error:
            err = ToolError(_text(result) or "the tool reported an error without a message", server=server, tool=tool)
            srv.record_error(err)
            raise err
        return _value(result, srv.unwrap.get(tool, False))

    async def _call_failed(self, srv: _Server, conn: _Connection, tool: str, timeout: float | None, exc: BaseException) -> ClientError:
        from mcp.shared.exceptions import MCPError
        from mcp_types import CONNECTION_CLOSED, REQUEST_TIMEOUT

        name = srv.config.name
        leaf = _leaf(exc)
        err: ClientError
        if isinstance(leaf, MCPError) and leaf.code == MESSAGE_TOO_LARGE or (
                isinstance(leaf, _Fault) and "max_message_bytes" in str(leaf)):
            text = leaf.error.message if isinstance(leaf, MCPError) else str(leaf)
            err = ProtocolError(f"{tool!r}: {text}.", server=name, tool=tool)
        elif isinstance(leaf, _Fault):
            err = ProtocolError(
                f"server {name!r} ({srv.config.transport}: {srv.config.target}) broke the MCP protocol during "
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
            tail = srv.transport.stderr_tail(5)
            err = TransportError(
                f"the connection to MCP server {name!r} ({srv.config.transport}: {srv.config.target}) was lost "
                f"during {tool!r}: {_describe(leaf)}. The server probably exited or became unreachable; "
                f"the next call reconnects automatically." + (f"\n--- last lines of the server's stderr ---\n{tail}" if tail else ""),
                server=name, tool=tool,
            )
            srv.status = "dead"
            if srv.conn is conn:
                srv.conn = None
            await conn.aclose(timeout=4.0)
        srv.record_error(err)
        return err

    async def _validator(self, srv: _Server, tool: str) -> Any:
        spec = srv.tools.get(tool)
        if spec is None:
            await self._refresh_tools(srv)
            spec = srv.tools.get(tool)
        if spec is None:
            close = difflib.get_close_matches(tool, srv.tools, n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            err = ToolNotFoundError(
                f"server {srv.config.name!r} has no tool {tool!r} (tools: {sorted(srv.tools)}).{hint}",
                server=srv.config.name, tool=tool,
            )
            srv.record_error(err)
            raise err
        validator: Any = False
        schema = spec.input_schema
        if schema:
            try:
                jsonschema = _import_jsonschema()
                cls = jsonschema.validators.validator_for(schema, default=jsonschema.Draft202012Validator)
                validator = cls(schema, format_checker=None)
            except Exception:  # noqa: BLE001 - a server's odd schema must not block calls
                validator = False
        srv.validators[tool] = validator
        return validator

    async def _refresh_tools(self, srv: _Server) -> None:
        conn = srv.conn
        if conn is None or conn.dead:
            return
        tools: list[Any] = []
        cursor = None
        while True:
            page = await conn.client.list_tools(cursor=cursor, cache_mode="refresh")
            tools.extend(page.tools)
            cursor = page.next_cursor
            if not cursor:
                break
        srv.tools = {t.name: t for t in tools}
        srv.validators.clear()
        srv.unwrap = {t.name: wraps_result(t.name, t.output_schema) for t in tools}

    async def tools(self, server: str | None = None) -> list[dict[str, Any]]:
        """Tools as ``{"server", "name", "description", "input_schema"}`` dicts.

        With ``server``, connects it if needed; with ``None``, lists every connected server's tools
        (call :meth:`connect_all` first to include them all).
        """
        if server is not None:
            srv = self._server(server)
            await self._ensure(srv)
            servers = [srv]
        else:
            servers = [s for s in self._servers.values() if s.conn is not None and not s.conn.dead]
        return [
            {"server": s.config.name, "name": t.name, "description": (t.description or "").strip(), "input_schema": t.input_schema}
            for s in servers
            for t in s.tools.values()
        ]

    async def ping(self, name: str) -> float:
        """Round-trip latency to ``name`` in milliseconds (connects first if needed; refreshes its tool list)."""
        srv = self._server(name)
        await self._ensure(srv)
        conn = srv.conn
        assert conn is not None
        t0 = time.perf_counter()
        try:
            await self._refresh_tools(srv)
        except Exception as exc:  # noqa: BLE001
            raise await self._call_failed(srv, conn, "<ping>", None, exc) from exc
        return (time.perf_counter() - t0) * 1000.0

    def stderr(self, name: str, lines: int = 50) -> str:
        """The last ``lines`` lines a stdio server wrote to stderr in its current (or last) run.

        Servers' stderr is kept in a private temporary file, not mixed into the notebook;
        read it here when a tool misbehaves.

        >>> AsyncMCPHub.from_config({"t": {"command": "python"}}).stderr("t")
        ''
        """
        return self._server(name).transport.stderr_tail(lines)

    def client(self, name: str) -> Any:
        """The SDK ``mcp.Client`` of a connected server, for what this hub does not wrap (resources, prompts)."""
        srv = self._server(name)
        if srv.conn is None or srv.conn.dead:
            raise TransportError(f"server {name!r} is not connected; call connect({name!r}) first", server=name)
        return srv.conn.client

    # -- state --------------------------------------------------------------------------
    def state(self) -> dict[str, Any]:
        """The hub's agent state as plain JSON-able data.

        ``created_at``, ``last_activity`` (ISO-8601 UTC), ``invocation_count`` and, per server,
        ``status``, ``transport``, ``target``, ``pid``, ``connected_at``, ``tools`` (count),
        ``calls``, ``errors``, ``last_error``, ``median_latency_ms``.

        >>> sorted(AsyncMCPHub().state())
        ['created_at', 'invocation_count', 'last_activity', 'servers']
        """
        return {
            "created_at": _iso(self.created_at),
            "last_activity": _iso(self.last_activity),
            "invocation_count": self.invocation_count,
            "servers": {k: s.snapshot() for k, s in self._servers.items()},
        }

    def _tables(self) -> list[tuple[str, list[dict[str, Any]]]]:
        st = self.state()
        servers = [
            {
                "server": k,
                "status": v["status"],
                "transport": v["transport"],
                "target": v["target"],
                "tools": v["tools"],
                "calls": v["calls"],
                "errors": v["errors"],
                "median ms": "" if v["median_latency_ms"] is None else f"{v['median_latency_ms']:.2f}",
                "last error": v["last_error"] or "",
            }
            for k, v in st["servers"].items()
        ]
        tools = [
            {
                "server": k,
                "tool": t.name,
                "arguments": ", ".join((t.input_schema or {}).get("properties", {}) or []),
                "description": (t.description or "").strip().splitlines()[0] if t.description else "",
            }
            for k, s in self._servers.items()
            for t in s.tools.values()
        ]
        head = f"{type(self).__name__}: {len(servers)} servers, {st['invocation_count']} calls"
        return [(head, servers), ("tools", tools)]

    def __repr__(self) -> str:
        return text_tables(self._tables())

    def _repr_html_(self) -> str:
        return html_tables(self._tables())

    def __iter__(self) -> Iterator[str]:
        return iter(self._servers)

    def __contains__(self, name: object) -> bool:
        return name in self._servers


def _as_is(x: Any) -> Any:
    return x  # an argument JSON cannot carry is left for the schema check to name


def wraps_result(tool: str, output_schema: Mapping[str, Any] | None) -> bool:
    """Whether a tool's structured result is ``{"result": x}`` wrapping the real value ``x``.

    Both SDKs wrap returns that are not objects (lists, booleans, optional objects): the
    MCP SDK names the schema ``<tool>Output``, FastMCP marks it ``x-fastmcp-wrap-result``.

    >>> wraps_result("positions_get", {"type": "object", "properties": {"result": {"type": "array"}},
    ...                                "x-fastmcp-wrap-result": True})
    True
    >>> wraps_result("get_symbols", {"title": "get_symbolsOutput", "properties": {"result": {}}})
    True
    >>> wraps_result("get_account_info", {"properties": {"result": {}, "balance": {}}})
    False
    """
    out = output_schema or {}
    if list(out.get("properties") or {}) != ["result"]:
        return False
    return out.get("x-fastmcp-wrap-result") is True or out.get("title") == f"{tool}Output"


def _value(result: Any, unwrap: bool) -> Any:
    """A successful call result as plain Python: the structured content (unwrapped) or the text."""
    sc = result.structured_content
    if sc is not None:
        if unwrap and isinstance(sc, dict) and len(sc) == 1 and "result" in sc:
            return sc["result"]
        return sc
    return _content(result)


def _import_jsonschema() -> Any:
    """``jsonschema``, imported without its optional ``rfc3987_syntax`` format checks.

    That module builds a grammar at import time (2+ s of CPU; 10 s on a busy machine) for the
    ``iri`` formats, which the client never checks (``format_checker=None``): every CLI command
    and server start paid for it. It is hidden only while jsonschema imports.
    """
    import sys

    if "jsonschema" in sys.modules or "rfc3987_syntax" in sys.modules:
        import jsonschema

        return jsonschema
    sys.modules["rfc3987_syntax"] = None  # type: ignore[assignment] - makes its import fail (suppressed)
    try:
        import jsonschema
    finally:
        del sys.modules["rfc3987_syntax"]
    return jsonschema


def _text(result: Any) -> str:
    return "\n".join(getattr(c, "text", "") for c in result.content if getattr(c, "type", None) == "text").strip()


def _content(result: Any) -> Any:
    blocks = result.content
    if not blocks:
        return None
    if all(getattr(c, "type", None) == "text" for c in blocks):
        return "\n".join(c.text for c in blocks)
    return [c.model_dump(mode="json", by_alias=True, exclude_none=True) for c in blocks]


def _arguments_error(server: str, tool: str, validator: Any, args: Mapping[str, Any]) -> ArgumentsError:
    _import_jsonschema()
    from jsonschema.exceptions import best_match

    errors = list(validator.iter_errors(args))
    best = best_match(errors)
    field_name = ".".join(str(p) for p in best.absolute_path)
    if best.validator == "required" and isinstance(best.instance, Mapping):
        missing = [r for r in best.validator_value if r not in best.instance]
        field_name = ".".join([*(str(p) for p in best.absolute_path), *(missing[:1])])
        problem = f"missing required argument {field_name!r}"
    elif best.validator == "additionalProperties" and isinstance(best.instance, Mapping):
        extra = [k for k in best.instance if k not in (best.schema.get("properties") or {})]
        field_name = ".".join([*(str(p) for p in best.absolute_path), *(extra[:1])])
        problem = f"unexpected argument {field_name!r}"
    else:
        expected = {k: v for k, v in best.schema.items() if k in ("type", "enum", "minimum", "maximum", "pattern", "format")}
        problem = f"argument {field_name or '<arguments>'!r}: {best.message}" + (f" (expected {expected})" if expected else "")
    props = list((validator.schema.get("properties") or {}).keys())
    msg = (
        f"invalid arguments for tool {tool!r} on server {server!r}: {problem}. Nothing was sent. "
        f"The tool takes: {props}; see hub.tools({server!r}) for the schema."
    )
    return ArgumentsError(msg, server=server, tool=tool, field=field_name, errors=[e.message for e in errors])
