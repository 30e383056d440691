"""Pluggable transports: how a :class:`~quantlab.client.ServerConfig` becomes an MCP connection.

A transport builds the stream pair the SDK's ``mcp.Client`` drives, and knows how to
describe itself, which child processes it owns (so none outlive the hub) and what
the server wrote to stderr (for error messages). Two are built in:

- ``"stdio"`` (:class:`StdioTransport`): spawn ``command args`` and speak over its stdin/stdout;
  stderr goes to a private temporary file whose last lines appear in connect errors.
- ``"http"`` (:class:`HttpTransport`): streamable HTTP to ``url`` with optional ``headers``
  (e.g. ``Authorization: Bearer ...``).

Register another with :func:`register_transport`.

Example
-------
>>> from quantlab.client import ServerConfig
>>> t = make_transport(ServerConfig.from_entry("t", {"command": "python", "args": ["-m", "mcp_server_time"]}))
>>> t.kind, t.describe()
('stdio', 'stdio: python -m mcp_server_time')
"""
from __future__ import annotations

import os
import re
import tempfile
import threading
import uuid
from contextlib import asynccontextmanager
from typing import Any, AsyncIterator, Callable

from quantlab._util import kill_process, pid_alive

from ._config import ServerConfig

__all__ = ["Transport", "StdioTransport", "HttpTransport", "register_transport", "make_transport", "kill_live_children"]

#: Environment variables passed to stdio servers on top of the SDK's safe default set
#: (HOME, PATH, ...), so a server started from a notebook sees the same Python setup.
EXTRA_INHERITED_ENV = ("PYTHONPATH", "VIRTUAL_ENV", "CONDA_PREFIX", "LANG", "LC_ALL", "TMPDIR", "TZ")
_MARKER = "QUANTLAB_MCP_CHILD"

# Every stdio child any hub in this process started and has not yet seen exit: {pid: tag}.
_LIVE_CHILDREN: dict[int, str] = {}
_LIVE_LOCK = threading.Lock()


class Transport:
    """Base class of transports. Subclasses implement :meth:`streams`.

    >>> Transport.kind
    'abstract'
    """

    kind = "abstract"

    def __init__(self, config: ServerConfig) -> None:
        self.config = config

    def describe(self) -> str:
        """``"<kind>: <command line or URL>"`` for messages."""
        return f"{self.kind}: {self.config.target}"

    def streams(self) -> Any:
        """A fresh async context manager yielding ``(read_stream, write_stream)`` for ``mcp.Client``."""
        raise NotImplementedError

    def after_connect(self) -> None:
        """Hook run once the session is initialized (e.g. find the child's pid)."""

    def after_close(self) -> None:
        """Hook run once the session is closed (reap anything left)."""

    def stderr_tail(self, lines: int = 15) -> str:
        """The last ``lines`` lines the server wrote to stderr (``""`` if unknown)."""
        return ""

    def abort(self) -> None:
        """Stop a connection attempt that is still starting (kill the child it spawned, if any)."""

    @property
    def pid(self) -> int | None:
        """The server's process id when this transport spawned it."""
        return None


class StdioTransport(Transport):
    """Spawn the server as a subprocess (own process group) and talk over stdin/stdout.

    >>> StdioTransport(ServerConfig(name="x", command="python", args=("-V",))).describe()
    'stdio: python -V'
    """

    kind = "stdio"

    def __init__(self, config: ServerConfig) -> None:
        super().__init__(config)
        self._errfile: Any = None
        self._tag = ""
        self._pid: int | None = None

    def _env(self) -> dict[str, str]:
        from mcp.client.stdio import get_default_environment

        env = get_default_environment()
        env.update({k: os.environ[k] for k in EXTRA_INHERITED_ENV if k in os.environ})
        env.update({k: os.environ[k] for k in self.config.inherit_env if k in os.environ})  # read at spawn, never stored
        env.update(self.config.env)
        env[_MARKER] = self._tag
        return env

    def streams(self) -> Any:
        self._close_errfile()
        # O_APPEND: the child's writes always land at the end while we pread() the tail.
        self._errfile = tempfile.TemporaryFile(mode="a+b", prefix=f"mcp-{self.config.name}-", suffix=".stderr")
        self._tag = f"{os.getpid()}-{uuid.uuid4().hex}"
        self._pid = None
        return _stdio_streams(self.config, self._env(), self._errfile)

    def after_connect(self) -> None:
        self._pid = _find_child(self._tag)
        if self._pid is not None:
            with _LIVE_LOCK:
                _LIVE_CHILDREN[self._pid] = self.config.name

    def after_close(self) -> None:
        pid, self._pid = self._pid, None
        if pid is not None:
            kill_process(pid, grace=0.0 if not pid_alive(pid) else 1.0, group=True)
            with _LIVE_LOCK:
                _LIVE_CHILDREN.pop(pid, None)

    def abort(self) -> None:
        pid = self._pid or (_find_child(self._tag) if self._tag else None)
        if pid is not None:
            kill_process(pid, grace=0.0, group=True)

    @property
    def pid(self) -> int | None:
        return self._pid

    def stderr_tail(self, lines: int = 15) -> str:
        f = self._errfile
        if f is None:
            return ""
        try:
            size = os.fstat(f.fileno()).st_size
            data = os.pread(f.fileno(), 8192, max(0, size - 8192))
        except (OSError, ValueError):
            return ""
        text = data.decode("utf-8", "replace").rstrip()
        return "\n".join(text.splitlines()[-lines:])

    def _close_errfile(self) -> None:
        if self._errfile is not None:
            try:
                self._errfile.close()
            except OSError:
                pass
            self._errfile = None


