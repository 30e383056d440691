"""The faces follow the active Lab (``Lab.active()``) through its life: a fresh Lab is
started here, so the assertions hold whatever ran before."""
from __future__ import annotations

from IPython.core.interactiveshell import InteractiveShell

from quantlab.widgets import monitor, review

from .conftest import lab_class, wait_for


def test_status_review_and_monitor_follow_the_active_lab(tmp_path, capsys, passing):
    Lab = lab_class()
    from quantlab.lab.policy import DeploymentPolicy

    strict = DeploymentPolicy(min_sharpe=2.0)
    lab = Lab.start(hub=str(tmp_path / "hub"), clock="stepped", policy=strict)
    shell = InteractiveShell.instance()
    shell.run_line_magic("load_ext", "quantlab.magics")
    try:
        assert Lab.active() is lab
        # %quantlab status: the hub, and one line per MCP connection
        assert shell.run_cell("%quantlab status", store_history=False).success
        out = capsys.readouterr().out
        assert f"active lab: hub {lab.hub.path}" in out and "min_sharpe=2.0" in out
        assert "invocation count:" in out and "deployments triggered: 0" in out
        conn = out.split("MCP connections:")[1].strip().splitlines()
        assert conn[0].split()[:3] == ["server", "status", "transport"]
        assert {line.split()[0] for line in conn[1:]} == {"backtest", "broker"}
        assert all(line.split()[1] == "connected" for line in conn[1:])
        # review() badges use the active lab's policy by default (what the deploy panel checks)
        rv = review(passing)
        assert rv.policy is strict and rv.check.passed is False  # sharpe 1.17 < 2.0
        # a monitor stops refreshing by itself once the lab is closed
        m = monitor(lab, interval=0.05, max_errors=3)
        assert m.error is None and m.running
    finally:
        lab.close()
    assert wait_for(lambda: not m.running, 10)
    assert m.error.startswith("stopped auto-refresh after 3 failures in a row")
    assert m.auto_refresh.value is False and "paused" in repr(m)
    m.close()
    assert Lab.active() is None
    shell.run_cell("%quantlab status", store_history=False)
    assert "active lab: none" in capsys.readouterr().out
