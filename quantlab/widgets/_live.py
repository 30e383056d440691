"""The monitor's live chart: one deployment's candles with its fills, position and PnL, as inline SVG.

SVG built from numpy arrays (no matplotlib): a redraw costs a few milliseconds,
so the monitor can refresh every second; the same markup is the static
``text/html`` fallback, so saved and exported notebooks show the chart too.
Long histories are reduced to at most ``max_candles`` candles by merging
neighbouring bars (open of the first, high max, low min, close of the last),
the same idea as the review charts' min/max downsampling: every extreme survives.

Example
-------
>>> import pandas as pd
>>> bars = pd.DataFrame({"open": [1, 2, 3, 4.0], "high": [2, 3, 4, 5.0], "low": [0.5, 1, 2, 3.0], "close": [2, 3, 4, 4.5]},
...                     index=pd.date_range("2024", periods=4, freq="min"))
>>> downsample_ohlc(bars, 2)[["open", "high", "low", "close"]].to_numpy().tolist()
[[1.0, 3.0, 0.5, 3.0], [3.0, 5.0, 2.0, 4.5]]
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

import numpy as np
import pandas as pd

from . import _render as R

if TYPE_CHECKING:
    from quantlab.lab.activity import DeploymentActivity

__all__ = ["downsample_ohlc", "bucket_of", "activity_svg"]

BLUE, ORANGE = R.BLUE, R.ORANGE  # paper vs backtest series, from the one palette


def bucket_of(n: int, max_buckets: int) -> np.ndarray:
    """Start offsets of at most ``max_buckets`` equal buckets over ``n`` bars.

    >>> bucket_of(10, 3).tolist(), bucket_of(2, 5).tolist()
    ([0, 4, 7], [0, 1])
    """
    k = max(1, min(n, int(max_buckets)))
    return np.unique(np.ceil(np.arange(k) * (n / k)).astype(np.int64)) if n else np.zeros(0, dtype=np.int64)


def downsample_ohlc(bars: pd.DataFrame, max_candles: int) -> pd.DataFrame:
    """At most ``max_candles`` candles: neighbours merged, every high and low kept."""
    n = len(bars)
    if n <= max_candles:
        return bars[["open", "high", "low", "close"]].astype(float)
    starts = bucket_of(n, max_candles)
    ends = np.append(starts[1:], n) - 1
    o, h, l, c = (bars[col].to_numpy(dtype=float) for col in ("open", "high", "low", "close"))
    return pd.DataFrame({"open": o[starts], "high": np.maximum.reduceat(h, starts), "low": np.minimum.reduceat(l, starts),
                         "close": c[ends]}, index=bars.index[starts])


def _last_per_bucket(values: np.ndarray, starts: np.ndarray) -> np.ndarray:
    ends = np.append(starts[1:], len(values)) - 1
    return values[ends] if len(values) else values


def _scale(lo: float, hi: float, top: float, height: float):
    if not np.isfinite(lo) or not np.isfinite(hi):
        lo, hi = 0.0, 1.0
    if hi - lo < 1e-12:
        pad = abs(hi) * 0.01 or 1.0
        lo, hi = lo - pad, hi + pad
    span = hi - lo

    def y(v):
        return top + height - (np.asarray(v, dtype=float) - lo) / span * height

    return y, lo, hi


def _path(xs: np.ndarray, ys: np.ndarray, step: bool = False) -> str:
    if len(xs) == 0:
        return ""
    if step:
        xs2 = np.repeat(xs, 2)[1:]
        ys2 = np.repeat(ys, 2)[:-1]
        xs, ys = xs2, ys2
    pts = " ".join(f"{x:.1f},{y:.1f}" for x, y in zip(xs.tolist(), ys.tolist()))
    return f"M{pts.replace(' ', ' L', 1)}" if " " in pts else f"M{pts}"


def _text(x: float, y: float, text: str, *, anchor: str = "start", size: int = 10, color: str = R.GREY,
          weight: str = "normal", cls: str = "") -> str:
    c = f" class='{cls}'" if cls else ""
    return (f"<text x='{x:.1f}' y='{y:.1f}' text-anchor='{anchor}' font-size='{size}' fill='{color}' "
            f"font-weight='{weight}'{c}>{R.escape(text)}</text>")


def _fmt_num(v: float, digits: int = 5) -> str:
    return f"{v:,.{digits}f}".rstrip("0").rstrip(".") if abs(v) < 1000 else f"{v:,.0f}"


def _time_label(t: pd.Timestamp) -> str:
    return t.strftime("%Y-%m-%d %H:%M")


def activity_svg(act: "DeploymentActivity", *, max_candles: int = 200, width: int = 780) -> str:
    """The deployment as one SVG: candles + fills (▲ buy, ▼ sell), position in lots (paper, and the
    backtest's expected position dashed), PnL in the account currency; header with the market clock."""
    bars = act.bars
    n = len(bars)
    left, right = 64, 12
    plot_w = width - left - right
    top_price, h_price = 34, 200
    top_pos, h_pos = top_price + h_price + 18, 70
    top_pnl, h_pnl = top_pos + h_pos + 18, 80
    height = top_pnl + h_pnl + 24
    clock = _time_label(act.market_time) if act.market_time is not None else "?"
    pnl_total = "?" if act.pnl_total is None else f"{act.pnl_total:,.2f} {act.currency}"
    parts = [
        f"<svg xmlns='http://www.w3.org/2000/svg' class='quantlab-live-chart' data-deployment='{R.escape(act.deployment_id)}' "
        f"data-fills='{len(act.fills)}' width='{width}' height='{height}' viewBox='0 0 {width} {height}' "
        f"style='font-family:system-ui,-apple-system,Segoe UI,sans-serif;background:{R.WHITE}'>",
        _text(left, 14, f"{act.strategy_name} · {act.symbol} {act.timeframe} · {act.status}", size=12, color=R.INK,
              weight="600"),
        _text(width - right, 14, f"market time {clock}", anchor="end", size=11, color=R.INK, cls="market-clock"),
        _text(left, 28, f"position {act.lots:g} lots · PnL {pnl_total} · {act.trades if act.trades is not None else '?'} "
              f"deals · {len(act.fills)} fills in view", size=10),
    ]
    if n == 0:
        parts.append(_text(left + plot_w / 2, top_price + h_price / 2, "no bars yet: the market has not moved",
                           anchor="middle", size=12))
        parts.append("</svg>")
        return "".join(parts)

    starts = bucket_of(n, max_candles)
    candles = downsample_ohlc(bars, max_candles)
    k = len(candles)
    slot = plot_w / k
    xs = left + (np.arange(k) + 0.5) * slot
    body_w = max(1.0, slot * 0.7)
    o, h, l, c = (candles[col].to_numpy() for col in ("open", "high", "low", "close"))

    fills = act.fills
    f_price = fills["price"].to_numpy(dtype=float) if len(fills) else np.zeros(0)
    t_bars = bars.index.to_numpy(dtype="datetime64[ns]")
    in_view = np.zeros(0, dtype=bool)
    f_bucket = np.zeros(0, dtype=np.int64)
    if len(fills):
        bar_pos = np.searchsorted(t_bars, fills["time"].to_numpy(dtype="datetime64[ns]"), side="right") - 1
        in_view = bar_pos >= 0
        f_bucket = np.searchsorted(starts, np.clip(bar_pos, 0, None), side="right") - 1
    lo = float(np.nanmin(l))
    hi = float(np.nanmax(h))
    if in_view.any():
        lo, hi = min(lo, float(np.nanmin(f_price[in_view]))), max(hi, float(np.nanmax(f_price[in_view])))
    y, lo, hi = _scale(lo, hi, top_price, h_price)

    # price panel: frame, labels, wicks and bodies (one path per colour: cheap to draw)
    parts.append(f"<rect x='{left}' y='{top_price}' width='{plot_w}' height='{h_price}' fill='none' stroke='{R.BORDER}'/>")
    parts.append(_text(left - 6, top_price + 9, _fmt_num(hi), anchor="end", size=9))
    parts.append(_text(left - 6, top_price + h_price, _fmt_num(lo), anchor="end", size=9))
    parts.append(_text(8, top_price + h_price / 2, "price", size=10, color=R.INK))
    up = c >= o
    for mask, colour, cls in ((up, R.GREEN, "candle-up"), (~up, R.RED, "candle-down")):
        if not mask.any():
            continue
        wick = " ".join(f"M{x:.1f},{a:.1f}V{b:.1f}" for x, a, b in zip(xs[mask].tolist(), y(h[mask]).tolist(),
                                                                          y(l[mask]).tolist()))
        y_top = y(np.maximum(o[mask], c[mask]))
        y_bot = y(np.minimum(o[mask], c[mask]))
        bodies = " ".join(f"M{x - body_w / 2:.1f},{a:.1f}h{body_w:.1f}V{max(b, a + 0.8):.1f}h{-body_w:.1f}Z"
                          for x, a, b in zip(xs[mask].tolist(), y_top.tolist(), y_bot.tolist()))
        parts.append(f"<path class='{cls}' d='{wick}' stroke='{colour}' stroke-width='1'/>")
        parts.append(f"<path d='{bodies}' fill='{colour}' stroke='{colour}' stroke-width='0.5'/>")
    if in_view.any():
        for side, colour, sign in (("buy", R.GREEN, 1), ("sell", R.RED, -1)):
            sel = in_view & (fills["side"].to_numpy() == side)
            if not sel.any():
                continue
            fx, fy = xs[f_bucket[sel]], y(f_price[sel])
            # ▲ under a buy's price, ▼ over a sell's price
            tri = " ".join(f"M{x:.1f},{v + 2 * sign:.1f}l-5,{7 * sign}h10Z" for x, v in zip(fx.tolist(), fy.tolist()))
            parts.append(f"<path class='fill-{side}' d='{tri}' fill='{colour}' stroke='{R.WHITE}' stroke-width='0.6'>"
                         f"<title>{int(sel.sum())} {side} fill(s)</title></path>")

    # position panel (lots): the paper position and, dashed, the backtest's expected position
    pos = _last_per_bucket(act.position.to_numpy(dtype=float), starts)
    series = [pos]
    exp = None
    if act.expected is not None and len(act.expected):
        exp_full = act.expected.reindex(bars.index).ffill().fillna(0.0).to_numpy(dtype=float)
        exp = _last_per_bucket(exp_full, starts)
        series.append(exp)
    allv = np.concatenate(series + [np.zeros(1)])
    yp, plo, phi = _scale(float(np.nanmin(allv)), float(np.nanmax(allv)), top_pos, h_pos)
    x_edges = left + np.arange(k) * slot
    parts.append(f"<rect x='{left}' y='{top_pos}' width='{plot_w}' height='{h_pos}' fill='none' stroke='{R.BORDER}'/>")
    parts.append(f"<line x1='{left}' x2='{left + plot_w}' y1='{float(yp(0)):.1f}' y2='{float(yp(0)):.1f}' stroke='{R.BORDER}'/>")
    parts.append(_text(8, top_pos + h_pos / 2, "lots", size=10, color=R.INK))
    parts.append(_text(left - 6, top_pos + 9, f"{phi:g}", anchor="end", size=9))
    parts.append(_text(left - 6, top_pos + h_pos, f"{plo:g}", anchor="end", size=9))
    if exp is not None:
        parts.append(f"<path class='expected-position' d='{_path(np.append(x_edges, left + plot_w), yp(np.append(exp, exp[-1])), step=True)}' "
                     f"fill='none' stroke='{ORANGE}' stroke-width='1.5' stroke-dasharray='4 3'/>")
    parts.append(f"<path class='paper-position' d='{_path(np.append(x_edges, left + plot_w), yp(np.append(pos, pos[-1])), step=True)}' "
                 f"fill='none' stroke='{BLUE}' stroke-width='1.5'/>")
    legend = [(BLUE, "paper position")] + ([(ORANGE, "backtest position (expected)")] if exp is not None else [])
    lx = left
    for colour, label in legend:
        parts.append(f"<line x1='{lx}' x2='{lx + 14}' y1='{top_pos - 7}' y2='{top_pos - 7}' stroke='{colour}' stroke-width='2'/>")
        parts.append(_text(lx + 18, top_pos - 4, label, size=9))
        lx += 30 + 6 * len(label)

    # PnL panel (account currency)
    pnl = _last_per_bucket(act.pnl.to_numpy(dtype=float), starts) if len(act.pnl) else np.zeros(k)
    yq, qlo, qhi = _scale(min(0.0, float(np.nanmin(pnl))), max(0.0, float(np.nanmax(pnl))), top_pnl, h_pnl)
    parts.append(f"<rect x='{left}' y='{top_pnl}' width='{plot_w}' height='{h_pnl}' fill='none' stroke='{R.BORDER}'/>")
    parts.append(f"<line x1='{left}' x2='{left + plot_w}' y1='{float(yq(0)):.1f}' y2='{float(yq(0)):.1f}' stroke='{R.BORDER}'/>")
    parts.append(f"<path class='pnl' d='{_path(xs, yq(pnl))}' fill='none' stroke='{BLUE}' stroke-width='1.3'/>")
    parts.append(_text(8, top_pnl + h_pnl / 2, f"PnL {act.currency}".strip(), size=10, color=R.INK))
    parts.append(_text(left - 6, top_pnl + 9, f"{qhi:,.2f}", anchor="end", size=9))
    parts.append(_text(left - 6, top_pnl + h_pnl, f"{qlo:,.2f}", anchor="end", size=9))

    # time axis (market time of the bars' opens)
    ticks: Sequence[int] = sorted({0, k // 2, k - 1})
    for i in ticks:
        anchor = "start" if i == 0 else ("end" if i == k - 1 else "middle")
        parts.append(_text(float(xs[i]), height - 8, _time_label(candles.index[i]), anchor=anchor, size=9))
    note = f"{n:,} bars" + (f" shown as {k} candles" if k < n else "")
    parts.append(_text(left + plot_w, top_price + h_price + 12, note, anchor="end", size=9))
    parts.append("</svg>")
    return "".join(parts)
