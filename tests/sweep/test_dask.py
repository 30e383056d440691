"""Sweeps on a real dask.distributed LocalCluster (2 worker processes): same numbers as in-process,
the data is scattered once to every worker and the chunk tasks only reference it."""
from __future__ import annotations

import time

import pandas as pd
import pytest

distributed = pytest.importorskip("distributed")

from distributed.diagnostics.plugin import SchedulerPlugin  # noqa: E402

from quantlab.engine.sweep import sweep  # noqa: E402

GRID = {"fast": [4, 6, 7, 8, 12, 16], "slow": [30, 45]}


class Recorder(SchedulerPlugin):
    """Records, for every task the scheduler sends to a worker, its dependencies and where they live."""

    name = "quantlab-sweep-recorder"

    def __init__(self, scheduler) -> None:
        self.scheduler = scheduler
        self.tasks: dict[str, list[tuple[str, int]]] = {}

    def transition(self, key, start, finish, *args, **kwargs) -> None:
        if finish == "processing":
            ts = self.scheduler.tasks[key]
            self.tasks[str(key)] = [(str(d.key), len(d.who_has or ())) for d in ts.dependencies]


@pytest.fixture(scope="module")
def cluster():
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None,
                                  silence_logs=40) as cl, distributed.Client(cl) as client:
        client.wait_for_workers(2, timeout=60)
        yield cl, client


def test_dask_matches_inprocess_and_scatters_the_data_once(cluster, df, failing):
    cl, client = cluster
    rec = Recorder(cl.scheduler)
    cl.scheduler.add_plugin(rec)
    try:
        res = sweep(failing, df, GRID, executor=client, progress=False, chunk=3, fees=0.001)
    finally:
        cl.scheduler.remove_plugin(name=rec.name)
    ref = sweep(failing, df, GRID, progress=False, fees=0.001)
    pd.testing.assert_frame_equal(res.frame, ref.frame, check_exact=True)
    assert res.executor == "dask(2 workers, 2 threads)"
    assert res.frame["error"].notna().sum() == 4
    chunks = {k: deps for k, deps in rec.tasks.items() if "_dask_chunk" in k}
    assert len(chunks) == 4                                       # 12 combinations in chunks of 3
    data_keys = {d for deps in chunks.values() for d, _ in deps}
    assert len(data_keys) == 1                                    # every task references the same future...
    (key,) = data_keys
    assert key.startswith("DataFrame-")                           # ...the scattered frame
    assert all(deps == [(key, 2)] for deps in chunks.values())    # held by both workers (broadcast)
    transfers = client.run(lambda dask_worker: len(dask_worker.transfer_incoming_log))
    assert sum(transfers.values()) == 0                           # no worker fetched it from another
    deadline = time.monotonic() + 10
    while key in cl.scheduler.tasks and time.monotonic() < deadline:  # released after the sweep
        time.sleep(0.05)
    assert key not in cl.scheduler.tasks


def test_dask_reports_failures_and_keeps_going(cluster, df, sma):
    _, client = cluster
    res = sweep(sma, df, [{"fast": 3}, {"fast": -2}, {"fast": 5}], executor=client, progress=False)
    assert res.frame["error"][0] is None and res.frame["error"][2] is None
    assert res.frame["error"][1].startswith("ValueError")
    assert res.result(2).metrics["sharpe"] == pytest.approx(res.frame.loc[2, "sharpe"], rel=1e-12)


def test_a_scheduler_address_connects_for_the_sweep(cluster, df, sma):
    cl, client = cluster
    address = cl.scheduler_address
    assert address.startswith("tcp://")
    ref = sweep(sma, df, {"fast": [3, 5]}, progress=False)
    for spec in (address, "dask://" + address[len("tcp://"):]):
        res = sweep(sma, df, {"fast": [3, 5]}, executor=spec, progress=False)
        assert res.executor == "dask(2 workers, 2 threads)"
        pd.testing.assert_frame_equal(res.frame, ref.frame, check_exact=True)
    deadline = time.monotonic() + 10
    while len(cl.scheduler.clients) > 2 and time.monotonic() < deadline:  # ours + the fixture's... closed again
        time.sleep(0.05)
    assert len([c for c in cl.scheduler.clients if not str(c).startswith("fire-and-forget")]) == 1
