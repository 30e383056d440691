"""Walk-forward optimisation: choose parameters on a training window, measure them on the next, unseen one.

For each fold ``k`` the grid is scored on the training window, the best combination by
``metric`` is kept, and that combination alone is measured on the test window that follows
(after ``purge`` bars left out between the two). The test windows are then stitched into one
out-of-sample equity curve: the only numbers in the result that no choice has seen.

Layout (``step`` defaults to ``test``, so test windows tile the data without overlap)::

    fold 0: [ train ........ ][purge][ test ]
    fold 1:        [ train ........ ][purge][ test ]
    fold 2:               [ train ........ ][purge][ test ]

``anchored=True`` grows the training window from the first bar instead of sliding it.

How it runs: ``signals()`` is computed **once per combination on the whole data** and its
targets are sliced per window, then each window is backtested on its own (flat at its start,
starting from ``cash``), so a window's indicators are warmed up on the bars before it. That is
exact for a causal strategy (check with :func:`~quantlab.engine.lookahead.check_lookahead`), and
it makes a walk-forward of F folds cost about one sweep, not F. The combinations run on the
same executors as :func:`~quantlab.engine.sweep.sweep`.

Example
-------
>>> from quantlab.engine import data
>>> code = '''
... def signals(data, fast=10, slow=50):
...     return (data.close.rolling(fast).mean() > data.close.rolling(slow).mean()) * 1.0
... '''
>>> wf = walk_forward(code, data.synthetic(3000, seed=4), {"fast": [5, 10], "slow": [30, 60]},
...                   train=1000, test=500, progress=False)
>>> len(wf.folds), list(wf.folds.columns[:5])
(4, ['fold', 'train_start', 'train_end', 'test_start', 'test_end'])
>>> bool(wf.equity.index.equals(data.synthetic(3000, seed=4).index[1000:3000]))
True
"""
from __future__ import annotations

import html
import math
import time
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd

from quantlab._util import decode_number, to_jsonable
from quantlab._util import html as qh

from . import stats as _stats
from .backtest import check_data
from .simulate import bar_returns, execution, simulate
from .signals import to_targets
from .strategy import Strategy, StrategyError
from .sweep.grid import SweepError, expand_grid
from .sweep.run import execute, resolve_costs

__all__ = ["walk_forward", "WalkForwardResult", "fold_windows"]

#: Metrics shown per fold, in-sample and out-of-sample, next to the selection metric.
FOLD_METRICS = ("sharpe", "total_return", "max_drawdown", "trades")
#: Metrics where lower is better (chosen by the minimum).
LOWER_IS_BETTER = ("max_drawdown", "max_drawdown_duration", "volatility")
#: the folds' window bounds (timestamps)
_TIME_COLUMNS = ("train_start", "train_end", "test_start", "test_end")


def _bars(x: Any, n: int, name: str) -> int:
    if isinstance(x, float) and 0.0 < x < 1.0:
        return max(1, int(round(x * n)))
    if isinstance(x, (int, np.integer)) and not isinstance(x, bool) and x >= 1:
        return int(x)
    raise ValueError(f"{name} must be a number of bars (int >= 1) or a fraction of the data in (0, 1), got {x!r}.")


def fold_windows(n: int, train: int, test: int, step: int | None = None, purge: int = 0,
                 anchored: bool = False) -> list[tuple[tuple[int, int], tuple[int, int]]]:
    """The ``((train_start, train_end), (test_start, test_end))`` bar ranges (end exclusive) of each fold.

    >>> fold_windows(100, 40, 20)
    [((0, 40), (40, 60)), ((20, 60), (60, 80)), ((40, 80), (80, 100))]
    >>> fold_windows(100, 40, 20, purge=5, anchored=True)
    [((0, 40), (45, 65)), ((0, 60), (65, 85))]
    """
    step = test if step is None else step
    if step < 1 or purge < 0:
        raise ValueError(f"step must be >= 1 and purge >= 0 bars, got step={step}, purge={purge}.")
    out = []
    s = 0
    while s + train + purge + test <= n:
        out.append(((0 if anchored else s, s + train), (s + train + purge, s + train + purge + test)))
        s += step
    return out


