"""The quickstart as Run All leaves it: headless (teardown) it keeps the monitor's chart with the fills
as a static snapshot; in a front end (no teardown) the lab keeps running and nothing is stopped."""
from __future__ import annotations

import re
from pathlib import Path

import nbformat
import papermill as pm

from quantlab.hub import AssetsHub

QUICKSTART = Path(__file__).resolve().parents[2] / "notebooks" / "01_quickstart.ipynb"


def outputs_of(cell) -> list[dict]:
    return [o for o in cell.outputs if o.output_type in ("display_data", "execute_result")]


def test_headless_quickstart_keeps_a_snapshot_of_the_monitor_with_fills(tmp_path):
    out, hub = tmp_path / "quickstart.ipynb", tmp_path / "hub"
    pm.execute_notebook(str(QUICKSTART), str(out), parameters={"hub": str(hub), "teardown": True},
                        kernel_name="python3", progress_bar=False, cwd=str(tmp_path))
    nb = nbformat.read(out, as_version=4)
    watch = next(c for c in nb.cells if c.cell_type == "code" and "quantlab.monitor(lab)" in c.source)
    [shown] = outputs_of(watch)
    data = shown["data"]
    # closed by the teardown cell: the output was replaced by the static snapshot (no dangling widget view)
    assert "application/vnd.jupyter.widget-view+json" not in data
    html = data["text/html"]
    assert "quantlab-live-chart" in html and "closed" in html
    fills = int(re.search(r"data-fills='(\d+)'", html).group(1))
    assert fills > 0 and "class='fill-buy'" in html and "market time" in html
    # the teardown cell is the last code cell, marked, and it stopped the deployment
    teardown = [c for c in nb.cells if c.cell_type == "code"][-1]
    assert "teardown" in teardown.metadata.get("tags", []) and "lab closed" in "".join(
        o.get("text", "") for o in teardown.outputs)
    store = AssetsHub(hub, create=False)
    try:
        assert store.deployment_status().iloc[-1]["status"] == "stopped"
    finally:
        store.close()
