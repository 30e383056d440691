"""Local process pools: same numbers as in-process, data sent once per worker (not per task)."""
from __future__ import annotations

import concurrent.futures as cf
import os
import pickle

import pandas as pd
import pytest

from quantlab.engine.sweep import sweep

GRID = {"fast": [4, 6, 7, 8, 12, 16], "slow": [30, 45]}


def _counted(payload: bytes, log: str) -> pd.DataFrame:
    """Unpickling hook: records which process deserialised the data."""
    with open(log, "a") as fh:
        fh.write(f"{os.getpid()}\n")
    return pickle.loads(payload)


class CountingFrame(pd.DataFrame):
    """A DataFrame that logs every time it is unpickled (i.e. shipped to another process)."""

    _metadata = ["log"]

    @property
    def _constructor(self):
        return pd.DataFrame

    def __reduce__(self):
        return _counted, (pickle.dumps(pd.DataFrame(self)), self.log)


def _counting(df, tmp_path):
    c = CountingFrame(df)
    c.log = str(tmp_path / "unpickled.log")
    return c


def _loads(c) -> list[str]:
    return open(c.log).read().split() if os.path.exists(c.log) else []


@pytest.fixture(scope="module")
def reference(df, failing):
    return sweep(failing, df, GRID, progress=False, fees=0.001)


def test_own_pool_matches_inprocess_and_ships_data_only_at_start(df, failing, reference, tmp_path):
    data = _counting(df, tmp_path)
    res = sweep(failing, data, GRID, executor=2, progress=False, chunk=1, fees=0.001)
    assert res.executor == "processes(2)"
    pd.testing.assert_frame_equal(res.frame, reference.frame, check_exact=True)
    assert res.frame["error"].notna().sum() == 4  # fast=7 raises, fast=8 gives bad signals
    # the data reached the workers through the pool initializer (inherited at start), never with a task
    assert _loads(data) == []


def test_a_pool_you_pass_in_loads_the_data_once_per_worker(df, failing, reference, tmp_path):
    data = _counting(df, tmp_path)
    with cf.ProcessPoolExecutor(2) as pool:
        res = sweep(failing, data, GRID, executor=pool, progress=False, chunk=1, fees=0.001)
    pd.testing.assert_frame_equal(res.frame, reference.frame, check_exact=True)
    loads = _loads(data)
    assert 1 <= len(loads) <= 2, loads            # 12 tasks, at most one load per worker process
    assert len(set(loads)) == len(loads)          # never twice in the same worker
    assert os.getpid() not in map(int, loads)


def test_processes_string_uses_every_cpu(df, sma):
    res = sweep(sma, df, {"fast": [3, 5, 7]}, executor="processes", progress=False)
    assert res.executor == f"processes({os.cpu_count()})"
    assert res.frame["sharpe"].tolist() == sweep(sma, df, {"fast": [3, 5, 7]}, progress=False).frame["sharpe"].tolist()
    with pytest.raises(Exception, match="at least 1"):
        sweep(sma, df, {"fast": [3]}, executor=0, progress=False)


def test_a_worker_that_dies_fails_only_its_rows(df):
    code = ("import os\n"
            "def signals(data, fast=10):\n"
            "    if fast == 5:\n"
            "        os._exit(3)\n"
            "    return (data.close > data.close.rolling(fast).mean()) * 1.0\n")
    res = sweep(code, df, {"fast": [2, 3, 5]}, executor=1, progress=False, chunk=1)
    err = res.frame["error"]
    assert err[2] is not None and "BrokenProcessPool" in err[2]
    assert len(res) == 3 and res.executor == "processes(1)"
