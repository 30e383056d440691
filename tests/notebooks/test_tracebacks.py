"""quantlab errors in a real Jupyter kernel: a short traceback naming the strategy's line,
the full chain on demand (issue 15, "Errors read like the user's code")."""
from __future__ import annotations

import re

import nbformat
import pytest
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

STRATEGY = '''
def signals(data, fast=5):
    x = data.close.rolling(fast).mean()
    raise RuntimeError("my custom boom")
'''

SETUP = f'''
import quantlab
from quantlab.engine.data import from_reference
data = from_reference("synthetic:seed=1,bars=300,freq=1h")
code = {STRATEGY!r}
'''


def _run(*cells: str) -> nbformat.NotebookNode:
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(c) for c in cells]
    client = NotebookClient(nb, timeout=120, kernel_name="python3", allow_errors=True)
    client.execute()
    return nb


def _error(cell) -> dict:
    errors = [o for o in cell.outputs if o.output_type == "error"]
    assert errors, cell.outputs
    return errors[0]


def test_strategy_error_in_a_kernel_is_short_and_names_the_strategy_line():
    nb = _run(
        SETUP,
        "quantlab.backtest(data, code, {'fast': 3}, sandbox=True)",
        "import sys\nprint(sys.last_value.full_traceback())",
        "quantlab.options.full_tracebacks = True\nquantlab.backtest(data, code, {'fast': 3}, sandbox=True)",
    )
    short = _error(nb.cells[1])
    text = "\n".join(short.traceback)
    assert short.ename == "SignalError"
    assert len(short.traceback) <= 8, text
    assert "my custom boom" in text and "RuntimeError" in text
    assert re.search(r"line 4\b", text), text                     # the strategy's own `raise` line
    assert "concurrent/futures" not in text and "quantlab/engine" not in text
    assert "full_traceback()" in text                            # the one hint: how to get the rest
    # on demand: the whole chain, through quantlab's own modules
    full = "".join(o.get("text", "") for o in nb.cells[2].outputs if o.output_type == "stream")
    assert "Traceback (most recent call last)" in full and "quantlab" in full and len(full.splitlines()) > len(short.traceback)
    long = _error(nb.cells[3])
    assert len(long.traceback) > len(short.traceback) and any("quantlab" in ln for ln in long.traceback)


def test_quantlab_traceback_magic_prints_the_last_errors_full_chain():
    nb = _run(
        SETUP + "%load_ext quantlab",
        "%quantlab traceback",                                   # nothing failed yet
        "quantlab.backtest(data, code, {'fast': 3}, sandbox=True)",
        "%quantlab traceback",
        "%quantlab tracebak",
    )
    before = "".join(o.get("text", "") for o in nb.cells[1].outputs if o.output_type == "stream")
    assert before.startswith("no error yet in this session")
    short = _error(nb.cells[2])
    assert "%quantlab traceback" in "\n".join(short.traceback)    # the hint names the magic
    full = "".join(o.get("text", "") for o in nb.cells[3].outputs if o.output_type == "stream")
    assert full.startswith("Traceback (most recent call last)")
    assert "my custom boom" in full and re.search(r"quantlab[/\\]engine", full)   # through quantlab's own modules
    assert "SignalError: " in full and "RuntimeError" in full
    assert len(full.splitlines()) > len(short.traceback)
    unknown = "".join(o.get("text", "") for o in nb.cells[4].outputs if o.get("name") == "stderr")  # IPython's UsageError
    assert unknown.startswith("UsageError: %quantlab tracebak: unknown command") and "`%quantlab traceback`" in unknown
