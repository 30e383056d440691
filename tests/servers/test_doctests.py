"""The examples in the backtest server's docstrings run and print what they claim."""
from __future__ import annotations

import doctest
import importlib

import pytest

MODULES = ["quantlab.servers.backtest.server", "quantlab.servers.backtest.backend", "quantlab.servers.backtest.models",
           "quantlab.servers.backtest.pool", "quantlab.servers.backtest.worker", "quantlab.servers.backtest.tools.common",
           "quantlab.servers.backtest.tools.sweep"]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    mod = importlib.import_module(name)
    res = doctest.testmod(mod, optionflags=doctest.ELLIPSIS, verbose=False)
    assert res.attempted > 0 and res.failed == 0, f"{res.failed} of {res.attempted} doctest(s) failed in {name}"
