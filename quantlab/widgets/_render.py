"""Static rendering shared by the widgets: formatted tables (HTML) and charts (PNG).

(Size: the metric labels and formats, policy tables and the three PNG charts every widget
shares; the palette itself is :mod:`quantlab._util.html`.)

Everything here is front-end independent: charts are drawn by matplotlib's Agg
canvas straight into PNG bytes (no pyplot, no interactive backend, nothing
shown twice by ``%matplotlib inline``), tables are plain HTML with inline
styles. The widgets put the same bytes into ``ipywidgets.Image`` views and the
same HTML into their static ``text/html`` fallback, so a chart looks the same
in JupyterLab, the classic Notebook, VS Code, papermill output and exported HTML.

Example
-------
>>> import pandas as pd
>>> fmt_metric("sharpe", 1.23456)
'1.23'
>>> fmt_metric("max_drawdown", 0.1234)
'12.34%'
"""
from __future__ import annotations

from quantlab._util.colours import text_colour_on
from quantlab.engine.formatting import COUNT, PERCENT, RATIO, fmt_metric, is_missing  # noqa: F401 - re-exported

import base64
import html
import io
from numbers import Number
from typing import Any, Iterable, Mapping

import numpy as np
import pandas as pd

from quantlab.lab.policy import PolicyCheck

__all__ = [
    "METRIC_LABELS",
    "fmt_metric",
    "metric_label",
    "check_frame",
    "metrics_frame",
    "metrics_html",
    "png_img",
    "equity_drawdown_png",
    "monthly_returns",
    "monthly_heatmap_png",
    "trades_html",
    "frame_html",
    "badge",
    "status_html",
    "rule_text",
    "is_missing",
    "signed_html",
    "escape",
    "GREEN",
    "RED",
    "GREY",
    "AMBER",
    "STATUS_COLOURS",
]

#: metric -> human label, in display order
METRIC_LABELS: dict[str, str] = {
    "total_return": "Total return",
    "benchmark_return": "Buy & hold return",
    "cagr": "CAGR",
    "volatility": "Volatility (ann.)",
    "sharpe": "Sharpe ratio",
    "sortino": "Sortino ratio",
    "calmar": "Calmar ratio",
    "max_drawdown": "Max drawdown",
    "max_drawdown_duration": "Max drawdown duration",
    "win_rate": "Win rate",
    "profit_factor": "Profit factor",
    "expectancy": "Expectancy",
    "trades": "Trades",
    "open_trades": "Open trades",
    "exposure": "Exposure",
}
#: compact column headers for tables (metric and deployment columns)
SHORT_LABELS: dict[str, str] = {
    "total_return": "total return", "cagr": "CAGR", "volatility": "volatility", "sharpe": "Sharpe",
    "sortino": "Sortino", "calmar": "Calmar", "max_drawdown": "max drawdown", "win_rate": "win rate",
    "profit_factor": "profit factor", "max_drawdown_duration": "max DD bars", "open_trades": "open trades",
    "deployment_id": "deployment", "strategy_name": "strategy", "triggered_at": "triggered", "last_error": "last error",
    "entry_time": "entry time", "exit_time": "exit time", "entry_price": "entry price", "exit_price": "exit price",
    "bars_held": "bars held",
}

from quantlab._util.html import (  # noqa: E402, F401  (the one palette, badge and status map; faces use R.<name>)
    AMBER, AXIS, BLUE, BORDER, GREEN, GREY, HIGHLIGHT_BG, INK, MUTED, ORANGE, PANEL_BG, RED, STATUS_COLOURS, TABLE_STYLE,
    TD_STYLE, TDR_STYLE, TH_STYLE, WHITE, badge, pill,
)
from quantlab._util.html import Raw as _Raw  # noqa: E402
from quantlab._util.html import raw  # noqa: E402
from quantlab._util.html import status_html as _status_html  # noqa: E402


