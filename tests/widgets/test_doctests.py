"""The examples in the widgets' HTML helpers and the one palette run and print what they claim."""
from __future__ import annotations

import doctest
import importlib

import pytest

MODULES = ["quantlab.widgets._panel_html", "quantlab.widgets._render", "quantlab.widgets._validation",
           "quantlab._util.html"]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    mod = importlib.import_module(name)
    res = doctest.testmod(mod, optionflags=doctest.ELLIPSIS, verbose=False)
    assert res.attempted > 0 and res.failed == 0, f"{res.failed} of {res.attempted} doctest(s) failed in {name}"
