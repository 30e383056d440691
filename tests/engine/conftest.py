"""Fixtures for the engine tests: vectorbt is imported once per session (its import + numba compile is slow)."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest


@pytest.fixture(scope="session")
def vbt():
    """The vectorbt module, imported once."""
    return pytest.importorskip("vectorbt")


def target_strategy_code() -> str:
    """A strategy that returns the target array it is given (lets tests drive exact positions)."""
    return "def signals(data, t=None):\n    return t\n"


def frame(close, freq="1h") -> pd.DataFrame:
    """An OHLCV frame whose open/high/low equal the given closes."""
    close = np.asarray(close, dtype=float)
    idx = pd.date_range("2024-01-01", periods=close.size, freq=freq, name="time")
    return pd.DataFrame({"open": close, "high": close, "low": close, "close": close,
                         "volume": np.ones_like(close)}, index=idx)
