"""The validation gate a backtest must pass before it is deployed.

:class:`DeploymentPolicy` holds four rules, each checked against the backtest
metrics (``BacktestResult.metrics``):

=====================  ======================  =========  ==================================================
metric                 rule                    default    why this default
=====================  ======================  =========  ==================================================
``sharpe``             ``>= min_sharpe``       0.5        below ~0.5 (annualised) the edge is hard to tell from noise
``max_drawdown``       ``<= max_drawdown``     0.25       a 25 % peak-to-trough loss is the most a paper bot should risk
``profit_factor``      ``>= min_profit_factor`` 1.1       gross profit must beat gross loss by a margin that survives costs
``trades``             ``>= min_trades``       5          fewer trades say too little about the strategy
=====================  ======================  =========  ==================================================

* ``max_drawdown`` is a positive fraction (``0.12`` = 12 %); a negative value
  (a signed drawdown) is compared by its magnitude.
* A NaN or missing metric **fails** with a reason (e.g. a Sharpe ratio is NaN
  when the strategy never trades). ``inf`` is a number: a profit factor of
  ``inf`` (no losing trade) passes ``>= 1.1``.
* Set a threshold to ``None`` to drop that rule.

Three more rules guard against a backtest that lies (issue 10):

=========================  ==============================  =========  ============================================
metric                     rule                            default    why this default
=========================  ==============================  =========  ============================================
``causal``                 ``require_causal``              ``True``   a strategy that reads future bars cannot trade
                                                                      what it backtested (:func:`quantlab.check_lookahead`)
``deflated_sharpe``        ``>= min_deflated_sharpe``      ``None``   probability the Sharpe beats the luck of all
                                                                      trials of that strategy family (0.95 is strict)
``oos_sharpe``             ``>= min_oos_sharpe``           ``None``   the Sharpe on the held-out bars (``holdout=``)
=========================  ==============================  =========  ============================================

``causal`` is filled in by :meth:`quantlab.Lab.validate` (which runs the look-ahead check);
a result nobody checked has no ``causal`` and passes that rule with the reason "not
checked". ``deflated_sharpe`` and ``oos_sharpe`` are added by the Lab when it stores a
strategy; with a threshold set, a missing value fails.

Example
-------
>>> policy = DeploymentPolicy(min_sharpe=1.0)
>>> check = policy.check({"sharpe": 1.4, "max_drawdown": 0.1, "profit_factor": 1.8, "trades": 12})
>>> check.passed
True
>>> policy.check({"sharpe": float("nan"), "max_drawdown": 0.1, "profit_factor": 2, "trades": 9}).failures
['sharpe: value is NaN (undefined, e.g. no trades or no variance); rule >= 1']
"""
from __future__ import annotations

import math
import operator
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Mapping

from quantlab._util import decode_number, to_jsonable
from quantlab._util import html as qh

from .errors import LabError

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["DeploymentPolicy", "PolicyCheck", "CriterionResult", "PolicyError"]

TRADE_KEYS = ("trades", "n_trades", "num_trades", "total_trades", "trade_count")
_OPS = {">=": operator.ge, "<=": operator.le, "==": operator.eq}


@dataclass(frozen=True)
class CriterionResult:
    """One rule's outcome: ``metric``, ``rule`` (``">="``/``"<="``), ``threshold``,
    the ``value`` found, ``passed`` and a human ``reason``."""

    metric: str
    rule: str
    threshold: float
    value: float | None
    passed: bool
    reason: str


def _metrics_of(result_or_metrics: Any) -> Mapping[str, Any]:
    if isinstance(result_or_metrics, Mapping):
        inner = result_or_metrics.get("metrics")
        return inner if isinstance(inner, Mapping) else result_or_metrics
    metrics = getattr(result_or_metrics, "metrics", None)
    if isinstance(metrics, Mapping):
        return metrics
    raise TypeError(
        "policy.check() takes a BacktestResult (with .metrics) or a dict of metrics, "
        f"got {type(result_or_metrics).__name__}."
    )


def _number(value: Any) -> float | None:
    if value is None:
        return None
    value = decode_number(value)
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


@dataclass(frozen=True)
class PolicyCheck:
    """The outcome of :meth:`DeploymentPolicy.check`: one :class:`CriterionResult` per rule.

    ``bool(check)`` is ``check.passed``.

    >>> check = DeploymentPolicy().check({"sharpe": 2, "max_drawdown": 0.4, "profit_factor": 2, "trades": 20})
    >>> check.passed, check.failures
    (False, ['max_drawdown: 0.4 > 0.25 (rule <= 0.25)'])
    """

    rows: tuple[CriterionResult, ...]
    policy: "DeploymentPolicy" = field(repr=False)

    @property
    def passed(self) -> bool:
        """``True`` when every rule passed."""
        return all(r.passed for r in self.rows)

    @property
    def failures(self) -> list[str]:
        """One line per failed rule, saying what was found and what was required."""
        return [r.reason for r in self.rows if not r.passed]

    def __bool__(self) -> bool:
        return self.passed

    def to_frame(self) -> pd.DataFrame:
        """The rows as a DataFrame: ``metric, rule, threshold, value, passed, reason``."""
        import pandas as pd

        return pd.DataFrame([asdict(r) for r in self.rows], columns=["metric", "rule", "threshold", "value", "passed", "reason"])

    def to_dict(self) -> dict[str, Any]:
        """A JSON-safe summary (what the deployments ledger records as ``policy``)."""

        return {
            "passed": self.passed,
            "failures": self.failures,
            "criteria": [to_jsonable(asdict(r)) for r in self.rows],
        }

    def __repr__(self) -> str:
        head = f"PolicyCheck({'PASSED' if self.passed else 'FAILED'}, {sum(r.passed for r in self.rows)}/{len(self.rows)} rules)"
        lines = [
            f"  [{'pass' if r.passed else 'FAIL'}] {r.metric:<14} {_rule_text(r):<9} value={_value_text(r)}"
            for r in self.rows
        ]
        return "\n".join([head, *lines])

    def _repr_html_(self) -> str:
        rows = (
            [r.metric, _rule_text(r), _value_text(r), qh.raw(qh.badge(r.passed)), "" if r.passed else r.reason]
            for r in self.rows
        )
        verdict = qh.badge(self.passed, "✔ policy passed" if self.passed else "✘ policy failed")
        table = qh.table(["metric", "rule", "value", "", "reason"], rows)
        return f"<div><b>Deployment policy</b> {verdict}{table}</div>"


