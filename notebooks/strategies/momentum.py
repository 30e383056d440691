"""Momentum: long after the close rose over the last `lookback` bars, short after it fell.

Run its report:  quantlab report --strategy notebooks/strategies/momentum.py -p lookback 48 -o momentum.ipynb
"""
import numpy as np


def signals(data, lookback=24, allow_short=False):
    change = data.close.pct_change(lookback)
    position = np.sign(change).fillna(0.0)
    if not allow_short:
        position = position.clip(lower=0.0)
    return position
