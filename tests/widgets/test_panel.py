"""quantlab.deploy_panel against a real Lab (embedded backtest + broker servers, git hub)."""
from __future__ import annotations

import html
import time

import git
import pytest

from quantlab.engine.backtest import backtest

from quantlab.widgets import DeployPanel, DeployPanelError, deploy_panel

from .conftest import assert_html_ok


def test_button_disabled_while_policy_fails_until_deploy_anyway(lab, failing):
    panel = deploy_panel(failing, lab)
    assert isinstance(panel, DeployPanel)
    assert panel.check.passed is False
    assert panel._deploy_btn.disabled and not panel.can_submit
    assert "deploy anyway" in panel._deploy_btn.tooltip
    with pytest.raises(DeployPanelError, match="policy fails .*sharpe"):
        panel.click()
    panel._force.value = True  # tick "deploy anyway"
    assert not panel._deploy_btn.disabled and panel.can_submit
    panel.force = False
    assert panel._deploy_btn.disabled
    assert "policy FAILED" in repr(panel) and "blocked by the policy" in repr(panel)


def test_shows_what_will_be_stored(lab, passing):
    panel = deploy_panel(passing, lab)
    preview = lab.hub.preview(passing.strategy, passing)
    info = panel._info.value
    assert preview["path"].rsplit("_", 1)[0] in info  # same file stem (the timestamp is per second)
    assert preview["message"].splitlines()[0] in info
    assert "Sharpe ratio" in info and "PASSED" in info
    assert list(panel._symbol.options) == list(lab.symbols()) and panel.symbol == lab.symbols()[0]
    assert not panel._deploy_btn.disabled and not panel._force.value and panel._force.disabled
    assert panel._stop_btn.layout.display == "none"


def test_click_stores_deploys_and_stops(lab, sma, data):
    passing = backtest(data, sma, params={"fast": 10, "slow": 30})  # passes the policy; never stored before
    panel = deploy_panel(passing, lab, volume=0.2)
    head_before = git.Repo(lab.hub.path).head.commit.hexsha
    outcome = panel.click(timeout=120)
    assert outcome is panel.outcome and outcome.ok, panel.error
    repo = git.Repo(lab.hub.path)
    assert repo.head.commit.hexsha != head_before
    assert repo.is_ancestor(head_before, outcome.stored.commit)  # a new commit on the branch...
    assert repo.is_ancestor(outcome.stored.commit, repo.head.commit)
    assert (repo.head.commit.tree / outcome.stored.file).data_stream.read().decode() == passing.strategy.code  # ...with the code
    dep = outcome.record.deployment_id
    row = lab.deployments().set_index("deployment_id").loc[dep]
    assert row["status"] == "running"
    assert [s for s, st, _ in panel.steps if st == "done"] == ["validate", "store", "deploy", "record"]
    html = panel._outcome_html.value
    assert outcome.stored.commit[:12] in html and dep in html and "Stored and deployed" in html
    assert_html_ok(html)
    assert_html_ok(panel._steps_html.value)
    assert panel._deploy_btn.disabled and panel._deploy_btn.description == "Deployed ✓"
    assert panel._stop_btn.layout.display is None  # the Stop button is shown
    with pytest.raises(DeployPanelError, match="already deployed"):
        panel.click()
    record = panel.stop(timeout=60)
    assert record.status == "stopped"
    assert lab.deployments().set_index("deployment_id").loc[dep, "status"] == "stopped"
    assert panel._stop_btn.layout.display == "none"
    assert "stopped deployment" in repr(panel)


def test_click_returns_at_once_and_cannot_double_submit(lab, failing):
    panel = deploy_panel(failing, lab)
    panel.force = True
    before = len(lab.deployments())
    t0 = time.perf_counter()
    panel._deploy_btn.click()  # what the front end triggers
    returned_after = time.perf_counter() - t0
    first = panel._thread
    assert panel._deploy_btn.disabled  # disabled before the handler returned
    panel._deploy_btn.click()
    panel._deploy_btn.click()
    assert panel._thread is first  # no second submission
    first.join(120)
    assert returned_after < 0.5
    assert panel.outcome.ok, panel.error
    assert len(lab.deployments()) == before + 1
    assert panel.steps[0][:2] == ("validate", "start")
    panel.stop(timeout=60)


def test_failure_shows_the_error_and_reenables(lab, sma, data):
    passing = backtest(data, sma, params={"fast": 5, "slow": 20})  # its own commit: nothing runs for it yet
    panel = deploy_panel(passing, lab, symbol="NO-SUCH-SYMBOL")
    outcome = panel.click(timeout=120)
    assert outcome is None or not outcome.ok
    assert panel.error and "NO-SUCH-SYMBOL" in panel.error
    assert html.escape(panel.error) in panel._outcome_html.value
    assert not panel.deployed and not panel._deploy_btn.disabled  # can retry after fixing the symbol
    assert "failed:" in repr(panel)


def test_static_fallback(lab, passing):
    panel = deploy_panel(passing, lab)
    bundle = panel._repr_mimebundle_()
    assert bundle["text/plain"] == repr(panel)
    assert "Will store in the assets hub" in bundle["text/html"] and "Deployment policy" in bundle["text/html"]
    assert "application/vnd.jupyter.widget-view+json" in bundle
    assert_html_ok(bundle["text/html"])
