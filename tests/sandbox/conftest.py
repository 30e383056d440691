"""Fixtures for the sandbox tests: a real backtest server over stdio, data, process bookkeeping.

The hostile corpus lives in ``corpus.py`` (one list, used by every path: in-process API,
the backtest server, sweeps, a deployment).
"""
from __future__ import annotations

import asyncio
import os
import sys
import time
import threading
from pathlib import Path
from typing import Any

import pytest

HERE = Path(__file__).parent


class MCPSession:
    """A raw MCP client (stdio) on its own event-loop thread, for synchronous tests."""

    def __init__(self, params: Any):
        from mcp import Client

        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._error: BaseException | None = None

        async def main() -> None:
            self._stop = asyncio.Event()
            try:
                async with Client(params) as client:
                    self.client = client
                    self._ready.set()
                    await self._stop.wait()
            except BaseException as exc:  # noqa: BLE001
                self._error = exc
                self._ready.set()

        self._thread = threading.Thread(target=lambda: self._loop.run_until_complete(main()), daemon=True)
        self._thread.start()
        if not self._ready.wait(90) or self._error is not None:
            raise RuntimeError(f"MCP client did not connect: {self._error!r}")

    def call(self, tool: str, **arguments: Any):
        return asyncio.run_coroutine_threadsafe(self.client.call_tool(tool, arguments), self._loop).result(180)

    def close(self) -> None:
        if self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._stop.set)
            self._thread.join(30)


@pytest.fixture(scope="session")
def scratch(tmp_path_factory) -> Path:
    """Where a hostile snippet would like to write (it must stay empty)."""
    return tmp_path_factory.mktemp("outside")


@pytest.fixture(scope="session")
def secret_env():
    """A fake API key in this process's environment: no strategy may see it."""
    os.environ["QUANTLAB_TEST_API_KEY"] = "sk-test-not-for-strategies-123456"
    yield "sk-test-not-for-strategies-123456"
    os.environ.pop("QUANTLAB_TEST_API_KEY", None)


@pytest.fixture(scope="module")
def backtest_server(tmp_path_factory, secret_env):
    from mcp import StdioServerParameters

    runs = tmp_path_factory.mktemp("runs")
    params = StdioServerParameters(
        command=sys.executable,
        args=["-m", "quantlab.servers.backtest", "--runs", str(runs), "--workers", "1", "--memory-mb", "2048"],
        env=dict(os.environ),
    )
    started = time.time()
    s = MCPSession(params)
    s.started = started  # tests count only the processes this server started
    yield s
    s.close()
