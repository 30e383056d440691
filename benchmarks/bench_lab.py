"""How long the notebook workflow takes, step by step, beside the raw MCP SDK doing the same spawns.

Run: ``python benchmarks/bench_lab.py [--repeat 3]``

Prints one table: ``Lab.start()`` with the two embedded servers (goal < 1.5 s) next to the raw
2.x SDK spawning + initializing the same two servers concurrently (the floor), then the
first backtest, a warm backtest, store-and-deploy, and a 100-bar advance of the broker.
"""
from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

SMA = """
def signals(data, fast=10, slow=50):
    f = data.close.rolling(fast).mean()
    s = data.close.rolling(slow).mean()
    return (f > s).astype(float)
"""


async def raw_sdk_spawn(home: Path) -> float:
    """Spawn + initialize both embedded servers with the raw SDK, concurrently; seconds."""
    from mcp import Client, StdioServerParameters

    from quantlab.lab.defaults import embedded_servers

    servers = list(embedded_servers(home)["mcpServers"].values())
    ready = 0
    all_ready, done = asyncio.Event(), asyncio.Event()

    async def one(spec):
        # each task enters and exits its own client: anyio cancel scopes must not change task
        nonlocal ready
        async with Client(StdioServerParameters(command=spec["command"], args=spec["args"])):
            ready += 1
            if ready == len(servers):
                all_ready.set()
            await done.wait()

    t0 = time.perf_counter()
    tasks = [asyncio.create_task(one(s)) for s in servers]
    await all_ready.wait()
    elapsed = time.perf_counter() - t0
    done.set()
    await asyncio.gather(*tasks)
    return elapsed


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()

    from quantlab import Lab, Strategy

    strategy = Strategy.from_code(SMA, name="SMA cross")
    rows: dict[str, list[float]] = {k: [] for k in
                                    ["raw SDK: spawn 2 servers", "Lab.start() (2 servers + hub)", "first backtest (sample)",
                                     "warm backtest (sample)", "store_and_deploy", "advance 100 bars"]}
    for _ in range(args.repeat):
        with tempfile.TemporaryDirectory() as tmp:
            rows["raw SDK: spawn 2 servers"].append(asyncio.run(raw_sdk_spawn(Path(tmp) / "raw")))
            t0 = time.perf_counter()
            lab = Lab.start(Path(tmp) / "hub", progress=False)
            rows["Lab.start() (2 servers + hub)"].append(time.perf_counter() - t0)
            try:
                t0 = time.perf_counter()
                result = lab.backtest(strategy, "sample")
                rows["first backtest (sample)"].append(time.perf_counter() - t0)
                t0 = time.perf_counter()
                result = lab.backtest(strategy, "sample", {"fast": 12})
                rows["warm backtest (sample)"].append(time.perf_counter() - t0)
                t0 = time.perf_counter()
                lab.store_and_deploy(result, force=True)
                rows["store_and_deploy"].append(time.perf_counter() - t0)
                t0 = time.perf_counter()
                lab.advance(100)
                rows["advance 100 bars"].append(time.perf_counter() - t0)
            finally:
                lab.close()

    floor = statistics.median(rows["raw SDK: spawn 2 servers"])
    print(f"{'step':34s} {'median s':>9s} {'vs raw spawn':>13s}  goal")
    goals = {"Lab.start() (2 servers + hub)": "< 1.5 s"}
    for name, values in rows.items():
        med = statistics.median(values)
        print(f"{name:34s} {med:9.3f} {med / floor:12.2f}x  {goals.get(name, '')}")
    start = statistics.median(rows["Lab.start() (2 servers + hub)"])
    print(f"\nLab.start() {'meets' if start < 1.5 else 'MISSES'} the 1.5 s goal ({start:.2f} s) on {sys.platform}, "
          f"python {sys.version.split()[0]}")


if __name__ == "__main__":
    main()
