"""MCPHub (the blocking face): threads, Ctrl-C, running loops, plain scripts, no orphan processes."""
from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import textwrap
import threading
import time

import psutil
import pytest

from quantlab.client import AsyncMCPHub, ConnectError, MCPHub, ToolError

HERE = os.path.dirname(__file__)


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _mcp_children() -> list[psutil.Process]:
    out = []
    for c in psutil.Process().children(recursive=True):
        try:
            if "QUANTLAB_MCP_CHILD" in c.environ() and c.status() != psutil.STATUS_ZOMBIE:
                out.append(c)
        except psutil.Error:
            pass
    return out


def test_sync_hub_eight_threads_and_no_orphans(stdio):
    before = {p.pid for p in _mcp_children()}
    with MCPHub.from_config({"a": stdio(), "b": stdio()}) as hub:
        report = hub.connect_all()
        assert report.ok == ["a", "b"]
        pids = [hub.call("a", "pid"), hub.call("b", "pid")]
        assert all(_alive(p) for p in pids)
        results: dict[int, list] = {}
        errors: list[BaseException] = []

        def worker(i: int) -> None:
            try:
                results[i] = [hub.call("ab"[(i + k) % 2], "add", {"a": i, "b": k}) for k in range(25)]
            except BaseException as exc:  # noqa: BLE001
                errors.append(exc)

        threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        assert not errors
        assert results == {i: [i + k for k in range(25)] for i in range(8)}
        st = hub.state()
        assert st["invocation_count"] == 2 + 8 * 25
        assert st["servers"]["a"]["calls"] + st["servers"]["b"]["calls"] == 202
        text, html = repr(hub), hub._repr_html_()
        for s in ("MCPHub", "a", "b", "add", "echo", "stats", "connected"):
            assert s in text and s in html
        assert "<table" in html
    assert hub.closed
    assert not any(_alive(p) for p in pids)
    assert {p.pid for p in _mcp_children()} <= before
    with pytest.raises(RuntimeError, match="closed"):
        hub.call("a", "pid")


def test_sync_errors_timeouts_and_interrupt_safe_wait(stdio):
    hub = MCPHub.from_config({"t": stdio()}, max_retries=0)
    try:
        with pytest.raises(ToolError, match="kaput"):
            hub.call("t", "fail", {"message": "kaput"})
        with pytest.raises(TimeoutError):  # builtins.TimeoutError catches ours too
            hub.call("t", "sleep", {"seconds": 3}, timeout=0.2)
        assert hub.call("t", "echo", {"text": "ok"}) == "ok"
        # run()/submit()/aio: coroutines on the hub's own loop (the API quantlab.Lab builds on)
        async def two_calls():
            return await asyncio.gather(hub.aio.call("t", "add", {"a": 1, "b": 2}), hub.aio.call("t", "echo", {"text": "z"}))

        assert hub.run(two_calls()) == [3, "z"]
        fut = hub.submit(hub.aio.call("t", "add", {"a": 5, "b": 5}))
        assert fut.result(10) == 10
        with pytest.raises(TimeoutError):
            hub.run(asyncio.sleep(5), timeout=0.1)
        assert hub.aio.server_names == ["t"] and isinstance(hub.aio, AsyncMCPHub)
        assert hub.config == {"mcpServers": {"t": stdio()}}
    finally:
        hub.close()


def test_sync_hub_inside_a_running_event_loop(stdio):
    """What a Jupyter cell does: call the blocking face while the caller's own loop runs."""

    async def cell():
        assert asyncio.get_running_loop().is_running()
        with MCPHub.from_config({"t": stdio()}) as hub:
            return hub.call("t", "add", {"a": 1, "b": 2}), hub.call("t", "echo", {"text": "in loop"})

    assert asyncio.run(cell()) == (3, "in loop")


SCRIPT = textwrap.dedent(
    """
    import os, signal, sys, threading, time, json
    from quantlab.client import MCPHub
    cfg = {"t": {"command": sys.executable, "args": [sys.argv[1]]}}
    hub = MCPHub.from_config(cfg)
    pid = hub.call("t", "pid")
    threading.Timer(0.4, os.kill, (os.getpid(), signal.SIGINT)).start()
    t0 = time.perf_counter()
    try:
        hub.call("t", "sleep", {"seconds": 20})
        interrupted = False
    except KeyboardInterrupt:
        interrupted = True
    waited = time.perf_counter() - t0
    after = hub.call("t", "echo", {"text": "usable"})
    same = hub.call("t", "pid") == pid
    print(json.dumps({"pid": pid, "interrupted": interrupted, "waited": waited, "after": after, "same": same}), flush=True)
    # exit WITHOUT hub.close(): the child must still not outlive this script
    """
)


def test_plain_script_ctrl_c_leaves_hub_usable_and_exit_kills_children():
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT, os.path.join(HERE, "mcp_test_server.py")],
        capture_output=True, text=True, timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["interrupted"] and out["waited"] < 3.0
    assert out["after"] == "usable" and out["same"]
    deadline = time.monotonic() + 3
    while _alive(out["pid"]) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(out["pid"]), "the stdio server outlived the script"


def test_sync_connect_error_is_raised_in_caller_thread(stdio):
    with MCPHub.from_config({"bad": stdio("--fail-start", "bad config")}, max_retries=1, backoff_base=0.01) as hub:
        with pytest.raises(ConnectError, match="fatal: bad config"):
            hub.connect("bad")
        assert hub.state()["servers"]["bad"]["status"] == "failed"


def test_children_exit_when_the_parent_is_killed_hard():
    """A kernel killed with SIGKILL runs no atexit; its stdio servers still go (stdin closes)."""
    script = textwrap.dedent(
        """
        import sys, time
        from quantlab.client import MCPHub
        hub = MCPHub.from_config({"t": {"command": sys.executable, "args": [sys.argv[1]]}})
        print(hub.call("t", "pid"), flush=True)
        time.sleep(60)
        """
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", script, os.path.join(HERE, "mcp_test_server.py")], stdout=subprocess.PIPE, text=True
    )
    try:
        child = int(proc.stdout.readline())
        assert _alive(child)
        proc.kill()
        proc.wait(10)
        deadline = time.monotonic() + 5
        while _alive(child) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not _alive(child), "the stdio server outlived its killed parent"
    finally:
        proc.kill()
        proc.stdout.close()
