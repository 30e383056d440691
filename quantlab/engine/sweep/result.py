"""The outcome of a sweep: :class:`SweepResult` (rows, picking, full results, the heat map, JSON)."""
from __future__ import annotations

from quantlab._util.colours import text_colour_on

import html
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from quantlab._util import decode_number, encode_float, to_jsonable

from .. import stats as _stats
from ..backtest import BacktestResult, backtest
from ..strategy import Strategy

__all__ = ["SweepResult", "result_frame"]

_INT_METRICS = ("trades", "open_trades", "max_drawdown_duration")


def result_frame(names: list[str], resolved: list[dict], rows: list) -> pd.DataFrame:
    """The frame of a sweep: parameter columns, every metric (integer metrics as integers), ``error``."""
    cols: dict[str, Any] = {k: [p.get(k) for p in resolved] for k in names}
    metric_names = list(_stats.METRICS)
    for m, _ in rows:
        if m is not None:
            metric_names += [k for k in m if k not in metric_names]
            break
    for k in metric_names:
        vals = [m.get(k, np.nan) if m is not None else np.nan for m, _ in rows]
        if k in _INT_METRICS:
            cols[k] = pd.array([None if (isinstance(v, float) and math.isnan(v)) else v for v in vals], dtype="Int64") \
                if any(m is None for m, _ in rows) else np.array(vals, dtype=np.int64)
        else:
            cols[k] = np.array(vals, dtype=np.float64)
    cols["error"] = pd.Series([e for _, e in rows], dtype=object)
    frame = pd.DataFrame(cols)
    for k in names:  # parameter columns: keep object dtype only when values are not plain numbers
        try:
            frame[k] = pd.to_numeric(frame[k]) if frame[k].map(lambda v: isinstance(v, (int, float, np.number))
                                                                 and not isinstance(v, bool)).all() else frame[k]
        except (TypeError, ValueError):
            pass
    return frame



def _enc_frame(frame: pd.DataFrame) -> dict[str, Any]:
    cols = {}
    for c in frame.columns:
        cols[c] = [None if (v is None or v is pd.NA) else to_jsonable(v, fallback=repr)
                   for v in frame[c].astype(object).tolist()]
    return {"columns": list(frame.columns), "dtypes": {c: str(t) for c, t in frame.dtypes.items()}, "data": cols}


def _dec_frame(d: Mapping[str, Any]) -> pd.DataFrame:
    cols = {}
    for c in d["columns"]:
        vals = d["data"][c] if c == "error" else [decode_number(v) for v in d["data"][c]]
        dtype = d.get("dtypes", {}).get(c, "object")
        try:
            cols[c] = pd.Series(vals, dtype=dtype)
        except (TypeError, ValueError):
            cols[c] = pd.Series(vals, dtype=object)
    return pd.DataFrame(cols, columns=d["columns"])


class _LazyResults(Sequence):
    """The successful runs of a sweep as :class:`BacktestResult` objects, computed on first access."""

    def __init__(self, owner: "SweepResult") -> None:
        self._owner = owner
        self._rows = [int(i) for i in owner.frame.index[owner.frame["error"].isna()]]

    def __len__(self) -> int:
        return len(self._rows)

    def __getitem__(self, i):
        if isinstance(i, slice):
            return [self._owner.result(self._rows[j]) for j in range(*i.indices(len(self._rows)))]
        return self._owner.result(self._rows[i])

    def __repr__(self) -> str:
        return f"<{len(self)} lazy BacktestResults of sweep {self._owner.strategy.name!r}>"


