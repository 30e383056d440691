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


async def bench(ref: str, repeat: int, runs: str, workers: int) -> dict[str, list[float]]:
    """Interleave in-process and server calls so machine load hits all rows alike."""
    from mcp import Client, StdioServerParameters

    from quantlab.engine import data as qdata
    from quantlab.engine.backtest import backtest
    from quantlab.engine.strategy import Strategy

    df = qdata.from_reference(ref)
    params = StdioServerParameters(
        command=sys.executable,
        args=["-m", "quantlab.servers.backtest", "--runs", runs, "--workers", str(workers)],
        env=dict(os.environ),
    )
    out: dict[str, list[float]] = {"inproc": [], "same": [], "new": [], "same_server": [], "new_server": []}
    async with Client(params) as client:
        args = {"code": CODE, "name": "sma", "data": ref}
        for _ in range(2):  # warm-up: the worker loads and caches the data; in-process warm-up
            r = await client.call_tool("run_backtest", args)
            assert not r.is_error, r.content
            backtest(df, Strategy.from_code(CODE, name="sma"), data_ref=ref)
        for i in range(repeat):
            t0 = time.perf_counter()
            result = backtest(df, Strategy.from_code(CODE, name="sma"), data_ref=ref)
            out["inproc"].append(time.perf_counter() - t0)

            t0 = time.perf_counter()
            r = await client.call_tool("run_backtest", args)
            out["same"].append(time.perf_counter() - t0)
            assert not r.is_error, r.content
            out["same_server"].append(r.structured_content["elapsed"])

            t0 = time.perf_counter()
            r = await client.call_tool("run_backtest", {**args, "cash": 100_000 + i + 1})
            out["new"].append(time.perf_counter() - t0)
            assert not r.is_error, r.content
            out["new_server"].append(r.structured_content["elapsed"])
        r = await client.call_tool("run_backtest", args)
        same = r.structured_content["metrics"]
        expected = {k: (v if not isinstance(v, float) or v == v and abs(v) != float("inf") else str(v)) for k, v in result.metrics.items()}
        assert same == expected, "server metrics differ from in-process metrics"
        # the full result back: every bar and trade, columnar
        from quantlab.engine.backtest import BacktestResult

        from quantlab.engine.backtest import fetch_all_pages
        from quantlab.servers.backtest.server import PAGE_BARS

        run_id = r.structured_content["run_id"]

        async def page(offset: int) -> dict:
            res = await client.call_tool("get_run", {"run_id": run_id, "part": "all", "offset": offset, "limit": PAGE_BARS})
            assert not res.is_error, res.content
            return res.structured_content

        t0 = time.perf_counter()
        pages = [await page(0)]
        while pages[-1]["page"]["next_offset"] is not None:
            pages.append(await page(pages[-1]["page"]["next_offset"]))
        full = fetch_all_pages(pages[0], {p["page"]["offset"]: p for p in pages}.__getitem__)
        out["get_run_all"] = [time.perf_counter() - t0, len(pages)]
        back = BacktestResult.from_dict(full)
        assert back.equity.equals(result.equity) and back.run_id == result.run_id
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--bars", type=int, default=1_000_000)
    p.add_argument("--repeat", type=int, default=15)
    p.add_argument("--workers", type=int, default=1, help="server worker processes (default %(default)s)")
    args = p.parse_args(argv)
    ref = f"synthetic:seed=1,bars={args.bars}"

    with tempfile.TemporaryDirectory(prefix="qlbench-runs-") as runs:
        server = anyio.run(bench, ref, args.repeat, runs, args.workers)
    inproc = server["inproc"]
    base = statistics.median(inproc)
    rows = [
        ("in-process backtest()", inproc),
        ("MCP stdio, same run", server["same"]),
        ("MCP stdio, new run (stored)", server["new"]),
    ]
    print(f"SMA(10)/SMA(50) crossover, {args.bars:,} one-minute bars ({ref}), {args.repeat} warm calls each, interleaved; server workers: {args.workers}")
    base_min = min(inproc)
    print(f"{'path':<30} {'median s':>10} {'min s':>8} {'bars/s (median)':>16} {'ratio median':>13} {'ratio min':>10}")
    for name, ts in rows:
        med = statistics.median(ts)
        print(f"{name:<30} {med:>10.4f} {min(ts):>8.4f} {args.bars / med:>16,.0f} {med / base:>12.2f}x {min(ts) / base_min:>9.2f}x")
    print(f"get_run(part='all') in {server['get_run_all'][1]:.0f} pages, the whole {args.bars:,}-bar result as columns, "
          f"rebuilt with from_dict: {server['get_run_all'][0]:.2f} s (equal to the in-process result)")
    transport = statistics.median([a - b for a, b in zip(server["same"] + server["new"], server["same_server"] + server["new_server"])])
    print(f"MCP transport + JSON per call (client round trip minus time inside the server): {transport * 1000:.1f} ms median")
    worst = max(statistics.median(server["same"]), statistics.median(server["new"])) / base
    print(f"goal: server <= 1.5x in-process (medians) -> {'met' if worst <= 1.5 else 'NOT met'} (worst {worst:.2f}x); "
          f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    return 0


if __name__ == "__main__":
    sys.exit(main())
