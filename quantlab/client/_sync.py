"""``MCPHub``: the blocking face of :class:`AsyncMCPHub` for notebooks, papermill and scripts.

One daemon thread per hub runs its own asyncio loop; every MCP session lives and dies on
that loop. Each blocking method submits a coroutine there (``run_coroutine_threadsafe``)
and waits. So it behaves the same in a Jupyter kernel (whose own loop is running), under
papermill and in a plain script, with no nest-asyncio patching, and any number of
threads may call it at once. ``Ctrl-C`` / a kernel interrupt cancels only the call that
was waiting; the hub stays usable. Child servers are stopped by :meth:`MCPHub.close`,
when the hub is garbage collected, and at interpreter exit.

Example
-------
>>> import sys
>>> from quantlab.client import MCPHub
>>> cfg = {"mcpServers": {"time": {"command": sys.executable, "args": ["-m", "mcp_server_time"]}}}
>>> with MCPHub.from_config(cfg) as hub:
...     hub.call("time", "convert_time",
...              {"source_timezone": "UTC", "time": "12:00", "target_timezone": "UTC"})["target"]["timezone"]
'UTC'
"""
from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import threading
import weakref
from typing import Any, Coroutine, Mapping, TypeVar

from quantlab._util import kill_process

from ._config import ConfigSource, load_config
from ._core import AsyncMCPHub, ConnectReport, ConnectResult
from ._errors import ClientError
from ._transports import kill_live_children

__all__ = ["MCPHub"]

T = TypeVar("T")
_POLL = 0.2  # seconds between wake-ups while waiting, so a signal (Ctrl-C) is seen promptly


def _wait(fut: "concurrent.futures.Future[T]", timeout: float | None = None) -> T:
    """Wait for ``fut`` in short slices (signals get handled between them); cancel it on Ctrl-C."""
    try:
        if timeout is None:
            while True:
                try:
                    return fut.result(_POLL)
                except concurrent.futures.TimeoutError:
                    if fut.done():
                        raise  # the coroutine itself raised a TimeoutError
        return fut.result(timeout)
    except KeyboardInterrupt:
        fut.cancel()
        raise
    except concurrent.futures.CancelledError:
        raise ClientError("the call was cancelled before it finished (was the hub closed meanwhile?)") from None
    except concurrent.futures.TimeoutError:
        if not fut.done():
            fut.cancel()
        raise


class _Loop:
    """A daemon thread running one asyncio event loop until stopped."""

    def __init__(self, name: str) -> None:
        self.loop = asyncio.new_event_loop()
        self._started = threading.Event()
        self.thread = threading.Thread(target=self._run, name=name, daemon=True)
        self.thread.start()
        self._started.wait()

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.call_soon(self._started.set)
        try:
            self.loop.run_forever()
        finally:
            try:
                pending = [t for t in asyncio.all_tasks(self.loop) if not t.done()]
                for t in pending:
                    t.cancel()
                if pending:
                    self.loop.run_until_complete(asyncio.wait(pending, timeout=3.0))
                self.loop.run_until_complete(self.loop.shutdown_asyncgens())
            finally:
                self.loop.close()

    def stop(self, join: float = 5.0) -> None:
        if self.loop.is_closed():
            return
        try:
            self.loop.call_soon_threadsafe(self.loop.stop)
        except RuntimeError:
            return
        if threading.current_thread() is not self.thread:
            self.thread.join(join)


def _shutdown(loop: _Loop, aio: AsyncMCPHub, timeout: float = 10.0) -> None:
    """Close every session on the hub's loop, stop the loop, then kill any server left (by pid)."""
    pids = aio.child_pids
    if threading.current_thread() is loop.thread:  # collected on its own loop: cannot wait for itself
        loop.loop.call_soon(lambda: asyncio.ensure_future(aio.close()).add_done_callback(lambda _: loop.loop.stop()))
        return
    if loop.thread.is_alive() and not loop.loop.is_closed():
        try:
            fut = asyncio.run_coroutine_threadsafe(aio.close(), loop.loop)
            fut.result(timeout)
        except BaseException:  # noqa: BLE001 - best effort at shutdown; the kill below is the guarantee
            pass
        loop.stop()
    for pid in pids:
        kill_process(pid, grace=0.5, group=True)


