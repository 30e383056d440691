"""Validation speed (issue 10, section 4), side by side in one run; prints ratios and the load average.

Run:  python benchmarks/bench_validation.py [--bars 1000000] [--wf-bars 100000] [--combos 100] [--folds 5]

1. The 1M-bar SMA(10)/SMA(50) backtest with all metrics (strategy with pandas rolling means),
   default fill="next_open", vs vectorbt's equivalent ``from_signals(price=open)`` with the
   signals shifted one bar + ``stats()`` (warm, best of 3). Goal <= 0.25x vectorbt.
2. ``check_lookahead`` on the same 1M bars vs one backtest. Goal <= 3x.
3. ``walk_forward`` on 100k bars, 5 folds x 100 combinations, vs ``sweep`` of the same 100
   combinations on the same bars, per backtest (walk-forward: combinations x folds in-sample
   backtests). Goal: walk-forward at least as fast per backtest.
"""
from __future__ import annotations

import argparse
import os
import time
import warnings

import numpy as np

warnings.filterwarnings("ignore")

from bench_engine import SMA_CODE as SMA, best_of  # noqa: E402 - the same strategy and timer as bench_engine


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--bars", type=int, default=1_000_000)
    ap.add_argument("--wf-bars", type=int, default=100_000)
    ap.add_argument("--combos", type=int, default=100)
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--no-vectorbt", action="store_true")
    a = ap.parse_args()

    import quantlab
    from quantlab.engine import Strategy, data

    print(f"load average before: {os.getloadavg()}")
    df = data.synthetic(a.bars, seed=7, freq="1min")
    s = Strategy.from_code(SMA, name="sma")
    t_ql, res = best_of(lambda: quantlab.backtest(df, s))
    rows = [("1M-bar backtest + metrics (next_open)", t_ql)]
    if not a.no_vectorbt:
        import vectorbt as vbt

        close, opens = df["close"], df["open"]

        def vbt_run():
            e = close.rolling(10).mean() > close.rolling(50).mean()
            e = e.shift(1, fill_value=False)
            pf = vbt.Portfolio.from_signals(close, e, ~e, price=opens, init_cash=100_000.0, freq="1min")
            return pf.stats()

        vbt_run()                                                  # numba compile
        t_vbt, st = best_of(vbt_run)
        rows.append(("vectorbt from_signals(price=open, shifted) + stats()", t_vbt))
        assert abs(st["Total Return [%]"] / 100 - res.metrics["total_return"]) < 1e-6 * max(1, abs(res.metrics["total_return"]))
    t_la, rep = best_of(lambda: quantlab.check_lookahead(s, df), repeat=2)
    assert rep.causal
    rows.append(("check_lookahead (1 full + 10 prefix runs)", t_la))

    wdf = data.synthetic(a.wf_bars, seed=8, freq="1min")
    k = int(round(np.sqrt(a.combos)))
    grid = {"fast": list(range(5, 5 + 2 * k, 2)), "slow": list(range(40, 40 + 10 * k, 10))}
    n_combos = len(grid["fast"]) * len(grid["slow"])
    t_sw, _ = best_of(lambda: quantlab.sweep(s, wdf, grid, progress=False), repeat=1)
    test = a.wf_bars // (a.folds + 2)
    train = a.wf_bars - a.folds * test
    t_wf, wf = best_of(lambda: quantlab.walk_forward(s, wdf, grid, train=train, test=test, progress=False), repeat=1)
    assert len(wf.folds) == a.folds
    rows.append((f"sweep {n_combos} combos x {a.wf_bars:,} bars (per backtest)", t_sw / n_combos))
    rows.append((f"walk_forward {a.folds} folds x {n_combos} combos (per in-sample backtest)", t_wf / (n_combos * a.folds)))

    width = max(len(r[0]) for r in rows)
    for name, t in rows:
        print(f"{name:<{width}}  {t * 1000:10.3f} ms")
    print("ratios:")
    if not a.no_vectorbt:
        print(f"  quantlab / vectorbt (1M bars, next-open fills)       {t_ql / t_vbt:.3f}x   goal <= 0.25x")
    print(f"  check_lookahead / one backtest                       {t_la / t_ql:.2f}x    goal <= 3x")
    print(f"  walk_forward / sweep, per backtest                   {(t_wf / (n_combos * a.folds)) / (t_sw / n_combos):.3f}x   goal <= 1x")
    print(f"  (walk_forward total {t_wf:.2f} s for {a.folds * n_combos} in-sample + {a.folds * n_combos} out-of-sample "
          f"window backtests; sweep total {t_sw:.2f} s)")
    print(f"load average after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
