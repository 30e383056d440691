"""quantlab.monitor: the live deployments table, the per-deployment chart and the refresh thread."""
from __future__ import annotations

import re
import time

import pandas as pd
import pytest

from quantlab.widgets import Monitor, monitor

from .conftest import assert_html_ok, wait_for


def test_refreshes_on_its_own_and_stops_on_close(lab):
    m = monitor(lab, interval=0.1, expected=False)
    assert isinstance(m, Monitor) and m.running
    assert wait_for(lambda: m.refreshes >= 4), m.refreshes
    m.close()
    assert not m.running
    n = m.refreshes
    time.sleep(0.4)
    assert m.refreshes == n  # no refresh after close
    assert "closed" in repr(m)
    m.close()  # idempotent
    assert "text/html" in m._repr_mimebundle_()
    with pytest.raises(RuntimeError, match="closed"):
        m.start()


def test_front_end_closing_the_widget_stops_the_thread(lab):
    m = monitor(lab, interval=0.1, expected=False)
    m.comm.handle_close({"content": {"data": {}}})  # the comm_close a front end sends
    assert wait_for(lambda: not m.running, 5)
    m.close()


def test_pause_and_resume_with_the_checkbox(lab):
    m = monitor(lab, interval=0.1, expected=False)
    m.auto_refresh.value = False
    assert wait_for(lambda: not m.running, 5)
    n = m.refreshes
    time.sleep(0.3)
    assert m.refreshes == n
    m.refresh_button.click()  # manual refresh still works
    assert m.refreshes == n + 1
    m.auto_refresh.value = True
    assert m.running and wait_for(lambda: m.refreshes >= n + 3)
    m.close()


def test_chart_shows_the_paper_market_with_fills_position_and_pnl(lab, passing):
    outcome = lab.store_and_deploy(passing, timeframe=1, force=True)  # minute bars: trades within 240 steps
    assert outcome.ok, outcome.error
    dep = outcome.record.deployment_id
    lab.advance(240)
    m = monitor(lab, interval=60, autostart=False)
    try:
        m.show(dep)
        act = m.activity
        assert act.deployment_id == dep and len(act.bars) > 0 and len(act.fills) > 0
        # the position after the last fill is what the broker holds; the chart's PnL ends at the broker's
        assert act.lots == pytest.approx(act.fills["lots"].iloc[-1])
        live = lab.deployments().set_index("deployment_id").loc[dep]
        assert act.lots == pytest.approx(float(live["position"]))
        assert abs(act.bars.index[-1] - act.market_time) <= pd.Timedelta(minutes=1)  # the paper clock, bar 0 forming
        # the backtest's expected position on the same candles, in lots of this deployment's volume
        assert act.expected is not None and act.expected.index.equals(act.bars.index)
        assert set(act.expected.unique()) <= {0.0, act.volume}
        svg = m.chart.value
        assert f"data-deployment='{dep}'" in svg and f"data-fills='{len(act.fills)}'" in svg
        assert "class='fill-buy'" in svg and "class='candle-up'" in svg
        assert "class='paper-position'" in svg and "class='expected-position'" in svg and "class='pnl'" in svg
        assert f"market time {act.market_time:%Y-%m-%d %H:%M}" in svg  # the paper clock, not the wall clock
        assert ">lots<" in svg and f">PnL {act.currency}<" in svg and act.currency == "USD"
        assert_html_ok(m.to_html())
        assert "quantlab-live-chart" in m.to_html()  # the static fallback carries the chart
    finally:
        m.close()


def test_table_shows_deployments_with_units_and_stops_one(lab, passing):
    outcome = lab.store_and_deploy(passing, timeframe=1, force=True)  # minute bars: trades within 240 steps
    dep = outcome.record.deployment_id
    m = monitor(lab, interval=60, autostart=False, expected=False)
    try:
        df = m.refresh()
        assert dep in set(df["deployment_id"])
        assert "running</b>" in m.table.value and "position (lots)" in m.table.value and "PnL (USD)" in m.table.value
        assert f"<code>{outcome.stored.commit[:12]}</code>" in m.table.value
        assert_html_ok(m.table.value)
        m.show(dep)
        assert m.picker.value == dep and not m.stop_button.disabled
        m.stop_button.click()
        assert m.frame.set_index("deployment_id").loc[dep, "status"] == "stopped"
        assert m.stop_button.disabled  # a stopped deployment cannot be stopped again
        assert re.search(rf"{dep} · .* \(stopped\)", dict((v, k) for k, v in m.picker.options)[dep])
        assert "deployment(s)" in repr(m) and "paused" in repr(m)
        with pytest.raises(ValueError, match="no deployment 'nope'"):
            m.show("nope")
    finally:
        m.close()


def test_rejects_what_is_not_a_lab():
    with pytest.raises(TypeError, match="needs a quantlab.Lab"):
        monitor(object())
