"""Executed headless (nbclient, as papermill does) the widgets leave static HTML with PNG
charts in the notebook, and nbconvert's HTML export shows them without a widget manager."""
from __future__ import annotations

import nbformat
from nbclient import NotebookClient
from nbconvert import HTMLExporter

from quantlab.engine.costs import default_costs, format_costs

from .conftest import inline_pngs, png_size

CELLS = [
    "from quantlab.engine.backtest import backtest\nfrom quantlab.engine.data import sample\n"
    "from quantlab.widgets import review\n",
    "%load_ext quantlab.magics",
    "%%strategy SMA cross\ndef signals(data, fast=10, slow=100):\n"  # passes the default policy after the default costs
    "    return (data.close.rolling(fast).mean() > data.close.rolling(slow).mean()).astype(float)\n",
    "review(backtest(sample(), sma_cross))",
]


def test_executed_notebook_and_html_export_show_the_charts(tmp_path):
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in CELLS])
    NotebookClient(nb, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    assert "checked -> variable `sma_cross`" in nb.cells[2].outputs[0]["text"]
    out = nb.cells[3].outputs[0]
    assert out["output_type"] == "display_data"  # shown with a display id, so close() can leave its snapshot there
    assert {"text/plain", "text/html", "application/vnd.jupyter.widget-view+json"} <= set(out["data"])
    assert out["data"]["text/plain"].startswith("Review(#0 SMA cross (fast=10 slow=100)")
    pngs = inline_pngs(out["data"]["text/html"])
    assert len(pngs) == 2 and png_size(pngs[0]) == (800, 460)

    # without the widget state (a report exported for offline reading) nbconvert falls back to text/html
    nb.metadata.pop("widgets", None)
    body, _ = HTMLExporter().from_notebook_node(nb)
    assert len(inline_pngs(body)) >= 2
    assert "Sharpe ratio" in body and "policy PASSED" in body
    assert format_costs(default_costs()) in body           # the costs behind the numbers, in the header