def _rule_text(r: CriterionResult) -> str:
    return "required" if r.metric == "causal" else f"{r.rule} {r.threshold:g}"


def _value_text(r: CriterionResult) -> str:
    if r.metric == "causal":
        return "not checked" if r.value is None else ("yes" if r.value == 1.0 else "no")
    return _fmt(r.value)


def _fmt(value: float | None) -> str:
    if value is None:
        return "missing"
    if math.isnan(value):
        return "nan"
    return f"{value:.4g}"


@dataclass(frozen=True)
class DeploymentPolicy:
    """Minimum backtest quality for deployment (see the module doc for the rules and defaults).

    >>> DeploymentPolicy()
    DeploymentPolicy(min_sharpe=0.5, max_drawdown=0.25, min_profit_factor=1.1, min_trades=5, require_causal=True, min_deflated_sharpe=None, min_oos_sharpe=None)
    >>> DeploymentPolicy().check({"sharpe": 1, "max_drawdown": 0.1, "profit_factor": 1.5, "trades": 9, "causal": False}).failures
    ['causal: the strategy looks ahead (uses bars after the one it trades on); rule causal']
    >>> DeploymentPolicy(min_trades=None).check({"sharpe": 1, "max_drawdown": 0.1, "profit_factor": 1.5}).passed
    True
    """

    min_sharpe: float | None = 0.5
    max_drawdown: float | None = 0.25
    min_profit_factor: float | None = 1.1
    min_trades: int | None = 5
    require_causal: bool = True
    min_deflated_sharpe: float | None = None
    min_oos_sharpe: float | None = None

    def rules(self) -> list[tuple[str, str, float]]:
        """The active rules as ``(metric, rule, threshold)``."""
        out = [
            ("sharpe", ">=", self.min_sharpe),
            ("max_drawdown", "<=", self.max_drawdown),
            ("profit_factor", ">=", self.min_profit_factor),
            ("trades", ">=", self.min_trades),
            ("causal", "==", 1.0 if self.require_causal else None),
            ("deflated_sharpe", ">=", self.min_deflated_sharpe),
            ("oos_sharpe", ">=", self.min_oos_sharpe),
        ]
        return [(m, r, float(t)) for m, r, t in out if t is not None]

    def check(self, result_or_metrics: Any) -> PolicyCheck:
        """Check a ``BacktestResult`` (or a dict of metrics) against every rule.

        >>> DeploymentPolicy().check({"sharpe": 0.1, "max_drawdown": 0.1, "profit_factor": 2, "trades": 9}).failures
        ['sharpe: 0.1 < 0.5 (rule >= 0.5)']
        """
        metrics = _metrics_of(result_or_metrics)
        rows = []
        for metric, rule, threshold in self.rules():
            raw = metrics.get(metric)
            if metric == "trades" and raw is None:
                raw = next((metrics[k] for k in TRADE_KEYS if metrics.get(k) is not None), None)
            value = _number(raw)
            if value is not None and metric == "max_drawdown":
                value = abs(value)
            if metric == "causal":
                if raw is None:
                    rows.append(CriterionResult(metric, rule, threshold, None, True,
                                                "causal: look-ahead not checked (lab.validate runs the check)"))
                    continue
                passed = bool(value == 1.0)
                reason = "ok" if passed else "causal: the strategy looks ahead (uses bars after the one it trades on); rule causal"
                rows.append(CriterionResult(metric, rule, threshold, passed, passed, reason))
                continue
            if value is None:
                passed = False
                reason = f"{metric}: missing from the backtest metrics; rule {rule} {threshold:g}"
            elif math.isnan(value):
                passed = False
                reason = f"{metric}: value is NaN (undefined, e.g. no trades or no variance); rule {rule} {threshold:g}"
            else:
                passed = bool(_OPS[rule](value, threshold))
                other = "<" if rule == ">=" else ">"
                reason = "ok" if passed else f"{metric}: {value:g} {other} {threshold:g} (rule {rule} {threshold:g})"
            rows.append(CriterionResult(metric, rule, threshold, value, passed, reason))
        return PolicyCheck(tuple(rows), self)


class PolicyError(LabError):
    """The result fails the deployment policy; pass ``force=True`` to deploy anyway (recorded in the ledger)."""

    def __init__(self, check: PolicyCheck) -> None:
        self.check = check
        super().__init__(
            "the backtest fails the deployment policy: " + "; ".join(check.failures)
            + ". Improve the strategy, or deploy anyway with force=True (`--force` on the command line; recorded as forced in the ledger)."
        )
