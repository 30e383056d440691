"""Metric values formatted for people (percents, ratios, counts), one rule for every face:
the review widget, the report notebook and the ``quantlab report --many`` index.

>>> fmt_metric("max_drawdown", -0.1234), fmt_metric("sharpe", 1.176)
('-12.34%', '1.18')
"""
from __future__ import annotations

import math
from numbers import Number
from typing import Any

import numpy as np
import pandas as pd

__all__ = ["PERCENT", "RATIO", "COUNT", "is_missing", "fmt_metric"]

PERCENT = {"total_return", "benchmark_return", "cagr", "volatility", "max_drawdown", "win_rate", "exposure", "return"}
RATIO = {"sharpe", "sortino", "calmar", "profit_factor"}
COUNT = {"trades", "open_trades", "bars_held", "size"}


def is_missing(value: Any) -> bool:
    try:
        return value is None or (isinstance(value, float) and math.isnan(value)) or bool(pd.isna(value))
    except (TypeError, ValueError):
        return False


def fmt_metric(name: str, value: Any) -> str:
    """Format one metric value for people: percents, ratios with 2 decimals, counts.

    >>> fmt_metric("win_rate", 0.5), fmt_metric("trades", 12.0), fmt_metric("profit_factor", float("inf"))
    ('50.00%', '12', '∞')
    """
    if isinstance(value, (pd.Timedelta,)) or hasattr(value, "total_seconds"):
        return str(value)
    if isinstance(value, (bool, np.bool_)):
        return "yes" if value else "no"
    if is_missing(value):
        return "—"
    if not isinstance(value, (Number, np.number)):
        return str(value)
    v = float(value)
    if math.isinf(v):
        return "∞" if v > 0 else "−∞"
    if name in PERCENT:
        return f"{v:.2%}"
    if name in RATIO:
        return f"{v:.2f}"
    if name in COUNT or name.endswith("_duration"):
        return f"{v:,.0f}" if v == round(v) else f"{v:,.2f}"
    if name in {"pnl", "expectancy"}:
        return f"{v:,.2f}" if abs(v) >= 1 else f"{v:.4g}"
    if v != 0 and (abs(v) >= 1e6 or abs(v) < 1e-3):
        return f"{v:.4g}"
    return f"{v:,.4f}".rstrip("0").rstrip(".") if v != round(v) else f"{v:,.0f}"
