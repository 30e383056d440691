"""Fixtures for the quantlab.client tests: real MCP servers over real stdio and HTTP on 127.0.0.1."""
from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

SERVER = str(Path(__file__).with_name("mcp_test_server.py"))


def stdio_entry(*extra: str) -> dict:
    """An ``mcpServers`` entry starting the test server over stdio."""
    return {"command": sys.executable, "args": [SERVER, *extra]}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class HttpServer:
    """The test server on streamable HTTP with a bearer-token check; start/stop at will."""

    token = "test-token-123"

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/mcp"
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, SERVER, "--http", str(self.port), "--token", self.token],
            stderr=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                if self.proc.poll() is not None:
                    raise RuntimeError("test HTTP server exited at start")
                time.sleep(0.05)
        raise RuntimeError("test HTTP server did not listen in time")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)

    def entry(self, token: str | None = "default") -> dict:
        token = self.token if token == "default" else token
        return {"url": self.url, "headers": {"Authorization": f"Bearer {token}"} if token else {}}


@pytest.fixture
def http_server():
    srv = HttpServer()
    srv.start()
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture
def stdio():
    """``stdio(*args)`` -> an ``mcpServers`` entry running the test server over stdio."""
    return stdio_entry
