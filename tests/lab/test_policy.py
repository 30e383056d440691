"""DeploymentPolicy: per-criterion pass/fail with the numbers, NaN fails, inf is a number."""
from __future__ import annotations

import json
import math

import pytest

from quantlab.lab.policy import DeploymentPolicy, PolicyCheck

GOOD = {"sharpe": 1.2, "max_drawdown": 0.1, "profit_factor": 1.6, "trades": 12}


@pytest.fixture(scope="module")
def result():
    """A real backtest of an SMA cross on synthetic data."""
    from quantlab import backtest
    from quantlab.engine.data import synthetic

    code = ("def signals(data, fast=5, slow=20):\n"
            "    return (data.close.rolling(fast).mean() > data.close.rolling(slow).mean()).astype(float)\n")
    return backtest(synthetic(600, seed=7), code, fees=0.0005, data_ref="synthetic:seed=7,bars=600")


def test_defaults_documented():
    p = DeploymentPolicy()
    assert (p.min_sharpe, p.max_drawdown, p.min_profit_factor, p.min_trades) == (0.5, 0.25, 1.1, 5)


def test_pass():
    check = DeploymentPolicy().check(GOOD)
    assert check.passed and bool(check) and check.failures == []
    frame = check.to_frame()
    assert list(frame.columns) == ["metric", "rule", "threshold", "value", "passed", "reason"]
    # the default also requires a causal strategy (issue 10); unchecked metrics pass it as "not checked"
    assert list(frame["metric"]) == ["sharpe", "max_drawdown", "profit_factor", "trades", "causal"]
    assert list(frame["rule"]) == [">=", "<=", ">=", ">=", "=="]
    assert frame["passed"].all()
    assert "PASSED" in repr(check) and "✔ pass" in check._repr_html_()


@pytest.mark.parametrize(
    ("change", "metric", "reason"),
    [
        ({"sharpe": 0.2}, "sharpe", "sharpe: 0.2 < 0.5"),
        ({"max_drawdown": 0.3}, "max_drawdown", "max_drawdown: 0.3 > 0.25"),
        ({"max_drawdown": -0.3}, "max_drawdown", "max_drawdown: 0.3 > 0.25"),
        ({"profit_factor": 1.0}, "profit_factor", "profit_factor: 1 < 1.1"),
        ({"trades": 2}, "trades", "trades: 2 < 5"),
        ({"sharpe": math.nan}, "sharpe", "NaN"),
        ({"profit_factor": None}, "profit_factor", "missing"),
        ({"sharpe": -math.inf}, "sharpe", "-inf < 0.5"),
    ],
)
def test_fail(change, metric, reason):
    check = DeploymentPolicy().check({**GOOD, **change})
    assert not check.passed
    assert len(check.failures) == 1 and reason in check.failures[0]
    frame = check.to_frame().set_index("metric")
    assert not frame.loc[metric, "passed"] and frame.drop(index=metric)["passed"].all()
    assert "FAIL" in repr(check) and "✘ fail" in check._repr_html_()


def test_inf_profit_factor_passes_and_summary_is_json():
    check = DeploymentPolicy().check({**GOOD, "profit_factor": math.inf})
    assert check.passed
    summary = check.to_dict()
    assert json.loads(json.dumps(summary, allow_nan=False))["criteria"][2]["value"] == "inf"


def test_nan_summary_is_json_safe():
    summary = DeploymentPolicy().check({**GOOD, "sharpe": math.nan}).to_dict()
    assert summary["passed"] is False and json.dumps(summary, allow_nan=False)


def test_disabled_rules_and_trade_key_aliases():
    check = DeploymentPolicy(min_trades=None, min_sharpe=None, require_causal=False).check(
        {"max_drawdown": 0.1, "profit_factor": 2})
    assert check.passed and list(check.to_frame()["metric"]) == ["max_drawdown", "profit_factor"]
    assert DeploymentPolicy().check({**{k: v for k, v in GOOD.items() if k != "trades"}, "n_trades": 9}).passed


def test_real_backtest_result(result):
    check = DeploymentPolicy().check(result)
    assert isinstance(check, PolicyCheck)
    frame = check.to_frame().set_index("metric")
    assert frame.loc["trades", "value"] == result.metrics["trades"]
    assert frame.loc["sharpe", "passed"] == (result.metrics["sharpe"] >= 0.5)


def test_bad_input():
    with pytest.raises(TypeError, match="BacktestResult"):
        DeploymentPolicy().check(42)