def escape(value: Any) -> str:
    """HTML-escape ``str(value)``."""
    return html.escape(str(value), quote=True)


def metric_label(name: str) -> str:
    """The display label of a metric (``'sharpe'`` -> ``'Sharpe ratio'``)."""
    return METRIC_LABELS.get(name, str(name).replace("_", " ").capitalize())


def status_html(status: Any) -> str:
    """A deployment status in its colour (bold), e.g. running in green, failed in red.

    >>> status_html("failed")
    "<b class='quantlab-status' style='color:#cf222e'>failed</b>"
    """
    return _status_html(None if is_missing(status) else status)


def signed_html(name: str, value: Any) -> str:
    """A formatted number coloured by its sign (green up, red down, grey zero/missing).

    >>> signed_html("pnl", -2.5)
    "<span style='color:#cf222e'>-2.50</span>"
    """
    if is_missing(value):
        return "—"
    v = float(value or 0)
    return f"<span style='color:{GREEN if v > 0 else RED if v < 0 else GREY}'>{escape(fmt_metric(name, value))}</span>"


# -- policy ------------------------------------------------------------------------
def check_frame(check: PolicyCheck | pd.DataFrame | None) -> pd.DataFrame | None:
    """A policy check as a DataFrame with columns metric, rule, threshold, value, passed.

    Takes a :class:`~quantlab.lab.policy.PolicyCheck`, its ``to_frame()``, or ``None`` (returns ``None``).

    >>> from quantlab.lab.policy import DeploymentPolicy
    >>> check_frame(DeploymentPolicy().check({"sharpe": 2, "max_drawdown": 0.1, "profit_factor": 2, "trades": 9}))["passed"].tolist()
    [True, True, True, True, True]
    """
    if check is None:
        return None
    if isinstance(check, PolicyCheck):
        df = check.to_frame()
    elif isinstance(check, pd.DataFrame):
        df = check
    else:
        raise TypeError(f"a policy check is a PolicyCheck (DeploymentPolicy().check(metrics)) or its to_frame(), "
                        f"got {type(check).__name__}.")
    df = df.reset_index(drop="metric" in df.columns)
    for col in ("metric", "rule", "threshold", "value", "passed"):
        if col not in df.columns:
            df[col] = None
    return df


def fmt_threshold(metric: str, value: Any) -> str:
    """A policy threshold, without needless zeros: ``0.25`` -> ``'25%'`` for drawdown, ``0.5`` -> ``'0.5'``.

    >>> fmt_threshold("max_drawdown", 0.25), fmt_threshold("sharpe", 0.5), fmt_threshold("trades", 5.0)
    ('25%', '0.5', '5')
    """
    if is_missing(value) or not isinstance(value, (Number, np.number)):
        return fmt_metric(metric, value)
    v = float(value)
    if metric in PERCENT:
        return f"{v * 100:g}%"
    return f"{v:g}"


def rule_text(row: Mapping[str, Any]) -> str:
    rule, thr, metric = row.get("rule"), row.get("threshold"), str(row.get("metric"))
    if is_missing(rule):
        return ""
    rule = str(rule)
    if is_missing(thr) or any(ch.isdigit() for ch in rule):
        return rule
    return f"{rule} {fmt_threshold(metric, thr)}"


def metrics_frame(metrics: Mapping[str, Any], check: Any = None) -> pd.DataFrame:
    """Metrics as a display table: metric, label, value (formatted), raw, rule, passed.

    Metrics appear in the canonical order (then any extra ones); a metric that the
    policy checks carries its rule(s) and a ``passed`` flag (``None`` if unchecked).

    >>> metrics_frame({"sharpe": 1.5, "trades": 10}).value.tolist()
    ['1.50', '10']
    """
    cf = check_frame(check)
    names = [m for m in METRIC_LABELS if m in metrics] + [m for m in metrics if m not in METRIC_LABELS]
    if cf is not None:
        names += [m for m in dict.fromkeys(cf["metric"].astype(str)) if m not in names]
    rows = []
    for name in names:
        raw = metrics.get(name)
        rule, passed = "", None
        if cf is not None:
            sub = cf[cf["metric"].astype(str) == name]
            if len(sub):
                rule = "; ".join(t for t in (rule_text(r) for r in sub.to_dict("records")) if t)
                passed = bool(sub["passed"].astype(bool).all())
                if raw is None:
                    raw = sub["value"].iloc[0]
        rows.append(
            {"metric": name, "label": metric_label(name), "value": fmt_metric(name, raw), "raw": raw,
             "rule": rule, "passed": passed}
        )
    return pd.DataFrame(rows, columns=["metric", "label", "value", "raw", "rule", "passed"])


