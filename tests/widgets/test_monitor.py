"""quantlab.monitor: the live deployments table and its refresh thread."""
from __future__ import annotations

import time

import pytest

from quantlab.widgets import Monitor, monitor

from .conftest import assert_html_ok


def wait_for(cond, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.02)
    return False


def test_refreshes_on_its_own_and_stops_on_close(lab):
    m = monitor(lab, interval=0.1)
    assert isinstance(m, Monitor) and m.running
    assert wait_for(lambda: m.refreshes >= 4), m.refreshes
    thread = m._thread
    m.close()
    assert not thread.is_alive() and not m.running
    n = m.refreshes
    time.sleep(0.4)
    assert m.refreshes == n  # no refresh after close
    assert "closed" in repr(m)
    m.close()  # idempotent
    assert "text/html" in m._repr_mimebundle_()
    with pytest.raises(RuntimeError, match="closed"):
        m.start()


def test_front_end_closing_the_widget_stops_the_thread(lab):
    m = monitor(lab, interval=0.1)
    thread = m._thread
    m.comm.handle_close({"content": {"data": {}}})  # the comm_close a front end sends
    assert wait_for(lambda: not thread.is_alive(), 5)
    m.close()


def test_pause_and_resume_with_the_checkbox(lab):
    m = monitor(lab, interval=0.1)
    m._auto.value = False
    assert wait_for(lambda: not m.running, 5)
    n = m.refreshes
    time.sleep(0.3)
    assert m.refreshes == n
    m._refresh_btn.click()  # manual refresh still works
    assert m.refreshes == n + 1
    m._auto.value = True
    assert m.running and wait_for(lambda: m.refreshes >= n + 3)
    m.close()


def test_table_shows_deployments_and_stops_one(lab, passing):
    outcome = lab.store_and_deploy(passing, force=True)
    dep = outcome.record.deployment_id
    m = monitor(lab, interval=60, autostart=False)
    try:
        df = m.refresh()
        assert dep in set(df["deployment_id"])
        assert dep in m._table.value and "<b style='color:#1a7f37'>running</b>" in m._table.value
        assert f"<code>{outcome.stored.commit[:12]}</code>" in m._table.value
        assert_html_ok(m._table.value)
        assert dep in m._stop_pick.options and m._stop_pick.value is not None  # a running one is preselected
        m._stop_pick.value = dep
        m._stop_btn.click()
        assert m.frame.set_index("deployment_id").loc[dep, "status"] == "stopped"
        assert dep not in m._stop_pick.options
        assert "deployment(s)" in repr(m) and "paused" in repr(m)
    finally:
        m.close()


def test_rejects_what_is_not_a_lab():
    with pytest.raises(TypeError, match="needs a Lab"):
        monitor(object())

