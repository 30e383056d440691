"""Benchmark quantlab.client against the raw MCP SDK over stdio.

Prints, side by side in one run, the median round trip of a trivial tool call through
1. the raw async SDK (``mcp.Client.call_tool``),
2. the async core (``AsyncMCPHub.call``: argument validation, bookkeeping, error mapping),
3. the sync face (``MCPHub.call``: one hop to the hub's loop thread and back),
with the ratio to the raw SDK (goal: sync <= 1.25x), then the time to spawn and initialize
two servers concurrently with ``connect_all`` (goal: < 1.5 s).

Calls are interleaved (raw, async, sync, raw, ...) so machine noise hits all three alike.

Run:  python benchmarks/bench_client.py [--calls 1000] [--embedded]
"""
from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import textwrap
import time

SERVER = textwrap.dedent(
    '''
    from mcp.server.mcpserver import MCPServer
    mcp = MCPServer("bench")

    @mcp.tool()
    def add(a: int, b: int) -> int:
        """Add two integers."""
        return a + b

    mcp.run()
    '''
)


def _pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))]


async def _calls(server_py: str, n: int, warmup: int) -> dict[str, list[float]]:
    from mcp import Client, StdioServerParameters

    from quantlab.client import AsyncMCPHub, MCPHub

    cfg = {"bench": {"command": sys.executable, "args": [server_py]}}
    params = StdioServerParameters(command=sys.executable, args=[server_py])
    sync_hub = MCPHub.from_config(cfg)
    times: dict[str, list[float]] = {"raw": [], "async": [], "sync": [], "hop": []}
    try:
        async with Client(params) as raw, AsyncMCPHub.from_config(cfg) as hub:
            await hub.connect("bench")
            sync_hub.connect("bench")
            pc = time.perf_counter
            for i in range(warmup + n):
                args = {"a": i, "b": 1}
                t0 = pc()
                r = await raw.call_tool("add", args)
                t1 = pc()
                a = await hub.call("bench", "add", args)
                t2 = pc()
                s = sync_hub.call("bench", "add", args)
                t3 = pc()
                assert r.structured_content == {"result": i + 1} and a == s == i + 1
                if i >= warmup:
                    times["raw"].append(t1 - t0)
                    times["async"].append(t2 - t1)
                    times["sync"].append(t3 - t2)
        async def nop() -> None:
            return None

        for i in range(warmup + n):  # the sync face's own cost: one hop to its loop thread and back
            t0 = time.perf_counter()
            sync_hub.run(nop())
            if i >= warmup:
                times["hop"].append(time.perf_counter() - t0)
    finally:
        sync_hub.close()
    return times


async def _raw_spawn(server_py: str) -> float:
    from mcp import Client, StdioServerParameters

    t0 = time.perf_counter()
    async with Client(StdioServerParameters(command=sys.executable, args=[server_py])):
        return time.perf_counter() - t0


def _connect_all(cfg: dict) -> tuple[float, list[str]]:
    from quantlab.client import MCPHub

    hub = MCPHub.from_config(cfg, max_retries=0)
    try:
        t0 = time.perf_counter()
        report = hub.connect_all()
        return time.perf_counter() - t0, report.failed
    finally:
        hub.close()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--calls", type=int, default=1000, help="measured calls per path (default 1000, minimum 500)")
    ap.add_argument("--warmup", type=int, default=50)
    ap.add_argument("--embedded", action="store_true", help="also time connect_all of the embedded backtest + broker servers")
    args = ap.parse_args(argv)
    if hasattr(os, "getloadavg"):
        print(f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs (timings are noisy on a busy machine)")
    n = max(500, args.calls)

    with tempfile.TemporaryDirectory() as tmp:
        server_py = os.path.join(tmp, "bench_server.py")
        with open(server_py, "w") as fh:
            fh.write(SERVER)

        times = asyncio.run(_calls(server_py, n, args.warmup))
        raw = statistics.median(times["raw"])
        rows = [
            ("raw SDK  Client.call_tool", times["raw"]),
            ("async    AsyncMCPHub.call", times["async"]),
            ("sync     MCPHub.call", times["sync"]),
        ]
        print(f"\nTrivial stdio tool call, {n} calls each (interleaved), Python {sys.version.split()[0]}")
        print(f"{'path':<28}{'median ms':>10}{'p90 ms':>9}{'ratio':>8}")
        print("-" * 55)
        for label, xs in rows:
            med = statistics.median(xs)
            print(f"{label:<28}{med * 1e3:>10.3f}{_pct(xs, 0.9) * 1e3:>9.3f}{med / raw:>7.2f}x")
        hop = statistics.median(times["hop"])
        print(f"{'(sync face hop alone)':<28}{hop * 1e3:>10.3f}{_pct(times['hop'], 0.9) * 1e3:>9.3f}{hop / raw:>7.2f}x")
        sync_ratio = statistics.median(times["sync"]) / raw
        print(f"goal: sync <= 1.25x raw -> {'MET' if sync_ratio <= 1.25 else 'NOT MET'} ({sync_ratio:.2f}x)")

        two = {
            "one": {"command": sys.executable, "args": [server_py]},
            "two": {"command": sys.executable, "args": [server_py]},
        }
        connect_rows = [
            ("connect_all, 2 test servers", *_connect_all(two)),
            ("(raw SDK, 1 server, for reference)", asyncio.run(_raw_spawn(server_py)), []),
        ]
        if args.embedded:
            from quantlab.lab.defaults import embedded_servers

            connect_rows.append(("connect_all, embedded backtest+broker", *_connect_all(embedded_servers(os.path.join(tmp, "home")))))
        ref = connect_rows[1][1]
        print(f"\n{'spawn + initialize, concurrent':<40}{'seconds':>9}{'vs raw 1':>10}  failed")
        print("-" * 68)
        for label, secs, failed in connect_rows:
            print(f"{label:<40}{secs:>9.3f}{secs / ref:>9.2f}x  {', '.join(failed) or '-'}")
        print(f"goal: 2 servers < 1.5 s -> {'MET' if connect_rows[0][1] < 1.5 else 'NOT MET'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
