"""Parameter-sweep throughput: 1,000 (fast, slow) SMA pairs on 100,000 one-minute bars.

Runs, in one go:

* quantlab in-process, with the strategy's batched ``signals_many`` (all windows' means from one
  cumulative sum) and with plain ``signals()`` per combination (the generic path);
* quantlab on 2 local processes;
* the same two with the strategy in the sandbox (``sandbox=True``: one sandboxed child per chunk of
  combinations, what the backtest server's ``run_sweep`` always does);
* quantlab on a Dask ``LocalCluster`` with 1 worker and with 2 workers (1 thread each);
* vectorbt's broadcast sweep: ``vbt.MA.run`` for the 1,000 fast and slow windows, then one
  ``Portfolio.from_signals`` over the broadcast entries/exits and the comparable metrics; its
  first-call (numba compile) time is measured separately on a tiny input.

Prints backtests/second, the ratio to vectorbt, and Dask 2 workers ÷ 1 worker.
Goals: best quantlab path ≥ vectorbt's throughput; Dask 2 workers ≥ 1.6 × 1 worker.

Usage::

    python benchmarks/bench_sweep.py [--bars 100000] [--pairs 1000] [--skip-vectorbt]
"""
from __future__ import annotations

import argparse
import gc
import os
import sys
import time

import numpy as np

STRATEGY = '''
import numpy as np
import pandas as pd

def _sma(cs, w):
    out = np.full(cs.size - 1, np.nan)
    out[w - 1:] = (cs[w:] - cs[:-w]) / w
    return out

def signals(data, fast=10, slow=50):
    """Long when the fast simple moving average is above the slow one, else flat."""
    cs = np.concatenate(([0.0], np.cumsum(data.close.to_numpy())))
    return pd.Series((_sma(cs, fast) > _sma(cs, slow)).astype(float), index=data.index)

def signals_many(data, params):
    """The same for many parameter dicts at once: every distinct window's mean is computed once."""
    cs = np.concatenate(([0.0], np.cumsum(data.close.to_numpy())))
    means = {w: _sma(cs, w) for w in {p["fast"] for p in params} | {p["slow"] for p in params}}
    return [(means[p["fast"]] > means[p["slow"]]).astype(float) for p in params]
'''

PLAIN = '''
def signals(data, fast=10, slow=50):
    """Long when the fast simple moving average is above the slow one, else flat (pandas rolling)."""
    c = data.close
    return (c.rolling(fast).mean() > c.rolling(slow).mean()).astype(float)
'''

FEES = 0.0005


def grid_for(pairs: int) -> dict[str, list[int]]:
    n_slow = 20 if pairs >= 20 else 1
    n_fast = max(1, pairs // n_slow)
    return {"fast": list(range(2, 2 + n_fast)), "slow": list(range(60, 60 + 10 * n_slow, 10))}


def cpu_seconds() -> float:
    """CPU time (user + system) of this process, its finished children and its live descendants."""
    import resource

    import psutil

    total = 0.0
    for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN):
        ru = resource.getrusage(who)
        total += ru.ru_utime + ru.ru_stime
    for child in psutil.Process().children(recursive=True):
        try:
            t = child.cpu_times()
            total += t.user + t.system
        except psutil.Error:
            pass
    return total


