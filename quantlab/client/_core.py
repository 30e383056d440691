"""``AsyncMCPHub``: the one async core. Named connections to several MCP servers at once.

The hub retries, reconnects, checks arguments and calls; each server's connection and bookkeeping
live in ``_connection.py``, result unwrapping and argument checks in ``_calls.py``, the connect
reports in ``_report.py``; errors, config, transports, state tables and the sync face have their
own modules.

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
import difflib
import time
from datetime import datetime
from typing import Any, Iterator, Mapping

from quantlab._util import to_jsonable

from ._calls import arguments_error, as_is, call_text, call_value, make_validator, wraps_result
from ._config import ConfigSource, ServerConfig, load_config
from ._connection import Connection, ServerRecord, iso, utcnow
from ._errors import ClientError, ConnectError, ServerNotFoundError, ToolError, ToolNotFoundError, TransportError
from ._report import ConnectReport, ConnectResult
from ._state import html_tables, text_tables
from ._transports import make_transport

__all__ = ["AsyncMCPHub", "ConnectResult", "ConnectReport", "backoff_delays", "wraps_result"]


def backoff_delays(max_retries: int = 3, base: float = 1.0, cap: float = 8.0) -> list[float]:
    """The waits between connection attempts: ``base * 2**i`` capped at ``cap``, one per retry.

    >>> backoff_delays()
    [1.0, 2.0, 4.0]
    >>> backoff_delays(5, base=1.0, cap=8.0)
    [1.0, 2.0, 4.0, 8.0, 8.0]
    """
    return [float(min(cap, base * (2**i))) for i in range(max(0, int(max_retries)))]


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
        self._servers: dict[str, ServerRecord] = {}
        for name, cfg in (servers or {}).items():
            if not isinstance(cfg, ServerConfig):
                cfg = ServerConfig.from_entry(name, cfg)
            self._servers[name] = ServerRecord(cfg)
        self.max_retries = int(max_retries)
        self.backoff_base = float(backoff_base)
        self.backoff_cap = float(backoff_cap)
        self.connect_timeout = float(connect_timeout)
        self.validate = bool(validate)
        self.created_at = utcnow()
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

    def _server(self, name: str) -> ServerRecord:
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
        self._servers[name] = ServerRecord(cfg)

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

    async def _ensure(self, srv: ServerRecord, max_retries: int | None = None) -> int:
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
                conn = Connection(srv.config.name, srv.transport)
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
                srv.set_tools(conn.tools)
                try:
                    await srv.run_on_connect(conn, self.connect_timeout)
                except ConnectError as exc:  # the server answered: retrying the same calls would not help
                    await conn.aclose()
                    srv.status = "failed"
                    srv.record_error(exc)
                    raise
                srv.conn = conn
                srv.status = "connected"
                srv.connected_at = utcnow()
                return attempt
            srv.status = "failed"
            err = srv.connect_error(attempts=len(delays) + 1, cause=last)
            srv.record_error(err)
            raise err



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
        args = {str(k): to_jsonable(v, fallback=as_is) for k, v in arguments.items()} if arguments else {}
        if self.validate:
            validator = srv.validators.get(tool)
            if validator is None:
                validator = await self._validator(srv, tool)
            if validator is not False and not validator.is_valid(args):
                err = arguments_error(server, tool, validator, args)
                srv.record_error(err)
                raise err
        self.invocation_count += 1
        srv.calls += 1
        t0 = time.perf_counter()
        try:
            result = await conn.guarded(conn.client.call_tool(tool, args, read_timeout_seconds=timeout))
        except Exception as exc:  # noqa: BLE001 - mapped to the documented hierarchy below
            raise await srv.call_failed(conn, tool, timeout, exc) from exc
        finally:
            srv.latencies.append(time.perf_counter() - t0)
            self.last_activity = utcnow()
        if result.is_error:
            err = ToolError(call_text(result) or "the tool reported an error without a message", server=server, tool=tool)
            srv.record_error(err)
            raise err
        return call_value(result, srv.unwrap.get(tool, False))


    async def _validator(self, srv: ServerRecord, tool: str) -> Any:
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
        validator = make_validator(spec.input_schema)
        srv.validators[tool] = validator
        return validator

    async def _refresh_tools(self, srv: ServerRecord) -> None:
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
        srv.set_tools(tools)

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
            raise await srv.call_failed(conn, "<ping>", None, exc) from exc
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
            "created_at": iso(self.created_at),
            "last_activity": iso(self.last_activity),
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
