"""Signals -> target positions: the one rule between a strategy's output and what is traded.

:func:`to_targets` turns what ``signals(data, **params)`` returned into one target position
in [-1, 1] per bar, or raises :class:`SignalError`. The backtest, sweeps, walk-forward and
the deployment runner all call it, so a strategy refused by the backtest cannot trade
silently on paper.
"""
from __future__ import annotations

from quantlab._util.errors import QuantlabErrorMixin

import math
from typing import Any

import numpy as np
import pandas as pd

__all__ = ["to_targets", "SignalError"]


class SignalError(QuantlabErrorMixin, ValueError):
    """A strategy's ``signals`` output that cannot be backtested (wrong type, shape, index or range)."""


def to_targets(signals: Any, data: pd.DataFrame, name: str = "strategy") -> np.ndarray:
    """The target positions ``signals`` stands for, one float in [-1, 1] per bar of ``data``.

    The one rule from a strategy's ``signals(data, **params)`` output to what is traded, used
    by the backtest, the sweep, walk-forward and every deployment path, so code the backtest
    refuses never trades elsewhere:

    - a ``pd.Series`` (or a one-column DataFrame) indexed like ``data``, or positionally
      (a ``RangeIndex`` from ``pd.Series(array)``), or an array/list of ``len(data)`` numbers;
    - NaN means flat (0.0);
    - text, a wrong length or index, infinite values and values outside [-1, 1] raise
      :class:`SignalError` saying what was wrong (the first bad bar) and what to return.

    ``name`` is the strategy's name for the messages. Returns a new float64 array.

    >>> import pandas as pd
    >>> data = pd.DataFrame({"close": [1.0, 2.0, 3.0]}, index=pd.date_range("2024-01-01", periods=3))
    >>> to_targets(pd.Series([0, 1, float("nan")], index=data.index), data).tolist()
    [0.0, 1.0, 0.0]
    >>> to_targets([0, 2, 1], data, "sma")
    Traceback (most recent call last):
    ...
    quantlab.engine.signals.SignalError: strategy 'sma': 1 signal value(s) outside [-1, 1] (range 0..2, first 2 at 2024-01-02 00:00:00); clip them, e.g. sig.clip(-1, 1).
    >>> to_targets(pd.Series(["buy", "sell", "buy"], index=data.index), data)
    Traceback (most recent call last):
    ...
    quantlab.engine.signals.SignalError: strategy 'strategy': signals are not numeric (dtype object); return numbers in [-1, 1].
    """
    sig = signals
    n = len(data)
    if isinstance(sig, pd.DataFrame):
        if sig.shape[1] != 1:
            raise SignalError(f"strategy {name!r}: signals returned a DataFrame with {sig.shape[1]} columns; "
                              "return one pd.Series of target positions.")
        sig = sig.iloc[:, 0]
    if isinstance(sig, pd.Series):
        if len(sig) != n:
            raise SignalError(f"strategy {name!r}: signals has {len(sig)} values but the data has {n} bars; "
                              "return one target position per bar.")
        if not (sig.index is data.index or sig.index.equals(data.index)):
            if isinstance(sig.index, pd.RangeIndex) and sig.index.start == 0 and sig.index.step == 1:
                pass  # positional, e.g. pd.Series(numpy_array)
            else:
                raise SignalError(f"strategy {name!r}: the signals index does not match the data index; "
                                  "return a Series indexed like `data` (e.g. pd.Series(x, index=data.index)).")
        values = sig.to_numpy()
    elif sig is None:
        raise SignalError(f"strategy {name!r}: signals returned None; `return` a pd.Series of target positions.")
    else:
        values = np.asarray(sig)
    if values.ndim == 2 and 1 in values.shape:
        values = values.reshape(-1)
    if values.ndim != 1:
        raise SignalError(f"strategy {name!r}: signals has shape {values.shape}; expected ({n},).")
    if values.shape[0] != n:
        raise SignalError(f"strategy {name!r}: signals has {values.shape[0]} values but the data has {n} bars; "
                          "return one target position per bar.")
    if values.dtype.kind in "USTaM m" or (values.dtype.kind == "O" and n and any(
            isinstance(x, (str, bytes)) for x in values[:1000])):
        raise SignalError(f"strategy {name!r}: signals are not numeric (dtype {values.dtype}); "
                          "return numbers in [-1, 1].")
    if values.dtype != np.float64:
        try:
            values = values.astype(np.float64)
        except (TypeError, ValueError):
            raise SignalError(f"strategy {name!r}: signals are not numeric (dtype {values.dtype}); "
                              "return numbers in [-1, 1].") from None
    else:
        values = values.copy()
    if n and np.isnan(values.max() + values.min()):
        np.nan_to_num(values, copy=False, nan=0.0, posinf=np.inf, neginf=-np.inf)  # NaN means flat
    lo, hi = (float(values.min()), float(values.max())) if n else (0.0, 0.0)
    if math.isinf(lo) or math.isinf(hi):
        pos = int(np.flatnonzero(np.isinf(values))[0])
        raise SignalError(f"strategy {name!r}: signals contain infinite values (first at bar {pos}, "
                          f"{data.index[pos]}); return numbers in [-1, 1].")
    if lo < -1.0 or hi > 1.0:
        bad = np.flatnonzero((values < -1.0) | (values > 1.0))
        pos = int(bad[0])
        raise SignalError(f"strategy {name!r}: {bad.size} signal value(s) outside [-1, 1] (range {lo:g}..{hi:g}, "
                          f"first {values[pos]:g} at {data.index[pos]}); clip them, e.g. sig.clip(-1, 1).")
    return values