class WalkForwardResult:
    """The outcome of :func:`walk_forward`.

    Attributes
    ----------
    folds : DataFrame
        One row per fold: ``fold``, the window bounds (timestamps, inclusive), ``params`` (the
        chosen dict) and one column per parameter, ``is_<metric>`` / ``oos_<metric>`` for the
        selection metric and :data:`FOLD_METRICS`.
    equity, returns : Series
        The stitched out-of-sample equity (from ``cash``) and its bar returns.
    metrics : dict
        All backtest metrics of the stitched out-of-sample equity, plus ``efficiency`` (mean OOS
        over mean IS value of the selection metric) and ``folds``.
    is_scores, oos_scores : DataFrame
        The selection metric of every combination (rows) on every fold (columns), in and out of sample.
    combos : list of dict
        The resolved parameter dicts, in grid order (the rows of the score tables).
    """

    def __init__(self, *, strategy: Strategy, metric: str, folds: pd.DataFrame, equity: pd.Series,
                 returns: pd.Series, metrics: dict, is_scores: pd.DataFrame, oos_scores: pd.DataFrame,
                 combos: list[dict], costs: Mapping[str, Any], windows: list, executor: str, elapsed: float,
                 data_ref: str | None = None) -> None:
        self.strategy = strategy
        self.name = strategy.name
        self.metric = metric
        self.folds = folds
        self.equity = equity
        self.returns = returns
        self.metrics = metrics
        self.is_scores = is_scores
        self.oos_scores = oos_scores
        self.combos = combos
        self.costs = dict(costs)
        self.windows = windows
        self.executor = executor
        self.elapsed = elapsed
        self.data_ref = data_ref

    @property
    def trials(self) -> int:
        """Backtests scored in sample: combinations × folds."""
        return int(self.is_scores.size)

    def __repr__(self) -> str:
        m = self.metric
        f = self.folds
        return (f"WalkForwardResult(name={self.name!r}, folds={len(f)}, combinations={len(self.combos)}, metric={m!r}, "
                f"IS mean={np.nanmean(f[f'is_{m}']):.4g}, OOS mean={np.nanmean(f[f'oos_{m}']):.4g}, "
                f"stitched OOS sharpe={self.metrics.get('sharpe', math.nan):.4g}, "
                f"total_return={self.metrics.get('total_return', math.nan):.4g}, "
                f"efficiency={self.metrics.get('efficiency', math.nan):.3g})")

    # -- serialisation -------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """Columnar, JSON-safe dict (timestamps as int64 ns, NaN/inf as strings); :meth:`from_dict` rebuilds it.

        >>> import json
        >>> from quantlab.engine import data
        >>> wf = walk_forward("def signals(data, n=5):\\n    return (data.close > data.close.rolling(n).mean()) * 1.0",
        ...                   data.synthetic(600, seed=1), {"n": [5, 10]}, train=200, test=100, progress=False)
        >>> back = WalkForwardResult.from_dict(json.loads(json.dumps(wf.to_dict())))
        >>> back.equity.equals(wf.equity), back.folds["params"].tolist() == wf.folds["params"].tolist()
        (True, True)
        """
        f = self.folds
        folds: dict[str, list] = {}
        for c in f.columns:
            if c in _TIME_COLUMNS:
                folds[c] = pd.DatetimeIndex(f[c]).as_unit("ns").asi8.tolist()
            else:
                folds[c] = [to_jsonable(v) for v in f[c].tolist()]
        return {
            "version": 1, "name": self.name, "code": self.strategy.code, "metric": self.metric,
            "folds": {"columns": [str(c) for c in f.columns], "data": folds},
            "index": self.equity.index.as_unit("ns").asi8.tolist(),
            "equity": [to_jsonable(x) for x in self.equity.to_numpy(dtype=np.float64).tolist()],
            "returns": [to_jsonable(x) for x in self.returns.to_numpy(dtype=np.float64).tolist()],
            "metrics": {k: to_jsonable(v) for k, v in self.metrics.items()},
            "is_scores": [[to_jsonable(x) for x in row] for row in self.is_scores.to_numpy(dtype=np.float64).tolist()],
            "oos_scores": [[to_jsonable(x) for x in row] for row in self.oos_scores.to_numpy(dtype=np.float64).tolist()],
            "score_columns": [str(c) for c in self.is_scores.columns],
            "combos": [to_jsonable(dict(c)) for c in self.combos], "costs": to_jsonable(self.costs),
            "windows": [[list(w) for w in fold] for fold in self.windows], "executor": self.executor,
            "elapsed": self.elapsed, "data_ref": self.data_ref,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "WalkForwardResult":
        """Rebuild a result from :meth:`to_dict` output (also after ``json.dumps``/``loads``)."""
        cols = d["folds"]["columns"]
        data = d["folds"]["data"]
        folds = pd.DataFrame({c: (pd.DatetimeIndex(np.array(data[c], dtype="int64").view("datetime64[ns]"))
                                  if c in _TIME_COLUMNS else
                                  [decode_number(v) for v in data[c]] if c.startswith(("is_", "oos_")) else data[c])
                              for c in cols}, columns=cols)
        index = pd.DatetimeIndex(np.array(d["index"], dtype="int64").view("datetime64[ns]"), name="time")

        def floats(values: list) -> np.ndarray:
            return np.array([decode_number(x) for x in values], dtype=np.float64)

        def scores(rows: list) -> pd.DataFrame:
            return pd.DataFrame([[decode_number(x) for x in r] for r in rows], columns=d["score_columns"], dtype=np.float64)

        return cls(
            strategy=Strategy.from_code(d["code"], name=d.get("name")), metric=d["metric"], folds=folds,
            equity=pd.Series(floats(d["equity"]), index=index, name="equity"),
            returns=pd.Series(floats(d["returns"]), index=index, name="returns"),
            metrics={k: decode_number(v) for k, v in d["metrics"].items()},
            is_scores=scores(d["is_scores"]), oos_scores=scores(d["oos_scores"]),
            combos=[dict(c) for c in d["combos"]], costs={k: decode_number(v) for k, v in d["costs"].items()},
            windows=[tuple(tuple(w) for w in fold) for fold in d["windows"]], executor=d.get("executor", ""),
            elapsed=float(d.get("elapsed") or 0.0), data_ref=d.get("data_ref"))

    def plot(self, ax: Any = None):
        """IS vs OOS bars of the selection metric per fold, and the stitched OOS equity (matplotlib Figure)."""
        import matplotlib

        if ax is None:
            matplotlib.use(matplotlib.get_backend())
            import matplotlib.pyplot as plt
            fig, (a1, a2) = plt.subplots(1, 2, figsize=(11, 3.2), gridspec_kw={"width_ratios": [1, 2]})
        else:
            a1, a2 = ax
            fig = a1.figure
        f = self.folds
        x = np.arange(len(f))
        a1.bar(x - 0.2, f[f"is_{self.metric}"], 0.4, label="in sample", color=qh.MUTED)
        a1.bar(x + 0.2, f[f"oos_{self.metric}"], 0.4, label="out of sample", color=qh.BLUE)
        a1.set_xticks(x, [str(i) for i in f["fold"]])
        a1.set_xlabel("fold")
        a1.set_title(self.metric)
        a1.axhline(0, color=qh.AXIS, lw=0.8)
        a1.legend(fontsize=8)
        a2.plot(self.equity.index, self.equity.to_numpy(), color=qh.BLUE, lw=1)
        a2.set_title("stitched out-of-sample equity")
        return fig

    def _svg(self, width: int = 640, height: int = 150) -> str:
        """A small static SVG: IS (grey) vs OOS (blue) bars per fold and the OOS equity line."""
        f = self.folds
        isv = f[f"is_{self.metric}"].to_numpy(dtype=float)
        oos = f[f"oos_{self.metric}"].to_numpy(dtype=float)
        vals = np.concatenate([isv, oos, [0.0]])
        vals = vals[np.isfinite(vals)]
        lo, hi = float(vals.min()), float(vals.max())
        span = (hi - lo) or 1.0
        bw = 200 / max(1, len(f))
        y0 = height - 20 - (0 - lo) / span * (height - 40)
        parts = []
        for i, (a, b) in enumerate(zip(isv, oos)):
            for j, (v, col) in enumerate(((a, qh.MUTED), (b, qh.BLUE))):
                if not math.isfinite(v):
                    continue
                y = height - 20 - (v - lo) / span * (height - 40)
                parts.append(f'<rect x="{10 + i * bw + j * bw * 0.42:.1f}" y="{min(y, y0):.1f}" '
                             f'width="{bw * 0.4:.1f}" height="{abs(y0 - y):.1f}" fill="{col}"/>')
            parts.append(f'<text x="{10 + i * bw + bw * 0.3:.1f}" y="{height - 5}" font-size="10">{i}</text>')
        eq = self.equity.to_numpy(dtype=float)
        if eq.size > 1:
            idx = np.linspace(0, eq.size - 1, min(eq.size, 400)).astype(int)
            e = eq[idx]
            elo, ehi = float(e.min()), float(e.max())
            espan = (ehi - elo) or 1.0
            pts = " ".join(f"{230 + k / (len(e) - 1) * (width - 240):.1f},{height - 20 - (v - elo) / espan * (height - 40):.1f}"
                           for k, v in enumerate(e))
            parts.append(f'<polyline points="{pts}" fill="none" stroke="{qh.BLUE}" stroke-width="1.2"/>')
        parts.append(f'<text x="10" y="12" font-size="11">{html.escape(self.metric)} per fold: '
                     f'<tspan fill="{qh.MUTED}">in sample</tspan> vs <tspan fill="{qh.BLUE}">out of sample</tspan></text>')
        parts.append(f'<text x="230" y="12" font-size="11">stitched out-of-sample equity</text>')
        return f'<svg width="{width}" height="{height}" xmlns="http://www.w3.org/2000/svg">{"".join(parts)}</svg>'

    def _repr_html_(self) -> str:
        m = self.metric
        cols = ["fold", "test_start", "test_end", "params", f"is_{m}", f"oos_{m}"]
        cols += [c for c in self.folds.columns if c.startswith(("is_", "oos_")) and c not in cols]
        table = self.folds[cols].to_html(index=False, border=0, float_format=lambda v: f"{v:.4g}", na_rep="—")
        mm = self.metrics
        summary = (f"OOS sharpe {mm.get('sharpe', math.nan):.3g} · total return {mm.get('total_return', math.nan):.2%} · "
                   f"max drawdown {mm.get('max_drawdown', math.nan):.2%} · efficiency {mm.get('efficiency', math.nan):.3g}")
        return (f"<div><b>Walk-forward</b> <code>{html.escape(self.name)}</code> <small>{len(self.folds)} folds × "
                f"{len(self.combos)} combinations · chosen by {html.escape(m)} · {html.escape(self.executor)} · "
                f"{self.elapsed:.3g} s</small><br><small>{html.escape(summary)}</small><br>{self._svg()}{table}</div>")


def walk_forward(strategy: Strategy | str, data: pd.DataFrame | str,
                 grid: Mapping[str, Any] | Sequence[Mapping[str, Any]], train: int | float, test: int | float,
                 step: int | float | None = None, metric: str = "sharpe", executor: Any = None, *,
                 purge: int = 0, anchored: bool = False, progress: Any = True, chunk: int | None = None,
                 data_ref: str | None = None, **costs: Any) -> WalkForwardResult:
    """Walk-forward optimisation of ``strategy`` over ``grid`` (see the module docstring).

    Parameters
    ----------
    strategy, data, grid, executor, progress, chunk, data_ref, **costs
        As for :func:`~quantlab.engine.sweep.sweep` (``cash, fees, slippage, periods_per_year, fill``).
    train, test : int or float
        Window lengths in bars, or fractions of the data in (0, 1).
    step : int or float, optional
        Bars between fold starts; default ``test`` (test windows tile the data).
    metric : str
        The metric that chooses the parameters on each training window (``max_drawdown``,
        ``volatility`` and ``max_drawdown_duration`` are minimised, others maximised).
    purge : int
        Bars left out between each training window and its test window.
    anchored : bool
        Grow the training window from the first bar instead of sliding it.

    Returns
    -------
    WalkForwardResult
    """

    strategy = Strategy.coerce(strategy)
    if isinstance(data, str):
        from .data import from_reference
        data_ref = data_ref or data
        data = from_reference(data)
    check_data(data, hint="(or a data reference such as 'sample')")
    n = len(data)
    full_costs = resolve_costs(data, costs, "walk_forward")
    tr, te = _bars(train, n, "train"), _bars(test, n, "test")
    st = te if step is None else _bars(step, n, "step")
    layout = fold_windows(n, tr, te, st, int(purge), anchored)
    if not layout:
        raise ValueError(f"no fold fits: train={tr} + purge={purge} + test={te} bars > the data's {n} bars; "
                         "use shorter windows or more data.")
    if metric not in _stats.METRICS:
        raise ValueError(f"unknown metric {metric!r}; choose one of {', '.join(_stats.METRICS)}.")
    combos = expand_grid(grid)
    names: list[str] = []
    for c in combos:
        names.extend(k for k in c if k not in names)
    try:
        resolved = [strategy.resolve_params(c) for c in combos]
    except StrategyError as exc:
        raise SweepError(f"the grid names a parameter the strategy does not take: {exc}") from None
    windows = tuple(w for fold in layout for w in fold)            # train 0, test 0, train 1, test 1, ...
    t0 = time.perf_counter()
    rows, label = execute(strategy, data, {**full_costs, "windows": windows}, resolved, executor, chunk=chunk,
                          progress=progress, desc=f"walk-forward {strategy.name}")
    k_folds = len(layout)
    shown = [metric] + [x for x in FOLD_METRICS if x != metric]

    def grid_of(kind: int, name: str) -> np.ndarray:
        return np.array([[m.get(f"{2 * k + kind}:{name}", np.nan) if m is not None else np.nan
                          for k in range(k_folds)] for m, _ in rows], dtype=np.float64).reshape(len(rows), k_folds)

    is_s, oos_s = grid_of(0, metric), grid_of(1, metric)
    lower = metric in LOWER_IS_BETTER
    cols = [f"fold {k}" for k in range(k_folds)]
    chosen: list[int | None] = []
    for k in range(k_folds):
        col = is_s[:, k]
        ok = np.isfinite(col) | np.isinf(col)
        chosen.append(None if not ok.any() else int(np.nanargmin(np.where(ok, col, np.nan)) if lower
                                                    else np.nanargmax(np.where(ok, col, np.nan))))
    errors = [e for _, e in rows if e is not None]
    if all(c is None for c in chosen):
        raise SweepError(f"every combination failed on every fold; first error: {errors[0] if errors else 'none'}")
    idx = data.index
    fold_rows = []
    for k, ((a, b), (c, d)) in enumerate(layout):
        j = chosen[k]
        row: dict[str, Any] = {"fold": k, "train_start": idx[a], "train_end": idx[b - 1], "test_start": idx[c],
                               "test_end": idx[d - 1], "params": dict(resolved[j]) if j is not None else None}
        for p in names:
            row[p] = resolved[j].get(p) if j is not None else None
        for name in shown:
            for kind, tag in ((0, "is"), (1, "oos")):
                m = rows[j][0] if j is not None else None
                row[f"{tag}_{name}"] = m.get(f"{2 * k + kind}:{name}", np.nan) if m else np.nan
        fold_rows.append(row)
    folds = pd.DataFrame(fold_rows)

    # stitched out-of-sample equity: each test window backtested alone with its chosen parameters
    cash = full_costs["cash"]
    targets: dict[int, np.ndarray] = {}
    parts_r, parts_u, parts_close, parts_idx, pnl, exit_ns = [], [], [], [], [], []
    level = 1.0
    i8 = idx.as_unit("ns").asi8
    for k, (_, (c, d)) in enumerate(layout):
        j = chosen[k]
        if j is None:
            rets_w, units_w = np.zeros(d - c), np.zeros(d - c)
        else:
            if j not in targets:
                sig = strategy.function(data.copy(deep=False), **resolved[j])
                targets[j] = to_targets(sig, data, strategy.name)
            executed, price = execution(data.iloc[c:d], targets[j][c:d], full_costs["fill"])
            out = simulate(data["close"].to_numpy(dtype=np.float64)[c:d], executed, cash, full_costs["fees"],
                           full_costs["slippage"], price=price)
            rets_w = bar_returns(out["equity"], cash)
            units_w = out["units"] * level
            pnl.append(out["pnl"] * level)
            xi = out["exit_idx"]
            exit_ns.append(np.where(xi >= 0, i8[c:d][np.where(xi >= 0, xi, 0)], np.iinfo(np.int64).min))
            level *= out["equity"][-1] / cash
        parts_r.append(rets_w)
        parts_u.append(units_w)
        parts_close.append(data["close"].to_numpy(dtype=np.float64)[c:d])
        parts_idx.append(idx[c:d])
    rets = np.concatenate(parts_r)
    equity = cash * np.cumprod(1.0 + rets)
    oidx = parts_idx[0].append(parts_idx[1:]) if len(parts_idx) > 1 else parts_idx[0]
    trades = pd.DataFrame({"pnl": np.concatenate(pnl) if pnl else np.empty(0),
                           "exit_time": (np.concatenate(exit_ns) if exit_ns else np.empty(0, dtype=np.int64))
                           .view("datetime64[ns]")})
    metrics = _stats.compute_metrics(equity, rets, np.concatenate(parts_u), trades, full_costs["periods_per_year"],
                                     cash=cash, close=np.concatenate(parts_close))
    mean_is = float(np.nanmean(folds[f"is_{metric}"]))
    mean_oos = float(np.nanmean(folds[f"oos_{metric}"]))
    metrics["efficiency"] = mean_oos / mean_is if mean_is not in (0.0,) and math.isfinite(mean_is) else math.nan
    metrics["folds"] = k_folds
    elapsed = time.perf_counter() - t0
    return WalkForwardResult(
        strategy=strategy, metric=metric, folds=folds,
        equity=pd.Series(equity, index=oidx.rename("time"), name="equity"),
        returns=pd.Series(rets, index=oidx.rename("time"), name="returns"), metrics=metrics,
        is_scores=pd.DataFrame(is_s, columns=cols), oos_scores=pd.DataFrame(oos_s, columns=cols), combos=resolved,
        costs=full_costs, windows=layout, executor=label, elapsed=elapsed, data_ref=data_ref)
