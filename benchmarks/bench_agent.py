"""Per-attempt overhead of the code agent on 100k bars, beside the same backtest in-process.

Run: ``python benchmarks/bench_agent.py [--bars 100000] [--repeat 5]``

One attempt's quantlab work - every check (parses, defines signals, sandbox, 500 synthetic bars,
causal, full backtest through the backtest MCP server, policy) - is timed with the model taken out:
the answer comes from a replay file, so the model's latency is zero. Goal: <= 0.5 s per attempt on
100k bars. Printed beside it: the same backtest in-process (``quantlab.backtest``) and through the
server alone (``lab.backtest``), with each check's median share and the load average.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

SMA = """import numpy as np


def signals(data, fast=20, slow=100):
    fast_ma = data.close.rolling(int(fast)).mean()
    slow_ma = data.close.rolling(int(slow)).mean()
    return np.sign(fast_ma - slow_ma).fillna(0.0)
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bars", type=int, default=100_000)
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()

    from quantlab import DeploymentPolicy, Lab, Strategy
    from quantlab.engine.backtest import backtest
    from quantlab.engine.data import from_reference

    ref = f"synthetic:seed=7,bars={args.bars}"
    strategy = Strategy.from_code(SMA, name="SMA")
    frame = from_reference(ref)
    home = Path(tempfile.mkdtemp(prefix="bench-agent-"))
    replay = home / "answer.json"
    replay.write_text(json.dumps({"model": "bench", "attempts": [
        {"name": "SMA", "code": SMA, "params": {"fast": 20, "slow": 100}, "rationale": "benchmark"}]}))
    anything = DeploymentPolicy(min_sharpe=None, max_drawdown=None, min_profit_factor=None, min_trades=None)

    inproc, server, attempt, model = [], [], [], []
    per_check: dict[str, list[float]] = {}
    with Lab.start(home / "hub", progress=False) as lab:
        lab.backtest(strategy, ref)                                  # warm the server's worker and data cache
        lab.generate("bench", ref, model=f"replay:{replay}", max_attempts=1, policy=anything)
        for _ in range(args.repeat):
            t = time.perf_counter()
            backtest(frame, strategy)
            inproc.append(time.perf_counter() - t)
            t = time.perf_counter()
            lab.backtest(strategy, ref)
            server.append(time.perf_counter() - t)
            gen = lab.generate("bench", ref, model=f"replay:{replay}", max_attempts=1, policy=anything)
            cand = gen.attempts[0]
            assert cand.passed, cand.checks
            attempt.append(cand.overhead_seconds)
            model.append(cand.model_seconds)
            for c in cand.checks:
                per_check.setdefault(c.name, []).append(c.seconds)

    med = statistics.median
    load = os.getloadavg()
    print(f"bench_agent: {args.bars:,} bars, median of {args.repeat}; load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} "
          f"({os.cpu_count()} cores)")
    print(f"  backtest in-process (quantlab.backtest)      {med(inproc) * 1000:8.1f} ms")
    print(f"  backtest through the server (lab.backtest)   {med(server) * 1000:8.1f} ms")
    print(f"  agent attempt, quantlab overhead (all checks){med(attempt) * 1000:8.1f} ms   goal <= 500 ms: "
          f"{'OK' if med(attempt) <= 0.5 else 'OVER'}; {med(attempt) / med(inproc):.1f}x the in-process backtest")
    print(f"  (model time taken out: replay answer in {med(model) * 1000:.2f} ms)")
    for name, values in per_check.items():
        print(f"    {name:<20} {med(values) * 1000:8.1f} ms")


if __name__ == "__main__":
    main()