def verdict_html(check: Any) -> str:
    """One line: the policy verdict and the failed rules."""
    cf = check_frame(check)
    if cf is None:
        return ""
    passed = check.passed if isinstance(check, PolicyCheck) else bool(cf["passed"].astype(bool).all() if len(cf) else True)
    failed = cf[~cf["passed"].astype(bool)]
    n = len(cf)
    if passed:
        extra = f"all {n} rule{'s' if n != 1 else ''} pass"
        if len(failed):  # forced/soft rules may fail without failing the check
            extra = f"{n - len(failed)}/{n} rules pass"
        return f"<div style='margin:4px 0'>Deployment policy: {badge(True, 'PASSED')} <small>{escape(extra)}</small></div>"
    why = "; ".join(
        f"{metric_label(str(r['metric']))} {fmt_metric(str(r['metric']), r['value'])} (needs {rule_text(r)})"
        for r in failed.to_dict("records")
    )
    return f"<div style='margin:4px 0'>Deployment policy: {badge(False, 'FAILED')} <small>{escape(why)}</small></div>"


def metrics_html(metrics: Mapping[str, Any], check: Any = None) -> str:
    """The metrics table as HTML, with a pass/fail badge per metric the policy checks."""
    df = metrics_frame(metrics, check)
    has_policy = check is not None
    head = f"<tr><th style='{TH_STYLE}'>Metric</th><th style='{TH_STYLE};text-align:right'>Value</th>"
    if has_policy:
        head += f"<th style='{TH_STYLE}'>Policy rule</th><th style='{TH_STYLE}'></th>"
    body = []
    for r in df.to_dict("records"):
        color = ""
        if r["passed"] is not None:
            color = f";color:{GREEN if r['passed'] else RED};font-weight:600"
        row = (
            f"<tr data-metric='{escape(r['metric'])}'><td style='{TD_STYLE}'>{escape(r['label'])}</td>"
            f"<td style='{TDR_STYLE}{color}'>{escape(r['value'])}</td>"
        )
        if has_policy:
            row += f"<td style='{TD_STYLE};color:{GREY}'>{escape(r['rule'])}</td><td style='{TD_STYLE}'>{badge(r['passed'])}</td>"
        body.append(row + "</tr>")
    return (
        f"<table class='quantlab-metrics' style='{TABLE_STYLE}'><thead>{head}</tr></thead>"
        f"<tbody>{''.join(body)}</tbody></table>" + (verdict_html(check) if has_policy else "")
    )


# -- generic tables ------------------------------------------------------------------
def _fmt_cell(col: str, value: Any) -> str:
    if isinstance(value, pd.Timestamp):
        return "—" if pd.isna(value) else value.strftime("%Y-%m-%d %H:%M" if (value.hour or value.minute) else "%Y-%m-%d")
    if col.endswith("price") and isinstance(value, (Number, np.number)) and not is_missing(value):
        return f"{float(value):,.4f}"
    return fmt_metric(col, value)


