"""The engine layer: numpy/pandas only (no MCP, no I/O beyond data files).

The names below load on first use, so a light submodule (``quantlab.engine.costs``,
``quantlab.engine.strategy``) can be imported without pandas: the command line builds its
parser and talks to a running daemon without paying for it.

Example
-------
>>> from quantlab.engine import backtest, data, Strategy
>>> r = backtest(data.synthetic(1000, seed=1), "def signals(data):\\n    return data.close * 0 + 1")
>>> r.metrics["open_trades"]
1
"""
from __future__ import annotations

import importlib
import sys
import types
from typing import Any

# public name -> the submodule that defines it (the submodules themselves: data, stats)
_LAZY = {
    "backtest": "backtest", "BacktestResult": "backtest", "SignalError": "backtest",
    "infer_periods_per_year": "backtest",
    "check_lookahead": "lookahead", "LookaheadReport": "lookahead",
    "Strategy": "strategy", "StrategyError": "strategy",
    "DataError": "data", "downsample_extremes": "plotting",
}
_SUBMODULES = ("data", "stats")

__all__ = [
    "backtest", "BacktestResult", "SignalError", "infer_periods_per_year",
    "check_lookahead", "LookaheadReport",
    "Strategy", "StrategyError", "DataError", "data", "stats", "downsample_extremes",
]


def __getattr__(name: str) -> Any:
    if name in _SUBMODULES:
        return importlib.import_module(f"{__name__}.{name}")
    if name in _LAZY:
        value = getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(__all__) | set(globals()))


class _Engine(types.ModuleType):
    """``quantlab.engine.backtest`` is the function: importing the submodule of the same name
    (``from quantlab.engine.backtest import DEFAULT_FEES``) must not replace it with the module."""

    def __setattr__(self, name: str, value: Any) -> None:
        if name in _LAZY and isinstance(value, types.ModuleType):
            return
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Engine