class MCPHub:
    """Blocking client for several MCP servers; the same methods as :class:`AsyncMCPHub`, without ``await``.

    Make one with :meth:`from_config` (a ``mcpServers`` dict, a JSON/TOML path, or ``None`` for
    the cwd's ``quantlab.toml`` / ``pyproject.toml``) and use it as a context manager, or keep
    it open across notebook cells and call :meth:`close` at the end (it also closes at exit).

    Options (keywords) are those of :class:`AsyncMCPHub`: ``max_retries=3``, ``backoff_base=1.0``,
    ``backoff_cap=8.0``, ``connect_timeout=30.0``, ``validate=True``.

    Example
    -------
    >>> import sys
    >>> hub = MCPHub.from_config({"time": {"command": sys.executable, "args": ["-m", "mcp_server_time"]}})
    >>> hub.connect_all().ok
    ['time']
    >>> hub.call("time", "get_current_time", {"timezone": "Europe/Paris"})["timezone"]
    'Europe/Paris'
    >>> hub.state()["servers"]["time"]["calls"]
    1
    >>> hub.close()
    """

    def __init__(self, servers: Mapping[str, Any] | None = None, **options: Any) -> None:
        self._aio = AsyncMCPHub(servers, **options)
        self._loop = _Loop(name=f"quantlab-mcp-loop-{id(self):x}")
        self._closed = False
        # Runs on close(), on garbage collection, and at interpreter exit (finalize's atexit=True).
        self._finalizer = weakref.finalize(self, _shutdown, self._loop, self._aio)

    @classmethod
    def from_config(cls, config: ConfigSource = None, **options: Any) -> "MCPHub":
        """Build a hub from a ``mcpServers`` dict, a file path, or ``None`` (the cwd's config file).

        >>> MCPHub.from_config({"t": {"command": "python"}}).server_names
        ['t']
        """
        return cls(load_config(config), **options)

    # -- running coroutines on the hub's loop ---------------------------------------------
    @property
    def aio(self) -> AsyncMCPHub:
        """The underlying :class:`AsyncMCPHub`. Use it only inside coroutines run with :meth:`submit`/:meth:`run`.

        >>> hub = MCPHub()
        >>> hub.run(hub.aio.ping("x")) if hub.aio.server_names else "no servers"
        'no servers'
        """
        return self._aio

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        """The event loop (on the hub's own thread) where every session lives."""
        return self._loop.loop

    def submit(self, coro: Coroutine[Any, Any, T]) -> "concurrent.futures.Future[T]":
        """Schedule ``coro`` on the hub's loop and return a :class:`concurrent.futures.Future` at once.

        >>> import asyncio
        >>> hub = MCPHub()
        >>> hub.submit(asyncio.sleep(0, result=42)).result()
        42
        """
        if self._closed or self._loop.loop.is_closed():
            coro.close()
            raise RuntimeError("this MCPHub is closed; make a new one with MCPHub.from_config(...)")
        if threading.current_thread() is self._loop.thread:
            coro.close()
            raise RuntimeError("MCPHub blocking methods cannot be called from the hub's own loop; use hub.aio and await")
        return asyncio.run_coroutine_threadsafe(coro, self._loop.loop)

    def run(self, coro: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        """Run ``coro`` on the hub's loop and wait for its result (``Ctrl-C`` cancels just this coroutine).

        >>> import asyncio
        >>> MCPHub().run(asyncio.sleep(0, result="done"))
        'done'
        """
        return _wait(self.submit(coro), timeout)

    # -- the AsyncMCPHub API, blocking -------------------------------------------------------
    @property
    def server_names(self) -> list[str]:
        """Configured server names."""
        return self._aio.server_names

    @property
    def config(self) -> dict[str, Any]:
        """The configuration as ``{"mcpServers": {...}}``."""
        return self._aio.config

    def backoff_delays(self) -> list[float]:
        """The waits between connection attempts (``[1.0, 2.0, 4.0]`` by default)."""
        return self._aio.backoff_delays()

    def add_server(self, name: str, entry: Any) -> None:
        """Configure one more server (see :meth:`AsyncMCPHub.add_server`)."""
        self._aio.add_server(name, entry)

    def connect(self, name: str, *, max_retries: int | None = None) -> ConnectResult:
        """Connect ``name`` with retry/backoff; raises :class:`~quantlab.client.ConnectError`."""
        return self.run(self._aio.connect(name, max_retries=max_retries))

    def connect_all(self, *, max_retries: int | None = None) -> ConnectReport:
        """Connect every server concurrently; returns a :class:`~quantlab.client.ConnectReport`."""
        return self.run(self._aio.connect_all(max_retries=max_retries))

    def call(self, server: str, tool: str, arguments: Mapping[str, Any] | None = None, timeout: float | None = 30.0) -> Any:
        """Call ``tool`` on ``server``; returns the structured result (dict/list/value) or the text.

        See :meth:`AsyncMCPHub.call` for the errors raised.
        """
        return _wait(self.submit(self._aio.call(server, tool, arguments, timeout)))

    def tools(self, server: str | None = None) -> list[dict[str, Any]]:
        """Tools as ``{"server", "name", "description", "input_schema"}`` dicts."""
        return self.run(self._aio.tools(server))

    def ping(self, name: str) -> float:
        """Round-trip latency to ``name`` in milliseconds."""
        return self.run(self._aio.ping(name))

    def stderr(self, name: str, lines: int = 50) -> str:
        """The last ``lines`` lines a stdio server wrote to stderr (see :meth:`AsyncMCPHub.stderr`)."""
        return self._aio.stderr(name, lines)

    def disconnect(self, name: str) -> None:
        """Close the session with ``name``; it reconnects on next use."""
        self.run(self._aio.disconnect(name))

    def state(self) -> dict[str, Any]:
        """The agent state (see :meth:`AsyncMCPHub.state`)."""
        return self._on_loop(self._aio.state)

    def close(self) -> None:
        """Disconnect every server, stop the loop thread and make sure no server process is left."""
        if self._closed:
            return
        self._closed = True
        self._finalizer()

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` ran."""
        return self._closed

    def __enter__(self) -> "MCPHub":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def _on_loop(self, fn: Any) -> Any:
        """Run a quick sync function of the core on the hub's loop (its data is only touched there)."""
        if self._closed or self._loop.loop.is_closed() or threading.current_thread() is self._loop.thread:
            return fn()
        return self.run(_call(fn), timeout=10)

    def __repr__(self) -> str:
        text = self._on_loop(self._aio.__repr__).replace("AsyncMCPHub", "MCPHub", 1)
        return text + ("\n(closed)" if self._closed else "")

    def _repr_html_(self) -> str:
        return self._on_loop(self._aio._repr_html_).replace("AsyncMCPHub", "MCPHub", 1)

    def __contains__(self, name: object) -> bool:
        return name in self._aio


async def _call(fn: Any, *args: Any) -> Any:
    return fn(*args)


atexit.register(kill_live_children)
