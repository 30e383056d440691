"""``quantlab paper start`` + the CLI: commands use the running daemon, deployments trade on its clock."""
from __future__ import annotations

import json
import os
import subprocess
import sys

from .conftest import SMA, store


def test_cli_deploys_advances_and_stops_on_the_paper_daemon(tmp_path):
    from quantlab.hub import AssetsHub

    hub = AssetsHub(tmp_path / "hub")
    store(hub, SMA, "sma")
    hub.close()
    env = {**os.environ, "QUANTLAB_HOME": str(tmp_path / "home"), "QUANTLAB_HUB": str(tmp_path / "hub")}

    def ql(*args: str) -> str:
        p = subprocess.run([sys.executable, "-m", "quantlab", *args], env=env, capture_output=True, text=True, timeout=300)
        assert p.returncode == 0, p.stderr
        return p.stdout

    assert "paper started" in ql("paper", "start")
    try:
        assert "paper running" in ql("paper", "status")
        out = ql("deploy", "sma", "--symbol", "EURUSD", "--force")
        dep = out.split("deployment ")[1].split(",")[0]
        adv = json.loads(ql("advance", "40", "--json"))
        assert adv["bars"] == 40 and adv["fills"] > 0
        rows = json.loads(ql("deployments", "--json"))
        row = [r for r in rows if str(r["deployment_id"]) == dep][-1]
        assert row["status"] == "running" and row["status_source"] == "broker" and row["trades"] == adv["fills"]
        assert "stopped" in ql("stop", dep)
        # the daemon kept everything between the commands: its status counts the stopped deployment
        assert "1 stopped" in ql("paper", "status")
    finally:
        ql("paper", "stop")
    st = subprocess.run([sys.executable, "-m", "quantlab", "paper", "status"], env=env, capture_output=True, text=True)
    assert st.returncode == 3 and "not running" in st.stdout
