"""Lab deploys, lists, advances, compares and stops through the embedded runner (real servers, real hub)."""
from __future__ import annotations

import os
import signal
import time

import pytest

from quantlab import Lab, Strategy
from quantlab.lab import LabError
from quantlab.lab.results import AdvanceResult, ParityReport

from .conftest import SMA


def test_lab_deploys_through_the_runner_and_paper_matches_the_backtest(tmp_path):
    with Lab.start(tmp_path / "hub", progress=False) as lab:
        result = lab.backtest(Strategy.from_code(SMA, name="sma"), "sample")
        outcome = lab.store_and_deploy(result, symbol="EURUSD", timeframe=1, volume=0.1, force=True)
        assert outcome.ok, outcome.error
        dep = outcome.record.deployment_id

        adv = lab.advance(80)
        assert isinstance(adv, AdvanceResult) and adv.bars == 80 and adv.fills > 0
        assert adv.time is not None and "80 bars to" in repr(adv) and "<table>" in adv._repr_html_()
        assert adv.deployments.loc[int(dep), "status"] == "running"

        frame = lab.deployments()
        row = frame[frame["deployment_id"].astype(str) == dep].iloc[-1]
        assert row["status"] == "running" and row["status_source"] == "broker" and row["trades"] == adv.fills

        rep = lab.parity(dep)
        assert isinstance(rep, ParityReport) and rep.summary["bars"] == 80
        assert rep.matches, rep.differences()
        assert rep.summary["target_mismatches"] == 0 and "positions match" in repr(rep)
        assert "Parity" in rep._repr_html_()

        # the runner dies: listing says so instead of quietly showing the ledger
        pid = lab.mcp.state()["servers"]["broker"]["pid"]
        os.kill(pid, signal.SIGKILL)
        time.sleep(0.5)
        with pytest.raises(LabError, match="cannot list deployments"):
            lab.deployments()
        # the next call starts it again; it reconciles and the deployment is still running
        frame = lab.deployments()
        assert frame[frame["deployment_id"].astype(str) == dep].iloc[-1]["status"] == "running"

        stopped = lab.stop(dep)
        assert stopped.status == "stopped"
        assert lab.mcp.call("broker", "positions_get", {"symbol": "EURUSD"}) in (None, [])
        assert lab.deployments().iloc[-1]["position"] == 0
