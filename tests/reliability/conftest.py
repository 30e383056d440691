"""Fixtures for the reliability suite (issue 12): real processes, real Git, real servers on 127.0.0.1."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from quantlab import Strategy

HERE = Path(__file__).parent
SMA = '''
import pandas as pd

def signals(data, fast=10, slow=50):
    f = data.close.rolling(fast).mean()
    s = data.close.rolling(slow).mean()
    return (f > s).astype(float)
'''


@pytest.fixture(scope="session")
def strategy() -> Strategy:
    return Strategy.from_code(SMA, name="SMA cross")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def child_env(**extra: str) -> dict[str, str]:
    """The environment of a child python: it imports this quantlab (worktree or editable install)."""
    env = dict(os.environ)
    import quantlab

    root = str(Path(quantlab.__file__).resolve().parents[1])
    env["PYTHONPATH"] = os.pathsep.join([root, *[p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]])
    env.update(extra)
    return env


def run_script(script: str, *args: str, timeout: float = 180) -> subprocess.Popen:
    """Start ``python tests/reliability/<script> args...`` (stdout = JSON lines)."""
    return subprocess.Popen([sys.executable, str(HERE / script), *args], env=child_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finish(proc: subprocess.Popen, timeout: float = 240) -> dict:
    out, err = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, f"child failed ({proc.returncode}):\n{err[-3000:]}"
    return json.loads(out.strip().splitlines()[-1])


def wait_port(port: int, proc: subprocess.Popen, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited: {proc.stderr.read() if proc.stderr else ''}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise TimeoutError(f"nothing listens on {port}")


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


@pytest.fixture()
def http_broker(tmp_path):
    """A paper broker daemon over HTTP (token from a 0600 file), as `quantlab broker start` runs it."""
    port = free_port()
    db = tmp_path / "broker" / "broker.db"
    db.parent.mkdir()
    token_file = tmp_path / "broker" / "broker.token"
    proc = subprocess.Popen([sys.executable, "-m", "quantlab.servers.broker", "--db", str(db), "--http", str(port),
                             "--token-file", str(token_file)], env=child_env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        wait_port(port, proc)
        yield {"url": f"http://127.0.0.1:{port}/mcp", "token": token_file.read_text().strip(), "db": db,
               "token_file": token_file, "proc": proc}
    finally:
        stop(proc)
