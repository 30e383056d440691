"""Benchmark: the same backtest in-process vs through the backtest MCP server (stdio).

SMA(10)/SMA(50) crossover on 1,000,000 one-minute bars (``synthetic:seed=1,bars=1000000``).
The server is warm: its worker already holds the data (loaded from the reference,
never pickled per call). Two server rows:

* ``same run``   - the identical request repeated (the run id is deterministic, so
  the stored run is only re-stamped, not re-written);
* ``new run``    - ``cash`` changes every call, so each call is a new run that is
  written to the runs directory (Parquet) after the reply.

Goal (issue 3): server time within 1.5x of the in-process engine.

Run: ``python benchmarks/bench_engine_server.py [--bars N] [--repeat R]``
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time

import anyio

CODE = """
def signals(data, fast=10, slow=50):
    f = data.close.rolling(fast).mean()
    s = data.close.rolling(slow).mean()
    return (f > s).astype(float)
"""


def bench_inprocess(ref: str, repeat: int) -> tuple[list[float], dict]:
    from quantlab.engine import data as qdata
    from quantlab.engine.backtest import backtest
    from quantlab.engine.strategy import Strategy

    df = qdata.from_reference(ref)
    times = []
    result = None
    for i in range(repeat + 1):
        t0 = time.perf_counter()
        strategy = Strategy.from_code(CODE, name="sma")
        result = backtest(df, strategy, data_ref=ref)
        dt = time.perf_counter() - t0
        if i:  # first call is the warm-up
            times.append(dt)
    return times, result.metrics


async def bench_server(ref: str, repeat: int, runs: str) -> dict[str, list[float]]:
    from mcp import Client, StdioServerParameters

    params = StdioServerParameters(
        command=sys.executable,
        args=["-m", "quantlab.servers.backtest", "--runs", runs, "--workers", "1"],
        env=dict(os.environ),
    )
    out: dict[str, list[float]] = {"same": [], "new": []}
    async with Client(params) as client:
        args = {"code": CODE, "name": "sma", "data": ref}
        for _ in range(2):  # warm-up: the worker loads and caches the data
            r = await client.call_tool("run_backtest", args)
            assert not r.is_error, r.content
        for _ in range(repeat):
            t0 = time.perf_counter()
            r = await client.call_tool("run_backtest", args)
            out["same"].append(time.perf_counter() - t0)
            assert not r.is_error, r.content
        for i in range(repeat):
            t0 = time.perf_counter()
            r = await client.call_tool("run_backtest", {**args, "cash": 100_000 + i + 1})
            out["new"].append(time.perf_counter() - t0)
            assert not r.is_error, r.content
        out["metrics"] = r.structured_content["metrics"]  # type: ignore[assignment]
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--bars", type=int, default=1_000_000)
    p.add_argument("--repeat", type=int, default=7)
    args = p.parse_args(argv)
    ref = f"synthetic:seed=1,bars={args.bars}"

    inproc, _ = bench_inprocess(ref, args.repeat)
    with tempfile.TemporaryDirectory(prefix="qlbench-runs-") as runs:
        server = anyio.run(bench_server, ref, args.repeat, runs)
    base = statistics.median(inproc)
    rows = [
        ("in-process backtest()", inproc),
        ("MCP stdio, same run", server["same"]),
        ("MCP stdio, new run (stored)", server["new"]),
    ]
    print(f"SMA(10)/SMA(50) crossover, {args.bars:,} one-minute bars ({ref}), median of {args.repeat} warm calls")
    print(f"{'path':<30} {'median s':>10} {'min s':>8} {'bars/s':>14} {'ratio':>7}")
    for name, ts in rows:
        med = statistics.median(ts)
        print(f"{name:<30} {med:>10.4f} {min(ts):>8.4f} {args.bars / med:>14,.0f} {med / base:>6.2f}x")
    worst = max(statistics.median(server["same"]), statistics.median(server["new"])) / base
    print(f"goal: server <= 1.5x in-process -> {'met' if worst <= 1.5 else 'NOT met'} (worst {worst:.2f}x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
