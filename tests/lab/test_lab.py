"""The whole workflow against the real embedded backtest and broker servers and a real Git hub."""
from __future__ import annotations

import asyncio

import pytest
from pandas.testing import assert_frame_equal, assert_series_equal

from quantlab import DeploymentPolicy, Lab, PolicyError, backtest, data
from quantlab.lab import LabError

from .conftest import free_port, start_http_broker

LENIENT = DeploymentPolicy(min_sharpe=-10, max_drawdown=1.0, min_profit_factor=0.0, min_trades=1)


def test_server_backtest_equals_in_process(lab, strategy):
    remote = lab.backtest(strategy, "sample", {"fast": 5, "slow": 30}, fees=0.0005)
    local = backtest(data.sample(), strategy, {"fast": 5, "slow": 30}, fees=0.0005)
    assert remote.metrics == local.metrics
    assert_series_equal(remote.equity, local.equity, check_exact=True)
    assert_frame_equal(remote.trades, local.trades, check_exact=True)
    assert remote.strategy == strategy


def test_run_summary_then_load_run_is_the_backtest(lab, strategy):
    """The summary the code agent works from, and the whole run fetched later, match lab.backtest."""
    params = {"fast": 7, "slow": 40}
    full = lab.backtest(strategy, "sample", params)
    summary = lab.run_summary(strategy, "sample", params)
    assert summary["bars"] == len(full.equity) and summary["run_id"]
    assert {k: summary["metrics"][k] for k in ("sharpe", "trades")} == {k: full.metrics[k] for k in ("sharpe", "trades")}
    loaded = lab.load_run(summary["run_id"], summary["bars"], strategy)
    assert loaded.metrics == full.metrics and loaded.strategy == strategy
    assert_series_equal(loaded.equity, full.equity, check_exact=True)
    again = asyncio.run(lab.aload_run(summary["run_id"], summary["bars"]))  # the async twin, from another loop
    assert again.metrics == full.metrics


def test_dataframe_is_uploaded_once_and_backtested(lab, strategy):
    frame = data.synthetic(3_000, seed=11)
    r1 = lab.backtest(strategy, frame)
    uploads = dict(lab._uploads)
    r2 = lab.backtest(strategy, frame, {"fast": 20})
    assert lab._uploads == uploads and len(uploads) >= 1
    assert r1.data_ref.startswith("upload:")
    assert r1.metrics == backtest(frame, strategy).metrics
    assert r2.params["fast"] == 20


@pytest.mark.parametrize("suffix", ["csv", "parquet"])
def test_a_local_bars_file_is_loaded_here_and_shipped_by_content_hash(lab, strategy, tmp_path, suffix):
    from pathlib import Path

    from quantlab.engine.data import DataError, load

    frame = data.synthetic(2_500, seed=23, freq="1h")
    path = tmp_path / f"bars.{suffix}"
    if suffix == "csv":
        frame.rename_axis("time").reset_index().to_csv(path, index=False)
    else:
        frame.to_parquet(path)
    bars = load(path)                                        # what the lab reads on this side
    remote = lab.backtest(strategy, str(path), {"fast": 5})
    local = backtest(bars, strategy, {"fast": 5})
    assert remote.data_ref.startswith("upload:")             # shipped to the server by content hash
    assert remote.metrics == local.metrics
    assert_series_equal(remote.equity, local.equity, check_exact=True)
    uploads = dict(lab._uploads)
    assert lab.backtest(strategy, Path(path)).data_ref == remote.data_ref     # a Path: the same bars, no new upload
    assert lab.backtest(strategy, bars).data_ref == remote.data_ref           # the same bars as a DataFrame
    assert lab._uploads == uploads
    with pytest.raises(DataError, match=f"nope.{suffix}: file not found"):   # named, before any server call
        lab.backtest(strategy, str(tmp_path / f"nope.{suffix}"))


def test_store_and_deploy_then_trade_and_stop(lab, strategy):
    result = lab.backtest(strategy, "sample")
    steps = []
    outcome = lab.store_and_deploy(result, timeframe=1, volume=0.1, policy=LENIENT, on_step=lambda *s: steps.append(s))
    assert outcome.ok, outcome.error
    assert [s[:2] for s in steps if s[1] != "start"] == [
        ("validate", "done"), ("store", "done"), ("deploy", "done"), ("record", "done")]
    msg = lab.hub.repo.commit(outcome.stored.commit).message
    assert msg.startswith("Strategy: SMA cross\nBacktest Results:\n  - Sharpe Ratio: ")
    dep_id = outcome.record.deployment_id
    assert outcome.record.symbol == lab.symbols()[0]

    lab.advance(400)
    live = lab.deployments().set_index("deployment_id").loc[dep_id]
    assert live["status"] == "running" and live["status_source"] == "broker"
    assert live["trades"] > 0

    # the same code and params again: no second commit, no second deployment
    head = lab.hub.repo.head.commit.hexsha
    again = lab.store_and_deploy(result, timeframe=1, volume=0.1, policy=LENIENT)
    assert again.stored.commit == outcome.stored.commit
    assert again.record.deployment_id == dep_id and again.record.existing
    assert lab.hub.repo.head.commit.hexsha == head

    stopped = lab.stop(dep_id)
    assert stopped.status == "stopped"
    ledger = lab.hub.deployments()
    mine = ledger[ledger["commit"] == outcome.stored.commit]
    assert list(mine["status"]) == ["pending", "running", "stopped"]
    assert lab.deployments().set_index("deployment_id").loc[dep_id, "status"] == "stopped"


