"""quantlab: from a JupyterLab cell to a paper-traded strategy.

The public API is what this module exports. Heavy parts (widgets, the lab,
the MCP client) are imported lazily on first use so ``import quantlab`` stays fast.
"""
from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

# public name -> module that defines it
_LAZY = {
    "Strategy": "quantlab.engine.strategy",
    "StrategyError": "quantlab.engine.strategy",
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'quantlab' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
