"""The `quantlab` command, run as a user runs it (a real subprocess, real servers, a real hub)."""
from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest

from quantlab.engine.costs import DEFAULT_CASH, DEFAULT_FEES, DEFAULT_SLIPPAGE

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
    assert out["costs"] == {"cash": DEFAULT_CASH, "fees": DEFAULT_FEES, "slippage": DEFAULT_SLIPPAGE}
    text = ql("backtest", "sma.py", "--fees", "0.0002", cwd=tmp_path).stdout
    lines = text.splitlines()
    parsed = [re.match(r"^(\S.*?)  +(\S.*)$", line) for line in lines]
    assert all(parsed), text
    assert len({m.start(2) for m in parsed}) == 1  # one column for the values: aligned labels
    rows = {m.group(1): m.group(2) for m in parsed}
    assert list(rows)[:2] == ["Strategy", "Params"]
    assert rows["Strategy"] == "sma" and rows["Params"] == "fast=10, slow=50" and rows["Data"] == "sample"
    assert rows["Costs"] == "fees 0.02%, slippage 0%, cash 100,000"
    assert rows["Bars"] == "4,000" and rows["# Trades"].isdigit() and len(rows["Run id"]) == 16
    assert float(rows["Return [%]"]) == pytest.approx(100 * json.loads(ql(
        "backtest", "sma.py", "--fees", "0.0002", "--json", cwd=tmp_path).stdout)["metrics"]["total_return"], abs=0.006)
    assert "BacktestResult(" not in text and "{" not in text


def test_one_costs_default_one_sharpe_in_the_engine_the_cli_the_server_and_the_report(tmp_path):
    """The same strategy, no costs given anywhere: every face charges the engine's one default."""
    from quantlab.engine import backtest, data
    from quantlab.engine.strategy import Strategy

    assert DEFAULT_FEES > 0   # a Sharpe ratio quoted by default has costs in it
    (tmp_path / "sma.py").write_text(SMA)
    engine = backtest(data.sample(), Strategy.from_file(tmp_path / "sma.py"))
    cli = json.loads(ql("backtest", "sma.py", "--json", cwd=tmp_path).stdout)
    server = json.loads(ql("backtest", "sma.py", "--server", "--json", cwd=tmp_path).stdout)
    ql("report", "--strategy", "sma.py", "-o", "sma-report.ipynb", "-q", cwd=tmp_path)
    report = json.loads((tmp_path / "sma-report.json").read_text())
    assert engine.costs["fees"] == cli["costs"]["fees"] == server["costs"]["fees"] == DEFAULT_FEES
    assert cli["metrics"]["sharpe"] == pytest.approx(engine.metrics["sharpe"], rel=1e-12)
    assert server["metrics"]["sharpe"] == pytest.approx(engine.metrics["sharpe"], rel=1e-12)
    assert report["metrics"]["sharpe"] == pytest.approx(engine.metrics["sharpe"], rel=1e-12)
    frictionless = backtest(data.sample(), Strategy.from_file(tmp_path / "sma.py"), fees=0.0)
    assert frictionless.metrics["sharpe"] > engine.metrics["sharpe"]   # the default really charges something
    assert f"fees {DEFAULT_FEES:.2%} of traded notional" in (tmp_path / "sma-report.html").read_text()  # shown first


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


BAD = "def signals(data):\n    x = 1\n    return data['Close']\n"


@pytest.mark.parametrize("server", [False, True])
def test_a_strategy_that_raises_names_itself_its_exception_and_its_line(tmp_path, server):
    (tmp_path / "bad.py").write_text(BAD)
    proc = ql("backtest", "bad.py", *(["--server"] if server else []), cwd=tmp_path, check=False)
    assert proc.returncode == 1 and proc.stdout == ""
    assert proc.stderr.strip() == ("quantlab backtest: error: strategy 'bad' raised KeyError: 'Close' "
                                   "(bad.py line 3: return data['Close'])")


def test_a_custom_exception_keeps_its_message_and_line(tmp_path):
    (tmp_path / "boom.py").write_text("def signals(data):\n    raise RuntimeError('my custom boom')\n")
    err = ql("backtest", "boom.py", cwd=tmp_path, check=False).stderr.strip()
    assert err == ("quantlab backtest: error: strategy 'boom' raised RuntimeError: my custom boom "
                   "(boom.py line 2: raise RuntimeError('my custom boom'))")


