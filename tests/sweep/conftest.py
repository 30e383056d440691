"""Fixtures for the sweep tests: small data and strategies (plain, batched, failing)."""
from __future__ import annotations

import pytest

from quantlab.engine import Strategy, data

SMA = '''
import pandas as pd
def signals(data, fast=10, slow=50):
    c = data.close
    return (c.rolling(fast).mean() > c.rolling(slow).mean()).astype(float)
'''

#: long/short SMA cross that also computes many combinations at once (``signals_many``)
BATCHED = '''
import numpy as np, pandas as pd
CALLS = []

def _sma(cs, w):
    out = np.full(cs.size - 1, np.nan)
    out[w - 1:] = (cs[w:] - cs[:-w]) / w
    return out

def signals(data, fast=10, slow=50, side=1.0):
    cs = np.concatenate(([0.0], np.cumsum(data.close.to_numpy())))
    up = _sma(cs, fast) > _sma(cs, slow)
    return pd.Series(np.where(up, 1.0, -side), index=data.index)

def signals_many(data, params):
    CALLS.append(len(params))
    cs = np.concatenate(([0.0], np.cumsum(data.close.to_numpy())))
    means = {w: _sma(cs, w) for w in {p["fast"] for p in params} | {p["slow"] for p in params}}
    return np.column_stack([np.where(means[p["fast"]] > means[p["slow"]], 1.0, -p["side"]) for p in params])
'''

#: fails for fast == 7 (raises) and fast == 8 (signals outside [-1, 1])
FAILING = '''
def signals(data, fast=10, slow=50):
    if fast == 7:
        raise ZeroDivisionError("fast=7 is unlucky")
    c = data.close
    s = (c.rolling(fast).mean() > c.rolling(slow).mean()).astype(float)
    return s * 3 if fast == 8 else s
'''


@pytest.fixture(scope="session")
def df():
    """3,000 one-minute bars."""
    return data.synthetic(3000, seed=11)


@pytest.fixture(scope="session")
def sma():
    return Strategy.from_code(SMA, name="sma")


@pytest.fixture(scope="session")
def failing():
    return Strategy.from_code(FAILING, name="failing")


@pytest.fixture()
def batched():
    """A fresh batched strategy (its CALLS list records the signals_many chunk sizes)."""
    return Strategy.from_code(BATCHED, name="batched")
