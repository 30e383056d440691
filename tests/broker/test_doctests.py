"""The examples in the broker's, the MT5 test support's and the client config's docstrings run and print what they claim."""
from __future__ import annotations

import doctest
import importlib

import pytest

MODULES = ["quantlab.servers.broker.models", "quantlab.servers.broker.constants", "quantlab.servers.broker.feed",
           "quantlab.servers.broker.clock", "quantlab.servers.broker.tools.common", "quantlab.servers.broker.tools.market",
           "quantlab.servers.broker.tools.trading", "quantlab.servers.broker.server", "quantlab.testing.mt5",
           "quantlab.client._config", "quantlab.client._core"]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    mod = importlib.import_module(name)
    res = doctest.testmod(mod, optionflags=doctest.ELLIPSIS | doctest.IGNORE_EXCEPTION_DETAIL, verbose=False)
    assert res.attempted > 0 and res.failed == 0, f"{res.failed} of {res.attempted} doctest(s) failed in {name}"
