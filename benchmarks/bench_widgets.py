"""Benchmark: how fast the review widget draws big backtests.

The equity/drawdown chart downsamples to <= 2,000 points with
``quantlab.engine.plotting.downsample_extremes`` (each bucket's min and max kept),
so its cost is flat in the number of bars; drawing every point instead grows
linearly. Goal: a 1,000,000-bar equity chart in < 1 s.

The monitor: 10 deployments with 100,000 bars each; one refresh redraws the
deployments table and the chosen deployment's chart (candles merged to <= 200,
fills, position vs expected, PnL as SVG) after rebuilding its position and PnL
from the fills. Goal: < 100 ms. The peer is the same chart with every candle.

Run: ``python benchmarks/bench_widgets.py [--quick]`` (``--quick`` skips the
slow every-point drawing at 1,000,000 bars). ``--monitor`` runs only the monitor part.
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


def monitor_activities(n_deployments: int = 10, bars: int = 100_000):
    """``n_deployments`` DeploymentActivity objects of ``bars`` one-minute bars, a fill every ~150 bars."""
    from quantlab.lab import activity as A

    out = []
    for k in range(n_deployments):
        rng = np.random.default_rng(k)
        idx = pd.date_range("2024-01-01", periods=bars, freq="min")
        close = 1.1 * np.exp(np.cumsum(rng.normal(0, 2e-4, bars)))
        open_ = np.r_[close[0], close[:-1]]
        spread = np.abs(rng.normal(0, 1e-4, bars))
        candles = pd.DataFrame({"open": open_, "high": np.maximum(open_, close) + spread,
                                "low": np.minimum(open_, close) - spread, "close": close, "volume": 1}, index=idx)
        at = np.sort(rng.choice(bars, bars // 150, replace=False))
        lots = np.where(np.arange(len(at)) % 2 == 0, 0.1, 0.0)
        fills = pd.DataFrame({"time": idx[at], "side": np.where(lots > 0, "buy", "sell"), "volume": 0.1,
                              "price": close[at], "lots": lots, "message": ""})
        position = A.position_series(candles, fills)
        act = A.DeploymentActivity(
            deployment_id=str(k + 1), strategy_name=f"sma_{k}", symbol="EURUSD", timeframe="M1", status="running",
            volume=0.1, currency="USD", market_time=idx[-1], bars=candles, fills=fills, position=position,
            pnl=A.pnl_series(candles, fills, position, 100_000.0), pnl_total=0.0, trades=len(fills),
            expected=position.shift(1).fillna(0.0))
        out.append(act)
    return out


def bench_monitor() -> None:
    from quantlab.lab import activity as A
    from quantlab.widgets.monitor import activity_html, deployments_html

    acts = monitor_activities()
    frame = pd.DataFrame([{"deployment_id": a.deployment_id, "strategy_name": a.strategy_name, "symbol": a.symbol,
                           "status": a.status, "position": a.lots, "pnl": float(a.pnl.iloc[-1]), "trades": a.trades,
                           "commit": "0123456789abcdef", "triggered_at": "2026-01-01T00:00:00", "last_error": None}
                          for a in acts])
    chosen = acts[0]

    def refresh(max_candles: int = 200) -> str:
        position = A.position_series(chosen.bars, chosen.fills)
        chosen.pnl = A.pnl_series(chosen.bars, chosen.fills, position, 100_000.0)
        return deployments_html(frame, "USD") + activity_html(chosen, max_candles=max_candles)

    refresh()  # warm up
    fast = best_of(lambda: refresh(), repeat=5)
    every = best_of(lambda: refresh(max_candles=len(chosen.bars)), repeat=1)
    all_charts = best_of(lambda: [activity_html(a) for a in acts], repeat=3)
    size = len(refresh()) / 1e3
    print(f"monitor refresh, 10 deployments x {len(chosen.bars):,} bars (table + chosen chart, 200 candles): "
          f"{fast * 1e3:.1f} ms ({size:.0f} kB of HTML); every candle drawn: {every * 1e3:.0f} ms "
          f"(x{every / fast:.0f}); all 10 charts: {all_charts * 1e3:.0f} ms; under 100 ms: {fast < 0.1}")


def main(argv: list[str]) -> int:
    quick = "--quick" in argv
    print(f"load average: {' '.join(f'{v:.2f}' for v in os.getloadavg())}")
    bench_monitor()
    if "--monitor" in argv:
        return 0
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
