"""The `quantlab` command, run as a user runs it (a real subprocess, real servers, a real hub)."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

SMA = """
def signals(data, fast=10, slow=50):
    f = data.close.rolling(fast).mean()
    s = data.close.rolling(slow).mean()
    return (f > s).astype(float)
"""


def ql(*args: str, cwd, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, "-m", "quantlab", *args], cwd=cwd, capture_output=True, text=True, timeout=180)
    if check and proc.returncode != 0:
        raise AssertionError(f"quantlab {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc


SUBCOMMANDS = ["demo", "servers", "backtest", "generate", "broker", "hub", "deploy", "deployments", "stop", "report"]


def test_top_level_help_lists_the_subcommands_in_order(tmp_path):
    out = ql("--help", cwd=tmp_path).stdout
    listed = [line.split()[0] for line in out.split("COMMAND\n", 1)[1].split("\n\n")[0].splitlines()
              if line.startswith("    ") and not line.startswith("     ")]
    assert len(listed) == len(set(listed))
    assert [c for c in listed if c in SUBCOMMANDS] == SUBCOMMANDS  # every one of them, in the documented order


@pytest.mark.parametrize("command, options", [
    ("servers", ["--config"]), ("backtest", ["--param", "--json", "--server"]), ("broker", ["start", "stop", "status"]),
    ("hub", ["list", "show", "log"]), ("deploy", ["--force", "--symbol"]), ("deployments", ["--json"]),
    ("stop", ["deployment_id"]), ("demo", ["--out"]), ("report", ["--many", "--executor"]), ("generate", ["--json"]),
])
def test_every_subcommand_has_its_own_help(command, options, tmp_path):
    text = ql(command, "--help", cwd=tmp_path).stdout
    assert text.startswith(f"usage: quantlab {command} ")
    for option in options:
        assert option in text, f"quantlab {command} --help does not mention {option}"


def test_a_subcommand_that_fails_to_import_is_an_error_not_a_missing_command(monkeypatch):
    import quantlab.cli as cli

    monkeypatch.setattr(cli, "COMMANDS", [*cli.COMMANDS, "no_such_command"])
    with pytest.raises(ModuleNotFoundError, match="quantlab.cli.no_such_command"):
        cli.build_parser()


def test_backtest_prints_metrics_and_json(tmp_path):
    (tmp_path / "sma.py").write_text(SMA)
    out = json.loads(ql("backtest", "sma.py", "-p", "fast", "5", "--json", cwd=tmp_path).stdout)
    assert out["params"] == {"fast": 5, "slow": 50}
    assert out["metrics"]["trades"] > 0
    text = ql("backtest", "sma.py", cwd=tmp_path).stdout
    assert text.startswith("BacktestResult(name='sma'")


def test_missing_strategy_file_is_one_readable_line(tmp_path):
    proc = ql("backtest", "nope.py", cwd=tmp_path, check=False)
    assert proc.returncode == 1
    assert proc.stderr.strip() == (
        "quantlab backtest: error: strategy file not found: nope.py (give the path to a .py file that defines `signals`).")


def test_deploy_list_stop_cycle(tmp_path):
    (tmp_path / "sma.py").write_text(SMA)
    refused = ql("deploy", "sma.py", "-p", "fast", "3", "-p", "slow", "7", "--fees", "0.01", cwd=tmp_path, check=False)
    assert refused.returncode == 1 and "fails the deployment policy" in refused.stderr and "--force" in refused.stderr
    out = ql("deploy", "sma.py", "--force", "--symbol", "GBPUSD", cwd=tmp_path).stdout
    assert "deployed 'sma' on GBPUSD: deployment 1, status running" in out
    rows = json.loads(ql("deployments", "--json", cwd=tmp_path).stdout)
    assert [(r["deployment_id"], r["status"], r["symbol"]) for r in rows] == [("1", "running", "GBPUSD")]
    assert "deployment 1: stopped" in ql("stop", "1", cwd=tmp_path).stdout
    rows = json.loads(ql("deployments", "--json", cwd=tmp_path).stdout)
    assert rows[0]["status"] == "stopped"
    log = ql("hub", "log", cwd=tmp_path).stdout
    assert "Strategy: sma" in log and "stopped" in log
