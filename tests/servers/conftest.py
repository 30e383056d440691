"""Fixtures for the backtest server tests: real server processes over real stdio / HTTP.

``MCPSession`` keeps one raw ``mcp.Client`` open on a private event-loop thread so
synchronous tests can share one server per module (fast) and call tools directly.
"""
from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

SMA_CODE = """
def signals(data, fast=10, slow=50):
    f = data.close.rolling(fast).mean()
    s = data.close.rolling(slow).mean()
    return (f > s).astype(float)
"""


class MCPSession:
    """A raw MCP SDK client (stdio params or URL) living on its own event loop thread."""

    def __init__(self, target: Any, **client_kwargs: Any):
        from mcp import Client

        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self.client: Any = None

        async def main() -> None:
            self._stop = asyncio.Event()
            try:
                async with Client(target, **client_kwargs) as client:
                    self.client = client
                    self._ready.set()
                    await self._stop.wait()
            except BaseException as exc:  # noqa: BLE001
                self._error = exc
                self._ready.set()

        def run() -> None:
            asyncio.set_event_loop(self._loop)
            self._loop.run_until_complete(main())

        self._thread = threading.Thread(target=run, daemon=True)
        self._thread.start()
        if not self._ready.wait(60):
            raise RuntimeError("MCP client did not connect within 60 s")
        if self._error is not None:
            raise RuntimeError(f"MCP client failed to connect: {self._error!r}") from self._error

    def _submit(self, coro: Any, timeout: float) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    def call(self, tool: str, **arguments: Any):
        """``CallToolResult`` of one tool call (a tool argument ``timeout`` is passed to the tool)."""
        return self._submit(self.client.call_tool(tool, arguments), 150)

    def call_soon(self, tool: str, **arguments: Any):
        """Start a tool call; returns a ``concurrent.futures.Future`` of its ``CallToolResult``."""
        return asyncio.run_coroutine_threadsafe(self.client.call_tool(tool, arguments), self._loop)

    def ok(self, tool: str, **arguments: Any) -> Any:
        """Structured content of a call that must succeed."""
        r = self.call(tool, **arguments)
        assert not r.is_error, r.content[0].text if r.content else r
        return r.structured_content

    def error(self, tool: str, **arguments: Any) -> str:
        """Error text of a call that must fail."""
        r = self.call(tool, **arguments)
        assert r.is_error, f"expected a tool error, got {r.structured_content!r}"
        return r.content[0].text

    def list_tools(self):
        return self._submit(self.client.list_tools(), 60)

    def close(self) -> None:
        if self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._stop.set)
            self._thread.join(30)


def server_params(runs: Path, *extra: str):
    from mcp import StdioServerParameters

    return StdioServerParameters(
        command=sys.executable,
        args=["-m", "quantlab.servers.backtest", "--runs", str(runs), *extra],
        env=dict(os.environ),
    )


@pytest.fixture(scope="module")
def data_root(tmp_path_factory) -> Path:
    from quantlab.engine import data as qdata

    root = tmp_path_factory.mktemp("data_root")
    qdata.synthetic(3_000, seed=11, freq="1h").to_csv(root / "prices.csv")
    (root.parent / "secret.csv").write_text("not for you\n")
    return root


@pytest.fixture(scope="module")
def runs_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("runs")


@pytest.fixture(scope="module")
def server(runs_dir: Path, data_root: Path):
    """One backtest server over stdio for the whole module (2 workers, 1 GB memory limit)."""
    s = MCPSession(server_params(runs_dir, "--data-root", str(data_root), "--workers", "2", "--memory-mb", "1024"))
    yield s
    s.close()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_port(port: int, proc: subprocess.Popen, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}: {proc.stderr.read().decode() if proc.stderr else ''}")
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port} after {timeout} s")
