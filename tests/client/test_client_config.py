"""Configuration: dict, JSON file, quantlab.toml, pyproject.toml [tool.quantlab]; backoff schedule."""
from __future__ import annotations

import json

import pytest

from quantlab.client import AsyncMCPHub, MCPHub, ServerConfig, backoff_delays, load_config

ENTRY = {"command": "python", "args": ["-m", "mcp_server_time"], "env": {"TZ": "UTC"}, "cwd": "/tmp"}


def test_dict_and_bare_mapping():
    a = load_config({"mcpServers": {"time": ENTRY, "api": {"url": "http://h:1/mcp", "headers": {"X": "1"}}}})
    b = load_config({"time": ENTRY})
    assert a["time"] == b["time"]
    assert a["time"].transport == "stdio" and a["time"].args == ("-m", "mcp_server_time")
    assert a["time"].env == {"TZ": "UTC"} and a["time"].cwd == "/tmp"
    assert a["api"].transport == "http" and a["api"].headers == {"X": "1"}
    assert AsyncMCPHub.from_config({"mcpServers": {"time": ENTRY}}).config == {"mcpServers": {"time": ENTRY}}


def test_json_file(tmp_path):
    p = tmp_path / "mcp.json"
    p.write_text(json.dumps({"mcpServers": {"time": ENTRY}}))
    assert AsyncMCPHub.from_config(p).server_names == ["time"]
    assert MCPHub.from_config(str(p)).server_names == ["time"]


def test_quantlab_toml_in_cwd(tmp_path, monkeypatch):
    (tmp_path / "quantlab.toml").write_text(
        '[mcpServers.time]\ncommand = "python"\nargs = ["-m", "mcp_server_time"]\n'
        '[mcpServers.remote]\nurl = "http://127.0.0.1:9/mcp"\nheaders = { Authorization = "Bearer ${QL_TEST_TOKEN}" }\n'
    )
    monkeypatch.setenv("QL_TEST_TOKEN", "s3cret")
    monkeypatch.chdir(tmp_path)
    cfg = load_config(None)
    assert list(cfg) == ["time", "remote"]
    assert cfg["remote"].headers["Authorization"] == "Bearer s3cret"


def test_pyproject_tool_quantlab(tmp_path, monkeypatch):
    (tmp_path / "pyproject.toml").write_text(
        '[project]\nname = "x"\n[tool.quantlab.mcpServers.time]\ncommand = "python"\nargs = ["-m", "mcp_server_time"]\n'
    )
    monkeypatch.chdir(tmp_path)
    assert AsyncMCPHub.from_config().server_names == ["time"]
    assert load_config(tmp_path / "pyproject.toml")["time"].command == "python"


def test_no_config_is_empty(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert AsyncMCPHub.from_config(None).server_names == []


@pytest.mark.parametrize(
    "entry, words",
    [
        ({"command": "x", "url": "http://h/mcp"}, ["exactly one", "'command'", "'url'"]),
        ({"args": ["a"]}, ["exactly one"]),
        ({"command": "x", "bogus": 1}, ["unknown keys", "bogus"]),
        ({"command": "x", "args": "-m foo"}, ["'args' must be a list"]),
    ],
)
def test_bad_entries_say_what_to_fix(entry, words):
    with pytest.raises(ValueError) as info:
        load_config({"mcpServers": {"s": entry}})
    for w in words:
        assert w in str(info.value)
    assert "'s'" in str(info.value)


def test_bad_json_file(tmp_path):
    p = tmp_path / "mcp.json"
    p.write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        load_config(p)
    with pytest.raises(FileNotFoundError, match="not found"):
        load_config(tmp_path / "missing.json")


def test_backoff_schedule_default_is_1_2_4_and_capped():
    assert backoff_delays() == [1.0, 2.0, 4.0]
    assert AsyncMCPHub().backoff_delays() == [1.0, 2.0, 4.0]
    assert AsyncMCPHub(max_retries=6).backoff_delays() == [1.0, 2.0, 4.0, 8.0, 8.0, 8.0]
    assert AsyncMCPHub(max_retries=2, backoff_base=0.1, backoff_cap=0.15).backoff_delays() == [0.1, 0.15]
    assert backoff_delays(0) == []


def test_server_config_roundtrip():
    c = ServerConfig.from_entry("t", ENTRY)
    assert c.target == "python -m mcp_server_time"
    assert ServerConfig.from_entry("t", c.to_entry()) == c
