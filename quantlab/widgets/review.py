"""``quantlab.review``: the backtest review dashboard.

(Size: one widget, the single-run view and the comparison table that drives it; tables and
charts are :mod:`._render`, validation badges :mod:`._validation`.)

One result shows its metrics (with the deployment policy's pass/fail badge per
metric), the equity and drawdown chart, the monthly returns heat map and the
sortable trade list. Several results (a list, a dict, or a parameter sweep's
result with ``.results``) add a comparison table on top; choosing a run in it
shows that run below.

Charts are PNGs drawn by matplotlib's Agg canvas, shown in ``ipywidgets.Image``
views and inlined as base64 ``<img>`` in the static ``text/html`` fallback, so
they show in every front end and in executed / exported notebooks.

Example (in a notebook cell)::

    from quantlab.engine.backtest import backtest
    from quantlab.engine.data import sample
    r = backtest(sample(), strategy)
    quantlab.review(r)                                  # the dashboard
    quantlab.review([r1, r2, r3]).select(2)             # compare, show run #2
    quantlab.review(sweep(strategy, "sample", {"fast": [5, 10, 20]}).top(5))
"""
from __future__ import annotations

import threading
from typing import Any, Iterable, Mapping, Sequence

import ipywidgets as widgets
import numpy as np
import pandas as pd

from quantlab.agent.generation import Generation
from quantlab.engine.backtest import BacktestResult
from quantlab.engine.sweep import SweepResult
from quantlab.lab.policy import DeploymentPolicy, PolicyCheck

from . import _render as R
from ._base import StaticFallback

__all__ = ["Review", "review", "resolve_policy", "as_results"]

#: comparison columns, in order, when present in the results' metrics
COMPARE_METRICS = [
    "total_return", "cagr", "sharpe", "sortino", "calmar", "max_drawdown", "volatility",
    "win_rate", "profit_factor", "trades", "exposure",
]
#: metrics where smaller is better (sort ascending when comparing)
LOWER_IS_BETTER = {"max_drawdown", "volatility", "max_drawdown_duration"}


def resolve_policy(policy: Any) -> Any:
    """``None`` -> the active Lab's policy (``Lab.active().policy``), else the default
    ``DeploymentPolicy()``; ``False`` -> no policy; a :class:`DeploymentPolicy` -> itself.

    >>> resolve_policy(None)
    DeploymentPolicy(min_sharpe=0.5, max_drawdown=0.25, min_profit_factor=1.1, min_trades=5)
    >>> resolve_policy(False) is None
    True
    """
    if policy is False:
        return None
    if policy is None:
        try:
            from quantlab.lab.lab import Lab

            lab = Lab.active()
        except Exception:  # noqa: BLE001 - no lab layer (yet), or no active lab: use the default policy
            lab = None
        return lab.policy if lab is not None else DeploymentPolicy()
    if not isinstance(policy, DeploymentPolicy):
        raise TypeError(
            f"policy must be a DeploymentPolicy, None for the default "
            f"or False for none; got {type(policy).__name__}."
        )
    return policy


def _is_result(obj: Any) -> bool:
    return isinstance(obj, BacktestResult)


def as_results(obj: Any) -> list[Any]:
    """Normalise one result, a list/tuple/dict of results, or a
    :class:`~quantlab.engine.sweep.SweepResult` to a list of results.

    >>> as_results({"a": r1, "b": r2}) == [r1, r2]      # doctest: +SKIP
    True
    """
    if _is_result(obj):
        return [obj]
    if isinstance(obj, SweepResult):
        obj = obj.results
    if isinstance(obj, Mapping):
        obj = list(obj.values())
    if isinstance(obj, pd.Series):
        obj = obj.tolist()
    if isinstance(obj, Iterable) and not isinstance(obj, (str, bytes)):
        items = list(obj)
        bad = [type(x).__name__ for x in items if not _is_result(x)]
        if not items:
            raise ValueError("review() got no results: pass a BacktestResult or a non-empty list of them.")
        if bad:
            raise TypeError(
                f"review() expects BacktestResult objects; got {', '.join(sorted(set(bad)))}."
            )
        return items
    raise TypeError(
        f"review() expects a BacktestResult, a list/dict of them or a SweepResult; got {type(obj).__name__}."
    )


def _is_sweep(obj: Any) -> bool:
    return isinstance(obj, SweepResult)


