"""The examples in the sweep package's docstrings run and print what they claim."""
from __future__ import annotations

import doctest
import importlib

import pytest


@pytest.mark.parametrize("name", ["quantlab.engine.sweep", "quantlab.engine.sweep.grid", "quantlab.engine.sweep.run",
                                  "quantlab.engine.sweep.result", "quantlab.servers.backtest.sweep_tool"])
def test_docstring_examples(name):
    mod = importlib.import_module(name)
    res = doctest.testmod(mod, optionflags=doctest.ELLIPSIS, verbose=False)
    assert res.attempted >= 2 and res.failed == 0, f"{res.failed} of {res.attempted} doctest(s) failed in {name}"
