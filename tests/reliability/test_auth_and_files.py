"""Nobody in who should not be: HTTP servers need a token (not only from argv), daemon files are 0600,
and `quantlab broker stop` never signals a process that is not the broker."""
from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import time

import httpx
import pytest

from quantlab.cli import broker as broker_cli

from .conftest import child_env, free_port, stop, wait_port

INIT = {"jsonrpc": "2.0", "id": 1, "method": "initialize",
        "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "0"}}}
HEADERS = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}


def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def _post(url: str, token: str | None) -> int:
    headers = dict(HEADERS)
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    return httpx.post(url, json=INIT, headers=headers, timeout=30).status_code


def _backtest_server(tmp_path, *extra, env=None):
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "quantlab.servers.backtest", "--runs", str(tmp_path / "runs"),
                             "--workers", "1", "--http", str(port), *extra], env=child_env(**(env or {})),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    wait_port(port, proc)
    return proc, f"http://127.0.0.1:{port}/mcp"


def test_backtest_server_over_http_without_a_token_generates_one_and_refuses_strangers(tmp_path):
    proc, url = _backtest_server(tmp_path)
    try:
        token_file = tmp_path / "runs" / "backtest.token"
        assert _mode(token_file) == 0o600
        token = token_file.read_text().strip()
        assert _post(url, None) == 401  # before: anyone could run code
        assert _post(url, "wrong") == 401
        assert _post(url, token) == 200
    finally:
        stop(proc)


def test_backtest_server_token_from_environment_or_file(tmp_path):
    proc, url = _backtest_server(tmp_path, env={"QUANTLAB_BACKTEST_TOKEN": "from-the-env"})
    try:
        assert _post(url, "from-the-env") == 200 and _post(url, None) == 401
    finally:
        stop(proc)
    (tmp_path / "t").write_text("from-a-file\n")
    proc, url = _backtest_server(tmp_path, "--token-file", str(tmp_path / "t"))
    try:
        assert _post(url, "from-a-file") == 200 and _post(url, "from-the-env") == 401
    finally:
        stop(proc)


def test_broker_files_are_private(http_broker):
    db = http_broker["db"]
    assert _mode(http_broker["token_file"]) == 0o600
    assert _post(http_broker["url"], None) == 401 and _post(http_broker["url"], http_broker["token"]) == 200
    assert _mode(db) == 0o600
    for suffix in ("-wal", "-shm"):
        if os.path.exists(f"{db}{suffix}"):
            assert _mode(f"{db}{suffix}") == 0o600


def test_broker_daemon_state_files_are_private_and_stop_checks_the_pid(tmp_path):
    home = tmp_path / "home"
    st = broker_cli.start(home)
    try:
        for name in ("broker.json", "broker.pid", "broker.log", "broker.token", "broker.db"):
            assert _mode(home / name) == 0o600, name
    finally:
        assert broker_cli.stop(home)["stopped"]
    # a stale broker.json whose pid now belongs to an unrelated program
    victim = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        stale = {**st, "pid": victim.pid}
        (home / "broker.json").write_text(json.dumps(stale))
        out = broker_cli.stop(home)
        assert out["stopped"] is False and out["stale"] is True
        time.sleep(0.2)
        assert victim.poll() is None  # before: SIGTERM, then SIGKILL, to whatever had that pid
        assert broker_cli.status(home)["running"] is False
    finally:
        victim.kill()
        victim.wait()


@pytest.mark.parametrize("cmd", [["broker", "stop"]])
def test_cli_stop_with_a_stale_state_file_says_so(tmp_path, cmd):
    home = tmp_path / "home"
    home.mkdir()
    victim = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (home / "broker.json").write_text(json.dumps({"pid": victim.pid, "port": 1, "db": str(home / "broker.db")}))
        out = subprocess.run([sys.executable, "-m", "quantlab", *cmd, "--home", str(home)], env=child_env(),
                             capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        assert f"pid {victim.pid}" in out.stdout and "left alone" in out.stdout
        assert victim.poll() is None
    finally:
        victim.kill()
        victim.wait()
