"""Benchmark of the command line: ``deploy``, ``deployments``, ``stop`` with a running paper daemon and cold.

Run::

    python benchmarks/bench_cli.py

Each command runs as a user types it (a fresh ``python -m quantlab`` process), in a temporary
``QUANTLAB_HOME`` and hub: first with ``quantlab paper start`` running (the commands talk to
the daemon over HTTP), then cold (each command starts its own embedded servers).
``deploy`` deploys a strategy already stored in the hub (by name), so the time is the
deployment's, not a backtest's.

Goals (issue 15): < 1.5 s each with a running daemon, < 4 s cold.
"""
from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SMA = '''
def signals(data, fast=5, slow=20):
    f = data.close.rolling(fast).mean()
    s = data.close.rolling(slow).mean()
    return (f > s).astype(float) * 2 - 1
'''


def ql(env: dict, *args: str) -> tuple[float, str]:
    t = time.perf_counter()
    p = subprocess.run([sys.executable, "-m", "quantlab", *args], env=env, capture_output=True, text=True, timeout=600)
    dt = time.perf_counter() - t
    if p.returncode != 0:
        raise RuntimeError(f"quantlab {' '.join(args)} failed: {p.stderr[-500:]}")
    return dt, p.stdout


def run(env: dict) -> dict[str, float]:
    out = {}
    out["deploy"], text = ql(env, "deploy", "sma", "--symbol", "EURUSD", "--force")
    dep = text.split("deployment ")[1].split(",")[0]
    out["deployments"], _ = ql(env, "deployments")
    out["stop"], _ = ql(env, "stop", dep)
    return out


def main() -> int:
    from quantlab.engine import backtest, data
    from quantlab.engine.strategy import Strategy
    from quantlab.hub import AssetsHub

    load0 = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        env = {**os.environ, "QUANTLAB_HOME": str(tmp / "home"), "QUANTLAB_HUB": str(tmp / "hub")}
        hub = AssetsHub(tmp / "hub")
        s = Strategy.from_code(SMA, name="sma")
        hub.store(s, backtest(data.synthetic(bars=500, seed=1), s))
        hub.close()
        ql(env, "paper", "start")
        try:
            ql(env, "deployments")  # the first call of a fresh daemon imports its tools' dependencies
            warm = run(env)
        finally:
            ql(env, "paper", "stop")
        cold = run(env)
    load1 = os.getloadavg()[0]
    print(f"quantlab CLI benchmark  (python {sys.version.split()[0]}, {os.cpu_count()} cpus, "
          f"load average {load0:.1f} -> {load1:.1f})")
    print(f"{'command':14s} {'daemon':>8s} {'goal':>6s} {'cold':>8s} {'goal':>6s}")
    ok = True
    for k in warm:
        ok &= warm[k] < 1.5 and cold[k] < 4.0
        print(f"{k:14s} {warm[k]:7.2f}s {'1.5s':>6s} {cold[k]:7.2f}s {'4s':>6s}")
    if not ok and load0 > (os.cpu_count() or 1):
        print(f"note: the machine is overloaded (load {load0:.1f} on {os.cpu_count()} cpus)")
    print("all goals met" if ok else "GOAL MISSED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
