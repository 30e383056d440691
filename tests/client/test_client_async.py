"""AsyncMCPHub against real servers: our test server (stdio + HTTP) and the third-party mcp-server-time."""
from __future__ import annotations

import asyncio
import builtins
import os
import signal
import sys
import time

import numpy as np
import pytest

from quantlab.client import (
    ArgumentsError,
    AsyncMCPHub,
    ClientError,
    ConnectError,
    ProtocolError,
    ServerNotFoundError,
    TimeoutError,
    ToolError,
    ToolNotFoundError,
    TransportError,
)

TIME = {"command": sys.executable, "args": ["-m", "mcp_server_time", "--local-timezone", "UTC"]}


def run(coro):
    return asyncio.run(coro)


def test_exception_hierarchy():
    assert issubclass(ConnectError, TransportError) and issubclass(TransportError, ClientError)
    assert issubclass(TimeoutError, ClientError) and issubclass(TimeoutError, builtins.TimeoutError)
    assert issubclass(ArgumentsError, ProtocolError) and issubclass(ArgumentsError, ValueError)
    assert issubclass(ToolError, ClientError) and issubclass(ProtocolError, ClientError)


def test_calls_results_errors_and_timeout_reuse(stdio):
    async def main():
        async with AsyncMCPHub.from_config({"t": stdio()}) as hub:
            # structured results as plain Python; the SDK's {"result": x} wrapper removed
            assert await hub.call("t", "add", {"a": 2, "b": 40}) == 42
            assert await hub.call("t", "stats", {"values": [1, 2, 3]}) == {"n": 3.0, "sum": 6.0, "mean": 2.0}
            assert await hub.call("t", "echo", {"text": "hé"}) == "hé"
            pid = await hub.call("t", "pid")
            # what notebooks pass around: numpy scalars and arrays become plain JSON values
            assert await hub.call("t", "add", {"a": np.int64(2), "b": np.int32(3)}) == 5
            assert (await hub.call("t", "stats", {"values": np.array([1.0, 3.0])}))["mean"] == 2.0

            with pytest.raises(ToolError) as info:
                await hub.call("t", "fail", {"message": "no data for XYZ"})
            assert info.value.server == "t" and info.value.tool == "fail"
            assert "no data for XYZ" in info.value.message

            with pytest.raises(ArgumentsError) as info:
                await hub.call("t", "add", {"a": "two", "b": 1})
            assert info.value.field == "a" and "'a'" in str(info.value) and "integer" in str(info.value)
            with pytest.raises(ArgumentsError) as info:
                await hub.call("t", "add", {"a": 1})
            assert info.value.field == "b" and "missing required argument 'b'" in str(info.value)
            with pytest.raises(ToolNotFoundError, match="Did you mean 'echo'"):
                await hub.call("t", "ecko", {"text": "x"})
            with pytest.raises(ServerNotFoundError, match="no MCP server named 'x'"):
                await hub.call("x", "echo", {})

            t0 = time.perf_counter()
            with pytest.raises(TimeoutError) as info:
                await hub.call("t", "sleep", {"seconds": 5}, timeout=0.3)
            assert 0.25 < time.perf_counter() - t0 < 2.0
            e = info.value
            assert (e.server, e.tool, e.limit) == ("t", "sleep", 0.3)
            assert "'sleep'" in str(e) and "'t'" in str(e) and "0.3 s" in str(e)
            # the same connection (same process) keeps working after the timeout
            assert await hub.call("t", "echo", {"text": "still here"}) == "still here"
            assert await hub.call("t", "pid") == pid

            st = hub.state()
            s = st["servers"]["t"]
            assert st["invocation_count"] == 10  # arguments errors and unknown tools never reach the server
            assert s["status"] == "connected" and s["transport"] == "stdio" and s["tools"] == 7
            assert s["calls"] == 10 and s["errors"] == 5 and s["pid"] == pid
            assert s["median_latency_ms"] > 0 and s["connected_at"] and st["last_activity"]
            assert "test server starting" in hub.stderr("t") and "no data for XYZ" in hub.stderr("t")
            assert "did not answer within 0.3 s" in s["last_error"]
            tools = {t["name"]: t for t in await hub.tools("t")}
            assert tools["add"]["input_schema"]["required"] == ["a", "b"] and tools["add"]["description"] == "Add two integers."
            assert 0 < await hub.ping("t") < 1000
        assert hub.state()["servers"]["t"]["status"] == "disconnected"

    run(main())


def test_killed_server_fails_clearly_then_reconnects(stdio):
    async def main():
        async with AsyncMCPHub.from_config({"t": stdio()}, backoff_base=0.05) as hub:
            pid = await hub.call("t", "pid")
            os.kill(pid, signal.SIGKILL)
            await asyncio.sleep(0.1)
            with pytest.raises(TransportError) as info:
                await hub.call("t", "echo", {"text": "x"})
            assert not isinstance(info.value, ConnectError)
            assert "'t'" in str(info.value) and "reconnects" in str(info.value)
            assert hub.state()["servers"]["t"]["status"] == "dead"
            assert await hub.call("t", "echo", {"text": "back"}) == "back"
            assert await hub.call("t", "pid") != pid
            assert hub.state()["servers"]["t"]["status"] == "connected"

    run(main())


