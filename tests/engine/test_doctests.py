"""The examples in the engine's docstrings run and print what they claim."""
from __future__ import annotations

import doctest
import importlib

import pytest

MODULES = ["quantlab.engine.data", "quantlab.engine.backtest", "quantlab.engine.stats",
           "quantlab.engine.plotting", "quantlab.engine", "quantlab.data", "quantlab.engine.signals",
           "quantlab.engine.strategy", "quantlab.engine.simulate", "quantlab.engine.result", "quantlab.engine.walkforward"]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    mod = importlib.import_module(name)
    res = doctest.testmod(mod, optionflags=doctest.ELLIPSIS | doctest.IGNORE_EXCEPTION_DETAIL, verbose=False)
    assert res.attempted > 0 and res.failed == 0, f"{res.failed} of {res.attempted} doctest(s) failed in {name}"
