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
