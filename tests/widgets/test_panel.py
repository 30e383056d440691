"""quantlab.deploy_panel against a real Lab (embedded backtest + broker servers, git hub)."""
from __future__ import annotations

import html

import git
import pytest

from quantlab.engine.backtest import backtest

from quantlab.widgets import DeployPanel, DeployPanelError, deploy_panel

from .conftest import FRICTIONLESS, PASSING, assert_html_ok, wait_for


def test_button_disabled_while_policy_fails_until_deploy_anyway(lab, failing):
    panel = deploy_panel(failing, lab)
    assert isinstance(panel, DeployPanel)
    assert panel.check.passed is False
    assert panel.deploy_button.disabled and not panel.can_submit
    assert "deploy anyway" in panel.deploy_button.tooltip
    with pytest.raises(DeployPanelError, match="policy fails .*sharpe"):
        panel.click()
    panel.force_box.value = True  # tick "deploy anyway"
    assert not panel.deploy_button.disabled and panel.can_submit
    panel.force = False
    assert panel.deploy_button.disabled
    assert "policy FAILED" in repr(panel) and "blocked by the policy" in repr(panel)


def test_shows_what_will_be_stored(lab, sma, data):
    fresh = sma.__class__.from_code(sma.code + "\n# never stored\n", name=sma.name)
    passing = backtest(data, fresh, params=PASSING, **FRICTIONLESS)  # passes the policy; not in the hub yet
    panel = deploy_panel(passing, lab)
    preview = lab.hub.preview(passing.strategy, passing)
    info = panel.info_view.value
    assert panel.existing is None and panel.file.rsplit("_", 1)[0] == preview["path"].rsplit("_", 1)[0]
    assert preview["path"].rsplit("_", 1)[0] in info and "(new)" in info  # same file stem (the timestamp is per second)
    assert preview["message"].splitlines()[0] in info
    assert "Sharpe ratio" in info and "PASSED" in info
    assert list(panel.symbol_input.options) == list(lab.symbols()) and panel.symbol == lab.symbols()[0]
    assert not panel.deploy_button.disabled and not panel.force_box.value and panel.force_box.disabled
    assert panel.stop_button.layout.display == "none"


def test_click_stores_deploys_and_stops(lab, sma, data):
    passing = backtest(data, sma, params={"fast": 10, "slow": 30}, **FRICTIONLESS)  # passes the policy; never stored before
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
    html = panel.outcome_view.value
    assert outcome.stored.commit[:12] in html and dep in html and "Stored and deployed" in html
    assert_html_ok(html)
    assert_html_ok(panel.steps_view.value)
    assert panel.deploy_button.disabled and panel.deploy_button.description == "Deployed ✓"
    assert panel.stop_button.layout.display is None  # the Stop button is shown
    with pytest.raises(DeployPanelError, match="already deployed"):
        panel.click()
    record = panel.stop(timeout=60)
    assert record.status == "stopped"
    assert lab.deployments().set_index("deployment_id").loc[dep, "status"] == "stopped"
    assert panel.stop_button.layout.display == "none"
    assert "stopped deployment" in repr(panel)


def test_click_returns_at_once_and_cannot_double_submit(lab, failing):
    panel = deploy_panel(failing, lab)
    panel.force = True
    before = len(lab.deployments())
    panel.deploy_button.click()  # what the front end triggers: returns while the work runs in a thread
    assert panel.running and panel.deploy_button.disabled  # disabled before the handler returned
    panel.deploy_button.click()
    panel.deploy_button.click()
    assert wait_for(lambda: not panel.running, 120)
    assert panel.outcome.ok, panel.error
    assert len(lab.deployments()) == before + 1
    assert panel.steps[0][:2] == ("validate", "start")
    panel.stop(timeout=60)
    assert [s for s, st, _ in panel.steps if st == "start"] == ["validate", "store", "deploy"]  # one submission


def test_failure_shows_the_error_and_reenables(lab, sma, data):
    passing = backtest(data, sma, params={"fast": 5, "slow": 20}, **FRICTIONLESS)  # its own commit: nothing runs for it yet
    panel = deploy_panel(passing, lab, symbol="NO-SUCH-SYMBOL")
    head = git.Repo(lab.hub.path).head.commit.hexsha
    outcome = panel.click(timeout=120)
    assert outcome is None and "no symbol 'NO-SUCH-SYMBOL'" in panel.error and "Nothing was stored" in panel.error
    assert git.Repo(lab.hub.path).head.commit.hexsha == head  # checked against the broker before storing
    assert ("validate", "failed") == panel.steps[-1][:2]
    assert html.escape(panel.error) in panel.outcome_view.value
    assert not panel.deployed and not panel.deploy_button.disabled  # can retry after fixing the symbol
    assert "failed:" in repr(panel)


def test_static_fallback(lab, passing):
    panel = deploy_panel(passing, lab)
    bundle = panel._repr_mimebundle_()
    assert bundle["text/plain"] == repr(panel)
    assert "the assets hub" in bundle["text/html"] and "Deployment policy" in bundle["text/html"]
    assert "application/vnd.jupyter.widget-view+json" in bundle
    assert_html_ok(bundle["text/html"])


def test_timeframe_defaults_to_the_backtests_bars_and_a_mismatch_warns(lab, passing):
    panel = deploy_panel(passing, lab)
    assert panel.timeframe == 60 and panel.timeframe_input.label == "1 hour (H1)"  # the sample is hourly
    assert panel.timeframe_warning is None and panel.warning_view.value == ""
    panel.timeframe = 1
    assert "1 hour (H1) bars" in panel.timeframe_warning and "1 minute (M1)" in panel.timeframe_warning
    assert "⚠ Timeframe" in panel.warning_view.value and "⚠ Timeframe" in panel.to_html()
    assert "timeframe=1 minute (M1)" in repr(panel)


def test_stored_code_names_its_file_shows_code_and_diff_and_redeploys_after_stop(lab, sma, data):
    first = backtest(data, sma, params={"fast": 8, "slow": 30}, **FRICTIONLESS)
    stored = lab.store(first)
    again = deploy_panel(first, lab)  # the same code and params: nothing new would be written
    assert again.existing is not None and again.existing.commit == stored.commit and again.file == stored.file
    assert f"<code>{stored.file}</code>" in again.info_view.value and "already stored in commit" in again.info_view.value
    assert "same code as the last stored version" in again.info_view.value
    assert "<details" in again.info_view.value and "def signals" in again.info_view.value  # the code, folded

    changed = sma.__class__.from_code(sma.code.replace("fast=10", "fast=12"), name=sma.name)
    other = backtest(data, changed, params={"fast": 8, "slow": 30}, **FRICTIONLESS)
    panel = deploy_panel(other, lab)
    assert panel.existing is None and "Diff against the last stored version" in panel.info_view.value
    assert "+def signals(data, fast=12, slow=50):" in html.unescape(panel.info_view.value)
    assert_html_ok(panel.info_view.value)

    panel.force = not panel.check.passed
    assert panel.click(timeout=120).ok, panel.error
    first_id = panel.deployment_id
    panel.stop(timeout=60)
    assert panel.status == "stopped" and panel.stop_button.layout.display == "none"
    assert panel.redeploy_button.layout.display is None and "stopped</b>" in panel.outcome_view.value
    record = panel.redeploy(timeout=120)
    assert record.status == "running" and panel.deployment_id == record.deployment_id != first_id
    assert panel.status == "running" and panel.redeploy_button.layout.display == "none"
    assert lab.deployments().set_index("deployment_id").loc[record.deployment_id, "status"] == "running"
    panel.stop(timeout=60)
