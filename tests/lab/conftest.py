"""Fixtures for the workflow tests: a real Lab on the embedded servers, in a temp hub."""
from __future__ import annotations

import socket
import subprocess
import sys
import time

import pytest

from quantlab import Lab, Strategy

SMA = '''
import pandas as pd

def signals(data, fast=10, slow=50):
    f = data.close.rolling(fast).mean()
    s = data.close.rolling(slow).mean()
    return (f > s).astype(float)
'''


@pytest.fixture(scope="module")
def strategy() -> Strategy:
    return Strategy.from_code(SMA, name="SMA cross")


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    hub = tmp_path_factory.mktemp("lab") / "assets-hub"
    with Lab.start(hub, progress=False) as lab:
        yield lab


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_http_broker(db, port: int, token: str) -> subprocess.Popen:
    """Start the broker as an HTTP daemon on 127.0.0.1:port and wait until it accepts connections."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "quantlab.servers.broker", "--db", str(db), "--http", str(port), "--token", token],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(proc.stderr.read().decode())
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return proc
        time.sleep(0.1)
    proc.kill()
    raise TimeoutError("broker did not start")