def test_a_parameter_of_the_wrong_type_is_refused_before_the_backtest(tmp_path):
    (tmp_path / "sma.py").write_text(SMA)
    proc = ql("backtest", "sma.py", "-p", "fast", "abc", cwd=tmp_path, check=False)
    assert proc.returncode == 1
    assert proc.stderr.strip() == ("quantlab backtest: error: bad parameter -p fast abc: strategy 'sma' expects a whole "
                                   "number for 'fast' (default 10), got the text 'abc'.")
    half = ql("backtest", "sma.py", "-p", "slow", "7.5", cwd=tmp_path, check=False)
    assert "bad parameter -p slow 7.5: strategy 'sma' expects a whole number for 'slow' (default 50), got 7.5." in half.stderr


@pytest.mark.parametrize("option, value", [("--fees", "-1"), ("--slippage", "abc")])
def test_costs_are_checked_in_the_users_words(tmp_path, option, value):
    (tmp_path / "sma.py").write_text(SMA)
    proc = ql("backtest", "sma.py", option, value, cwd=tmp_path, check=False)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    name = option.lstrip("-")
    assert f"argument {option}: {name} must be" in proc.stderr and "0.0002 = 0.02%" in proc.stderr


@pytest.mark.parametrize("suffix", ["csv", "parquet"])
def test_data_from_a_local_file_in_process_and_through_the_server(tmp_path, suffix):
    from quantlab.engine.data import sample

    (tmp_path / "sma.py").write_text(SMA)
    frame = sample().iloc[:1500] * 1.0
    if suffix == "csv":
        frame.rename_axis("time").reset_index().to_csv(tmp_path / "bars.csv", index=False)
    else:
        frame.to_parquet(tmp_path / "bars.parquet")
    local = json.loads(ql("backtest", "sma.py", "--data", f"bars.{suffix}", "--json", cwd=tmp_path).stdout)
    remote = json.loads(ql("backtest", "sma.py", "--data", f"bars.{suffix}", "--server", "--json", cwd=tmp_path).stdout)
    on_sample = json.loads(ql("backtest", "sma.py", "--json", cwd=tmp_path).stdout)
    assert local["metrics"] == pytest.approx(remote["metrics"], rel=1e-9)
    assert local["metrics"]["trades"] != on_sample["metrics"]["trades"]  # it read the file, not the sample


def test_a_missing_data_file_is_one_readable_line(tmp_path):
    (tmp_path / "sma.py").write_text(SMA)
    proc = ql("backtest", "sma.py", "--data", "nope.csv", cwd=tmp_path, check=False)
    assert proc.returncode == 1 and len(proc.stderr.strip().splitlines()) == 1 and "nope.csv" in proc.stderr


@pytest.mark.parametrize("command", [[c] for c in SUBCOMMANDS] + [["hub", "log"], ["broker", "start"]])
def test_help_texts_have_no_raw_rst(command, tmp_path):
    text = ql(*command, "--help", cwd=tmp_path).stdout
    assert text.startswith("usage: quantlab ")
    assert "``" not in text and not re.search(r":[a-z]+:`", text), text


def test_hub_log_shows_short_shas_and_left_aligned_subjects(tmp_path):
    import subprocess as sp

    (tmp_path / "sma.py").write_text(SMA)
    ql("deploy", "sma.py", "--force", cwd=tmp_path)  # stores the strategy, then deploys it
    lines = ql("hub", "log", cwd=tmp_path).stdout.splitlines()
    assert lines[0].split() == ["COMMIT", "DATE", "KIND", "SUBJECT"]
    subject_col = lines[0].index("SUBJECT")
    full = sp.run(["git", "-C", str(tmp_path / "assets-hub"), "log", "--format=%H %s"], capture_output=True, text=True,
                  check=True).stdout.splitlines()
    assert len(lines) == 1 + len(full) >= 3
    for line, entry in zip(lines[1:], full):
        sha, subject = entry.split(" ", 1)
        assert line.split()[0] == sha[:7]
        shown = line[subject_col:]  # every subject starts in the same column (git's %s joins a wrapped first paragraph)
        assert shown and not shown.startswith(" ") and subject.startswith(shown)


def test_errors_speak_the_command_lines_words(tmp_path):
    proc = ql("stop", "99", cwd=tmp_path, check=False)
    assert proc.returncode == 1 and "no deployment 99" in proc.stderr and "`quantlab deployments`" in proc.stderr
    for plumbing in ("list_deployments", "lab.deployments()", "Error executing tool", "on server", ".."):
        assert plumbing not in proc.stderr, proc.stderr