class _Runs:
    """The runs a review shows: names, params and metrics up front, full results on demand.

    A list of results is used as is; a sweep result (``quantlab.engine.sweep.SweepResult``)
    is read from its ``frame`` and only the runs shown are rebuilt (``sweep.result(row)``).
    """

    def __init__(self, obj: Any):
        self.sweep = obj if _is_sweep(obj) else None
        if self.sweep is not None:
            frame = self.sweep.frame
            ok = frame.index[frame["error"].isna()]
            if len(ok) == 0:
                raise ValueError(f"review() got a sweep whose {len(frame)} run(s) all failed; see its .errors.")
            self.rows = [int(frame.index.get_loc(i)) for i in ok]
            metric_cols = [m for m in self.sweep.metric_names if m in frame.columns]
            records = frame.iloc[self.rows][metric_cols].astype(object).to_dict("records")
            self.metrics = [{m: _plain(v) for m, v in rec.items()} for rec in records]
            self.params = [self.sweep.params(r) for r in self.rows]
            name = self.sweep.strategy.name or "run"
            self.names = [name] * len(self.rows)
            self.failed = int(frame["error"].notna().sum())
            self._cache: dict[int, Any] = {}
        else:
            self._results = as_results(obj)
            self.metrics = [dict(r.metrics) for r in self._results]
            self.params = [dict(r.params) for r in self._results]
            self.names = [r.name or "run" for r in self._results]
            self.failed = 0

    def __len__(self) -> int:
        return len(self.metrics)

    def result(self, i: int) -> Any:
        if self.sweep is None:
            return self._results[i]
        if i not in self._cache:
            self._cache[i] = self.sweep.result(self.rows[i])
        return self._cache[i]

    @property
    def results(self) -> Sequence[Any]:
        return list(self._results) if self.sweep is None else self.sweep.results

    def label(self, i: int) -> str:
        p = R.params_text(self.params[i])
        return f"#{i} {self.names[i]}" + (f" ({p})" if p else "")


def _plain(v: Any) -> Any:
    return v.item() if isinstance(v, np.generic) else v


def _safe_check(policy: Any, result: Any, fallback: Any = None) -> tuple[Any, str | None]:
    if policy is None:
        return None, None
    try:
        try:
            return policy.check(result), None
        except TypeError:
            if fallback is None:
                raise
            return policy.check(fallback()), None
    except Exception as exc:  # noqa: BLE001 - show, do not break the review
        return None, f"policy check failed: {type(exc).__name__}: {exc}"


