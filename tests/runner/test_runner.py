"""The runner against the real paper broker over real stdio: deploy, step, parity, stop, hedging,
restart, SIGKILL, a strategy that never returns."""
from __future__ import annotations

import os
import signal
import time

import pytest

from quantlab.client import MCPHub, ToolError

from .conftest import broker_entry, own_lots, runner_config


def test_tools_are_the_runners_plus_the_brokers(runner):
    names = {t["name"] for t in runner.tools("runner")}
    assert {"deploy_strategy", "list_deployments", "get_deployment", "stop_deployment", "deployment_journal",
            "set_alert", "list_alerts", "advance"} <= names
    # the broker's own tools are served under their own names
    assert {"get_symbols", "copy_rates_from_pos", "order_send", "positions_get"} <= names
    assert runner.call("runner", "get_runner")["mode"] == "stepped"


def test_paper_positions_follow_the_backtest_targets_bar_by_bar(runner, hub):
    sma = hub.stored["sma"]
    d = runner.call("runner", "deploy_strategy", {"commit": sma.commit, "symbol": "EURUSD", "volume": 0.1})
    assert d["status"] == "running" and d["magic"] > 0 and d["existing"] is False
    again = runner.call("runner", "deploy_strategy", {"commit": sma.commit, "symbol": "EURUSD", "volume": 0.1})
    assert again["existing"] is True and again["deployment_id"] == d["deployment_id"]

    bid = runner.call("runner", "get_symbol_info_tick", {"symbol": "EURUSD"})["bid"]
    low = runner.call("runner", "set_alert", {"kind": "price_above", "threshold": bid / 2, "symbol": "EURUSD"})
    far = runner.call("runner", "set_alert", {"kind": "price_below", "threshold": bid / 2,
                                              "deployment_id": d["deployment_id"]})
    adv = runner.call("runner", "advance", {"bars": 120})
    assert adv["bars"] == 120 and adv["fills"] > 0
    alerts = {a["id"]: a for a in runner.call("runner", "list_alerts")}
    assert alerts[low["id"]]["status"] == "fired" and "EURUSD bid" in alerts[low["id"]]["message"]
    assert alerts[far["id"]]["status"] == "active"
    bars = runner.call("runner", "deployment_bars", {"deployment_id": d["deployment_id"], "replay": True})
    steps, replay = bars["steps"], bars["replay"]
    assert len(steps["bar_time"]) == 120          # one decision per revealed bar
    full = dict(zip(replay["time"], replay["target"]))
    for t, target, lots in zip(steps["bar_time"], steps["target"], steps["lots"]):
        assert target == full[t]                    # the sliding window gives the full-history target
        assert lots == pytest.approx(target * 0.1)  # and the position is that target in lots
    # the broker agrees with the runner's book
    assert own_lots(runner, d["magic"]) == pytest.approx(steps["lots"][-1])
    deals = runner.call("runner", "history_deals_get", {"symbol": "EURUSD"})
    assert sum(1 for x in deals if x["magic"] == d["magic"]) == len(bars["fills"])

    stopped = runner.call("runner", "stop_deployment", {"deployment_id": d["deployment_id"]})
    assert stopped["status"] == "stopped" and stopped["lots"] == 0
    assert own_lots(runner, d["magic"]) == 0
    kinds = {j["kind"] for j in runner.call("runner", "deployment_journal", {"deployment_id": d["deployment_id"]})}
    assert {"status", "signal", "fill"} <= kinds


def test_hourly_deployment_acts_once_per_completed_hour_when_stepped_in_minutes(runner, hub):
    """advance() steps over the minutes in which no hourly bar completes, and still acts on every hour."""
    sma = hub.stored["sma"]
    d = runner.call("runner", "deploy_strategy", {"commit": sma.commit, "symbol": "EURUSD", "volume": 0.1,
                                                  "timeframe": 60})
    adv = runner.call("runner", "advance", {"bars": 60 * 12 + 30})
    assert adv["bars"] == 60 * 12 + 30
    bars = runner.call("runner", "deployment_bars", {"deployment_id": d["deployment_id"], "replay": True})
    steps, replay = bars["steps"], bars["replay"]
    times = steps["bar_time"]
    assert len(times) in (12, 13)                       # one decision per completed hour
    assert all(b - a == 3600 for a, b in zip(times, times[1:]))
    assert all(t % 3600 == 0 for t in times)
    assert not any(steps["skipped"])                    # no hour was missed and traded after the fact
    full = dict(zip(replay["time"], replay["target"]))
    assert [full[t] for t in times] == steps["target"]
    runner.call("runner", "stop_deployment", {"deployment_id": d["deployment_id"]})


