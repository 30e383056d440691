"""Fixtures for the validation tests (look-ahead, fills, walk-forward, PSR/DSR, trials)."""
from __future__ import annotations

import pytest

from quantlab.engine import data as qdata


@pytest.fixture(scope="session")
def bars():
    """2,000 one-minute synthetic bars (seeded)."""
    return qdata.synthetic(2000, seed=11)


@pytest.fixture(scope="session")
def hourly():
    """The shipped sample: weekday-only hourly bars."""
    return qdata.sample()


SMA = '''
def signals(data, fast=10, slow=50):
    f = data.close.rolling(fast).mean()
    s = data.close.rolling(slow).mean()
    return (f > s).astype(float)
'''


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """A real Lab on the embedded backtest and broker servers, with a temp hub."""
    from quantlab import Lab

    hub = tmp_path_factory.mktemp("lab") / "assets-hub"
    with Lab.start(hub, progress=False) as lab:
        yield lab
