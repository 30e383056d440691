"""The backtest server's ``run_sweep`` tool over real stdio: same rows as an in-process sweep,
progress notifications, tool errors for bad grids/data, a timeout that stops the child process."""
from __future__ import annotations

import asyncio
import base64
import os
import sys
import time

import pandas as pd
import psutil
import pytest

from quantlab.engine import data as qdata
from quantlab.engine.sweep import SweepResult, sweep

from .conftest import FAILING, SMA

pytestmark = pytest.mark.timeout(180)


def _params(runs):
    from mcp import StdioServerParameters

    # the mark tells this test's processes from other sweeps running on the same machine
    return StdioServerParameters(command=sys.executable, env={**os.environ, "QUANTLAB_TEST_MARK": str(runs)},
                                 args=["-m", "quantlab.servers.backtest", "--runs", str(runs), "--workers", "2"])


def _mark(proc) -> str | None:
    try:
        return proc.environ().get("QUANTLAB_TEST_MARK")
    except psutil.Error:  # gone meanwhile
        return None


def _drive(runs, script):
    """Run ``await script(client)`` against a fresh stdio server; returns its result."""
    from mcp import Client

    async def main():
        async with Client(_params(runs)) as client:
            return await script(client)

    return asyncio.run(main())


def test_run_sweep_over_stdio_equals_inprocess_with_progress(tmp_path, failing):
    ref = "synthetic:seed=5,bars=4000"
    grid = {"fast": [5, 7, 8, 12], "slow": [30, 60]}
    progress: list[tuple[float, float | None]] = []

    async def script(client):
        tools = {t.name: t for t in (await client.list_tools()).tools}
        async def on_progress(done, total, message):
            progress.append((done, total))
        ok = await client.call_tool("run_sweep", {"code": FAILING, "name": "failing", "grid": grid, "data": ref,
                                                  "fees": 0.001, "executor": "processes"},
                                    progress_callback=on_progress)
        listed = await client.call_tool("run_sweep", {"code": SMA, "name": "sma", "data": ref, "executor": "inprocess",
                                                      "grid": [{"fast": 3}, {"fast": 4, "slow": 20}]})
        return tools, ok, listed

    tools, ok, listed = _drive(tmp_path / "runs", script)
    t = tools["run_sweep"]
    assert len(t.description) > 80 and "grid" in t.input_schema["required"]
    assert "ctx" not in t.input_schema["properties"]
    assert not ok.is_error, ok.content[0].text
    out = ok.structured_content
    res = SweepResult.from_dict(out["result"])
    local = sweep(failing, qdata.from_reference(ref), grid, progress=False, fees=0.001)
    # the server runs the strategy in the sandbox: its exceptions also name the strategy's line
    pd.testing.assert_frame_equal(res.frame.drop(columns="error"), local.frame.drop(columns="error"), check_exact=True)
    assert [e if e is None else e.split("\n")[0] for e in res.frame["error"]] == local.frame["error"].tolist()
    assert "line 4, in signals" in res.frame["error"][2]
    assert out["runs"] == 8 and out["errors"] == 4          # fast=7 raises, fast=8 returns bad signals
    best = local.best("sharpe")
    assert out["best"]["row"] == best.name and out["best"]["sharpe"] == best["sharpe"]
    assert res.data_ref == ref and res.executor == "processes(2)" and out["elapsed"] > 0
    assert res.result(int(best.name)).metrics["sharpe"] == pytest.approx(best["sharpe"], rel=1e-12)
    assert progress and progress[-1] == (8, 8)
    assert [p for p, _ in progress] == sorted(p for p, _ in progress)
    assert not listed.is_error, listed.content[0].text
    assert listed.structured_content["result"]["data"]["slow"] == [50, 20]


def test_run_sweep_errors_and_timeout_over_stdio(tmp_path):
    df = qdata.synthetic(1500, seed=3)
    payload = base64.b64encode(df.to_parquet()).decode()

    async def script(client):
        up = await client.call_tool("upload_data", {"data": payload})
        ref = up.structured_content["data"]
        calls = {
            "grid": {"code": SMA, "name": "sma", "grid": {"fsat": [1]}},
            "code": {"code": "def signal(data):\n    return data.close", "name": "bad", "grid": {"n": [1]}},
            "data": {"code": SMA, "name": "sma", "grid": {"fast": [3]}, "data": "upload:" + "0" * 64},
            "executor": {"code": SMA, "name": "sma", "grid": {"fast": [3]}, "executor": "threads"},
            "timeout": {"code": "def signals(data, n=1):\n    while True:\n        pass",
                        "name": "slow", "grid": {"n": [1, 2]}, "timeout": 3, "executor": "processes"},
            "upload": {"code": SMA, "name": "sma", "grid": {"fast": [3, 4]}, "data": ref, "executor": "inprocess"},
        }
        out = {}
        for k, args in calls.items():
            t0 = asyncio.get_running_loop().time()
            out[k] = (await client.call_tool("run_sweep", args), asyncio.get_running_loop().time() - t0)
        return out

    started = time.time()
    out = _drive(tmp_path / "runs", script)
    leftovers = [p for p in psutil.process_iter(["cmdline", "create_time", "status"])
                 if "quantlab.servers.backtest.sweep_tool" in " ".join(p.info["cmdline"] or [])
                 and _mark(p) == str(tmp_path / "runs")
                 and p.info["create_time"] >= started - 1 and p.info["status"] != psutil.STATUS_ZOMBIE]
    assert leftovers == []                                   # the timed-out child and its workers are gone
    for kind in ("grid", "code", "data", "executor", "timeout"):
        r, _ = out[kind]
        assert r.is_error, kind
    text = {k: out[k][0].content[0].text for k in out}
    assert "[grid]" in text["grid"] and "fsat" in text["grid"]
    assert "[strategy]" in text["code"] and "signals" in text["code"]
    assert "[data]" in text["data"] and "upload_data" in text["data"]
    assert "[executor]" in text["executor"] and "threads" in text["executor"]
    assert "[timeout]" in text["timeout"] and out["timeout"][1] < 20
    up, _ = out["upload"]
    assert not up.is_error, text["upload"]
    local = sweep(SMA, df, {"fast": [3, 4]}, progress=False)
    assert SweepResult.from_dict(up.structured_content["result"]).frame["sharpe"].tolist() == local.frame["sharpe"].tolist()