def frame_html(
    df: pd.DataFrame,
    *,
    max_rows: int | None = 200,
    highlight: Any = None,
    index: bool = False,
    css_class: str = "quantlab-table",
    max_height: str | None = "360px",
) -> str:
    """A DataFrame as a compact scrollable HTML table with quantlab's number formats.

    ``highlight`` is an index label whose row is shaded (the selected run).
    """
    total = len(df)
    shown = df if max_rows is None or total <= max_rows else df.iloc[:max_rows]
    cols = list(shown.columns)
    head = "".join(
        f"<th style='{TH_STYLE}'>{escape(SHORT_LABELS.get(str(c), str(c)))}</th>"
        for c in ([shown.index.name or ""] if index else []) + cols
    )
    rows = []
    for label, rec in zip(shown.index, shown.itertuples(index=False, name=None)):
        bg = f";background:{HIGHLIGHT_BG};color:{INK}" if highlight is not None and label == highlight else ""
        cells = [f"<td style='{TD_STYLE}{bg}'>{escape(label)}</td>"] if index else []
        for c, v in zip(cols, rec):
            html_v = v if isinstance(v, _Raw) else escape(_fmt_cell(str(c), v))
            num = isinstance(v, (Number, np.number)) and not isinstance(v, bool)
            cells.append(f"<td style='{(TDR_STYLE if num else TD_STYLE)}{bg}'>{html_v}</td>")
        rows.append(f"<tr>{''.join(cells)}</tr>")
    note = ""
    if len(shown) < total:
        note = f"<div style='color:{GREY};font-size:11px'>showing {len(shown):,} of {total:,} rows</div>"
    wrap = f"max-height:{max_height};overflow:auto" if max_height else ""
    return (
        f"<div style='{wrap}'><table class='{css_class}' style='{TABLE_STYLE}'>"
        f"<thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table></div>{note}"
    )


def raw_column(df: pd.DataFrame, column: str, cells: Iterable[Any]) -> None:
    """Set ``df[column]`` to HTML ``cells`` (an object column, so pandas keeps them marked as HTML)."""
    df[column] = pd.Series(list(cells), index=df.index, dtype=object)


TRADE_COLUMNS = ["entry_time", "exit_time", "side", "size", "entry_price", "exit_price", "pnl", "return", "bars_held"]


def sort_trades(trades: pd.DataFrame, by: str | None = None, ascending: bool = True) -> pd.DataFrame:
    """``trades`` sorted by column ``by`` (stable, missing values last)."""
    if trades is None:
        return pd.DataFrame(columns=TRADE_COLUMNS)
    if by is None or by not in trades.columns:
        return trades
    return trades.sort_values(by, ascending=ascending, kind="stable", na_position="last")


def trades_html(trades: pd.DataFrame | None, by: str | None = None, ascending: bool = True, max_rows: int = 200) -> str:
    """The trade list as HTML, sorted by ``by``; pnl and return coloured by sign."""
    if trades is None or len(trades) == 0:
        return f"<div style='color:{GREY}'>No closed trades.</div>"
    df = sort_trades(trades, by, ascending).reset_index(drop=True)
    df.index = df.index + 1
    df.index.name = "#"
    shown = df.iloc[:max_rows].copy()
    for col in ("pnl", "return"):
        if col in shown.columns:
            raw_column(shown, col, (raw(signed_html(col, v)) for v in shown[col]))
    n = len(df)
    out = (f"<div class='quantlab-trades-count' style='margin:2px 0'><b>{n:,} closed trade{'s' if n != 1 else ''}</b></div>"
           + frame_html(shown, max_rows=None, index=True, css_class="quantlab-trades"))
    if len(df) > max_rows:
        out += f"<div style='color:{GREY};font-size:11px'>showing {max_rows:,} of {len(df):,} trades</div>"
    return out


# -- charts ----------------------------------------------------------------------------
def _figure(width: float, height: float):
    from matplotlib.figure import Figure

    # fixed margins: constrained/tight layout would cost ~0.3 s per chart
    return Figure(figsize=(width, height), dpi=100)


def _png(fig) -> bytes:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=fig.dpi, facecolor="white")
    return buf.getvalue()


