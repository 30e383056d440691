"""`quantlab hub list|show|log` against a real hub."""
from __future__ import annotations

import json
import subprocess
import sys

from quantlab.cli import main


def test_list_show_log(hub, strategy, result, capsys):
    stored = hub.store(strategy, result)
    hub.record_deployment({"strategy_name": stored.name, "status": "pending", "commit": stored.commit})
    assert main(["hub", "list", "--hub", str(hub.path)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split()[:3] == ["NAME", "COMMIT", "DATE"]
    assert out[1].startswith("SMA cross") and stored.commit[:12] in out[1] and stored.file in out[1]

    assert main(["hub", "show", "SMA cross", "--hub", str(hub.path)]) == 0
    out = capsys.readouterr().out
    assert f"commit     {stored.commit}" in out and "def signals(data, fast=5, slow=20):" in out
    assert main(["hub", "show", stored.commit[:10], "--hub", str(hub.path), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["code_sha256"] == strategy.sha256

    assert main(["hub", "log", "--hub", str(hub.path), "-n", "2"]) == 0
    header, *lines = capsys.readouterr().out.splitlines()
    assert header.split() == ["COMMIT", "DATE", "KIND", "SUBJECT"]
    assert len(lines) == 2 and "deployment" in lines[0] and "Strategy: SMA cross" in lines[1]
    assert all(len(line.split()[0]) == 7 for line in lines)  # short SHAs

    assert main(["hub", "list", "--hub", str(hub.path), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)[0]["name"] == "SMA cross"


def test_errors_and_help(tmp_path, hub, capsys):
    assert main(["hub", "list", "--hub", str(tmp_path / "missing")]) == 1
    assert "no assets hub at" in capsys.readouterr().err
    assert not (tmp_path / "missing").exists()
    assert main(["hub", "show", "nothing", "--hub", str(hub.path)]) == 1
    assert "no stored strategy matches 'nothing'" in capsys.readouterr().err
    assert main(["hub", "list", "--hub", str(hub.path)]) == 0
    assert "no strategies stored" in capsys.readouterr().out
    help_text = subprocess.run([sys.executable, "-m", "quantlab", "hub", "--help"], capture_output=True, text=True).stdout
    assert "list" in help_text and "show" in help_text and "log" in help_text
    assert main(["hub"]) == 0 and "ACTION" in capsys.readouterr().out
