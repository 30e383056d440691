"""The examples in the client's docstrings (connect reports, result unwrapping, argument checks) run and print what they claim."""
from __future__ import annotations

import doctest
import importlib

import pytest

MODULES = ["quantlab.client._calls", "quantlab.client._report", "quantlab.client._state"]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    mod = importlib.import_module(name)
    res = doctest.testmod(mod, optionflags=doctest.ELLIPSIS, verbose=False)
    assert res.attempted > 0 and res.failed == 0, f"{res.failed} of {res.attempted} doctest(s) failed in {name}"
