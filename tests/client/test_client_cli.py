"""``quantlab servers``: table and JSON, a failed server shown clearly, --help."""
from __future__ import annotations

import json

import pytest

from quantlab.cli import main


def test_servers_json_with_a_failing_server(tmp_path, stdio, capsys):
    cfg = tmp_path / "mcp.json"
    cfg.write_text(json.dumps({"mcpServers": {"good": stdio(), "broken": stdio("--fail-start", "port in use")}}))
    assert main(["servers", "--config", str(cfg), "--json"]) == 1
    rows = {r["server"]: r for r in json.loads(capsys.readouterr().out)}
    good, broken = rows["good"], rows["broken"]
    assert good["ok"] and good["tools"] == ["add", "echo", "fail", "getenv", "pid", "sleep", "stats"]
    assert 0 < good["latency_ms"] < 1000 and good["transport"] == "stdio"
    assert not broken["ok"] and "fatal: port in use" in broken["error"] and "'broken'" in broken["error"]


def test_servers_table(tmp_path, stdio, capsys, monkeypatch):
    (tmp_path / "quantlab.toml").write_text(
        "[mcpServers.t]\ncommand = " + json.dumps(stdio()["command"]) + "\nargs = " + json.dumps(stdio()["args"]) + "\n"
    )
    monkeypatch.chdir(tmp_path)
    assert main(["servers"]) == 0
    out, err = capsys.readouterr()
    assert "quantlab.toml" in err
    assert "latency ms" in out and "add, echo, fail, getenv, pid, sleep, stats" in out and " ok " in out


def test_servers_help(capsys):
    with pytest.raises(SystemExit) as info:
        main(["servers", "--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    assert "--config" in out and "--json" in out and "ping" in out
