"""The runner against the REAL public MT5 MCP server's code (mt5mcp 0.1.8) on the simulated terminal:
Lab.start(config=...) naming only backtest + broker starts an embedded runner on that broker entry
(on_connect initialize/login from the environment), which trades live with the standard tools only."""
from __future__ import annotations

import time

from quantlab import Lab, Strategy

FLIP = '''
import pandas as pd

def signals(data):
    # long on even minutes, short on odd ones: every bar the runner acts on changes the target
    return pd.Series((data.index.minute % 2) * 2 - 1, index=data.index).astype(float)
'''


def _wait(pred, seconds: float = 60.0):
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        got = pred()
        if got:
            return got
        time.sleep(0.5)
    raise AssertionError("timed out")


def test_lab_trades_on_real_mt5mcp_through_the_runner_hedging(tmp_path, mt5mcp_config):
    cfg = mt5mcp_config(account="hedging", speed=20.0)
    with Lab.start(tmp_path / "hub", config=cfg, progress=False) as lab:
        info = lab.mcp.call("broker", "get_runner")
        assert info["mode"] == "live" and info["hedging"] is True
        assert "deploy_strategy" not in info["broker_tools"] and "order_send" in info["broker_tools"]
        result = lab.backtest(Strategy.from_code(FLIP, name="flip"), "sample")
        rec = lab.deploy(lab.store(result), symbol="EURUSD", volume=0.1, timeframe=1, force=True)  # minute bars: a live test
        dep = int(rec.deployment_id)

        def reversed_once():
            fills = lab.mcp.call("broker", "deployment_bars", {"deployment_id": dep})["fills"]
            return [f for f in fills if f["position"]]

        closes = _wait(reversed_once)
        deals = {d["ticket"]: d for d in lab.mcp.call("broker", "history_deals_get", {})}
        assert all(deals[f["deal"]]["entry"] == 1 for f in closes)  # closed by ticket, not hedged against
        d = lab.mcp.call("broker", "get_deployment", {"deployment_id": dep})
        assert d["status"] == "running" and len([p for p in d["positions"]]) <= 1
        journal = lab.mcp.call("broker", "deployment_journal", {"deployment_id": dep, "limit": 1000})
        assert any(j["kind"] == "skipped" for j in journal)  # a live market: missed bars are not traded late

        assert lab.stop(rec.deployment_id).status == "stopped"
        left = [p for p in lab.mcp.call("broker", "positions_get", {}) if p["magic"] == d["magic"]]
        assert left == []
        frame = lab.deployments()
        assert frame.iloc[-1]["status"] == "stopped" and frame.iloc[-1]["status_source"] == "broker"


def test_lab_on_real_mt5mcp_netting_refuses_advance_and_lists(tmp_path, mt5mcp_config):
    import pytest

    from quantlab.lab import LabError

    with Lab.start(tmp_path / "hub", config=mt5mcp_config(account="netting"), progress=False) as lab:
        assert lab.symbols() == ["EURUSD", "USDJPY", "XAUUSD"]
        with pytest.raises(LabError, match="no advance tool"):
            lab.advance(5)
        assert lab.deployments().empty
