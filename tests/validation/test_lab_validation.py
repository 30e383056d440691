"""The Lab's validation: look-ahead gate, trial counts, holdout metrics, deflated/OOS Sharpe trailers."""
from __future__ import annotations

import math
import subprocess

import numpy as np
import pytest

import quantlab
from quantlab import DeploymentPolicy, Strategy
from quantlab.engine import stats
from quantlab.lab.lab import PolicyError

from .conftest import SMA

LENIENT = DeploymentPolicy(min_sharpe=-100, max_drawdown=1.0, min_profit_factor=0.0, min_trades=0)
PEEK = ("def signals(data, n=24):\n"
        "    fut = data.close.shift(-n)\n"
        "    return (fut > data.close).astype(float)\n")


def test_trials_are_counted_per_family(lab):
    s = Strategy.from_code(SMA, name="Trial Family")
    assert lab.hub.trials("trial-family") == 0
    lab.backtest(s, "sample", {"fast": 7})
    lab.backtest(s, "sample", {"fast": 8})
    assert lab.hub.trials("Trial Family") == 2
    lab.sweep(s, "sample", {"fast": [5, 10, 15], "slow": [40, 80]}, executor="inprocess")
    assert lab.hub.trials("trial family") == 2 + 6
    assert lab.hub.record_trials("Trial Family", 4) == 12          # e.g. generated candidates
    assert lab.hub.trials("other") == 0
    with pytest.raises(ValueError):
        lab.hub.record_trials("x", -1)


def test_holdout_backtest_and_sweep(lab):
    s = Strategy.from_code(SMA, name="holdout-sma")
    df = quantlab.data.sample()
    r = lab.backtest(s, "sample", {"fast": 12, "slow": 48}, holdout=0.3)
    full = quantlab.backtest(df, s, {"fast": 12, "slow": 48})
    cut = round(len(df) * 0.7)
    assert r.holdout["bars"] == len(df) - cut and r.holdout["start"] == str(df.index[cut])
    # in sample: the first 70 % of the same run; out of sample: the rest, from the equity it had
    assert r.metrics["total_return"] == pytest.approx(full.equity.iloc[cut - 1] / 100_000 - 1, rel=1e-12)
    assert r.metrics_oos["total_return"] == pytest.approx(full.equity.iloc[-1] / full.equity.iloc[cut - 1] - 1, rel=1e-12)
    assert r.metrics_oos["sharpe"] == pytest.approx(
        stats.sharpe(full.returns.iloc[cut:], full.periods_per_year), rel=1e-12)
    close = df.close.to_numpy()
    assert r.metrics_oos["benchmark_return"] == pytest.approx(close[-1] / close[cut] - 1, rel=1e-12)
    sw = lab.sweep(s, "sample", {"fast": [6, 12], "slow": [48]}, holdout=0.3, executor="inprocess")
    local = quantlab.sweep(s, df, {"fast": [6, 12], "slow": [48]}, holdout=0.3, progress=False)
    assert sw.frame["sharpe"].tolist() == pytest.approx(local.frame["sharpe"].tolist(), rel=1e-12)
    assert sw.metrics_oos["sharpe"].tolist() == pytest.approx(local.metrics_oos["sharpe"].tolist(), rel=1e-12)
    assert sw.costs["holdout"] == 0.3
    # the rows' in-sample numbers are the first 70 % only
    assert sw.frame["sharpe"].iloc[1] == pytest.approx(r.metrics["sharpe"], rel=1e-9)
    with pytest.raises(ValueError, match="holdout"):
        lab.backtest(s, "sample", holdout=1.5)


def test_validate_runs_the_lookahead_check(lab):
    peek = lab.backtest(Strategy.from_code(PEEK, name="peeker"), "sample")
    check = lab.validate(peek, LENIENT)
    assert peek.metrics["causal"] is False and not check.passed
    assert peek.lookahead.cut - 24 <= peek.lookahead.first_bar < peek.lookahead.cut    # reads 24 bars ahead
    assert any(f.startswith("causal:") for f in check.failures)
    honest = lab.backtest(Strategy.from_code(SMA, name="honest"), "sample")
    assert lab.validate(honest, LENIENT).passed and honest.metrics["causal"] is True
    # an uploaded frame is checked on that frame
    df = quantlab.data.synthetic(3000, seed=5, freq="1h")
    up = lab.backtest(Strategy.from_code(PEEK, name="peeker-upload"), df)
    assert not lab.validate(up, LENIENT).passed and up.lookahead.bars == 3000