def png_img(png: bytes | None, alt: str = "chart", width: str | None = None) -> str:
    """An ``<img>`` tag with the PNG inlined as base64 (empty string for ``None``)."""
    if not png:
        return ""
    style = f" style='max-width:100%;width:{width}'" if width else " style='max-width:100%'"
    return f"<img alt='{escape(alt)}' src='data:image/png;base64,{base64.b64encode(png).decode('ascii')}'{style}/>"


def _downsample(series: pd.Series, max_points: int) -> pd.Series:
    if len(series) <= max_points:
        return series
    from quantlab.engine.plotting import downsample_extremes

    return downsample_extremes(series, max_points)


def _xy(series: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    idx = series.index
    x = idx.to_numpy() if isinstance(idx, pd.DatetimeIndex) and idx.tz is None else (
        idx.tz_convert(None).to_numpy() if isinstance(idx, pd.DatetimeIndex) else np.arange(len(series))
    )
    return x, series.to_numpy(dtype=float, na_value=np.nan)


def equity_drawdown_png(
    equity: pd.Series,
    drawdown: pd.Series | None = None,
    *,
    title: str = "",
    max_points: int = 2000,
    size: tuple[float, float] = (8.0, 4.6),
    benchmark: pd.Series | None = None,
) -> bytes:
    """Equity (top) and drawdown (bottom, as a negative fill) as one PNG; ``benchmark``
    (buy-and-hold equity, :attr:`BacktestResult.benchmark`) is drawn as a dashed grey line.

    Both series are reduced to at most ``max_points`` points with
    :func:`quantlab.engine.plotting.downsample_extremes`, which keeps every
    bucket's minimum and maximum, so the deepest drawdown is always drawn and
    a 1,000,000-bar chart renders in well under a second.
    """
    from matplotlib.dates import AutoDateLocator, ConciseDateFormatter

    equity = pd.Series(equity).dropna()
    if drawdown is None:
        drawdown = equity / equity.cummax() - 1.0 if len(equity) else equity
    dd = -pd.Series(drawdown).dropna().abs()

    fig = _figure(*size)
    ax_eq, ax_dd = fig.subplots(2, 1, sharex=True, height_ratios=[3, 1.2],
                                gridspec_kw=dict(left=0.105, right=0.985, top=0.93, bottom=0.075, hspace=0.07))
    if len(equity):
        x, y = _xy(_downsample(equity, max_points))
        ax_eq.plot(x, y, color=BLUE, linewidth=1.0)
        ax_eq.axhline(float(equity.iloc[0]), color=GREY, linewidth=0.6, linestyle=":")
        if benchmark is not None and len(benchmark.dropna()):
            bx, by = _xy(_downsample(pd.Series(benchmark).dropna(), max_points))
            ax_eq.plot(bx, by, color=GREY, linewidth=0.9, linestyle="--", label="buy & hold")
            ax_eq.plot([], [], color=BLUE, linewidth=1.0, label="strategy")
            ax_eq.legend(loc="upper left", fontsize=8, frameon=False)
    else:
        ax_eq.text(0.5, 0.5, "no equity data", ha="center", va="center", transform=ax_eq.transAxes, color=GREY)
    if len(dd):
        x, y = _xy(_downsample(dd, max_points))
        ax_dd.fill_between(x, y, 0.0, color=RED, alpha=0.35, linewidth=0, step="post")
        ax_dd.plot(x, y, color=RED, linewidth=0.6)
        ax_dd.set_ylim(min(float(np.nanmin(y)) * 1.1, -1e-4), 0.0)
    ax_eq.set_ylabel("equity")
    ax_eq.yaxis.set_major_formatter(_thousands_formatter())
    ax_dd.set_ylabel("drawdown")
    ax_dd.yaxis.set_major_formatter(_percent_formatter())
    ax_eq.grid(True, alpha=0.25)
    ax_dd.grid(True, alpha=0.25)
    if isinstance(equity.index, pd.DatetimeIndex):
        loc = AutoDateLocator()
        ax_dd.xaxis.set_major_locator(loc)
        ax_dd.xaxis.set_major_formatter(ConciseDateFormatter(loc))
    else:
        ax_dd.set_xlabel("bar")
    if title:
        ax_eq.set_title(title, loc="left", fontsize=11)
    return _png(fig)


def _thousands_formatter():
    from matplotlib.ticker import FuncFormatter

    return FuncFormatter(lambda v, _pos: f"{v:,.0f}" if abs(v) >= 100 else f"{v:,.4g}")


def _percent_formatter():
    from matplotlib.ticker import PercentFormatter

    return PercentFormatter(xmax=1.0, decimals=0)


def monthly_returns(returns: pd.Series) -> pd.DataFrame | None:
    """Compounded returns per calendar month: a year × month (1..12) table.

    ``None`` when the series has no DatetimeIndex.

    >>> idx = pd.date_range("2024-01-01", periods=60, freq="D")
    >>> monthly_returns(pd.Series(0.01, index=idx)).shape
    (1, 12)
    """
    if returns is None or not isinstance(returns.index, pd.DatetimeIndex) or len(returns) == 0:
        return None
    r = pd.Series(returns, dtype=float).fillna(0.0)
    if r.index.tz is not None:
        r.index = r.index.tz_localize(None)
    if not r.index.is_monotonic_increasing:
        r = r.sort_index()
    # compound through log returns: one vectorised resample instead of a product per group
    growth = pd.Series(np.log1p(r.to_numpy()), index=r.index).resample("MS").sum(min_count=1)
    monthly = np.expm1(growth.dropna())
    table = (
        pd.DataFrame({"year": monthly.index.year, "month": monthly.index.month, "value": monthly.to_numpy()})
        .pivot(index="year", columns="month", values="value")
        .reindex(columns=range(1, 13))
    )
    table.columns.name = "month"
    return table


MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]