class Review(StaticFallback, widgets.VBox):
    """The review dashboard (an ``ipywidgets.VBox``); build it with :func:`review`.

    Attributes and methods for code (tests, papermill reports):
    ``results``, ``checks``, ``selected`` (index of the shown run), ``result``,
    ``check``, :meth:`select`, :meth:`metrics_table`, :attr:`charts` (PNG bytes),
    :attr:`comparison` (numeric DataFrame), :meth:`sort_trades`, :meth:`to_html`.

    Example
    -------
    >>> rv = review([r1, r2])            # doctest: +SKIP
    >>> rv.select(1).result is r2  # doctest: +SKIP
    True
    """

    def __init__(self, results: Any, policy: Any = None, *, max_points: int = 2000, trade_rows: int = 200):
        self._runs = _Runs(results)
        self._policy = resolve_policy(policy)
        if self._runs.sweep is None:
            pairs = [_safe_check(self._policy, self._runs.result(i)) for i in range(len(self._runs))]
        else:  # check the metrics from the sweep's table; rebuild a run only if the policy insists
            pairs = [_safe_check(self._policy, m, lambda i=i: self._runs.result(i)) for i, m in enumerate(self._runs.metrics)]
        self._checks = [c for c, _ in pairs]
        self._check_errors = [e for _, e in pairs]
        self._max_points = int(max_points)
        self._trade_rows = int(trade_rows)
        self._cache: dict[int, dict[str, bytes | None]] = {}
        self._lock = threading.RLock()
        self._selected = 0
        self._compare_order = list(range(len(self._runs)))
        self._compare_by = "run"

        self._header = widgets.HTML()
        self._metrics = widgets.HTML()
        self._equity = widgets.Image(format="png", layout=widgets.Layout(max_width="100%", height="auto"))
        self._monthly = widgets.Image(format="png", layout=widgets.Layout(max_width="100%", height="auto"))
        self._monthly_note = widgets.HTML()
        self._trade_by = widgets.Dropdown(description="Sort by", layout=widgets.Layout(width="220px"))
        self._trade_order = widgets.ToggleButtons(
            options=[("↑ asc", True), ("↓ desc", False)], value=True, style={"button_width": "84px"}
        )
        self._trades = widgets.HTML()
        overview = widgets.HBox(
            [self._metrics, self._equity],
            layout=widgets.Layout(flex_flow="row wrap", align_items="flex-start", grid_gap="12px"),
        )
        trades_box = widgets.VBox([widgets.HBox([self._trade_by, self._trade_order]), self._trades])
        self._tabs = widgets.Tab(
            children=[overview, widgets.VBox([self._monthly, self._monthly_note]), trades_box],
            titles=["Overview", "Monthly returns", "Trades"],
        )
        children: list[widgets.Widget] = []
        self._select: widgets.Select | None = None
        self._compare_html: widgets.HTML | None = None
        self._compare_sort: widgets.Dropdown | None = None
        n = len(self._runs)
        if n > 1:
            metrics = [m for m in COMPARE_METRICS if any(m in mm for mm in self._runs.metrics)]
            self._compare_sort = widgets.Dropdown(
                options=[("run #", "run")] + [(R.metric_label(m), m) for m in metrics],
                value="run", description="Rank by", layout=widgets.Layout(width="260px"),
            )
            self._compare_html = widgets.HTML()
            self._select = widgets.Select(
                options=[(self._runs.label(i), i) for i in range(n)],
                value=0, rows=min(8, n), description="Show run",
                layout=widgets.Layout(width="max-content", min_width="320px"),
            )
            self._select.observe(self._on_select, names="value")
            self._compare_sort.observe(self._on_compare_sort, names="value")
            children += [
                widgets.HTML(f"<b>Comparison of {n} runs</b> <small>(choose a run to show it below)</small>"
                             + (f" <small style='color:{R.RED}'>{self._runs.failed} run(s) failed: see the sweep's .errors</small>"
                                if self._runs.failed else "")),
                widgets.HBox([self._compare_sort]),
                self._compare_html,
                self._select,
            ]
        children += [self._header, self._tabs]
        super().__init__(children=children)
        self._trade_by.observe(self._on_trade_sort, names="value")
        self._trade_order.observe(self._on_trade_sort, names="value")
        self._show(0)

    # -- public API ------------------------------------------------------------------
    @property
    def results(self) -> Sequence[Any]:
        """All results, in the order given (for a sweep: its lazy ``.results``)."""
        return self._runs.results

    @property
    def checks(self) -> list[Any]:
        """The policy check of every result (``None`` where no policy)."""
        return list(self._checks)

    @property
    def policy(self) -> Any:
        """The policy used for the badges (``None`` if none)."""
        return self._policy

    @property
    def selected(self) -> int:
        """Index (into :attr:`results`) of the run shown."""
        return self._selected

    @selected.setter
    def selected(self, index: int) -> None:
        self.select(index)

    @property
    def result(self) -> Any:
        """The result shown."""
        return self._runs.result(self._selected)

    @property
    def check(self) -> Any:
        """The policy check of the result shown (``None`` if no policy)."""
        return self._checks[self._selected]

    def select(self, index: int) -> "Review":
        """Show run ``index`` (as if chosen in the comparison); returns ``self``."""
        n = len(self._runs)
        if not isinstance(index, int) or not -n <= index < n:
            raise IndexError(f"run index {index!r} out of range: this review has {n} run(s) (0..{n - 1}).")
        index %= n
        if self._select is not None and self._select.value != index:
            self._select.value = index  # observer calls _show
        else:
            self._show(index)
        return self

    def metrics_table(self) -> pd.DataFrame:
        """The shown run's metrics: metric, label, value (formatted), raw, rule, passed."""
        return R.metrics_frame(self.result.metrics, self.check)

    @property
    def charts(self) -> dict[str, bytes | None]:
        """PNG bytes of the shown run's charts: ``equity`` (with drawdown) and ``monthly``."""
        return dict(self._charts(self._selected))

    @property
    def comparison(self) -> pd.DataFrame:
        """One row per run: name, params, key metrics and the policy verdict (raw numbers)."""
        rows = []
        for i, c in enumerate(self._checks):
            m = self._runs.metrics[i]
            row: dict[str, Any] = {"run": i, "name": self._runs.names[i]}
            row.update(self._runs.params[i])
            row.update({k: m.get(k) for k in COMPARE_METRICS if k in m})
            if self._policy is not None:
                row["policy"] = None if c is None else bool(c.passed)
            rows.append(row)
        return pd.DataFrame(rows).set_index("run")

    def sort_trades(self, by: str | None = None, ascending: bool = True) -> "Review":
        """Sort the trade list by column ``by``; returns ``self``."""
        if by is not None and by not in dict(self._trade_by.options).values():
            raise ValueError(f"cannot sort trades by {by!r}; columns: {[v for _, v in self._trade_by.options]}.")
        if by is not None:
            self._trade_by.value = by
        self._trade_order.value = bool(ascending)
        self._render_trades()
        return self

    @property
    def trades_view(self) -> pd.DataFrame:
        """The shown run's trades in the order displayed."""
        return R.sort_trades(self.result.trades, self._trade_by.value, self._trade_order.value)

    def to_html(self) -> str:
        """A static HTML rendering (comparison, metrics, charts as inline PNG, trades)."""
        parts = ["<div class='quantlab-review'>"]
        if len(self._runs) > 1:
            parts.append(f"<b>Comparison of {len(self._runs)} runs</b> (shown: #{self._selected})")
            parts.append(self._compare_table_html())
        parts.append(self._header.value)
        parts.append(self._metrics.value)
        charts = self._charts(self._selected)
        parts.append(f"<div>{R.png_img(charts['equity'], 'equity and drawdown')}</div>")
        if charts["monthly"]:
            parts.append(f"<div>{R.png_img(charts['monthly'], 'monthly returns')}</div>")
        parts.append("<details><summary>Trades</summary>" + self._trades.value + "</details></div>")
        return "".join(parts)

    # -- display ---------------------------------------------------------------------------
    def _summary(self) -> str:
        c = self.check
        m = self._runs.metrics[self._selected]
        bits = [f"{k} {R.fmt_metric(k, m[k])}" for k in ("total_return", "sharpe", "max_drawdown", "trades") if k in m]
        verdict = "" if c is None else ("; policy PASSED" if c.passed else "; policy FAILED")
        return f"{self._runs.label(self._selected)}: {', '.join(bits)}{verdict}"

    def __repr__(self) -> str:
        if len(self._runs) == 1:
            return f"Review({self._summary()})"
        return f"Review({len(self._runs)} runs; showing {self._summary()})"



    # -- internals -------------------------------------------------------------------------
    def _charts(self, i: int) -> dict[str, bytes | None]:
        with self._lock:
            if i not in self._cache:
                r = self._runs.result(i)
                total = r.metrics.get("total_return")
                title = (r.name or "equity") + (
                    f"  ·  {R.fmt_metric('total_return', total)}" if total is not None else ""
                )
                self._cache[i] = {
                    "equity": R.equity_drawdown_png(
                        r.equity, r.drawdown, title=title, max_points=self._max_points, benchmark=r.benchmark
                    ),
                    "monthly": R.monthly_heatmap_png(r.returns),
                }
            return self._cache[i]

    def _show(self, i: int) -> None:
        self._selected = i
        r, c, err = self._runs.result(i), self._checks[i], self._check_errors[i]
        eq = r.equity
        span = ""
        if len(eq) and isinstance(eq.index, pd.DatetimeIndex):
            span = f" · {len(eq):,} bars, {eq.index[0]:%Y-%m-%d} → {eq.index[-1]:%Y-%m-%d}"
        elif len(eq):
            span = f" · {len(eq):,} bars"
        from quantlab.engine.costs import format_costs

        span += f" · {format_costs(r.costs)}"  # the numbers below are net of these
        p = R.params_text(r.params)
        verdict = ""
        if c is not None:
            verdict = " " + R.badge(c.passed, "policy PASSED" if c.passed else "policy FAILED")
        warn = f"<div style='color:{R.RED}'>{R.escape(err)}</div>" if err else ""
        self._header.value = (
            f"<div style='margin:6px 0'><b style='font-size:14px'>{R.escape(r.name or 'backtest')}</b>"
            f" <code>{R.escape(p)}</code><small style='color:{R.GREY}'>{R.escape(span)}</small>{verdict}</div>{warn}"
        )
        from ._validation import badges_html

        self._metrics.value = badges_html(r, c.policy if isinstance(c, PolicyCheck) else None) + R.metrics_html(r.metrics, c)
        charts = self._charts(i)
        self._equity.value = charts["equity"]
        self._monthly.value = charts["monthly"] or b""
        self._monthly.layout.display = None if charts["monthly"] else "none"
        self._monthly_note.value = "" if charts["monthly"] else (
            f"<div style='color:{R.GREY}'>No monthly table: the result's returns have no DatetimeIndex.</div>"
        )
        trades = r.trades
        cols = list(trades.columns) if isinstance(trades, pd.DataFrame) else []
        options = [(c_.replace("_", " "), c_) for c_ in cols]
        by = self._trade_by.value if self._trade_by.value in cols else (cols[0] if cols else None)
        if list(self._trade_by.options) != options:
            self._trade_by.options = options
        if self._trade_by.value != by:
            self._trade_by.value = by
        self._render_trades()
        if self._compare_html is not None:
            self._compare_html.value = self._compare_table_html()

    def _render_trades(self) -> None:
        self._trades.value = R.trades_html(
            self.result.trades, self._trade_by.value, self._trade_order.value, max_rows=self._trade_rows
        )

    def _compare_table_html(self) -> str:
        df = self.comparison
        if "policy" in df.columns:
            R.raw_column(df, "policy", (R.raw(R.badge(v, "pass" if v else "fail")) if v is not None else "" for v in df["policy"]))
        df = df.loc[self._compare_order]
        return R.frame_html(df, max_rows=None, highlight=self._selected, index=True, max_height="260px")

    def _on_select(self, change: Mapping[str, Any]) -> None:
        if change["new"] is not None:
            self._show(int(change["new"]))

    def _on_compare_sort(self, change: Mapping[str, Any]) -> None:
        by = change["new"]
        n = len(self._runs)
        if by == "run":
            order = list(range(n))
        else:
            vals = pd.Series([m.get(by) for m in self._runs.metrics], dtype=float)
            order = vals.sort_values(ascending=by in LOWER_IS_BETTER, kind="stable", na_position="last").index.tolist()
        self._compare_order = order
        assert self._select is not None
        keep = self._selected
        self._select.unobserve(self._on_select, names="value")
        try:
            self._select.options = [(self._runs.label(i), i) for i in order]
            self._select.value = keep
        finally:
            self._select.observe(self._on_select, names="value")
        self._compare_html.value = self._compare_table_html()  # type: ignore[union-attr]

    def _on_trade_sort(self, change: Mapping[str, Any]) -> None:
        self._render_trades()