def test_fractional_targets_are_sized_in_volume_steps(runner, hub):
    d = runner.call("runner", "deploy_strategy", {"commit": hub.stored["half"].commit, "symbol": "EURUSD",
                                                  "volume": 0.05})
    runner.call("runner", "advance", {"bars": 60})
    lots = runner.call("runner", "deployment_bars", {"deployment_id": d["deployment_id"]})["steps"]["lots"]
    assert set(lots) <= {0.0, 0.03, 0.02}  # 0.5 * 0.05 = 0.025 -> a multiple of volume_step 0.01
    assert any(lots)


def test_bad_requests_are_tool_errors_that_say_what_to_do(runner, hub):
    with pytest.raises(ToolError, match="unknown symbol 'NOPE'"):
        runner.call("runner", "deploy_strategy", {"commit": hub.stored["sma"].commit, "symbol": "NOPE", "volume": 0.1})
    with pytest.raises(ToolError, match="cannot load"):
        runner.call("runner", "deploy_strategy", {"commit": "0" * 40, "symbol": "EURUSD", "volume": 0.1})
    with pytest.raises(ToolError, match="below"):
        runner.call("runner", "deploy_strategy", {"commit": hub.stored["sma"].commit, "symbol": "EURUSD", "volume": 0.001})
    with pytest.raises(ToolError, match="no deployment 99"):
        runner.call("runner", "stop_deployment", {"deployment_id": 99})
    assert runner.call("runner", "list_deployments") == []


def test_endless_loop_fails_its_deployment_only(runner, hub):
    loop = runner.call("runner", "deploy_strategy", {"commit": hub.stored["loop"].commit, "symbol": "EURUSD",
                                                     "volume": 0.1, "config": {"timeout": 1}})
    boom = runner.call("runner", "deploy_strategy", {"commit": hub.stored["boom"].commit, "symbol": "EURUSD", "volume": 0.1})
    sma = runner.call("runner", "deploy_strategy", {"commit": hub.stored["sma"].commit, "symbol": "GBPUSD", "volume": 0.1})
    adv = runner.call("runner", "advance", {"bars": 40}, timeout=60)
    assert adv["bars"] == 40
    got = {d["deployment_id"]: d for d in runner.call("runner", "list_deployments")}
    assert got[loop["deployment_id"]]["status"] == "failed"
    assert "did not return within 1 s" in got[loop["deployment_id"]]["error"]
    assert got[boom["deployment_id"]]["status"] == "failed"
    assert "my custom boom" in got[boom["deployment_id"]]["error"] and "line 4" in got[boom["deployment_id"]]["error"]
    assert got[sma["deployment_id"]]["status"] == "running" and got[sma["deployment_id"]]["bars"] == 40
    # the server still answers
    assert runner.call("runner", "get_symbols")


def test_hedging_account_closes_by_ticket(tmp_path, hub):
    with MCPHub.from_config(runner_config(tmp_path, hub, "--mode", "hedging"), connect_timeout=60) as mcp:
        assert mcp.call("runner", "get_runner")["hedging"] is True
        d = mcp.call("runner", "deploy_strategy", {"commit": hub.stored["sma"].commit, "symbol": "EURUSD", "volume": 0.1})
        mcp.call("runner", "advance", {"bars": 150})
        fills = mcp.call("runner", "deployment_bars", {"deployment_id": d["deployment_id"]})["fills"]
        closes = [f for f in fills if f["position"]]
        assert closes, "a reversal on a hedging account closes the open position by its ticket"
        deals = {x["ticket"]: x for x in mcp.call("runner", "history_deals_get", {"symbol": "EURUSD"})}
        for f in closes:
            assert deals[f["deal"]]["entry"] == 1 and deals[f["deal"]]["position_id"] == f["position"]
        open_ = [p for p in mcp.call("runner", "positions_get", {"symbol": "EURUSD"}) if p["magic"] == d["magic"]]
        assert len(open_) <= 1  # never a long and a short side by side
        mcp.call("runner", "stop_deployment", {"deployment_id": d["deployment_id"]})
        assert own_lots(mcp, d["magic"]) == 0