def run_vectorbt(df, grid) -> dict:
    t0 = time.perf_counter()
    import vectorbt as vbt
    t_import = time.perf_counter() - t0
    fw = np.repeat(grid["fast"], len(grid["slow"]))
    sw = np.tile(grid["slow"], len(grid["fast"]))

    def once(close, fw, sw):
        fast = vbt.MA.run(close, window=list(fw), short_name="fast")
        slow = vbt.MA.run(close, window=list(sw), short_name="slow")
        entries = fast.ma_above(slow)
        pf = vbt.Portfolio.from_signals(close, entries, ~entries, init_cash=100_000.0, fees=FEES, freq="1min")
        tr = pf.trades
        return {
            "total_return": pf.total_return(), "cagr": pf.annualized_return(),
            "volatility": pf.annualized_volatility(), "sharpe": pf.sharpe_ratio(), "sortino": pf.sortino_ratio(),
            "calmar": pf.calmar_ratio(), "max_drawdown": pf.max_drawdown(),
            "max_drawdown_duration": pf.drawdowns.max_duration(), "win_rate": tr.closed.win_rate(),
            "profit_factor": tr.closed.profit_factor(), "expectancy": tr.closed.expectancy(),
            "trades": tr.closed.count(), "open_trades": tr.open.count(),
        }

    t0 = time.perf_counter()
    once(df.close.iloc[:500], fw[:2], sw[:2])                    # first call: numba compile
    t_compile = time.perf_counter() - t0
    gc.collect()
    c0, t0 = cpu_seconds(), time.perf_counter()
    out = once(df.close, fw, sw)
    elapsed, cpu = time.perf_counter() - t0, cpu_seconds() - c0
    total_return = np.asarray(out["total_return"].to_numpy(), dtype=float)
    del out
    gc.collect()
    return {"elapsed": elapsed, "cpu": cpu, "compile": t_compile, "import": t_import, "total_return": total_return}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bars", type=int, default=100_000)
    ap.add_argument("--pairs", type=int, default=1_000)
    ap.add_argument("--skip-vectorbt", action="store_true")
    ap.add_argument("--skip-plain", action="store_true", help="skip the generic signals()-per-combination run")
    args = ap.parse_args(argv)

    from distributed import Client, LocalCluster

    from quantlab.engine import Strategy, data
    from quantlab.engine.sweep import sweep

    df = data.synthetic(args.bars, seed=7)
    grid = grid_for(args.pairs)
    n = len(grid["fast"]) * len(grid["slow"])
    strategy = Strategy.from_code(STRATEGY, name="sma-cross")
    plain = Strategy.from_code(PLAIN, name="sma-cross-rolling")
    print(f"sweep benchmark: {n:,} (fast, slow) SMA pairs on {args.bars:,} bars, fees={FEES}; "
          f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} at start", flush=True)
    sweep(strategy, df.iloc[:2000], {"fast": [2, 3], "slow": [60]}, progress=False)     # warm imports
    rows: list[tuple[str, float, float, str]] = []
    frames = {}

    def timed(fn):
        c0 = cpu_seconds()
        res = fn()
        return res, cpu_seconds() - c0

    def record(label, res_cpu, note=""):
        res, cpu = res_cpu
        assert res.frame["error"].isna().all(), res.errors.head()
        rows.append((label, res.elapsed, cpu, note))
        frames[label] = res.frame
        print(f"  {label:<44} {res.elapsed:8.2f} s  {n / res.elapsed:10,.0f} backtests/s  (CPU {cpu:.2f} s)",
              flush=True)

    record("quantlab in-process (signals_many)", timed(lambda: sweep(strategy, df, grid, progress=False, fees=FEES)))
    if not args.skip_plain:
        record("quantlab in-process (signals() each, rolling)",
               timed(lambda: sweep(plain, df, grid, progress=False, fees=FEES)), "generic path")
    record("quantlab processes (2)", timed(lambda: sweep(strategy, df, grid, executor=2, progress=False, fees=FEES)),
           "incl. pool start")
    # the same sweeps with the strategy confined to the sandbox (docs/sandbox.md): what run_sweep always does
    from quantlab.engine import sandbox as _sandbox

    _sandbox.run_signals(STRATEGY, df.iloc[:100])  # start the zygote (once per process, ~1.5 s): not a sweep cost
    record("quantlab in-process, sandboxed (signals_many)",
           timed(lambda: sweep(STRATEGY, df, grid, progress=False, fees=FEES, sandbox=True)), "one child per chunk")
    record("quantlab processes (2), sandboxed",
           timed(lambda: sweep(STRATEGY, df, grid, executor=2, progress=False, fees=FEES, sandbox=True)),
           "incl. pool start")
    dask_times: dict[int, float] = {}
    dask_cpu: dict[int, float] = {}
    for workers in (1, 2):
        t0 = time.perf_counter()
        with LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None,
                          silence_logs=40) as cl, Client(cl) as client:
            client.wait_for_workers(workers)
            t_start = time.perf_counter() - t0
            sweep(strategy, df.iloc[:2000], {"fast": [2, 3, 4, 5], "slow": [60]}, executor=client,
                  progress=False, chunk=1)                                              # warm worker imports
            res_cpu = timed(lambda: sweep(strategy, df, grid, executor=client, progress=False, fees=FEES))
        dask_times[workers], dask_cpu[workers] = res_cpu[0].elapsed, res_cpu[1]
        record(f"quantlab Dask LocalCluster {workers} worker{'s' if workers > 1 else ''}", res_cpu,
               f"cluster start {t_start:.1f} s excluded")
    ref = frames["quantlab in-process (signals_many)"]
    for label, frame in frames.items():
        assert frame.drop(columns="error").equals(ref.drop(columns="error")), f"{label} differs from in-process"

    vbt = None
    if not args.skip_vectorbt:
        try:
            vbt = run_vectorbt(df, grid)
        except ImportError:
            print("  vectorbt is not installed: skipped", flush=True)
    if vbt is not None:
        agree = np.allclose(vbt["total_return"], ref["total_return"].to_numpy(), rtol=1e-9, atol=1e-12)
        rows.append(("vectorbt broadcast (MA.run + from_signals)", vbt["elapsed"], vbt["cpu"],
                     f"compile {vbt['compile']:.1f} s + import {vbt['import']:.1f} s excluded; "
                     f"total_return agrees: {agree}"))
        print(f"  vectorbt: {vbt['elapsed']:.2f} s, first call (compile) {vbt['compile']:.1f} s, "
              f"import {vbt['import']:.1f} s", flush=True)

    vbt_rate = n / vbt["elapsed"] if vbt is not None else float("nan")
    print()
    print(f"{'path':<46}{'seconds':>9}{'CPU s':>8}{'backtests/s':>13}{'vs vectorbt':>13}  note")
    print("-" * 120)
    for label, secs, cpu, note in rows:
        rate = n / secs
        print(f"{label:<46}{secs:>9.2f}{cpu:>8.2f}{rate:>13,.0f}{rate / vbt_rate:>12.2f}x  {note}")
    print("-" * 120)
    best_label, best_secs, _, _ = min((r for r in rows if r[0].startswith("quantlab")), key=lambda r: r[1])
    if vbt is not None:
        ratio = (n / best_secs) / vbt_rate
        print(f"best quantlab path: {best_label}: {ratio:.2f}x vectorbt's throughput "
              f"(goal >= 1.0: {'met' if ratio >= 1.0 else 'NOT met'})")
    secs = {label: sec for label, sec, _, _ in rows}
    print(f"sandboxed / unsandboxed wall clock: in-process "
          f"{secs['quantlab in-process, sandboxed (signals_many)'] / secs['quantlab in-process (signals_many)']:.2f}x, "
          f"processes (2) {secs['quantlab processes (2), sandboxed'] / secs['quantlab processes (2)']:.2f}x")
    print(f"load average at the end: {os.getloadavg()[0]:.1f} (other processes compete for the same CPUs)")
    scale = dask_times[1] / dask_times[2]
    print(f"Dask 2 workers / 1 worker: {scale:.2f}x wall clock (goal >= 1.6: {'met' if scale >= 1.6 else 'NOT met'}); "
          f"CPU {dask_cpu[1]:.2f} s on 1 worker vs {dask_cpu[2]:.2f} s on 2 for the same work "
          f"(2 workers can only halve the wall time if 2 CPUs are free)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
