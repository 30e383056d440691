"""Performance metrics, one function each, with the formula in the docstring.

Definitions follow vectorbt (``Portfolio.stats()``) so numbers agree with it on
the same inputs; where vectorbt and quantstats differ we follow vectorbt and say
so. Notation: ``r_t`` are the per-bar returns of the equity curve (the first is
``equity_0 / cash - 1``), ``n`` the number of bars, ``P`` periods per year,
``V_t`` the equity.

Edge cases return defined values instead of raising: fewer than two bars give
NaN for the dispersion-based ratios (as vectorbt), flat equity gives 0.0 for
Sharpe/Sortino/Calmar (vectorbt gives inf/nan there), no trades give NaN win
rate/profit factor/expectancy, only winners give ``profit_factor = inf``.

Example
-------
>>> import numpy as np
>>> r = np.array([0.01, -0.02, 0.03])
>>> round(sharpe(r, periods_per_year=252), 4)
4.2053
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

__all__ = [
    "METRICS",
    "total_return",
    "cagr",
    "volatility",
    "sharpe",
    "sortino",
    "calmar",
    "drawdown",
    "max_drawdown",
    "max_drawdown_duration",
    "win_rate",
    "profit_factor",
    "expectancy",
    "exposure",
    "benchmark_return",
    "probabilistic_sharpe",
    "deflated_sharpe",
    "expected_max_sharpe",
    "compute_metrics",
]

#: The metric names :func:`compute_metrics` returns, in display order.
METRICS = (
    "total_return", "cagr", "volatility", "sharpe", "sortino", "calmar", "max_drawdown",
    "max_drawdown_duration", "win_rate", "profit_factor", "expectancy", "trades", "open_trades", "exposure",
    "benchmark_return", "psr",
)


def _arr(x: Any) -> np.ndarray:
    return np.asarray(x.to_numpy() if isinstance(x, (pd.Series, pd.Index)) else x, dtype=np.float64)


def _ratio(num: float, den: float) -> float:
    """``num / den``, with the edge rule shared by Sharpe, Sortino and Calmar: a zero
    denominator gives 0.0 for a zero numerator (flat equity), else ``±inf``."""
    if den == 0.0:
        return 0.0 if num == 0.0 else math.copysign(math.inf, num)
    return float(num / den)


def total_return(equity: Any, cash: float | None = None) -> float:
    """Total return ``V_end / V_0 - 1``, with ``V_0 = cash`` when given (else the first equity value).

    >>> round(total_return([100.0, 110.0], cash=100.0), 12)
    0.1
    """
    v = _arr(equity)
    if v.size == 0:
        return float("nan")
    start = float(cash) if cash is not None else float(v[0])
    return float(v[-1] / start - 1.0) if start != 0 else float("nan")


def cagr(returns: Any, periods_per_year: float) -> float:
    """Compound annual growth rate ``prod(1 + r_t) ** (P / n) - 1``.

    Years are ``n / P`` (vectorbt's ``annualized_return``; quantstats uses calendar days).

    >>> round(cagr([0.01] * 252, 252), 6)
    11.274002
    """
    r = _arr(returns)
    if r.size == 0:
        return float("nan")
    growth = float(np.prod(1.0 + r))
    if growth < 0:
        return -1.0
    with np.errstate(over="ignore"):
        return float(np.float64(growth) ** (periods_per_year / r.size) - 1.0)  # inf on overflow, no exception


def volatility(returns: Any, periods_per_year: float) -> float:
    """Annualised volatility ``std(r, ddof=1) * sqrt(P)``; NaN for fewer than two bars.

    >>> round(volatility([0.01, -0.01], 4), 6)
    0.028284
    """
    r = _arr(returns)
    if r.size < 2:
        return float("nan")
    return float(np.std(r, ddof=1) * math.sqrt(periods_per_year))


def sharpe(returns: Any, periods_per_year: float) -> float:
    """Sharpe ratio ``mean(r) / std(r, ddof=1) * sqrt(P)``, risk-free rate 0 (vectorbt).

    NaN for fewer than two bars; when ``std == 0``: 0.0 if ``mean == 0`` (flat
    equity) else ``±inf`` (vectorbt returns inf in both cases).

    >>> round(sharpe([0.01, -0.02, 0.03], 252), 4)
    4.2053
    """
    r = _arr(returns)
    if r.size < 2:
        return float("nan")
    mean = float(np.mean(r))
    std = float(np.std(r, ddof=1))
    return _ratio(mean, std) * math.sqrt(periods_per_year)


def sortino(returns: Any, periods_per_year: float) -> float:
    """Sortino ratio ``mean(r) * P / (sqrt(mean(min(r, 0)^2)) * sqrt(P))`` (vectorbt).

    The downside deviation averages the squared negative returns over **all**
    ``n`` bars (zeros for positive ones), target 0; quantstats does the same but
    differs in annualisation details, we follow vectorbt. NaN for fewer than two
    bars; zero downside deviation gives 0.0 if ``mean == 0`` else ``±inf``.

    >>> round(sortino([0.01, -0.02, 0.03], 252), 4)
    9.1652
    """
    r = _arr(returns)
    if r.size < 2:
        return float("nan")
    mean = float(np.mean(r))
    down = np.minimum(r, 0.0)
    dd = math.sqrt(float(np.mean(down * down)))  # no BLAS dot: its threads stall on a busy machine
    return _ratio(mean * periods_per_year, dd * math.sqrt(periods_per_year))


def calmar(cagr_value: float, max_drawdown_value: float, bars: int = 2) -> float:
    """Calmar ratio: ``CAGR / max_drawdown`` (vectorbt's ``calmar_ratio``).

    Defined values at the edges: ``nan`` for fewer than 2 bars; with no drawdown,
    ``0.0`` for flat growth and ``±inf`` otherwise (the sign of the CAGR).

    >>> calmar(0.2, 0.1)
    2.0
    >>> calmar(0.1, 0.0)
    inf
    """
    return float("nan") if bars < 2 else _ratio(cagr_value, max_drawdown_value)


def drawdown(equity: Any) -> np.ndarray:
    """Drawdown per bar ``1 - V_t / max(V_0..V_t)`` (a positive fraction, 0 at new highs).

    >>> drawdown([100.0, 90.0, 120.0]).tolist()
    [0.0, 0.09999999999999998, 0.0]
    """
    v = _arr(equity)
    if v.size == 0:
        return v
    peak = np.maximum.accumulate(v)
    with np.errstate(divide="ignore", invalid="ignore"):
        dd = 1.0 - v / peak
    dd[peak == v] = 0.0
    return dd


def max_drawdown(equity: Any) -> float:
    """Maximum drawdown ``max_t (1 - V_t / max(V_0..V_t))`` as a positive fraction.

    vectorbt reports the same number negated (and in percent in ``stats()``).

    >>> max_drawdown([100.0, 80.0, 120.0, 90.0])
    0.25
    """
    dd = drawdown(equity)
    return float(dd.max()) if dd.size else 0.0


def max_drawdown_duration(equity: Any) -> int:
    """Longest drawdown in bars: the longest run of consecutive bars below the running peak
    (``V_t < max(V_0..V_t)``), recovered or still open.

    This is vectorbt's drawdown ``duration`` (``end_idx - start_idx`` with
    ``start_idx = peak_idx + 1``; ``+ 1`` for a drawdown still open at the last bar).

    >>> max_drawdown_duration([1.0, 0.9, 0.95, 1.0, 0.99])
    2
    """
    v = _arr(equity)
    if v.size == 0:
        return 0
    return _dd_duration(v, np.maximum.accumulate(v))


def _dd_duration(v: np.ndarray, peak: np.ndarray) -> int:
    # bars at the running peak; the longest gap between consecutive ones (or to the end) is under water
    at_peak = np.flatnonzero(v >= peak)
    if at_peak.size == 0:
        return int(v.size)
    gaps = np.diff(np.concatenate((at_peak, [v.size])))
    return int(gaps.max()) - 1


def win_rate(pnl: Any) -> float:
    """Share of closed trades with ``pnl > 0``; NaN without trades.

    >>> win_rate([5.0, -1.0, 0.0, 2.0])
    0.5
    """
    p = _arr(pnl)
    return float(np.count_nonzero(p > 0) / p.size) if p.size else float("nan")


def profit_factor(pnl: Any) -> float:
    """Gross profit over gross loss of closed trades ``sum(pnl > 0) / |sum(pnl < 0)|``.

    ``inf`` if there are only winners, NaN without trades or with only breakevens (as vectorbt).

    >>> profit_factor([5.0, -2.0, 1.0])
    3.0
    """
    p = _arr(pnl)
    if p.size == 0:
        return float("nan")
    win = float(p[p > 0].sum())
    loss = float(-p[p < 0].sum())
    if loss == 0.0:
        return float("nan") if win == 0.0 else math.inf
    return win / loss


def expectancy(pnl: Any) -> float:
    """Average P&L per closed trade ``win_rate * avg_win - loss_rate * |avg_loss|`` = ``mean(pnl)``
    (vectorbt; breakevens count in ``n``); NaN without trades.

    >>> expectancy([5.0, -2.0, 0.0])
    1.0
    """
    p = _arr(pnl)
    return float(p.sum() / p.size) if p.size else float("nan")


def exposure(positions: Any) -> float:
    """Share of bars holding a non-zero position.

    >>> exposure([0.0, 1.5, -2.0, 0.0])
    0.5
    """
    x = _arr(positions)
    return float(np.count_nonzero(x) / x.size) if x.size else 0.0


def benchmark_return(close: Any) -> float:
    """Buy-and-hold return of the instrument ``close_{n-1} / close_0 - 1`` (vectorbt's
    ``Benchmark Return``, backtesting.py's ``Buy & Hold Return``); NaN without bars.

    >>> benchmark_return([100.0, 90.0, 120.0])
    0.19999999999999996
    """
    c = _arr(close)
    return float(c[-1] / c[0] - 1.0) if c.size and c[0] != 0 else float("nan")


# -- multiple testing: probabilistic and deflated Sharpe (Bailey & López de Prado) ------------------
_EULER_GAMMA = 0.5772156649015329


def _norm_cdf(x: float) -> float:
    return 0.5 * math.erfc(-x / math.sqrt(2.0))


def _norm_ppf(p: float) -> float:
    """Inverse standard normal CDF (Acklam's rational approximation refined by one Halley step; ~1e-15)."""
    if not 0.0 < p < 1.0:
        return -math.inf if p <= 0 else math.inf
    a = (-3.969683028665376e+01, 2.209460984245205e+02, -2.759285104469687e+02, 1.383577518672690e+02,
         -3.066479806614716e+01, 2.506628277459239e+00)
    b = (-5.447609879822406e+01, 1.615858368580409e+02, -1.556989798598866e+02, 6.680131188771972e+01,
         -1.328068155288572e+01)
    c = (-7.784894002430293e-03, -3.223964580411365e-01, -2.400758277161838e+00, -2.549732539343734e+00,
         4.374664141464968e+00, 2.938163982698783e+00)
    d = (7.784695709041462e-03, 3.224671290700398e-01, 2.445134137142996e+00, 3.754408661907416e+00)
    lo = 0.02425
    if p < lo:
        q = math.sqrt(-2 * math.log(p))
        x = (((((c[0] * q + c[1]) * q + c[2]) * q + c[3]) * q + c[4]) * q + c[5]) / \
            ((((d[0] * q + d[1]) * q + d[2]) * q + d[3]) * q + 1)
    elif p <= 1 - lo:
        q = p - 0.5
        r = q * q
        x = (((((a[0] * r + a[1]) * r + a[2]) * r + a[3]) * r + a[4]) * r + a[5]) * q / \
            (((((b[0] * r + b[1]) * r + b[2]) * r + b[3]) * r + b[4]) * r + 1)
    else:
        q = math.sqrt(-2 * math.log(1 - p))
        x = -(((((c[0] * q + c[1]) * q + c[2]) * q + c[3]) * q + c[4]) * q + c[5]) / \
            ((((d[0] * q + d[1]) * q + d[2]) * q + d[3]) * q + 1)
    e = _norm_cdf(x) - p                                   # one Halley step
    u = e * math.sqrt(2 * math.pi) * math.exp(x * x / 2)
    return x - u / (1 + x * u / 2)


def _sharpe_moments(r: np.ndarray) -> tuple[int, float, float, float]:
    """``n``, per-bar Sharpe ``mean / std(ddof=1)``, skewness and (non-excess) kurtosis (population moments)."""
    n = r.size
    if n < 3:
        return n, float("nan"), float("nan"), float("nan")
    mean = float(r.mean())
    d = r - mean
    d2 = d * d
    m2 = float(d2.mean())
    if m2 == 0.0:
        return n, float("nan"), float("nan"), float("nan")
    m3 = float((d2 * d).mean())
    m4 = float((d2 * d2).mean())
    sr = mean / math.sqrt(m2 * n / (n - 1))
    return n, sr, m3 / m2 ** 1.5, m4 / (m2 * m2)


def _psr(n: int, sr: float, skew: float, kurt: float, sr_star: float) -> float:
    if not (math.isfinite(sr) and math.isfinite(sr_star)):
        return float("nan")
    var = 1.0 - skew * sr + (kurt - 1.0) / 4.0 * sr * sr
    if not var > 0:
        return float("nan")
    return _norm_cdf((sr - sr_star) * math.sqrt(n - 1) / math.sqrt(var))


def probabilistic_sharpe(returns: Any, sr_benchmark: float = 0.0, periods_per_year: float | None = None) -> float:
    """Probabilistic Sharpe ratio: the probability that the true Sharpe exceeds ``sr_benchmark``.

    Bailey & López de Prado (2012), with ``SR`` the per-bar Sharpe ``mean(r) / std(r, ddof=1)``,
    ``γ3`` the skewness and ``γ4`` the kurtosis (3 for normal returns) of the ``n`` bar returns::

        PSR(SR*) = Φ( (SR − SR*) √(n − 1) / √(1 − γ3 SR + (γ4 − 1)/4 SR²) )

    ``sr_benchmark`` is per bar, or annualised when ``periods_per_year`` is given (divided by
    ``√P``). NaN for fewer than 3 bars or constant returns.

    >>> r = np.random.default_rng(0).normal(0.001, 0.01, 1000)
    >>> round(probabilistic_sharpe(r), 4)
    0.9532
    """
    n, sr, g3, g4 = _sharpe_moments(_arr(returns))
    star = float(sr_benchmark) / math.sqrt(periods_per_year) if periods_per_year else float(sr_benchmark)
    return _psr(n, sr, g3, g4, star)


def expected_max_sharpe(trials: int, variance: float) -> float:
    """Expected maximum of ``trials`` per-bar Sharpe estimates of zero-skill strategies
    (Bailey & López de Prado 2014, "False Strategy" theorem)::

        SR0 = √V · ((1 − γ) Φ⁻¹(1 − 1/N) + γ Φ⁻¹(1 − 1/(N e)))

    ``γ`` the Euler–Mascheroni constant, ``V`` the variance of the Sharpe estimates across
    trials; 0 for a single trial.

    >>> round(expected_max_sharpe(100, 1.0), 4)
    2.5306
    """
    n = int(trials)
    if n < 1:
        raise ValueError(f"trials must be >= 1, got {trials}.")
    if n == 1:
        return 0.0
    return math.sqrt(variance) * ((1 - _EULER_GAMMA) * _norm_ppf(1 - 1 / n)
                                  + _EULER_GAMMA * _norm_ppf(1 - 1 / (n * math.e)))


def deflated_sharpe(returns: Any, trials: int, sharpe_variance: float | None = None,
                    trial_sharpes: Any = None) -> float:
    """Deflated Sharpe ratio: the PSR against the Sharpe the best of ``trials`` zero-skill
    strategies would show by luck (Bailey & López de Prado 2014)::

        DSR = PSR(SR0),   SR0 = expected_max_sharpe(N, V)

    ``V`` is the variance of the per-bar Sharpe estimates across the trials: from
    ``trial_sharpes`` (per-bar Sharpes of all variants tried) when given, else
    ``sharpe_variance``, else ``1 / (n − 1)`` — the variance of one Sharpe estimate on ``n``
    normal bars when the true Sharpe is 0 (the null the deflation tests against).
    With ``trials=1`` the DSR equals the PSR against 0.

    >>> r = np.random.default_rng(0).normal(0.001, 0.01, 1000)
    >>> round(deflated_sharpe(r, trials=1), 4), round(deflated_sharpe(r, trials=100), 4)
    (0.9532, 0.1984)
    """
    n, sr, g3, g4 = _sharpe_moments(_arr(returns))
    if n < 3 or not math.isfinite(sr):
        return float("nan")
    if trial_sharpes is not None:
        ts = _arr(trial_sharpes)
        ts = ts[np.isfinite(ts)]
        var = float(np.var(ts, ddof=1)) if ts.size > 1 else 1.0 / (n - 1)
    elif sharpe_variance is not None:
        var = float(sharpe_variance)
    else:
        var = 1.0 / (n - 1)
    return _psr(n, sr, g3, g4, expected_max_sharpe(trials, var))


def compute_metrics(
    equity: Any,
    returns: Any,
    positions: Any,
    trades: pd.DataFrame,
    periods_per_year: float,
    cash: float | None = None,
    close: Any = None,
) -> dict[str, float | int]:
    """All metrics in :data:`METRICS` as plain Python floats/ints.

    ``close`` (the instrument's closes) gives ``benchmark_return``; without it, NaN.

    ``trades`` needs a ``pnl`` column and ``exit_time`` (NaT for open trades);
    win rate, profit factor and expectancy use closed trades only (vectorbt's
    ``stats()`` default). ``cash`` is the starting value for ``total_return``
    (default: derived from the first return).

    >>> import pandas as pd
    >>> eq = pd.Series([100.0, 101.0, 99.0, 103.0])
    >>> tr = pd.DataFrame({"pnl": [3.0], "exit_time": [pd.Timestamp("2024-01-01")]})
    >>> m = compute_metrics(eq, eq.pct_change().fillna(0), [0, 1, 1, 0], tr, 252, cash=100.0)
    >>> m["trades"], round(m["total_return"], 12)
    (1, 0.03)
    """
    eq = _arr(equity)
    r = _arr(returns)
    ppy = float(periods_per_year)
    if cash is None and eq.size and r.size:
        cash = float(eq[0] / (1.0 + r[0])) if r[0] != -1.0 else float(eq[0])
    if len(trades):
        closed_mask = trades["exit_time"].notna().to_numpy()
        pnl_all = trades["pnl"].to_numpy(dtype=np.float64)
        pnl = pnl_all[closed_mask]
        n_open = int((~closed_mask).sum())
    else:
        pnl = np.empty(0)
        n_open = 0
    if cash is not None and eq.size and eq[-1] > 0 and r.size == eq.size and (eq > 0).all():
        with np.errstate(over="ignore"):
            c = float(np.float64(eq[-1] / cash) ** (ppy / r.size) - 1.0)   # = prod(1 + r) ** (P/n) - 1
    else:
        c = cagr(r, ppy)
    if eq.size:
        peak = np.maximum.accumulate(eq)
        with np.errstate(divide="ignore", invalid="ignore"):
            mdd = float(np.max(1.0 - eq / peak))
        mdd = max(mdd, 0.0) if math.isfinite(mdd) else float(drawdown(eq).max())
        mdd_dur = _dd_duration(eq, peak)
    else:
        mdd, mdd_dur = 0.0, 0
    cal = calmar(c, mdd, r.size)
    out: dict[str, float | int] = {
        "total_return": total_return(eq, cash),
        "cagr": c,
        "volatility": volatility(r, ppy),
        "sharpe": sharpe(r, ppy),
        "sortino": sortino(r, ppy),
        "calmar": float(cal),
        "max_drawdown": mdd,
        "max_drawdown_duration": mdd_dur,
        "win_rate": win_rate(pnl),
        "profit_factor": profit_factor(pnl),
        "expectancy": expectancy(pnl),
        "trades": int(pnl.size),
        "open_trades": n_open,
        "exposure": exposure(positions),
        "benchmark_return": benchmark_return(close) if close is not None else float("nan"),
        "psr": _psr(*_sharpe_moments(r), 0.0) if r.size >= 3 else float("nan"),
    }
    return out
