"""The review widget and the deploy panel show the validation badges; review(walk_forward) shows the folds."""
from __future__ import annotations

import quantlab
from quantlab import Strategy
from quantlab.widgets._validation import WalkForwardView

from .conftest import SMA
from .test_lab_validation import LENIENT, PEEK


def test_review_shows_badges_and_walk_forward(hourly):
    r = quantlab.backtest(hourly, SMA)
    html = quantlab.review(r, policy=False).to_html()
    assert "quantlab-validation" in html and "look-ahead not checked" in html and "PSR" in html
    r.metrics.update(causal=True, deflated_sharpe=0.37, trials=12)
    html = quantlab.review(r, policy=quantlab.DeploymentPolicy(min_deflated_sharpe=0.5)).to_html()
    assert "✔ causal" in html and "deflated Sharpe 0.37 (12 trials)" in html
    wf = quantlab.walk_forward(SMA, hourly, {"fast": [5, 10], "slow": [40, 80]}, train=1500, test=800, progress=False)
    view = quantlab.review(wf)
    assert isinstance(view, WalkForwardView)
    html = view.to_html()
    assert "<svg" in html and "in sample" in html and "out of sample" in html and "oos_sharpe" in html
    assert "text/html" in view._repr_mimebundle_()


def test_deploy_panel_shows_lookahead_and_refuses_it(lab):
    peek = lab.backtest(Strategy.from_code(PEEK, name="panel-peek"), "sample")
    panel = quantlab.deploy_panel(peek, lab=lab, policy=LENIENT)
    html = panel.to_html()
    assert "✘ looks ahead" in html and "quantlab-validation" in html
    assert not panel.check.passed and not panel.can_submit       # forcing is an explicit choice
    panel.force = True
    assert panel.can_submit
    panel.close()
    held = lab.backtest(Strategy.from_code(SMA, name="panel-oos"), "sample", holdout=0.3)
    panel = quantlab.deploy_panel(held, lab=lab, policy=LENIENT)
    html = panel.to_html()
    assert "✔ causal" in html and "OOS Sharpe" in html and "deflated Sharpe" in html
    panel.close()
