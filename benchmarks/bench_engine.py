"""Engine speed, side by side: quantlab vs vectorbt vs backtesting.py vs bare numpy.

Run:  python benchmarks/bench_engine.py [--bars 1000000] [--sweep-bars 100000] [--pairs 100] [--quick]

1. One SMA(10)/SMA(50) crossover backtest with all metrics on 1,000,000 one-minute bars
   (long when SMA10 > SMA50, flat otherwise; filled at the bar's close):
   * quantlab ``backtest()`` (warm, best of 3) and its first call in a fresh process;
   * vectorbt ``Portfolio.from_signals(close, entries, exits)`` + ``stats()`` (warm, best of 3)
     and its first call in a fresh process (import + numba compilation);
   * backtesting.py on fewer bars (it is an event loop; scaled linearly to the full size);
   * a bare numpy backtest (cumsum SMAs, position, returns, equity, Sharpe, max drawdown)
     and one numpy pass over the closes.
2. A sweep of 100 (fast, slow) pairs on 100,000 bars: a loop of quantlab ``backtest()``
   vs vectorbt broadcasting all pairs as columns of one ``from_signals``.

Goals (issue 3): quantlab <= 0.25x vectorbt warm, first call in a fresh process <= 1 s,
within 20x of the bare numpy backtest.
"""
from __future__ import annotations

import argparse
import contextlib
import io
import subprocess
import sys
import textwrap
import time
import warnings

import numpy as np
import pandas as pd

warnings.filterwarnings("ignore")

SMA_CODE = """
def signals(data, fast=10, slow=50):
    close = data["close"]
    return (close.rolling(fast).mean() > close.rolling(slow).mean()).astype(float)
"""


def best_of(fn, repeat=3):
    best, out = float("inf"), None
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t)
    return best, out


def fresh_process(code: str) -> dict[str, float]:
    """Run code in a new interpreter; it prints `key=value` lines of timings."""
    out = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, check=True)
    return {k: float(v) for k, v in (line.split("=") for line in out.stdout.split() if "=" in line)}


# -- contenders -------------------------------------------------------------------------------
def quantlab_run(df):
    from quantlab.engine import backtest
    return backtest(df, SMA_CODE, fill="close")   # like for like with vectorbt's price=close (bench_validation: next_open)


ZSCORE_CODE = """
def signals(data, n=50):
    z = (data.close - data.close.rolling(n).mean()) / data.close.rolling(n).std()
    return (-z / 3).clip(-1, 1)
"""


def vbt_signals(close, fast=10, slow=50):
    f = close.rolling(fast).mean()
    s = close.rolling(slow).mean()
    entries = f > s
    return entries, ~entries


def vbt_run(vbt, close):
    entries, exits = vbt_signals(close)
    pf = vbt.Portfolio.from_signals(close, entries, exits, init_cash=100_000.0, freq="1min")
    return pf, pf.stats()


def numpy_bare(close, fast=10, slow=50):
    c = np.concatenate(([0.0], np.cumsum(close)))
    f = np.full(close.size, np.nan)
    s = np.full(close.size, np.nan)
    f[fast - 1:] = (c[fast:] - c[:-fast]) / fast
    s[slow - 1:] = (c[slow:] - c[:-slow]) / slow
    pos = (f > s).astype(np.float64)
    r = np.zeros(close.size)
    r[1:] = pos[:-1] * (close[1:] / close[:-1] - 1.0)
    eq = 100_000.0 * np.cumprod(1.0 + r)
    sharpe = r.mean() / r.std(ddof=1) * np.sqrt(525_960)
    mdd = (1 - eq / np.maximum.accumulate(eq)).max()
    return eq[-1], sharpe, mdd


def numpy_pass(close):
    return close[1:] / close[:-1] - 1.0