def test_policy_gate_needs_force_and_force_is_recorded(lab, strategy):
    strict = DeploymentPolicy(min_sharpe=50.0)
    result = lab.backtest(strategy, "sample", {"fast": 3, "slow": 7})
    with pytest.raises(PolicyError, match="sharpe"):
        lab.store_and_deploy(result, policy=strict)
    outcome = lab.store_and_deploy(result, policy=strict, force=True)
    assert outcome.ok
    ledger = lab.hub.deployments()
    row = ledger[ledger["broker_deployment_id"].astype(str) == outcome.record.deployment_id].iloc[-1]
    assert bool(row["forced"]) is True
    lab.stop(outcome.record.deployment_id)


def test_state_counts_and_persists(lab):
    before = lab.state()
    lab.symbols()
    after = lab.state()
    assert after["invocation_count"] == before["invocation_count"] + 1
    assert after["created_at"] == before["created_at"]
    assert after["mcp_connections"]["broker"]["status"] == "connected"
    assert lab.state_path.is_file() and ".git" in lab.state_path.parts


def test_async_twins_from_a_running_loop(lab, strategy):
    async def main():
        r = await lab.abacktest(strategy, "sample", {"fast": 8})
        syms = await lab.asymbols()
        return r, syms

    r, syms = asyncio.run(main())
    assert r.params["fast"] == 8 and syms


def test_broker_down_keeps_commit_and_retry_succeeds(tmp_path, strategy):
    port = free_port()
    token = "t0ken"
    config = {"mcpServers": {
        "backtest": {"command": __import__("sys").executable,
                     "args": ["-m", "quantlab.servers.backtest", "--runs", str(tmp_path / "runs"), "--workers", "1"]},
        "broker": {"url": f"http://127.0.0.1:{port}/mcp", "headers": {"Authorization": f"Bearer {token}"}},
    }}
    with pytest.warns(UserWarning, match="broker"):
        lab = Lab.start(tmp_path / "hub", config=config, progress=False, max_retries=0, backoff_base=0.05)
    try:
        result = lab.backtest(strategy, "sample")
        outcome = lab.store_and_deploy(result, symbol="EURUSD", policy=LENIENT)
        assert not outcome.ok and "failed" in outcome.error
        commit = outcome.stored.commit
        assert lab.hub.get(commit).commit == commit  # the commit is kept
        assert lab.hub.deployments()["status"].tolist()[-1] == "failed"

        proc = start_http_broker(tmp_path / "broker.db", port, token)
        try:
            retry = lab.store_and_deploy(result, symbol="EURUSD", policy=LENIENT)
            assert retry.ok, retry.error
            assert retry.stored.commit == commit
            assert lab.hub.deployments()["status"].tolist()[-1] == "running"
            lab.stop(retry.record.deployment_id)
        finally:
            proc.terminate()
            proc.wait(10)
    finally:
        lab.close()


def test_lab_repr_and_html(lab):
    assert "Lab(hub=" in repr(lab)
    assert "<table>" in lab._repr_html_()


def test_same_commit_on_another_symbol_is_a_new_deployment(lab, strategy):
    result = lab.backtest(strategy, "sample", {"fast": 6, "slow": 40})
    first = lab.store_and_deploy(result, symbol="EURUSD", policy=LENIENT)
    second = lab.store_and_deploy(result, symbol="GBPUSD", policy=LENIENT)
    assert first.ok and second.ok
    assert first.stored.commit == second.stored.commit
    assert second.record.deployment_id != first.record.deployment_id and not second.record.existing
    live = lab.deployments().set_index("deployment_id")
    assert live.loc[first.record.deployment_id, "symbol"] == "EURUSD"
    assert live.loc[second.record.deployment_id, "symbol"] == "GBPUSD"
    for rec in (first.record, second.record):
        lab.stop(rec.deployment_id)


def test_a_closed_lab_says_so(tmp_path):
    lab = Lab.start(tmp_path / "hub", progress=False)
    older = lab
    newer = Lab.start(tmp_path / "hub2", progress=False)
    newer.close()
    assert Lab.active() is older
    lab.close()
    with pytest.raises(LabError, match="closed"):
        lab.symbols()


def test_a_big_run_comes_back_whole(lab, strategy):
    remote = lab.backtest(strategy, "synthetic:seed=3,bars=250000")
    local = backtest(data.from_reference("synthetic:seed=3,bars=250000"), strategy)
    assert len(remote.equity) == 250_000
    assert_series_equal(remote.equity, local.equity, check_exact=True, check_freq=False)
    assert remote.metrics == local.metrics


def test_sweep_on_the_server_equals_the_in_process_sweep(lab, strategy):
    from quantlab import sweep

    grid = {"fast": [5, 10], "slow": [30, 60]}
    remote = lab.sweep(strategy, "sample", grid, executor="inprocess")
    local = sweep(strategy, data.sample(), grid, progress=False)
    assert_frame_equal(remote.frame, local.frame, check_exact=True)
    best = remote.result(int(remote.frame["sharpe"].idxmax()))
    assert best.metrics == lab.backtest(strategy, "sample", best.params).metrics