#: JSON-RPC error code of a reply refused for its size (implementation-defined server-error range)
MESSAGE_TOO_LARGE = -32099
_ID_RE = re.compile(rb'"id"\s*:\s*(-?\d+|"(?:[^"\\]|\\.)*")')


class MessageTooLarge(Exception):
    """A stdio server wrote a message (line) larger than the server's ``max_message_bytes``."""


def _too_large(config: ServerConfig, size: int, head: bytes) -> Any:
    """The reply to hand the session for an oversized line: a JSON-RPC error for its request id when the
    line's head names one (so exactly that call fails), else a transport fault (calls in flight fail)."""
    import mcp.types as types
    from mcp.shared.message import SessionMessage

    text = (f"the reply from server {config.name!r} is larger than its max_message_bytes "
            f"({size:,} > {config.max_message_bytes:,} bytes) and was refused without being read; "
            f"ask for less (page it), or raise max_message_bytes for {config.name!r} in the mcpServers config")
    m = _ID_RE.search(head[:512])
    if m is None:
        return MessageTooLarge(text)
    raw = m.group(1)
    rid: Any = int(raw) if raw[:1] != b'"' else raw[1:-1].decode("utf-8", "replace")
    err = types.JSONRPCError(jsonrpc="2.0", id=rid, error=types.ErrorData(code=MESSAGE_TOO_LARGE, message=text))
    return SessionMessage(err)


def _parse(line: bytes) -> Any:
    import mcp.types as types
    from mcp.shared.message import SessionMessage

    try:
        return SessionMessage(types.jsonrpc_message_adapter.validate_json(line, by_name=False))
    except ValueError as exc:
        return exc


