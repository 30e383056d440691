"""`quantlab demo` end to end: the quickstart notebook headless into a temporary folder."""
from __future__ import annotations

import subprocess
import sys
import time

import nbformat

from quantlab.hub import AssetsHub


def test_quantlab_demo_runs_the_quickstart_into_a_folder(tmp_path):
    out = tmp_path / "demo"
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "quantlab", "demo", "--out", str(out), "-q"],
                          capture_output=True, text=True, timeout=240, cwd=tmp_path)
    took = time.perf_counter() - t0
    assert proc.returncode == 0, proc.stderr
    assert took < 120, f"quantlab demo took {took:.0f}s"
    notebook, html, hub = out / "01_quickstart.ipynb", out / "01_quickstart.html", out / "assets-hub"
    for path in (notebook, html, hub):
        assert str(path) in proc.stdout, proc.stdout

    # the executed notebook ran every cell without an error, with the hub we gave it
    nb = nbformat.read(notebook, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(c.execution_count for c in code)
    assert not [o for c in code for o in c.outputs if o.output_type == "error"]
    assert any(str(hub) in c.source for c in nb.cells if "injected-parameters" in c.metadata.get("tags", []))
    # reopened, the widgets still open at the end (review, deploy panel) render from the saved widget state,
    # and each keeps its static HTML beside it; the monitor closed itself and left its snapshot instead
    from quantlab.reports.notebooks import widget_views

    views = widget_views(nb)
    assert len(views) >= 2 and all(v["saved"] for v in views), views
    assert all("text/html" in v["fallback"] for v in views), views
    page = html.read_text()
    assert page.count("data:image/png;base64,") >= 2        # the review's charts, as static PNGs
    assert "quantlab-live-chart" in page and "fill-buy" in page  # the monitor's snapshot: the strategy trading

    # the hub has the new commit (metrics in the message) and the deployment's life in the ledger
    store = AssetsHub(hub, create=False)
    try:
        strategies = store.strategies()
        assert list(strategies["name"]) == ["sma_cross"]
        commit = strategies.iloc[0]["commit"]
        message = store.repo.commit(commit).message
        assert "sharpe" in message.lower()
        assert commit[:12] in proc.stdout
        events = store.deployments()
        assert list(events["status"]) == ["pending", "running", "stopped"]
        assert set(events["commit"].dropna()) == {commit}
        status = store.deployment_status()
        dep_id = str(status.iloc[-1]["broker_deployment_id"])
        assert status.iloc[-1]["status"] == "stopped"           # the notebook stops it before closing
    finally:
        store.close()
    assert f"deployment         {dep_id} (stopped)" in proc.stdout


def test_quantlab_demo_reports_a_failing_cell(tmp_path):
    # a file where the hub folder must go: the lab cannot start → a readable one-line error, exit 1
    out = tmp_path / "demo"
    out.mkdir()
    (out / "assets-hub").write_text("not a folder")
    proc = subprocess.run([sys.executable, "-m", "quantlab", "demo", "--out", str(out), "-q"],
                          capture_output=True, text=True, timeout=240)
    assert proc.returncode == 1
    line = [ln for ln in proc.stderr.splitlines() if ln.startswith("quantlab demo: error:")]
    assert line and "01_quickstart.ipynb failed in cell [" in line[0], proc.stderr
    assert (out / "01_quickstart.html").is_file()