def monthly_heatmap_png(returns: pd.Series, *, title: str = "Monthly returns") -> bytes | None:
    """The monthly returns heat map (green up, red down, annotated in percent) as PNG."""
    table = monthly_returns(returns)
    if table is None:
        return None
    values = table.to_numpy(dtype=float)
    nyears = values.shape[0]
    height = 1.1 + 0.42 * nyears
    fig = _figure(8.0, height)
    ax = fig.add_axes((0.07, 0.55 / height, 0.82, 1 - 0.95 / height))
    cax = fig.add_axes((0.905, 0.55 / height, 0.012, 1 - 0.95 / height))
    finite = values[np.isfinite(values)]
    lim = float(np.max(np.abs(finite))) if finite.size else 0.01
    lim = lim or 0.01
    im = ax.imshow(np.ma.masked_invalid(values), cmap="RdYlGn", vmin=-lim, vmax=lim, aspect="auto")
    ax.set_xticks(range(12), MONTHS, fontsize=9)
    ax.set_yticks(range(nyears), [str(y) for y in table.index], fontsize=9)
    if nyears <= 40:
        for i in range(nyears):
            for j in range(12):
                v = values[i, j]
                if np.isfinite(v):
                    ax.text(j, i, f"{v * 100:.1f}", ha="center", va="center", fontsize=8,
                            color=text_colour_on(im.cmap(im.norm(v))))
    ax.set_title(f"{title} (%)", loc="left", fontsize=11)
    cb = fig.colorbar(im, cax=cax)
    cb.ax.yaxis.set_major_formatter(_percent_formatter())
    cb.ax.tick_params(labelsize=8)
    return _png(fig)


def params_text(params: Mapping[str, Any] | None) -> str:
    """``{'fast': 10, 'slow': 50}`` -> ``'fast=10 slow=50'``."""
    if not params:
        return ""
    return " ".join(f"{k}={v!r}" if isinstance(v, str) else f"{k}={v}" for k, v in dict(params).items())