def test_store_and_deploy_refuses_lookahead_unless_forced(lab):
    peek = lab.backtest(Strategy.from_code(PEEK, name="peek-deploy"), "sample")
    with pytest.raises(PolicyError, match="looks ahead"):
        lab.store_and_deploy(peek, policy=LENIENT)
    outcome = lab.store_and_deploy(peek, policy=LENIENT, force=True)
    assert outcome.ok
    ledger = lab.hub.deployments()
    row = ledger[ledger["broker_deployment_id"].astype(str) == outcome.record.deployment_id].iloc[-1]
    assert bool(row["forced"]) is True
    lab.stop(outcome.record.deployment_id)


def test_stored_commit_carries_deflated_and_oos_sharpe(lab):
    s = Strategy.from_code(SMA, name="Deflated SMA")
    lab.sweep(s, "sample", {"fast": [4, 6, 8, 10], "slow": [30, 60]}, executor="inprocess")   # 8 trials
    r = lab.backtest(s, "sample", {"fast": 9, "slow": 45}, holdout=0.25)                     # 9th
    stored = lab.store(r)
    msg = subprocess.run(["git", "-C", str(lab.hub.path), "log", "-1", "--format=%B", stored.commit],
                         capture_output=True, text=True, check=True).stdout
    # the seed's message first, then its trailers, then ours
    assert msg.startswith("Strategy: Deflated SMA\nBacktest Results:\n  - Sharpe Ratio: ")
    lines = msg.strip().splitlines()
    assert lines.index(next(x for x in lines if x.startswith("Quantlab-Run:"))) < \
        lines.index(next(x for x in lines if x.startswith("Quantlab-Deflated-Sharpe:")))
    n_in = len(r.equity) - r.holdout["bars"]
    want = stats.deflated_sharpe(r.returns.to_numpy()[:n_in], 9)
    assert f"Quantlab-Deflated-Sharpe: {want:.2f} (trials: 9)" in lines
    assert f"Quantlab-OOS-Sharpe: {r.metrics_oos['sharpe']:.2f}" in lines
    assert "Quantlab-Causal: yes" in lines
    trailers = subprocess.run(["git", "-C", str(lab.hub.path), "log", "-1", "--format=%(trailers:only,unfold)",
                               stored.commit], capture_output=True, text=True, check=True).stdout
    assert "Quantlab-Deflated-Sharpe" in trailers and "Quantlab-OOS-Sharpe" in trailers
    assert stored.metrics["trials"] == 9 and math.isclose(stored.metrics["deflated_sharpe"], want, rel_tol=1e-12)
    # the policy can gate on them
    assert not DeploymentPolicy(min_deflated_sharpe=0.999999, **_lenient()).check(stored.metrics).passed
    assert not DeploymentPolicy(min_oos_sharpe=50, **_lenient()).check(stored.metrics).passed
    assert DeploymentPolicy(min_oos_sharpe=-50, min_deflated_sharpe=0.0, **_lenient()).check(stored.metrics).passed


def _lenient():
    return dict(min_sharpe=None, max_drawdown=None, min_profit_factor=None, min_trades=None)


def test_deploy_checks_a_strategy_stored_without_the_check(lab):
    # stored straight into the hub (as before issue 10): no "causal" in its metrics
    peek = quantlab.backtest(quantlab.data.sample(), Strategy.from_code(PEEK, name="old-peek"), data_ref="sample")
    stored = lab.hub.store(peek)
    assert "causal" not in stored.metrics
    with pytest.raises(PolicyError, match="looks ahead"):
        lab.deploy(stored, policy=LENIENT)
