"""quantlab.client in a real Jupyter kernel: nbclient and papermill execute tests/notebooks/client_kernel.ipynb.

The notebook opens an MCPHub in one cell and calls it in later ones, calls it from a cell
running on the kernel's own loop (top-level await), keeps an AsyncMCPHub on the kernel
loop across cells, survives an interrupt, and leaves one hub open: after the kernel shuts
down no server process may remain.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import nbformat
import psutil
import pytest

NOTEBOOK = Path(__file__).with_name("client_kernel.ipynb")


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _check(nb) -> None:
    printed = [
        o["text"] for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []) if o.get("name") == "stdout"
    ]
    info = json.loads(printed[-1].strip().splitlines()[-1])
    html = [
        o["data"]["text/html"]
        for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []) if "text/html" in o.get("data", {})
    ]
    assert any("MCPHub" in h and "<table" in h and "add" in h for h in html)
    deadline = time.monotonic() + 5
    pids = [info["kept_pid"], *info["closed_pids"]]
    while any(_alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(_alive(p) for p in pids), "an MCP server outlived the kernel"


def test_notebook_in_kernel_nbclient():
    from nbclient import NotebookClient

    nb = nbformat.read(NOTEBOOK, as_version=4)
    NotebookClient(nb, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(NOTEBOOK.parent)}}).execute()
    _check(nb)


def test_notebook_under_papermill(tmp_path):
    pm = pytest.importorskip("papermill")
    out = tmp_path / "out.ipynb"
    pm.execute_notebook(str(NOTEBOOK), str(out), kernel_name="python3", progress_bar=False, cwd=str(NOTEBOOK.parent))
    _check(nbformat.read(out, as_version=4))
