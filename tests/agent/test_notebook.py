"""notebooks/05_agent.ipynb in a real kernel: under nbval (the checked outputs match) and papermill
(with the `model` parameter), with model="offline" - no key, no network."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

NOTEBOOK = Path(__file__).resolve().parents[2] / "notebooks" / "05_agent.ipynb"


def test_agent_notebook_under_nbval(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--nbval-lax",
                           "--nbval-sanitize-with", str(NOTEBOOK.parents[1] / "tests" / "nbval_sanitize.cfg"),
                           str(NOTEBOOK)], cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert " passed" in proc.stdout


def test_agent_notebook_under_papermill(tmp_path):
    pm = pytest.importorskip("papermill")
    out = tmp_path / "out.ipynb"
    pm.execute_notebook(str(NOTEBOOK), str(out), parameters={"model": "offline", "attempts": 4,
                                                             "hub": str(tmp_path / "hub")},
                        kernel_name="python3", progress_bar=False, cwd=str(tmp_path))
    nb = nbformat.read(out, as_version=4)
    printed = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []))
    assert "stop: passed" in printed and "deployed: True" in printed and "Quantlab-Transcript-SHA256" in printed
    html = "".join(o.get("data", {}).get("text/html", "") for c in nb.cells if c.cell_type == "code"
                   for o in c.get("outputs", []))
    assert "no LLM" in html                                        # the live view / generation says offline
    assert (tmp_path / "hub" / "generated_bots").is_dir()
