"""The engine layer: numpy/pandas only (no MCP, no I/O beyond data files).

Example
-------
>>> from quantlab.engine import backtest, data, Strategy
>>> r = backtest(data.synthetic(1000, seed=1), "def signals(data):\\n    return data.close * 0 + 1")
>>> r.metrics["open_trades"]
1
"""
from __future__ import annotations

from . import data, stats
from .backtest import BacktestResult, SignalError, backtest, infer_periods_per_year
from .data import DataError
from .lookahead import LookaheadReport, check_lookahead
from .plotting import downsample_extremes
from .strategy import Strategy, StrategyError

__all__ = [
    "backtest", "BacktestResult", "SignalError", "infer_periods_per_year",
    "check_lookahead", "LookaheadReport",
    "Strategy", "StrategyError", "DataError", "data", "stats", "downsample_extremes",
]