@asynccontextmanager
async def _stdio_streams(config: ServerConfig, env: dict[str, str], errlog: Any) -> AsyncIterator[Any]:
    """The SDK's stdio transport, with a size limit on what the server sends.

    Lines are split from the raw bytes as they arrive; a line longer than
    ``config.max_message_bytes`` is skipped without being buffered or parsed (the SDK's
    reader would join and validate all of it on the event loop every other server shares)
    and its call fails at once with a clear error. The server leads its own process group;
    on close its stdin is closed, then the group is terminated.
    """
    import anyio
    from contextlib import suppress

    process = await anyio.open_process([config.command or "", *config.args], env=env, cwd=config.cwd,
                                       stderr=errlog, start_new_session=True)
    limit = config.max_message_bytes
    read_writer, read_stream = anyio.create_memory_object_stream[Any](0)
    write_stream, write_reader = anyio.create_memory_object_stream[Any](0)

    async def reader() -> None:
        assert process.stdout is not None
        buf = bytearray()
        skipped = 0  # > 0 while skipping the rest of an oversized line
        head = b""
        try:
            async with read_writer:
                async for chunk in process.stdout:
                    start = 0
                    while start < len(chunk):
                        nl = chunk.find(b"\n", start)
                        end = len(chunk) if nl < 0 else nl
                        if skipped:
                            skipped += end - start
                        else:
                            buf += chunk[start:end]
                            if len(buf) > limit:
                                skipped, head = len(buf), bytes(buf[:512])
                                buf.clear()
                        if nl < 0:
                            break
                        start = nl + 1
                        if skipped:
                            item, skipped = _too_large(config, skipped, head), 0
                        elif buf.strip():
                            item = _parse(bytes(buf))
                        else:
                            buf.clear()
                            continue
                        buf.clear()
                        await read_writer.send(item)
        except (anyio.ClosedResourceError, anyio.BrokenResourceError, anyio.EndOfStream, OSError):
            pass

    async def writer() -> None:
        assert process.stdin is not None
        try:
            async with write_reader:
                async for message in write_reader:
                    data = message.message.model_dump_json(by_alias=True, exclude_unset=True) + "\n"
                    await process.stdin.send(data.encode("utf-8"))
        except (anyio.ClosedResourceError, anyio.BrokenResourceError, OSError):
            await read_writer.aclose()

    async with anyio.create_task_group() as tg:
        tg.start_soon(reader)
        tg.start_soon(writer)
        try:
            yield read_stream, write_stream
        finally:
            with anyio.CancelScope(shield=True):
                write_stream.close()
                read_stream.close()
                with suppress(OSError, anyio.BrokenResourceError, anyio.ClosedResourceError):
                    await process.stdin.aclose()  # type: ignore[union-attr]
                with anyio.move_on_after(2.0):
                    while process.returncode is None:
                        await anyio.sleep(0.02)
                if process.returncode is None:
                    await anyio.to_thread.run_sync(lambda: kill_process(process.pid, 1.0, group=True))
                    with anyio.move_on_after(2.0):
                        while process.returncode is None:
                            await anyio.sleep(0.02)
                with suppress(OSError, anyio.BrokenResourceError, anyio.ClosedResourceError):
                    await process.stdout.aclose()  # type: ignore[union-attr]
            tg.cancel_scope.cancel()


class HttpTransport(Transport):
    """Streamable HTTP to ``config.url`` with ``config.headers`` on every request.

    >>> HttpTransport(ServerConfig(name="x", url="http://127.0.0.1:8000/mcp")).describe()
    'http: http://127.0.0.1:8000/mcp'
    """

    kind = "http"

    def streams(self) -> Any:
        return _http_streams(self.config.url or "", dict(self.config.headers))


@asynccontextmanager
async def _http_streams(url: str, headers: dict[str, str]) -> AsyncIterator[Any]:
    import httpx2
    from mcp.client.streamable_http import streamable_http_client

    # the SDK's documented way to set headers: our own client, with the MCP transports' timeouts
    # (30 s to connect/write, 300 s to read: a server may hold a response stream open)
    async with httpx2.AsyncClient(headers=headers or None, timeout=httpx2.Timeout(30.0, read=300.0)) as http:
        async with streamable_http_client(url, http_client=http) as streams:
            yield streams


_REGISTRY: dict[str, Callable[[ServerConfig], Transport]] = {"stdio": StdioTransport, "http": HttpTransport}


def register_transport(kind: str, factory: Callable[[ServerConfig], Transport]) -> None:
    """Use ``factory(config)`` for servers whose ``ServerConfig.transport`` is ``kind``.

    >>> register_transport("stdio", StdioTransport)  # (re)register the built-in one
    """
    _REGISTRY[kind] = factory


def make_transport(config: ServerConfig) -> Transport:
    """The transport for ``config`` (``stdio`` for ``command``, ``http`` for ``url``)."""
    try:
        factory = _REGISTRY[config.transport]
    except KeyError:
        raise ValueError(f"server {config.name!r}: no transport registered for {config.transport!r}") from None
    return factory(config)


# -- child processes -------------------------------------------------------------------

def _find_child(tag: str) -> int | None:
    """The pid of our child process started with ``QUANTLAB_MCP_CHILD=tag`` (psutil; None if unavailable)."""
    try:
        import psutil
    except ImportError:  # pragma: no cover - psutil ships with jupyter/ipykernel
        return None
    try:
        children = psutil.Process().children(recursive=False)
    except psutil.Error:
        return None
    for child in reversed(children):  # newest last
        try:
            if child.environ().get(_MARKER) == tag:
                return child.pid
        except psutil.Error:
            continue
    return None


def kill_live_children() -> list[int]:
    """Kill every stdio server any hub in this process started and did not close (used at exit)."""
    with _LIVE_LOCK:
        pids = list(_LIVE_CHILDREN)
        _LIVE_CHILDREN.clear()
    for pid in pids:
        kill_process(pid, grace=0.5, group=True)
    return pids