def test_connect_retries_with_backoff_and_reports_stderr(stdio):
    async def main():
        hub = AsyncMCPHub.from_config({"bad": stdio("--fail-start", "no API key set")}, backoff_base=0.1, backoff_cap=0.25)
        assert hub.backoff_delays() == [0.1, 0.2, 0.25]
        t0 = time.perf_counter()
        with pytest.raises(ConnectError) as info:
            await hub.connect("bad")
        elapsed = time.perf_counter() - t0
        e = info.value
        assert e.attempts == 4 and e.server == "bad"
        assert elapsed >= 0.55  # 0.1 + 0.2 + 0.25 of waiting between the 4 attempts
        msg = str(e)
        assert "'bad'" in msg and "mcp_test_server.py --fail-start" in msg and "after 4 attempts" in msg
        assert "fatal: no API key set" in msg and "fatal: no API key set" in e.stderr
        assert e.cause is not None
        # a command that does not exist: one retry, then the OS error as the cause
        hub.add_server("nocmd", {"command": "quantlab-no-such-command"})
        with pytest.raises(ConnectError, match="quantlab-no-such-command.*after 2 attempts.*FileNotFoundError"):
            await hub.connect("nocmd", max_retries=1)
        await hub.close()

    run(main())


def test_connect_all_one_bad_server_hides_nothing(stdio):
    async def main():
        cfg = {"good": stdio(), "bad": stdio("--fail-start", "boom"), "time": TIME, "nocmd": {"command": "ql-no-such-cmd"}}
        async with AsyncMCPHub.from_config(cfg, max_retries=0) as hub:
            report = await hub.connect_all()
            assert report.ok == ["good", "time"] and report.failed == ["bad", "nocmd"]
            assert isinstance(report["bad"].error, ConnectError) and "fatal: boom" in str(report["bad"].error)
            assert len(report["good"].tools) == 7
            assert "bad" in repr(report) and "<table" in report._repr_html_()
            with pytest.raises(ConnectError) as info:
                report.raise_for_errors()
            assert "2 of 4" in str(info.value) and "fatal: boom" in str(info.value) and "ql-no-such-cmd" in str(info.value)
            assert await hub.call("good", "add", {"a": 1, "b": 1}) == 2
            assert hub.state()["servers"]["bad"]["status"] == "failed"
            assert {t["server"] for t in await hub.tools()} == {"good", "time"}

    run(main())


def test_third_party_mcp_server_time():
    async def main():
        async with AsyncMCPHub.from_config({"mcpServers": {"time": TIME}}) as hub:
            now = await hub.call("time", "get_current_time", {"timezone": "Asia/Tokyo"})
            assert now["timezone"] == "Asia/Tokyo" and now["datetime"].startswith("20")
            conv = await hub.call(
                "time", "convert_time", {"source_timezone": "UTC", "time": "12:00", "target_timezone": "Europe/Paris"}
            )
            assert conv["source"]["timezone"] == "UTC" and conv["target"]["timezone"] == "Europe/Paris"
            with pytest.raises(ToolError, match="Invalid timezone|timezone"):
                await hub.call("time", "get_current_time", {"timezone": "Mars/Olympus"})
            with pytest.raises(ArgumentsError) as info:
                await hub.call("time", "get_current_time", {})
            assert info.value.field == "timezone"

    run(main())


def test_http_with_bearer_token_and_server_restart(http_server):
    async def main():
        cfg = {"api": http_server.entry(), "anon": http_server.entry(token=None)}
        async with AsyncMCPHub.from_config(cfg, max_retries=1, backoff_base=0.05) as hub:
            report = await hub.connect_all()
            assert report.ok == ["api"] and report.failed == ["anon"]
            assert http_server.url in str(report["anon"].error)
            assert await hub.call("api", "add", {"a": 20, "b": 22}) == 42
            assert hub.state()["servers"]["api"]["transport"] == "http"
            http_server.stop()  # HTTP gone
            with pytest.raises(TransportError):
                await hub.call("api", "echo", {"text": "x"}, timeout=5)
            http_server.start()
            assert await hub.call("api", "echo", {"text": "again"}) == "again"

    run(main())


def test_connect_timeout_kills_the_slow_server(stdio):
    import psutil

    async def main():
        hub = AsyncMCPHub.from_config({"slow": stdio("--start-delay", "30")}, max_retries=0, connect_timeout=0.5)
        t0 = time.perf_counter()
        with pytest.raises(ConnectError, match=r"'slow'.*no answer to initialize within 0.5 s"):
            await hub.connect("slow")
        assert time.perf_counter() - t0 < 6
        await hub.close()

    before = {c.pid for c in psutil.Process().children(recursive=True)}
    run(main())
    left = [c for c in psutil.Process().children(recursive=True) if c.pid not in before and c.status() != psutil.STATUS_ZOMBIE]
    assert not left, left


def test_env_and_pluggable_transport(stdio, monkeypatch):
    from quantlab.client import StdioTransport, register_transport
    from quantlab.client import _transports

    class Stamped(StdioTransport):
        kind = "stamped-stdio"

        def _env(self):
            return {**super()._env(), "QL_STAMP": "from-custom-transport"}

    monkeypatch.setitem(_transports._REGISTRY, "stamped-stdio", Stamped)
    register_transport("stamped-stdio", Stamped)

    async def main():
        cfg = {"plain": {**stdio(), "env": {"QL_FROM_CONFIG": "yes"}}, "custom": {**stdio(), "transport": "stamped-stdio"}}
        async with AsyncMCPHub.from_config(cfg) as hub:
            assert hub.config["mcpServers"]["custom"]["transport"] == "stamped-stdio"
            assert await hub.call("plain", "getenv", {"name": "QL_FROM_CONFIG"}) == "yes"
            assert await hub.call("plain", "getenv", {"name": "QL_STAMP"}) == ""
            assert await hub.call("custom", "getenv", {"name": "QL_STAMP"}) == "from-custom-transport"
            assert hub.state()["servers"]["custom"]["transport"] == "stamped-stdio"

    run(main())
