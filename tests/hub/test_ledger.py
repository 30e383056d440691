"""The deployments ledger: events appended, committed, read back; latest status per deployment."""
from __future__ import annotations

import json

import pytest

from quantlab.hub import IndexLockError
from quantlab.lab.policy import DeploymentPolicy


def test_round_trip_and_audit_trail(hub, strategy, result, git):
    stored = hub.store(strategy, result)
    check = DeploymentPolicy().check(result)
    base = {"strategy_name": stored.name, "commit": stored.commit, "broker": "broker",
            "backtest_results": result.metrics, "policy": check.to_dict(), "symbol": "SYN"}
    c1 = hub.record_deployment({**base, "status": "pending", "forced": not check.passed})
    c2 = hub.record_deployment({**base, "status": "running", "broker_deployment_id": "dep-1"})
    c3 = hub.record_deployment({**base, "status": "stopped", "broker_deployment_id": "dep-1"})
    assert git(hub.path, "rev-parse", "HEAD").strip() == c3
    assert git(hub.path, "log", "--format=%H", "--", "deployments.jsonl").split() == [c3, c2, c1]
    assert git(hub.path, "show", "--name-only", "--format=", c2).split() == ["deployments.jsonl"]
    msg = git(hub.path, "log", "-1", "--format=%B", c2)
    assert msg.startswith(f"Deployment running: {stored.name}\n\n")
    trailers = git(hub.path, "interpret-trailers", "--parse", input=msg)
    assert f"Quantlab-Strategy-Commit: {stored.commit}\n" in trailers
    assert "Quantlab-Deployment-Id: dep-1\n" in trailers and "Quantlab-Status: running\n" in trailers

    lines = (hub.path / "deployments.jsonl").read_text().splitlines()
    assert len(lines) == 3 and all(json.loads(line)["deployment_type"] == "paper_trading" for line in lines)
    frame = hub.deployments()
    assert list(frame["status"]) == ["pending", "running", "stopped"]
    assert list(frame.columns[:11]) == ["strategy_name", "backtest_results", "deployment_type", "triggered_at",
                                        "status", "commit", "broker", "broker_deployment_id", "error", "forced", "policy"]
    assert "symbol" in frame.columns and frame.loc[0, "symbol"] == "SYN"
    assert frame.loc[0, "forced"] == (not check.passed)
    assert frame.loc[0, "backtest_results"]["trades"] == result.metrics["trades"]
    assert frame.loc[0, "policy"]["passed"] == check.passed
    assert str(frame["triggered_at"].dtype).startswith("datetime64")

    status = hub.deployment_status()
    assert len(status) == 1
    row = status.iloc[0]
    assert (row["status"], row["broker_deployment_id"], row["events"], row["commit"]) == ("stopped", "dep-1", 3, stored.commit)


def test_failed_then_retried_and_two_deployments(hub):
    hub.record_deployment({"strategy_name": "A", "status": "pending", "commit": "c1"})
    hub.record_deployment({"strategy_name": "A", "status": "failed", "commit": "c1", "error": "broker down\nconnection refused"})
    failed = hub.deployment_status()
    assert list(failed["status"]) == ["failed"] and failed.iloc[0]["error"].startswith("broker down")
    hub.record_deployment({"strategy_name": "A", "status": "pending", "commit": "c1"})
    hub.record_deployment({"strategy_name": "A", "status": "running", "commit": "c1", "broker_deployment_id": "d1"})
    hub.record_deployment({"strategy_name": "B", "status": "running", "commit": "c2", "broker_deployment_id": "d2"})
    hub.record_deployment({"strategy_name": "A", "status": "running", "commit": "c1", "broker_deployment_id": "d3"})
    status = hub.deployment_status().set_index("broker_deployment_id")
    assert sorted(status.index) == ["d1", "d2", "d3"]
    assert status.loc["d1", "events"] == 4 and status.loc["d1", "status"] == "running"
    assert len(hub.deployments()) == 6
    assert list(hub.deployment_status(commit="c2")["broker_deployment_id"]) == ["d2"]
    assert len(hub.deployments(commit="c1")) == 5


def test_ledger_message_error_paragraph(hub, git):
    sha = hub.record_deployment({"strategy_name": "A", "status": "failed", "commit": "c1", "error": "boom\nline2", "forced": True})
    msg = git(hub.path, "log", "-1", "--format=%B", sha)
    assert msg.split("\n\n")[1] == "Error: boom line2"
    assert "Quantlab-Forced: true" in git(hub.path, "interpret-trailers", "--parse", input=msg)


@pytest.mark.parametrize(
    ("event", "match"),
    [
        ({"status": "running"}, "strategy_name"),
        ({"strategy_name": "x", "status": "deployed"}, "not one of pending, running, failed, stopped"),
        ({"strategy_name": "x"}, "not one of"),
    ],
)
def test_bad_events_refused(hub, event, match, git):
    with pytest.raises(ValueError, match=match):
        hub.record_deployment(event)
    assert not (hub.path / "deployments.jsonl").exists()


def test_event_not_lost_when_commit_fails(hub, git):
    lock = hub.path / ".git" / "index.lock"
    lock.write_text("")
    with pytest.raises(IndexLockError, match="will be committed with the next event"):
        hub.record_deployment({"strategy_name": "A", "status": "pending", "commit": "c1"})
    lock.unlink()
    assert list(hub.deployments()["status"]) == ["pending"]  # already visible
    sha = hub.record_deployment({"strategy_name": "A", "status": "running", "commit": "c1", "broker_deployment_id": "d"})
    committed = git(hub.path, "show", f"{sha}:deployments.jsonl").splitlines()
    assert [json.loads(x)["status"] for x in committed] == ["pending", "running"]
    assert git(hub.path, "status", "--porcelain") == ""


def test_empty_ledger(hub):
    assert hub.deployments().empty and hub.deployment_status().empty
    assert "status" in hub.deployments().columns
