"""Validation in the faces: causal / deflated Sharpe / out-of-sample badges, and the walk-forward view.

Self-contained (the review widget and the deploy panel each add one line that calls
:func:`badges_html`); :class:`WalkForwardView` is what ``quantlab.review(walk_forward_result)`` shows.
"""
from __future__ import annotations

import math
from typing import Any, Mapping

import ipywidgets as widgets

from quantlab.engine.backtest import BacktestResult
from quantlab.engine.lookahead import LookaheadReport
from quantlab.engine.walkforward import WalkForwardResult
from quantlab.lab.policy import DeploymentPolicy

from . import _render as R
from ._base import StaticFallback

__all__ = ["badges_html", "WalkForwardView", "is_walk_forward"]


def _num(x: Any) -> float | None:
    try:
        v = float(x)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


def _trials_of(name: Any) -> int | None:
    """The active Lab's trial count for this strategy family (None without a Lab)."""
    try:
        from quantlab.lab.lab import Lab

        lab = Lab.active()
        return int(lab.hub.trials(name)) if lab is not None and name else None
    except Exception:  # noqa: BLE001 - badges never break a review
        return None


def badges_html(result: BacktestResult | Mapping[str, Any], policy: DeploymentPolicy | None = None) -> str:
    """Causal, deflated (or probabilistic) Sharpe and out-of-sample Sharpe as badges.

    ``result`` is a :class:`~quantlab.engine.backtest.BacktestResult` or a dict of metrics.
    Green/red where the ``policy`` has a rule for it (or for ``causal`` when known), grey otherwise.

    >>> html = badges_html({"causal": False, "deflated_sharpe": 0.41, "trials": 57, "oos_sharpe": 0.73})
    >>> "looks ahead" in html, "deflated Sharpe 0.41 (57 trials)" in html, "OOS Sharpe 0.73" in html
    (True, True, True)
    """
    run = result if isinstance(result, BacktestResult) else None
    metrics: Mapping[str, Any] = run.metrics if run is not None else result
    out = []
    causal = metrics.get("causal")
    if causal is None:
        out.append(R.pill("look-ahead not checked", R.GREY, "lab.validate(result) runs quantlab.check_lookahead"))
    else:
        report = run.lookahead if run is not None else None
        out.append(R.pill("✔ causal" if causal else "✘ looks ahead", R.GREEN if causal else R.RED,
                          report.message if isinstance(report, LookaheadReport) else ""))
    dsr, trials = _num(metrics.get("deflated_sharpe")), metrics.get("trials")
    if dsr is None and run is not None:
        n = _trials_of(run.name)
        if n:
            from quantlab.engine import stats

            r = run.returns.to_numpy()
            if run.holdout and run.metrics_oos is not None:
                r = r[: len(r) - int(run.holdout.get("bars", 0))]
            dsr, trials = _num(stats.deflated_sharpe(r, n)), n
    lo = policy.min_deflated_sharpe if policy is not None else None
    if dsr is not None:
        colour = R.GREY if lo is None else (R.GREEN if dsr >= lo else R.RED)
        out.append(R.pill(f"deflated Sharpe {dsr:.2f} ({trials} trials)", colour,
                          "probability that the Sharpe beats the luck of that many tries (Bailey & López de Prado)"))
    elif _num(metrics.get("psr")) is not None:
        out.append(R.pill(f"PSR {float(metrics['psr']):.2f}", R.GREY, "probability that the true Sharpe is above 0"))
    oos = _num(metrics.get("oos_sharpe"))
    if oos is None and run is not None and run.metrics_oos is not None:
        oos = _num(run.metrics_oos.get("sharpe"))
    if oos is not None:
        lo = policy.min_oos_sharpe if policy is not None else None
        colour = R.GREY if lo is None else (R.GREEN if oos >= lo else R.RED)
        out.append(R.pill(f"OOS Sharpe {oos:.2f}", colour, "Sharpe on the held-out bars (holdout=)"))
    return f"<div class='quantlab-validation' style='margin:4px 0'>{''.join(out)}</div>"


def is_walk_forward(obj: Any) -> bool:
    """Whether ``quantlab.review`` got a :class:`~quantlab.engine.walkforward.WalkForwardResult`."""
    return isinstance(obj, WalkForwardResult)


class WalkForwardView(StaticFallback, widgets.VBox):
    """``quantlab.review(wf)``: IS vs OOS bars per fold, the stitched OOS equity and the fold table."""

    def __init__(self, wf: Any) -> None:
        self.result = wf
        super().__init__([widgets.HTML(self.to_html())])

    def to_html(self) -> str:
        return self.result._repr_html_()

    def __repr__(self) -> str:
        return f"WalkForwardView({self.result!r})"
