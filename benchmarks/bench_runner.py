"""Benchmark of the runner: bars/s deployments keep up with on the stepped paper broker over stdio.

Run::

    python benchmarks/bench_runner.py [--bars 600] [--orders 500]

Measures, against a real ``python -m quantlab.runner`` over stdio fronting a real paper broker
(its own stdio child): the runner's ``advance`` steps the broker one bar at a time and every
running deployment (SMA cross, M1, lookback 300, in its own sandboxed process) acts on each
completed bar with the standard MT5 tools (``copy_rates_from_pos``, ``positions_get``,
``get_symbol_info_tick``, ``order_send``). One deployment, then five at once (reported per
deployment), and the paper broker's ``order_send`` rate (benchmarks/bench_broker.py).
Printed beside the figures of deployments *inside* the broker before the runner existed
(benchmarks/README.md: 186,791 bars/s one, 35,980 each of 5), so the price of parity is visible.

Goals (issue 11): >= 300 bars/s one deployment, >= 100 bars/s each of 5, >= 500 orders/s.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

SMA = '''
def signals(data, fast=10, slow=40):
    f = data.close.rolling(fast).mean()
    s = data.close.rolling(slow).mean()
    return (f > s).astype(float) - (f < s).astype(float)
'''
IN_BROKER = {1: 186_791, 5: 35_980}  # benchmarks/README.md, measured 2026-11-24


def _hops(before: dict, after: dict, bars: int) -> dict[str, float]:
    """ms per bar of each hop between two ``get_runner()["timings"]`` readings."""
    out = {}
    for k, v in after.items():
        b = before.get(k, {"total_s": 0.0})
        out[k] = 1000 * (v["total_s"] - b["total_s"]) / bars
    return out


def bench_runner(tmp: Path, bars: int, deployments: int) -> tuple[float, int, dict[str, float]]:
    from quantlab.client import MCPHub
    from quantlab.engine import backtest, data
    from quantlab.engine.strategy import Strategy
    from quantlab.hub import AssetsHub

    hub = AssetsHub(tmp / f"hub{deployments}")
    s = Strategy.from_code(SMA, name="sma")
    stored = hub.store(s, backtest(data.synthetic(bars=500, seed=1), s))
    hub.close()
    broker = {"command": sys.executable, "args": ["-m", "quantlab.servers.broker", "--db", str(tmp / f"b{deployments}.db")]}
    cfg = {"runner": {"command": sys.executable, "args": ["-m", "quantlab.runner", "--db", str(tmp / f"r{deployments}.db"),
                                                          "--hub", str(tmp / f"hub{deployments}"), "--broker", json.dumps(broker)]}}
    with MCPHub.from_config(cfg, connect_timeout=120) as mcp:
        syms = ["EURUSD", "GBPUSD", "USDJPY", "XAUUSD", "BTCUSD"][:deployments]
        ids = [mcp.call("runner", "deploy_strategy", {"commit": stored.commit, "symbol": sym, "volume": 0.1}, timeout=120)
               ["deployment_id"] for sym in syms]
        mcp.call("runner", "advance", {"bars": 5}, timeout=120)  # warm: sandboxes started, first evaluation done
        before = mcp.call("runner", "get_runner")["timings"]
        t = time.perf_counter()
        mcp.call("runner", "advance", {"bars": bars}, timeout=600)
        dt = time.perf_counter() - t
        hops = _hops(before, mcp.call("runner", "get_runner")["timings"], bars)
        hops["wall"] = 1000 * dt / bars
        trades = 0
        for i in ids:
            g = mcp.call("runner", "get_deployment", {"deployment_id": i})
            assert g["bars"] == bars + 5 and g["status"] == "running", g
            trades += g["trades"]
    return bars / dt, trades, hops


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--bars", type=int, default=600)
    p.add_argument("--orders", type=int, default=500)
    a = p.parse_args(argv)
    sys.path.insert(0, str(Path(__file__).parent))
    from bench_broker import bench_orders

    load0 = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        one, trades1, hops1 = bench_runner(tmp, a.bars, 1)
        five, trades5, hops5 = bench_runner(tmp, a.bars, 5)
        orders, _, label, _ = bench_orders(tmp, a.orders, False)
    load1 = os.getloadavg()[0]
    rows = [
        ("bars/s, 1 deployment (runner, stdio)", one, 300, IN_BROKER[1], f"{a.bars} M1 bars one at a time, {trades1} trades"),
        ("bars/s each, 5 deployments (runner)", five, 100, IN_BROKER[5], f"{a.bars} M1 bars x 5 symbols, {trades5} trades"),
        ("paper broker order_send (orders/s)", orders, 500, None, f"{a.orders} sequential calls, {label}"),
    ]
    print(f"quantlab runner benchmark  (python {sys.version.split()[0]}, {os.cpu_count()} cpus, "
          f"load average {load0:.1f} -> {load1:.1f})")
    print(f"{'measure':40s} {'value':>10s} {'goal':>6s} {'ratio':>7s} {'in-broker':>10s} {'price':>7s}  note")
    for name, val, goal, before, note in rows:
        price = f"{before / val:.0f}x" if before else "-"
        print(f"{name:40s} {val:10,.0f} {goal:>6,} {val / goal:6.2f}x {before or 0:>10,} {price:>7s}  {note}")
    print("price = how many times faster deployments ran inside the broker (no MCP round trips, signals() once per "
          "batch in the broker process): the cost of going through the same calls as a real MT5 server")
    print("where the time goes, ms per bar (measured inside the runner; concurrent deployments overlap, so the hops "
          "of 5 add up to more than the wall time):")
    trade = ("positions_get", "get_symbol_info_tick", "order_send")
    for label, h in (("1 deployment", hops1), ("5 deployments", hops5)):
        parts = [("advance", h.get("advance", 0.0)), ("copy_rates", h.get("copy_rates_from_pos", 0.0)),
                 ("signals (sandbox)", h.get("signals", 0.0)), ("trading", sum(h.get(k, 0.0) for k in trade)),
                 ("sqlite", h.get("sqlite", 0.0))]
        rest = h["wall"] - h.get("advance", 0.0) - h.get("bar", 0.0)
        print(f"  {label:14s} wall {h['wall']:6.2f} = advance + acting {h.get('bar', 0.0):.2f} + runner/MCP server "
              f"{rest:.2f};  " + ", ".join(f"{k} {v:.2f}" for k, v in parts))
    ok = one >= 300 and five >= 100 and orders >= 500
    if not ok and load0 > (os.cpu_count() or 1):
        print(f"note: the machine is overloaded (load {load0:.1f} on {os.cpu_count()} cpus); rates are bounded by CPU contention")
    print("all goals met" if ok else "GOAL MISSED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