class SweepResult:
    """The outcome of :func:`sweep`.

    ``frame`` is a DataFrame with one row per combination in grid order: the
    parameters, every metric of :data:`quantlab.engine.stats.METRICS` and an
    ``error`` column (``None`` when the run succeeded). ``strategy``, ``costs``
    (cash, fees, slippage, periods_per_year), ``data_ref``, ``executor`` and
    ``elapsed`` (seconds) describe the run.

    :meth:`best` picks a row, :meth:`result` rebuilds one full
    :class:`BacktestResult`, :attr:`results` is a lazy sequence of them for
    ``quantlab.review``, :meth:`top` keeps the best ``n`` rows,
    :meth:`plot_heatmap` draws a metric over two parameters, and
    :meth:`to_dict`/:meth:`from_dict` round-trip through JSON.

    Example
    -------
    >>> from quantlab.engine import data
    >>> from quantlab.engine.sweep import sweep
    >>> res = sweep("def signals(data, n=10):\\n    return (data.close > data.close.rolling(n).mean()) * 1.0",
    ...             data.synthetic(1000, seed=2), {"n": [5, 10]}, progress=False)
    >>> res.result(0).metrics == res.frame.iloc[0][list(res.result(0).metrics)].to_dict()
    True
    >>> SweepResult.from_dict(res.to_dict()).frame.equals(res.frame)
    True
    """

    def __init__(self, strategy: Strategy, frame: pd.DataFrame, costs: Mapping[str, float], *,
                 data: pd.DataFrame | None = None, data_ref: str | None = None, executor: str = "inprocess",
                 elapsed: float = float("nan"), params: list[dict] | None = None,
                 param_names: list[str] | None = None, metrics_oos: pd.DataFrame | None = None) -> None:
        self.strategy = strategy
        #: with ``holdout=``: the same rows' metrics on the held-out last bars (``frame`` holds the rest)
        self.metrics_oos = metrics_oos
        if param_names is None:
            cols = list(frame.columns)
            param_names = cols[: cols.index(_stats.METRICS[0])] if _stats.METRICS[0] in cols else []
        self._param_names = list(param_names)
        self.frame = frame
        self.costs = dict(costs)
        self.data_ref = data_ref
        self.executor = executor
        self.elapsed = float(elapsed)
        self._data = data
        self._params = params
        self._cache: dict[int, BacktestResult] = {}

    # -- structure -----------------------------------------------------------------------------
    @property
    def param_names(self) -> list[str]:
        """The parameter columns of :attr:`frame`, in order."""
        return list(self._param_names)

    @property
    def metric_names(self) -> list[str]:
        """The metric columns of :attr:`frame`, in order."""
        cols = list(self.frame.columns)
        return [c for c in cols if c not in self._param_names and c != "error"]

    @property
    def errors(self) -> pd.DataFrame:
        """The rows whose run failed (parameters and ``error``)."""
        return self.frame.loc[self.frame["error"].notna(), [*self.param_names, "error"]]

    def __len__(self) -> int:
        return len(self.frame)

    def params(self, i: int) -> dict[str, Any]:
        """The full parameter dict (strategy defaults filled in) of row ``i``.

        >>> from quantlab.engine import data
        >>> from quantlab.engine.sweep import sweep
    >>> from quantlab.engine.sweep import sweep
        >>> sweep("def signals(data, n=3, k=1):\\n    return data.close*0", data.synthetic(50),
        ...       [{"n": 4}], progress=False).params(0)
        {'n': 4, 'k': 1}
        """
        i = self._check_row(i)
        if self._params is not None:
            return dict(self._params[i])
        row = self.frame.iloc[i]
        return self.strategy.resolve_params({k: _py(row[k]) for k in self.param_names if not _isna(row[k])})

    def _check_row(self, i: int) -> int:
        n = len(self.frame)
        if not isinstance(i, (int, np.integer)) or isinstance(i, bool):
            raise TypeError(f"row must be an integer position, got {type(i).__name__}.")
        if not -n <= i < n:
            raise IndexError(f"row {i} is out of range for a sweep of {n} combinations.")
        return int(i) % n

    # -- picking -----------------------------------------------------------------------------
    def _check_metric(self, metric: str) -> None:
        if metric not in self.metric_names:
            raise KeyError(f"unknown metric {metric!r}; choose one of {', '.join(self.metric_names)}.")

    def best(self, metric: str = "sharpe", ascending: bool = False) -> pd.Series:
        """The row with the highest ``metric`` (lowest with ``ascending=True``); its name is the row position.

        Failed runs and NaN values are skipped.

        >>> from quantlab.engine import data
        >>> from quantlab.engine.sweep import sweep
    >>> from quantlab.engine.sweep import sweep
        >>> res = sweep("def signals(data, n=10):\\n    return (data.close > data.close.rolling(n).mean()) * 1.0",
        ...             data.synthetic(1000, seed=2), {"n": [5, 10, 20]}, progress=False)
        >>> int(res.best("max_drawdown", ascending=True)["n"]) in (5, 10, 20)
        True
        """
        self._check_metric(metric)
        ok = self.frame[self.frame["error"].isna() & self.frame[metric].notna()]
        if ok.empty:
            raise ValueError(f"no run has a value for {metric!r} (all {len(self.frame)} failed or are NaN); "
                             "see .errors.")
        return ok.sort_values(metric, ascending=ascending, kind="stable").iloc[0]

    def top(self, n: int = 10, metric: str = "sharpe", ascending: bool = False) -> "SweepResult":
        """A sweep result with only the best ``n`` successful rows (best first), e.g. for ``quantlab.review``."""
        self._check_metric(metric)
        ok = self.frame[self.frame["error"].isna() & self.frame[metric].notna()]
        rows = ok.sort_values(metric, ascending=ascending, kind="stable").index[: int(n)]
        sub = SweepResult(self.strategy, self.frame.loc[rows].reset_index(drop=True), self.costs, data=self._data,
                          data_ref=self.data_ref, executor=self.executor, elapsed=self.elapsed,
                          params=[self._params[i] for i in rows] if self._params is not None else None,
                          param_names=self._param_names)
        sub._cache = {j: self._cache[i] for j, i in enumerate(rows) if i in self._cache}
        if self.metrics_oos is not None:
            sub.metrics_oos = self.metrics_oos.loc[rows].reset_index(drop=True)
        return sub

    # -- full results ------------------------------------------------------------------------
    def attach(self, data: pd.DataFrame) -> "SweepResult":
        """Give the data back to a result rebuilt with :meth:`from_dict` (so :meth:`result` works); returns ``self``."""
        self._data = data
        return self

    def result(self, i: int) -> BacktestResult:
        """The full :class:`BacktestResult` of row ``i``: ``backtest()`` with that row's parameters (cached).

        Raises the run's error again for a failed row.
        """
        i = self._check_row(i)
        if i not in self._cache:
            if self._data is None:
                if self.data_ref is None:
                    raise ValueError("this sweep result has no data (it was rebuilt from a dict); "
                                     "call .attach(data) first.")
                from ..data import from_reference
                self._data = from_reference(self.data_ref)
            self._cache[i] = backtest(self._data, self.strategy, self.params(i), data_ref=self.data_ref,
                                      **{k: v for k, v in self.costs.items() if k != "holdout"})
        return self._cache[i]

    @property
    def results(self) -> Sequence:
        """The successful runs as a lazy sequence of :class:`BacktestResult` (computed when accessed).

        ``quantlab.review(res.top(5))`` compares the five best runs.
        """
        return _LazyResults(self)

    # -- charts ---------------------------------------------------------------------------------
    def plot_heatmap(self, x: str, y: str, metric: str = "sharpe", ax: Any = None, agg: str = "mean"):
        """Heat map of ``metric`` over parameters ``x`` (columns) and ``y`` (rows); returns the matplotlib Figure.

        Other parameters are aggregated with ``agg`` (default the mean). Works without a display.

        >>> from quantlab.engine import data
        >>> from quantlab.engine.sweep import sweep
    >>> from quantlab.engine.sweep import sweep
        >>> res = sweep("def signals(data, a=1, b=2):\\n    return data.close*0", data.synthetic(50),
        ...             {"a": [1, 2], "b": [3, 4]}, progress=False)
        >>> type(res.plot_heatmap("a", "b", "total_return")).__name__
        'Figure'
        """
        for p in (x, y):
            if p not in self.param_names:
                raise KeyError(f"unknown parameter {p!r}; choose from {', '.join(self.param_names)}.")
        if x == y:
            raise ValueError("x and y must be two different parameters.")
        self._check_metric(metric)
        table = self.frame.pivot_table(index=y, columns=x, values=metric, aggfunc=agg, dropna=False)
        table = table.astype(float).sort_index().sort_index(axis=1)
        if ax is None:
            from matplotlib.figure import Figure
            fig = Figure(figsize=(max(4.0, 0.45 * table.shape[1] + 2.5), max(3.0, 0.35 * table.shape[0] + 1.8)))
            ax = fig.add_subplot()
        else:
            fig = ax.figure
        values = np.ma.masked_invalid(table.to_numpy())
        im = ax.imshow(values, aspect="auto", origin="lower", cmap="viridis", interpolation="nearest")
        ax.set_xticks(range(table.shape[1]), [str(v) for v in table.columns], rotation=90 if table.shape[1] > 12 else 0)
        ax.set_yticks(range(table.shape[0]), [str(v) for v in table.index])
        ax.set_xlabel(x)
        ax.set_ylabel(y)
        ax.set_title(f"{self.strategy.name}: {metric}")
        fig.colorbar(im, ax=ax, label=metric)
        if table.size <= 100:
            for (r, c), v in np.ndenumerate(table.to_numpy()):
                if math.isfinite(v):
                    ax.text(c, r, f"{v:.3g}", ha="center", va="center", fontsize=7,
                            color=text_colour_on(im.cmap(im.norm(v))))
        return fig

    # -- serialisation ------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict (metrics as numbers, NaN/inf as strings) for sending over MCP; see :meth:`from_dict`."""
        out = {
            "version": 1,
            "strategy": {"name": self.strategy.name, "code": self.strategy.code},
            "param_names": self.param_names,
            **_enc_frame(self.frame),
            "costs": to_jsonable(self.costs),
            "data_ref": self.data_ref,
            "executor": self.executor,
            "elapsed": encode_float(self.elapsed),
        }
        if self.metrics_oos is not None:
            out["metrics_oos"] = _enc_frame(self.metrics_oos)
        return out

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], data: pd.DataFrame | None = None) -> "SweepResult":
        """Rebuild a result from :meth:`to_dict` output; pass ``data`` (or use a ``data_ref``) to use :meth:`result`."""
        if d.get("version") != 1:
            raise ValueError(f"unsupported sweep result version {d.get('version')!r}; expected 1.")
        strategy = Strategy.from_code(d["strategy"]["code"], name=d["strategy"]["name"])
        frame = _dec_frame(d)
        costs = {k: decode_number(v) for k, v in d["costs"].items()}
        costs.setdefault("fill", "close")     # sweeps stored before fills were a choice filled at the close
        oos = _dec_frame(d["metrics_oos"]) if d.get("metrics_oos") else None
        return cls(strategy, frame, costs, data=data,
                   data_ref=d.get("data_ref"), executor=d.get("executor", "?"),
                   elapsed=decode_number(d.get("elapsed", "nan")), param_names=d.get("param_names"), metrics_oos=oos)

    # -- display ----------------------------------------------------------------------------------
    def _best_text(self, metric: str = "sharpe") -> str:
        try:
            row = self.best(metric)
        except (ValueError, KeyError):
            return f"no best {metric}"
        params = ", ".join(f"{k}={_py(row[k])!r}" for k in self.param_names)
        return f"best {metric}={row[metric]:.4g} at row {row.name} ({params})"

    def __repr__(self) -> str:
        n_err = int(self.frame["error"].notna().sum())
        return (f"SweepResult(strategy={self.strategy.name!r}, runs={len(self.frame)}, errors={n_err}, "
                f"params={self.param_names}, {self._best_text()}, executor={self.executor!r}, "
                f"elapsed={self.elapsed:.3g}s)")

    def _repr_html_(self) -> str:
        n_err = int(self.frame["error"].notna().sum())
        head = self.frame.head(10).to_html(float_format=lambda v: f"{v:.4g}", na_rep="—", border=0)
        try:
            best = self.best("sharpe").to_frame().T.to_html(float_format=lambda v: f"{v:.4g}", na_rep="—", border=0)
        except (ValueError, KeyError):
            best = "<i>no successful run</i>"
        costs = ", ".join(f"{k}={v}" if isinstance(v, str) else f"{k}={v:g}" for k, v in self.costs.items())
        return (f"<div><b>Sweep</b> <code>{html.escape(self.strategy.name)}</code> <small>{len(self.frame):,} runs"
                f" · {n_err} errors · {html.escape(costs)} · {html.escape(self.executor)} · {self.elapsed:.3g} s"
                f"</small><br><b>best sharpe</b>{best}<b>first rows</b>{head}</div>")


def _isna(v: Any) -> bool:
    return v is None or v is pd.NA or (isinstance(v, float) and math.isnan(v))


def _py(v: Any) -> Any:
    return v.item() if isinstance(v, np.generic) else v

