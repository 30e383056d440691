"""Two real processes on one hub (issue 12, "Nothing lost"): nothing lost, no spurious errors, exact state."""
from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest

from quantlab import DeploymentPolicy, Lab, backtest, data
from quantlab.hub import AssetsHub
from quantlab.lab import LabError

from .conftest import child_env, finish, run_script, HERE


def test_two_processes_storing_into_one_hub_lose_nothing_and_raise_nothing(tmp_path):
    hub = tmp_path / "hub"  # both processes create it: one first commit, no "nothing to commit" there either
    a, b = run_script("_lab_worker.py", "store", str(hub), "12", "a"), run_script("_lab_worker.py", "store", str(hub), "12", "b")
    ra, rb = finish(a), finish(b)
    # before: 2 runs in 3 raised HubError("nothing to commit") when the other process had committed the line
    assert ra["errors"] == [] and rb["errors"] == []
    with AssetsHub(hub) as h:
        assert len(h.strategies()) == 24
        ledger = h.deployments()
        assert sorted(ledger["broker_deployment_id"]) == sorted([f"a-{i}" for i in range(12)] + [f"b-{i}" for i in range(12)])
        # every line is committed: the working tree has nothing left over
        assert h.repo.git.status("--porcelain") == ""
        assert len(h.repo.git.show("HEAD:deployments.jsonl").splitlines()) == 24


def test_two_labs_deploying_through_one_broker_keep_every_deployment_in_the_state(tmp_path, http_broker):
    hub = tmp_path / "hub"
    config = {"mcpServers": {"broker": {"url": http_broker["url"],
                                        "headers": {"Authorization": f"Bearer {http_broker['token']}"}}}}
    lenient = DeploymentPolicy(min_sharpe=-100, max_drawdown=1.0, min_profit_factor=0.0, min_trades=0)
    # the increment of one store_and_deploy, measured in this process first
    with Lab.start(hub, config=config, progress=False) as lab:
        c0 = lab.state()["invocation_count"]
        first = lab.store_and_deploy(backtest(data.sample(), lab_strategy(), {"fast": 3, "slow": 200}), policy=lenient, force=True)
        assert first.ok, first.error
        per_op = lab.state()["invocation_count"] - c0
    n = 3
    procs = [run_script("_lab_worker.py", "deploy", str(hub), http_broker["url"], http_broker["token"], str(n), tag)
             for tag in ("a", "b")]
    results = [finish(p) for p in procs]
    for r in results:
        # before: a deploy whose ledger line the other process had committed was reported as failed
        assert r["errors"] == [] and r["ok"] == n
    with Lab.start(hub, config=config, progress=False) as lab:
        state = lab.state()
        ids = {d["deployment_id"] for d in state["deployments_triggered"]}
        # before: each process rewrote the whole state.json from its own copy, so the last writer won
        assert ids == {first.record.deployment_id, *results[0]["ids"], *results[1]["ids"]}
        assert len(state["deployments_triggered"]) == 2 * n + 1
        assert state["invocation_count"] == c0 + per_op * (2 * n + 1)
        on_disk = json.loads(lab.state_path.read_text())
        assert set(on_disk) >= {"created_at", "last_activity", "invocation_count", "mcp_connections", "deployments_triggered"}
        assert on_disk["created_at"] == state["created_at"]
        assert on_disk["mcp_connections"]["broker"]["status"] == "connected"
        ledger = lab.hub.deployment_status()
        assert set(ledger["broker_deployment_id"]) == ids and set(ledger["status"]) == {"running"}


def lab_strategy():
    from quantlab import Strategy

    from .conftest import SMA

    return Strategy.from_code(SMA, name="SMA main")


def test_second_lab_on_a_busy_hub_says_at_once_who_has_it(tmp_path):
    hub = tmp_path / "hub"
    holder = subprocess.Popen([sys.executable, str(HERE / "_lab_worker.py"), "hold", str(hub)], env=child_env(),
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = holder.stdout.readline()
        assert line, holder.stderr.read()
        pid = json.loads(line)["pid"]
        # before: this blocked 20-34 s on a broker that could never start, then warned "not available"
        with pytest.raises(LabError, match=rf"in use by another lab: process {pid}\b.*_lab_worker\.py hold") as info:
            Lab.start(hub, progress=False)
        assert "quantlab broker start" in str(info.value)
    finally:
        holder.stdin.close()
        holder.wait(60)
    # once the first lab is closed the hub is free again
    with Lab.start(hub, progress=False) as lab:
        assert lab.symbols()
