"""Fixtures of the broker tests: real servers over real stdio / HTTP, raw mcp SDK clients."""
from __future__ import annotations

import asyncio
import contextlib
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx2
import pytest
from mcp import Client, StdioServerParameters
from mcp.client.streamable_http import streamable_http_client

from quantlab.servers.broker.book import Broker, BrokerConfig

ROOT = Path(__file__).resolve().parents[2]

SMA = '''
import pandas as pd
def signals(data, fast=5, slow=20):
    f = data.close.rolling(fast).mean()
    s = data.close.rolling(slow).mean()
    return (f > s).astype(float) - (f < s).astype(float)
'''
BOOM = '''
def signals(data, after=3):
    raise RuntimeError("boom: strategy bug")
'''


class ToolFailed(Exception):
    """A tool call that came back with is_error=True."""


async def call(c: Client, name: str, args: dict[str, Any] | None = None) -> Any:
    """Call a tool; return its structured result (unwrapping {"result": ...}) or raise ToolFailed(text)."""
    r = await c.call_tool(name, args or {})
    if r.is_error:
        raise ToolFailed(" ".join(getattr(b, "text", "") for b in r.content))
    sc = r.structured_content
    if isinstance(sc, dict) and set(sc) == {"result"}:
        return sc["result"]
    return sc


def stdio_params(db: Path, *extra: str) -> StdioServerParameters:
    return StdioServerParameters(command=sys.executable, args=["-m", "quantlab.servers.broker", "--db", str(db), *extra],
                                 cwd=str(ROOT))


def run(coro):
    return asyncio.run(coro)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class HttpBroker:
    """A broker server process over HTTP (so tests can SIGKILL it)."""

    def __init__(self, db: Path, *extra: str, token: str = "test-token"):
        self.db, self.extra, self.token = db, extra, token
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/mcp"
        self.proc: subprocess.Popen | None = None

    def start(self) -> "HttpBroker":
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "quantlab.servers.broker", "--db", str(self.db), "--http", str(self.port),
             "--token", self.token, *self.extra], cwd=str(ROOT), stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, self.proc.stderr.read().decode()
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                return self
            time.sleep(0.05)
        raise TimeoutError("broker did not start")

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.wait(10)

    @contextlib.asynccontextmanager
    async def client(self, token: str | None = None):
        async with httpx2.AsyncClient(headers={"Authorization": f"Bearer {token or self.token}"}) as h:
            async with Client(streamable_http_client(self.url, http_client=h)) as c:
                yield c


@pytest.fixture
def http_broker(tmp_path):
    servers: list[HttpBroker] = []

    def make(db: Path | None = None, *extra: str) -> HttpBroker:
        b = HttpBroker(db or tmp_path / "broker.db", *extra).start()
        servers.append(b)
        return b

    yield make
    for b in servers:
        b.kill()


@pytest.fixture
def broker(tmp_path) -> Broker:
    """An in-process broker (no MCP) on a fresh database, netting, EURUSD + USDJPY + XAUUSD."""
    return Broker.open(str(tmp_path / "core.db"), symbols=["EURUSD", "USDJPY", "XAUUSD"], seed=11)


@pytest.fixture
def hedging(tmp_path) -> Broker:
    return Broker.open(str(tmp_path / "hedge.db"), symbols=["EURUSD"], seed=11, config=BrokerConfig(margin_mode="hedging"))
