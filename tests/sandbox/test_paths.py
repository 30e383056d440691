"""The hostile corpus through every path that runs strategy code for someone: the real backtest
server over stdio (``run_backtest`` and ``run_sweep``), sweeps on each executor, a deployment."""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

from quantlab.engine import data as qdata

pytestmark = pytest.mark.timeout(300)


def _corpus():
    import importlib.util

    spec = importlib.util.spec_from_file_location("sandbox_corpus", Path(__file__).with_name("corpus.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


corpus = _corpus()
SMA = "def signals(data, fast=10, slow=50):\n    return (data.close.rolling(fast).mean() > data.close.rolling(slow).mean()) * 1.0\n"
PREFIX = {"static": ["[sandbox]"], "forbidden": ["[sandbox]"], "timeout": ["[timeout]", "[cpu]"],
          "memory": ["[memory]"], "output": ["[output]"], "raised": ["[raised]"]}


def _fill(code: str, scratch: Path) -> str:
    return code.replace("{scratch}", str(scratch))


@pytest.mark.parametrize("case", corpus.HOSTILE, ids=[c[0] for c in corpus.HOSTILE])
def test_backtest_server_refuses_and_keeps_serving(case, backtest_server, scratch, secret_env):
    _, code, kind, words = case
    r = backtest_server.call("run_backtest", code=_fill(code, scratch), name="hostile",
                             data="synthetic:seed=1,bars=3000", timeout=6)
    assert r.is_error, r.structured_content
    msg = r.content[0].text
    assert any(p in msg for p in PREFIX[kind]), msg
    for w in words:
        assert w in msg, msg
    assert secret_env not in msg and list(scratch.iterdir()) == []
    ok = backtest_server.call("run_backtest", code=SMA, name="sma", data="synthetic:seed=1,bars=3000")
    assert not ok.is_error, ok.content  # the server keeps serving


def test_run_sweep_refuses_and_survives_prints(backtest_server, scratch):
    grid = {"fast": [5, 10], "slow": [50]}
    r = backtest_server.call("run_sweep", code="import os\n" + SMA, name="h", grid=grid, executor="inprocess",
                             data="synthetic:seed=1,bars=3000")
    assert r.is_error and "[sandbox]" in r.content[0].text and "line 1" in r.content[0].text
    write = SMA.replace("    return", f"    data.to_csv('{scratch}/x.csv')\n    return")
    r = backtest_server.call("run_sweep", code=write, name="w", grid=grid, executor="processes", workers=2,
                             data="synthetic:seed=1,bars=3000")
    assert not r.is_error, r.content
    errors = r.structured_content["result"]["data"]["error"]
    assert all(e and "SandboxError" in e and "line 2" in e and "x.csv" in e for e in errors), errors
    assert list(scratch.iterdir()) == []
    # issue 12: one print() in a strategy made run_sweep fail; output is a log, never the result channel
    loud = SMA.replace("    return", "    print('{\"ok\": 1}', fast)\n    return")
    r = backtest_server.call("run_sweep", code=loud, name="loud", grid=grid, executor="inprocess",
                             data="synthetic:seed=1,bars=3000")
    assert not r.is_error, r.content
    assert r.structured_content["errors"] == 0 and r.structured_content["runs"] == 2


RUNTIME_CASES = [c for c in corpus.HOSTILE if c[2] in ("forbidden",)] + [
    c for c in corpus.HOSTILE if c[0] in ("recursion", "huge_output")]


@pytest.mark.parametrize("executor", [None, 2], ids=["inprocess", "processes"])
def test_sweeps_confine_every_combination(executor, scratch):
    from quantlab.engine.sandbox import SandboxError
    from quantlab.engine.sweep import sweep

    df = qdata.synthetic(2_000, seed=5)
    with pytest.raises(SandboxError, match="line 1"):
        sweep("import socket\n" + SMA, df, {"fast": [5]}, executor, progress=False, sandbox=True)
    for _, code, kind, words in RUNTIME_CASES:
        res = sweep(_fill(code, scratch), df, [{}, {}], executor, progress=False,
                    sandbox={"wall_seconds": 20, "output_bytes": 50_000})
        errors = res.frame["error"].tolist()
        assert all(e for e in errors), (code, errors)
        for w in words:
            assert all(w in e for e in errors), (w, errors)
    assert list(scratch.iterdir()) == []
    clean = sweep(SMA, df, {"fast": [5, 10]}, executor, progress=False, sandbox=True)
    plain = sweep(SMA, df, {"fast": [5, 10]}, progress=False)
    assert clean.frame["sharpe"].tolist() == plain.frame["sharpe"].tolist()


def test_dask_sweep_is_sandboxed(scratch):
    distributed = pytest.importorskip("distributed")
    from quantlab.engine.sweep import sweep

    df = qdata.synthetic(1_000, seed=6)
    with distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=False, dashboard_address=None) as cl, \
            distributed.Client(cl) as client:
        bad = sweep(_fill(corpus.HOSTILE[24][1], scratch), df, [{}], client, progress=False, sandbox=True)
        ok = sweep(SMA, df, {"fast": [5, 10]}, client, progress=False, sandbox=True)
    assert "SandboxError" in bad.frame["error"][0] and "stolen.csv" in bad.frame["error"][0]
    assert ok.frame["error"].isna().all()
    assert list(scratch.iterdir()) == []


def test_a_deployment_is_sandboxed(scratch, secret_env):
    """The runner's per-deployment evaluation (the real object the runner keeps per deployment)."""
    from quantlab.runner.evaluation import DeploymentSignals, StrategyFailed

    df = qdata.synthetic(400, seed=2)
    bars = {"time": df.index.as_unit("s").asi8.astype(np.int64),
            **{c: df[c].to_numpy(np.float64) for c in ("open", "high", "low", "close", "volume")}}
    with pytest.raises(StrategyFailed) as refused:
        DeploymentSignals.load("import os\n" + SMA, "evil", {}, lookback=300, timeout=30)
    assert "SandboxError" in str(refused.value) and "line 1" in str(refused.value)
    sneaky = _fill(corpus.HOSTILE[24][1], scratch)  # pandas_write_file: passes the static check
    s = DeploymentSignals.load(sneaky, "sneaky", {}, lookback=300, timeout=30)
    try:
        s.push(bars, reset=True)
        with pytest.raises(StrategyFailed) as caught:
            s.targets(1)
        msg = str(caught.value)
        assert "SandboxError" in msg and "stolen.csv" in msg, msg
        assert secret_env not in msg and list(scratch.iterdir()) == []
    finally:
        s.close()
    ok = DeploymentSignals.load(SMA, "sma", {}, lookback=300, timeout=30)  # the next deployment goes on
    try:
        ok.push(bars, reset=True)
        assert len(ok.targets(3)) == 3
    finally:
        ok.close()


def test_nothing_is_left_behind(backtest_server):
    backtest_server.close()
    deadline = time.monotonic() + 20
    since = backtest_server.started - 1
    while corpus.descendants(since) - _own_zygotes() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not corpus.descendants(since) - _own_zygotes()


def _own_zygotes() -> set[int]:
    """This process's zygotes and the one child each keeps forked ahead (they end with the process)."""
    import psutil

    from quantlab.engine.sandbox import _runner

    pids = {z.proc.pid for z in _runner._ZYGOTES.values()}
    for pid in list(pids):
        try:
            pids |= {p.pid for p in psutil.Process(pid).children()}
        except psutil.Error:
            pass
    return pids