def review(result_or_results: Any, policy: Any = None, *, max_points: int = 2000) -> Review:
    """Review one backtest result, or compare several, in a dashboard widget.

    Parameters
    ----------
    result_or_results
        A ``BacktestResult``; a list, tuple or dict of them; a sweep result
        with ``.results`` (e.g. :func:`quantlab.engine.sweep.sweep`'s); or a
        ``Generation`` from ``lab.generate`` (its attempts compared, the best shown); or a
        ``WalkForwardResult`` (in-sample vs out-of-sample per fold, the stitched OOS equity).
    policy
        The ``DeploymentPolicy`` whose rules give each metric its pass/fail
        badge. ``None`` uses the active Lab's policy (what ``deploy_panel`` will
        check), else the default policy; ``False`` shows no badges.
    max_points
        Equity and drawdown are downsampled (each bucket's extremes kept) to
        at most this many points, so huge backtests draw fast.

    Returns
    -------
    Review
        An ``ipywidgets.VBox``; it also renders as static HTML with PNG charts
        where no widget manager runs (papermill, nbconvert, exported HTML).

    Example
    -------
    >>> from quantlab.engine.backtest import backtest             # doctest: +SKIP
    >>> from quantlab.engine.data import sample  # doctest: +SKIP
    >>> rv = review(backtest(sample(), strategy))  # doctest: +SKIP
    >>> rv.metrics_table()[["label", "value", "passed"]].head(3)  # doctest: +SKIP
    """
    from ._validation import WalkForwardView, is_walk_forward

    if is_walk_forward(result_or_results):  # quantlab.review(wf): IS vs OOS per fold, stitched OOS equity
        return WalkForwardView(result_or_results)  # type: ignore[return-value]
    if _is_generation(result_or_results):  # quantlab.review(gen): compare the attempts, show the best
        gen = result_or_results
        tried = [c for c in gen.attempts if c.run_id]  # reached the backtest (results are fetched here)
        if not tried:
            raise ValueError(f"review() got a generation with no attempt that reached the backtest "
                             f"({len(gen.attempts)} attempt(s), stop: {gen.stop_reason}); see gen.attempts.")
        rv = Review([c.result for c in tried], policy=gen.policy if policy is None else policy, max_points=max_points)
        best = gen.best
        return rv.select(tried.index(best)) if best in tried else rv
    return Review(result_or_results, policy=policy, max_points=max_points)


def _is_generation(obj: Any) -> bool:
    return isinstance(obj, Generation)