def backtesting_run(df):
    from backtesting import Backtest, Strategy
    from backtesting.lib import crossover  # noqa: F401

    def sma(x, n):
        return pd.Series(x).rolling(n).mean().to_numpy()

    class SmaCross(Strategy):
        def init(self):
            self.f = self.I(sma, self.data.Close, 10)
            self.s = self.I(sma, self.data.Close, 50)

        def next(self):
            if self.f[-1] > self.s[-1]:
                if not self.position:
                    self.buy()
            elif self.position:
                self.position.close()

    bdf = df.rename(columns=str.capitalize)
    bt = Backtest(bdf, SmaCross, cash=1e12, trade_on_close=True, finalize_trades=True)
    with contextlib.redirect_stderr(io.StringIO()):  # its progress bar
        return bt.run()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bars", type=int, default=1_000_000)
    ap.add_argument("--bt-bars", type=int, default=100_000, help="bars for backtesting.py (scaled)")
    ap.add_argument("--sweep-bars", type=int, default=100_000)
    ap.add_argument("--pairs", type=int, default=100)
    ap.add_argument("--quick", action="store_true", help="skip the fresh-process vectorbt first call (~30 s)")
    args = ap.parse_args()

    from quantlab.engine import backtest, data

    n = args.bars
    df = data.synthetic(n, seed=7, freq="1min")
    close = df["close"]
    rows = []

    # quantlab
    quantlab_run(df.iloc[:1000])
    t_ql, res = best_of(lambda: quantlab_run(df), 5)
    from quantlab.engine import Strategy
    sma = Strategy.from_code(SMA_CODE)
    t_sig, _ = best_of(lambda: sma.function(df), 5)
    first = fresh_process(f"""
        import time
        t0 = time.perf_counter()
        from quantlab.engine import backtest, data
        t1 = time.perf_counter()
        df = data.synthetic({n}, seed=7, freq="1min")
        code = {SMA_CODE!r}
        t2 = time.perf_counter()
        backtest(df, code)
        t3 = time.perf_counter()
        print(f"import={{t1 - t0}} first={{t3 - t2}}")
    """)

    # bare numpy
    c = close.to_numpy()
    t_np, np_out = best_of(lambda: numpy_bare(c), 5)
    t_pass, _ = best_of(lambda: numpy_pass(c), 5)

    # vectorbt
    t = time.perf_counter()
    import vectorbt as vbt
    t_vbt_import = time.perf_counter() - t
    t = time.perf_counter()
    vbt_run(vbt, close.iloc[:1000])
    t_vbt_compile = time.perf_counter() - t
    t_vbt, (pf, st) = best_of(lambda: vbt_run(vbt, close))
    if args.quick:
        vfirst = {"import": float("nan"), "first": float("nan")}
    else:
        vfirst = fresh_process(f"""
            import time, warnings
            warnings.filterwarnings("ignore")
            t0 = time.perf_counter()
            import vectorbt as vbt
            t1 = time.perf_counter()
            from quantlab.engine import data
            close = data.synthetic({n}, seed=7, freq="1min")["close"]
            t2 = time.perf_counter()
            f = close.rolling(10).mean(); s = close.rolling(50).mean()
            e = f > s
            pf = vbt.Portfolio.from_signals(close, e, ~e, init_cash=100_000.0, freq="1min")
            pf.stats()
            t3 = time.perf_counter()
            print(f"import={{t1 - t0}} first={{t3 - t2}}")
        """)

    # continuous targets: the position is resized on almost every bar
    zs = Strategy.from_code(ZSCORE_CODE, name="zscore")
    t_zs, zres = best_of(lambda: backtest(df, zs, fees=0.0005), 3)

    def vbt_targets():
        z = (close - close.rolling(50).mean()) / close.rolling(50).std()
        tgt = (-z / 3).clip(-1, 1)
        pf = vbt.Portfolio.from_orders(close, tgt, size_type="targetpercent", fees=0.0005,
                                       init_cash=100_000.0, freq="1min")
        return pf.stats()

    vbt_targets()
    t_vzs, _ = best_of(vbt_targets, 2)

    # downsampling for charts
    from quantlab.engine.plotting import downsample_extremes
    eq = res.equity
    downsample_extremes(eq, 2000)
    t_ds, _ = best_of(lambda: downsample_extremes(eq, 2000), 5)

    # backtesting.py
    nb = min(args.bt_bars, n)
    t_bt, bt_stats = best_of(lambda: backtesting_run(df.iloc[:nb]), 1)
    t_bt_scaled = t_bt * n / nb

    # agreement check
    agree = abs(res.metrics["total_return"] - st["Total Return [%]"] / 100) < 1e-9 * max(1, abs(res.metrics["total_return"]))
    trades_agree = res.metrics["trades"] == st["Total Closed Trades"]

    def row(name, secs, bars, note=""):
        rows.append((name, secs, bars / secs if secs > 0 else float("nan"), secs / t_ql, note))

    row("quantlab backtest() warm", t_ql, n, f"{res.metrics['trades']} trades, all 14 metrics")
    row("  of which the strategy's signals", t_sig, n, "user code: two pandas rolling means")
    row("  of which the engine", t_ql - t_sig, n, "checks, fills, equity, trades, metrics")
    row("quantlab first call, fresh process", first["first"], n, f"+ import {first['import']:.2f} s")
    row("vectorbt from_signals+stats warm", t_vbt, n, f"{int(st['Total Closed Trades'])} trades")
    row("vectorbt first call, fresh process", vfirst["first"], n,
        f"+ import {vfirst['import']:.1f} s (in-process: import {t_vbt_import:.1f} s, compile {t_vbt_compile:.1f} s)")
    row(f"backtesting.py ({nb:,} bars, x{n / nb:g})", t_bt_scaled, n, f"measured {t_bt:.2f} s on {nb:,} bars")
    row("bare numpy backtest", t_np, n, "SMAs, position, equity, Sharpe, max DD")
    row("one numpy pass over closes", t_pass, n, "close[1:] / close[:-1] - 1")

    print(f"\nSMA(10)/SMA(50) crossover, {n:,} one-minute bars "
          f"(results agree with vectorbt: total return {agree}, closed trades {trades_agree})\n")
    print(f"{'contender':<42}{'seconds':>10}{'bars/s':>14}{'x quantlab':>12}  note")
    for name, secs, bps, ratio, note in rows:
        print(f"{name:<42}{secs:>10.3f}{bps:>14,.0f}{ratio:>12.2f}  {note}")
    print(f"\ncontinuous z-score targets (orders on {zres.metrics['exposure']:.0%} of bars, fees 5 bp):")
    print(f"{'quantlab backtest() warm':<42}{t_zs:>10.3f}{n / t_zs:>14,.0f}")
    print(f"{'vectorbt from_orders(targetpercent)+stats':<42}{t_vzs:>10.3f}{n / t_vzs:>14,.0f}"
          "  (rebalances every bar: a different model, for scale only)")
    print(f"\ndownsample_extremes of the 1,000,000-point equity to 2,000 points: {t_ds * 1e3:.1f} ms")
    print("\ngoals:")
    print(f"  quantlab / vectorbt warm      = {t_ql / t_vbt:6.3f}   (goal <= 0.25)")
    print(f"  quantlab first call (fresh)   = {first['first']:6.3f} s (goal <= 1 s; import {first['import']:.2f} s)")
    print(f"  quantlab / bare numpy backtest= {t_ql / t_np:6.2f}   (goal <= 20)")
    print(f"  quantlab / one numpy pass     = {t_ql / t_pass:6.1f}   (engine alone: {(t_ql - t_sig) / t_pass:.1f})")
    print(f"  quantlab / backtesting.py     = {t_ql / t_bt_scaled:6.4f}")

    # -- sweep --------------------------------------------------------------------------------
    ns = min(args.sweep_bars, n)
    sdf = df.iloc[:ns]
    rng = np.random.default_rng(0)
    fasts = rng.integers(5, 30, args.pairs)
    slows = fasts + rng.integers(10, 100, args.pairs)
    pairs = list(zip(fasts.tolist(), slows.tolist()))

    strat = Strategy.from_code(SMA_CODE, name="sma")

    def ql_sweep():
        return [backtest(sdf, strat, params={"fast": f, "slow": s}).metrics for f, s in pairs]

    def vbt_portfolio():
        sclose = sdf["close"]
        fast_ma = vbt.MA.run(sclose, window=fasts, short_name="fast")
        slow_ma = vbt.MA.run(sclose, window=slows, short_name="slow")
        entries = fast_ma.ma_above(slow_ma)
        return vbt.Portfolio.from_signals(sclose, entries, ~entries, init_cash=100_000.0, freq="1min")

    def vbt_metrics(pf):
        return pd.DataFrame({"total_return": pf.total_return(), "sharpe": pf.sharpe_ratio(),
                             "sortino": pf.sortino_ratio(), "max_drawdown": pf.max_drawdown(),
                             "trades": pf.trades.closed.count(), "win_rate": pf.trades.closed.win_rate(),
                             "profit_factor": pf.trades.closed.profit_factor()})

    vbt_metrics(vbt_portfolio())  # compile
    t_qs, qm = best_of(ql_sweep, 2)
    t_vp = t_vm = float("inf")
    for _ in range(2):  # a fresh portfolio each time: vectorbt caches its metrics on the object
        t0 = time.perf_counter()
        vpf = vbt_portfolio()
        t1 = time.perf_counter()
        vm = vbt_metrics(vpf)
        t2 = time.perf_counter()
        if t2 - t0 < t_vp + t_vm:
            t_vp, t_vm = t1 - t0, t2 - t1
    t_vs = t_vp + t_vm
    sweep_agree = np.allclose([m["total_return"] for m in qm], vm["total_return"].to_numpy(), rtol=1e-9)
    print(f"\nsweep of {len(pairs)} (fast, slow) pairs on {ns:,} bars (total returns agree: {sweep_agree})\n")
    print(f"{'contender':<48}{'seconds':>10}{'bar-runs/s':>14}{'x quantlab':>12}")
    for name, secs in (("quantlab loop of backtest() (all 14 metrics)", t_qs),
                       ("vectorbt broadcasting: MAs + from_signals", t_vp),
                       ("vectorbt: 7 metrics for all columns", t_vm),
                       ("vectorbt total", t_vs)):
        print(f"{name:<48}{secs:>10.3f}{len(pairs) * ns / secs:>14,.0f}{secs / t_qs:>12.2f}")
    print(f"\n  quantlab / vectorbt sweep     = {t_qs / t_vs:6.3f}")


if __name__ == "__main__":
    main()
