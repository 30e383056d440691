"""``on_connect`` calls (run after every (re)connect, ``${VAR}`` read at connect time, never shown) and
unwrapping of ``{"result": ...}`` results, against the real test server over stdio."""
from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import pytest

from quantlab.client import AsyncMCPHub, ConnectError, MCPHub, ServerConfig, load_config

SECRET = "s3cret-pw"
SERVER = str(Path(__file__).with_name("login_server.py"))


def login_server():
    return {"command": sys.executable, "args": [SERVER]}


def _entry(_, *steps):
    return {**login_server(), "on_connect": [{"tool": t, "arguments": a} for t, a in steps]}


def test_on_connect_runs_after_every_reconnect_with_env_read_at_connect(stdio, monkeypatch):
    monkeypatch.setenv("QL_TEST_PW", "wrong-at-config-time")
    cfg = {"mcpServers": {"mt": _entry(stdio, ("login", {"login": 7, "password": "${QL_TEST_PW}", "server": "Demo"}))}}
    hub = MCPHub.from_config(cfg)
    try:
        monkeypatch.setenv("QL_TEST_PW", SECRET)  # read when connecting, not when configuring
        assert hub.call("mt", "logins") == 1
        pid = hub.call("mt", "pid")
        hub.call("mt", "logins")
        os.kill(pid, 9)
        with pytest.raises(Exception):
            hub.call("mt", "pid")
        assert hub.call("mt", "pid") != pid  # a new process ...
        assert hub.call("mt", "logins") == 1  # ... logged in again by on_connect
        shown = repr(hub) + str(hub.state()) + repr(hub.config) + hub._repr_html_()
        assert SECRET not in shown and "${QL_TEST_PW}" in repr(hub.config)
    finally:
        hub.close()


def test_failed_on_connect_is_a_connect_error_without_the_secret(stdio, monkeypatch):
    monkeypatch.setenv("QL_TEST_PW", "hunter2-wrong")
    cfg = {"mt": _entry(stdio, ("login", {"login": 7, "password": "${QL_TEST_PW}", "server": "Demo"}))}
    with MCPHub.from_config(cfg, max_retries=0) as hub:
        with pytest.raises(ConnectError) as info:
            hub.call("mt", "logins")
        text = str(info.value)
        assert "on_connect step 1 of 1 ('login')" in text and "QL_TEST_PW" in text
        assert "hunter2-wrong" not in text and "***" in text  # the server echoed it; we scrubbed it
        assert "hunter2-wrong" not in repr(hub) + str(hub.state()) + hub._repr_html_()


def test_on_connect_false_answer_and_missing_variable_and_unknown_tool(stdio, monkeypatch):
    monkeypatch.delenv("QL_TEST_MISSING", raising=False)
    cfg = {
        "falsy": _entry(stdio, ("login", {"login": 1, "password": "false", "server": "x"})),
        "missing": _entry(stdio, ("login", {"login": 1, "password": "${QL_TEST_MISSING}", "server": "x"})),
        "unknown": _entry(stdio, ("initialize", {"path": "C:/mt5"})),
    }
    with MCPHub.from_config(cfg, max_retries=0) as hub:
        with pytest.raises(ConnectError, match=r"answered False \(failure\)"):
            hub.call("falsy", "pid")
        with pytest.raises(ConnectError, match="environment variable QL_TEST_MISSING is not set"):
            hub.call("missing", "pid")
        with pytest.raises(ConnectError, match="has no tool 'initialize'"):
            hub.call("unknown", "pid")


def test_on_connect_config_is_validated_and_keeps_templates():
    with pytest.raises(ValueError, match=r"on_connect\[0\] must be"):
        load_config({"s": {"command": "x", "on_connect": [{"arguments": {}}]}})
    with pytest.raises(ValueError, match="'on_connect' must be a list"):
        load_config({"s": {"command": "x", "on_connect": {"tool": "initialize"}}})
    with pytest.raises(ValueError, match=r"unknown keys \['args'\]"):
        load_config({"s": {"command": "x", "on_connect": [{"tool": "t", "args": {}}]}})
    cfg = ServerConfig.from_entry("s", {"command": "x", "on_connect": [{"tool": "login", "arguments": {"password": "${PW}"}}]})
    assert cfg.to_entry()["on_connect"] == [{"tool": "login", "arguments": {"password": "${PW}"}}]
    assert cfg.on_connect[0].variables == ["PW"]


def test_results_wrapped_by_the_sdk_are_unwrapped_even_without_validation(stdio):
    async def main():
        async with AsyncMCPHub.from_config({"t": stdio(), "l": login_server()}, validate=False) as hub:
            return [await hub.call("l", "items", {"n": 3}), await hub.call("t", "add", {"a": 1, "b": 2}),
                    await hub.call("t", "stats", {"values": [1.0, 3.0]})]

    assert asyncio.run(main()) == [[0, 1, 2], 3, {"n": 2.0, "sum": 4.0, "mean": 2.0}]


def test_inherit_env_hands_named_variables_to_a_stdio_server_at_spawn(stdio, monkeypatch):
    monkeypatch.setenv("QL_TEST_INHERITED", "handed-down")
    monkeypatch.setenv("QL_TEST_NOT_LISTED", "kept-back")
    cfg = {"t": {**stdio(), "inherit_env": ["QL_TEST_INHERITED"]}}
    with MCPHub.from_config(cfg) as hub:
        assert hub.call("t", "getenv", {"name": "QL_TEST_INHERITED"}) == "handed-down"
        assert hub.call("t", "getenv", {"name": "QL_TEST_NOT_LISTED"}) == ""  # the environment stays scrubbed
        assert "handed-down" not in repr(hub.config) and hub.config["mcpServers"]["t"]["inherit_env"] == ["QL_TEST_INHERITED"]
    with pytest.raises(ValueError, match="'inherit_env' must be a list of environment variable names"):
        load_config({"s": {"command": "x", "inherit_env": "PW"}})