def test_restart_reconciles_from_the_broker_before_trading(tmp_path, hub):
    cfg = runner_config(tmp_path, hub)
    with MCPHub.from_config(cfg, connect_timeout=60) as mcp:
        d = mcp.call("runner", "deploy_strategy", {"commit": hub.stored["sma"].commit, "symbol": "EURUSD", "volume": 0.1})
        mcp.call("runner", "advance", {"bars": 60})
        before = mcp.call("runner", "get_deployment", {"deployment_id": d["deployment_id"]})
    assert before["lots"] != 0
    # while the runner is away someone closes its position on the broker directly
    with MCPHub.from_config({"broker": broker_entry(tmp_path / "broker.db")}) as b:
        pos = [p for p in b.call("broker", "positions_get", {"symbol": "EURUSD"}) if p["magic"] == d["magic"]][0]
        tick = b.call("broker", "get_symbol_info_tick", {"symbol": "EURUSD"})
        b.call("broker", "order_send", {"request": {"action": 1, "symbol": "EURUSD", "volume": pos["volume"],
                                                    "type": 1 - pos["type"], "magic": 1,
                                                    "price": tick["bid"] if pos["type"] == 0 else tick["ask"],
                                                    "deviation": 50, "position": pos["ticket"]}})
    with MCPHub.from_config(cfg, connect_timeout=60) as mcp:
        after = mcp.call("runner", "get_deployment", {"deployment_id": d["deployment_id"]})
        assert after["status"] == "running" and after["lots"] == 0
        lines = mcp.call("runner", "deployment_journal", {"deployment_id": d["deployment_id"], "kind": "reconcile"})
        assert lines and "the broker holds 0 lots" in lines[-1]["message"]
        mcp.call("runner", "advance", {"bars": 5})
        now = mcp.call("runner", "get_deployment", {"deployment_id": d["deployment_id"]})
        assert own_lots(mcp, d["magic"]) == pytest.approx(now["lots"]) == pytest.approx(now["target"] * 0.1)


def test_sigkill_loses_nothing_acknowledged(tmp_path, hub):
    cfg = runner_config(tmp_path, hub)
    mcp = MCPHub.from_config(cfg, connect_timeout=60)
    try:
        d = mcp.call("runner", "deploy_strategy", {"commit": hub.stored["sma"].commit, "symbol": "EURUSD", "volume": 0.1})
        mcp.call("runner", "advance", {"bars": 50})
        seen = mcp.call("runner", "get_deployment", {"deployment_id": d["deployment_id"]})
        pid = mcp.state()["servers"]["runner"]["pid"]
        os.kill(pid, signal.SIGKILL)
        time.sleep(0.5)
    finally:
        mcp.close()
    with MCPHub.from_config(cfg, connect_timeout=60) as mcp:
        back = mcp.call("runner", "get_deployment", {"deployment_id": d["deployment_id"]})
        assert back["status"] == "running" and back["bars"] == seen["bars"] == 50
        assert back["lots"] == pytest.approx(seen["lots"]) == pytest.approx(own_lots(mcp, d["magic"]))
        mcp.call("runner", "advance", {"bars": 3})
        assert mcp.call("runner", "get_deployment", {"deployment_id": d["deployment_id"]})["bars"] == 53


def test_a_second_runner_on_the_same_database_is_refused_naming_the_first(tmp_path, hub):
    import json
    import subprocess
    import sys

    args = [sys.executable, "-m", "quantlab.runner", "--db", str(tmp_path / "runner.db"), "--hub", str(hub.path),
            "--broker", json.dumps(broker_entry(tmp_path / "broker.db"))]
    first = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    try:
        lock = tmp_path / "runner.db.lock"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not (lock.exists() and f'"pid": {first.pid}' in lock.read_text()):
            time.sleep(0.05)
        second = subprocess.run(args, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60)
        assert second.returncode == 2
        assert f"another runner (pid {first.pid}" in second.stderr and "already serving" in second.stderr
        assert "quantlab runner status" in second.stderr
    finally:
        first.stdin.close()  # end of its stdio: it exits and gives the database up
        first.wait(timeout=60)
        first.stdout.close()
    # once the first is gone, the next one gets the database (it ends at once: its stdin is empty)
    third = subprocess.run(args, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60)
    assert third.returncode == 0, third.stderr
