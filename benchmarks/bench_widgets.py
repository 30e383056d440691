"""Benchmark: how fast the review widget draws big backtests.

The equity/drawdown chart downsamples to <= 2,000 points with
``quantlab.engine.plotting.downsample_extremes`` (each bucket's min and max kept),
so its cost is flat in the number of bars; drawing every point instead grows
linearly. Goal: a 1,000,000-bar equity chart in < 1 s.

Run: ``python benchmarks/bench_widgets.py [--quick]`` (``--quick`` skips the
slow every-point drawing at 1,000,000 bars).
"""
from __future__ import annotations

import os
import sys
import time

os.environ.setdefault("MPLBACKEND", "Agg")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from quantlab.engine.backtest import backtest  # noqa: E402
from quantlab.engine.data import synthetic  # noqa: E402
from quantlab.widgets import _render as R  # noqa: E402
from quantlab.widgets import review  # noqa: E402

SMA = """
def signals(data, fast=50, slow=400):
    return (data.close.rolling(fast).mean() > data.close.rolling(slow).mean()).astype(float)
"""


def best_of(fn, repeat: int = 3) -> float:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def main(argv: list[str]) -> int:
    quick = "--quick" in argv
    R.equity_drawdown_png(pd.Series([1.0, 2.0, 1.5]))  # import matplotlib and warm up outside the timings
    rows = []
    for bars in (10_000, 100_000, 1_000_000):
        rng = np.random.default_rng(7)
        eq = pd.Series(100_000 * np.exp(np.cumsum(rng.normal(0, 1e-4, bars))),
                       index=pd.date_range("2020-01-01", periods=bars, freq="min"))
        dd = eq / eq.cummax() - 1
        fast = best_of(lambda: R.equity_drawdown_png(eq, dd))
        full = float("nan")
        if not (quick and bars >= 1_000_000):
            full = best_of(lambda: R.equity_drawdown_png(eq, dd, max_points=bars + 1), repeat=1)
        rows.append({"bars": bars, "downsampled_s": fast, "every_point_s": full, "speedup": full / fast,
                     "under_1s": fast < 1.0})
    table = pd.DataFrame(rows).set_index("bars")
    print("equity + drawdown chart (PNG, 800x460), best of 3")
    print(table.to_string(float_format=lambda v: f"{v:.3f}"))

    data = synthetic(1_000_000, seed=7)
    t = time.perf_counter()
    result = backtest(data, SMA)
    bt = time.perf_counter() - t
    t = time.perf_counter()
    rv = review(result)
    rv_s = time.perf_counter() - t
    t = time.perf_counter()
    html = rv.to_html()
    html_s = time.perf_counter() - t
    print()
    print(f"1,000,000-bar backtest: {bt:.3f} s; review() (metrics, equity chart, monthly heat map, trades): "
          f"{rv_s:.3f} s; static HTML fallback: {html_s:.3f} s ({len(html) / 1e3:.0f} kB, "
          f"{result.metrics['trades']} trades)")

    from quantlab.engine.data import sample
    from quantlab.engine.sweep import sweep

    res = sweep(SMA, sample(), {"fast": list(range(2, 42)), "slow": [50, 80, 120, 200, 300]}, progress=False)
    t = time.perf_counter()
    rv = review(res)
    sweep_s = time.perf_counter() - t
    t = time.perf_counter()
    rv.select(len(res.results) - 1)
    switch_s = time.perf_counter() - t
    print(f"review of a {len(res)}-run sweep: {sweep_s:.3f} s (table from the sweep frame, one run rebuilt); "
          f"switching to another run: {switch_s:.3f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
