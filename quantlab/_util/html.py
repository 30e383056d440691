"""The one place quantlab's HTML reprs take their palette, badges and tables from.

Stdlib only, below the engine, so every layer (hub, client, lab, reports, widgets) can use
it without importing pandas or the widgets. Cell values are escaped unless marked with
:func:`raw`.

Example
-------
>>> from quantlab._util import html as qh
>>> qh.table(["name", "trades"], [["sma", 12]])[:6]
'<table'
>>> qh.status_colour("failed") == qh.RED
True
>>> qh.badge(True)[:5]
'<span'
"""
from __future__ import annotations

import html as _html
import math
from typing import Any, Iterable, Sequence

__all__ = [
    "GREEN", "RED", "GREY", "AMBER", "BLUE", "PURPLE", "ORANGE", "MUTED", "AXIS", "GREEN_BG", "RED_BG", "HIGHLIGHT_BG",
    "INK", "WHITE", "BORDER", "RULE", "PANEL_BG",
    "STATUS_COLOURS", "TABLE_STYLE", "TH_STYLE", "TD_STYLE", "TDR_STYLE",
    "Raw", "raw", "escape", "status_colour", "coloured", "status_html", "pill", "badge", "verdict",
    "table", "kv_table",
]

# -- palette -----------------------------------------------------------------------
GREEN, RED, GREY, AMBER = "#1a7f37", "#cf222e", "#6e7781", "#9a6700"
BLUE, PURPLE, INK = "#0969da", "#8250df", "#24292f"
GREEN_BG, RED_BG, HIGHLIGHT_BG = "#e6ffec", "#ffebe9", "#fff8c5"
#: chart lines: ORANGE a second series, MUTED an in-sample / reference series, AXIS zero lines and ticks
ORANGE, MUTED, AXIS = "#bc4c00", "#8c959f", "#57606a"
#: surfaces: WHITE backgrounds and text on a badge, BORDER frames and header rules, RULE row rules,
#: PANEL_BG table headers and code blocks
WHITE, BORDER, RULE, PANEL_BG = "#fff", "#d0d7de", "#eaeef2", "#f6f8fa"

#: the colour of each deployment status; the keys are exactly
#: :data:`quantlab.hub.DEPLOYMENT_STATUSES` (a test holds them together)
STATUS_COLOURS: dict[str, str] = {"running": GREEN, "pending": AMBER, "stopped": GREY, "failed": RED}

TABLE_STYLE = "border-collapse:collapse;font-size:12px;font-family:system-ui,-apple-system,Segoe UI,sans-serif"
TH_STYLE = f"text-align:left;white-space:nowrap;padding:3px 10px;border-bottom:2px solid {BORDER};background:{PANEL_BG};color:{INK}"
TD_STYLE = f"padding:2px 10px;border-bottom:1px solid {RULE};white-space:nowrap"
TDR_STYLE = TD_STYLE + ";text-align:right;font-variant-numeric:tabular-nums"


class Raw(str):
    """Text that is already HTML: :func:`table` and :func:`kv_table` do not escape it."""


def raw(html_text: str) -> Raw:
    """Mark ``html_text`` as trusted HTML for a table cell."""
    return Raw(html_text)


def escape(value: Any) -> str:
    """HTML-escape ``str(value)`` (``None`` -> ``''``); :class:`Raw` text passes through.

    >>> escape("<a>"), escape(None), escape(raw("<b>x</b>"))
    ('&lt;a&gt;', '', '<b>x</b>')
    """
    if isinstance(value, Raw):
        return str(value)
    return "" if value is None else _html.escape(str(value), quote=True)


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def status_colour(status: Any) -> str:
    """The colour of a deployment status (grey for anything unknown).

    >>> status_colour("running") == GREEN, status_colour("??") == GREY
    (True, True)
    """
    return STATUS_COLOURS.get(str(status or "").lower(), GREY)


def coloured(text: Any, colour: str, *, bold: bool = False, css_class: str | None = None) -> str:
    """``text`` (escaped) in ``colour``, bold when asked.

    >>> coloured("up", GREEN) == f"<span style='color:{GREEN}'>up</span>"
    True
    """
    tag = "b" if bold else "span"
    cls = f" class='{escape(css_class)}'" if css_class else ""
    return f"<{tag}{cls} style='color:{colour}'>{escape(text)}</{tag}>"


def status_html(status: Any) -> str:
    """A deployment status in its colour, bold (running green, failed red, ...)."""
    text = "" if _missing(status) else str(status)
    return coloured(text, status_colour(text), bold=True, css_class="quantlab-status")


def pill(text: Any, colour: str, title: str = "") -> str:
    """An inline pill: white ``text`` on ``colour`` (``title`` as its tooltip).

    >>> pill("causal", GREEN)[:5]
    '<span'
    """
    tip = f' title="{escape(title)}"' if title else ""
    return (
        f'<span{tip} style="display:inline-block;padding:0 6px;margin-right:4px;border-radius:8px;font-size:11px;'
        f'color:{WHITE};background:{colour}">{escape(text)}</span>'
    )


def badge(passed: Any, text: str | None = None) -> str:
    """An inline pass/fail pill (``None`` -> empty string); ``text`` replaces ``✔ pass``/``✘ fail``."""
    if _missing(passed):
        return ""
    ok = bool(passed)
    return pill(text or ("✔ pass" if ok else "✘ fail"), GREEN if ok else RED)


def verdict(ok: bool | None, text: Any) -> str:
    """A bold verdict word: green when ``ok``, red when not, amber when ``None`` (an error, not a verdict)."""
    return coloured(text, AMBER if ok is None else GREEN if ok else RED, bold=True)


def _td(value: Any) -> str:
    num = isinstance(value, (int, float)) and not isinstance(value, bool)
    return f"<td style='{TDR_STYLE if num else TD_STYLE}'>{escape(value)}</td>"


def table(
    columns: Sequence[Any],
    rows: Iterable[Sequence[Any]],
    *,
    css_class: str | None = None,
    style: str = TABLE_STYLE,
) -> str:
    """An HTML table: a header of ``columns``, one ``<tr>`` per row; numbers right-aligned.

    Cells are escaped unless :func:`raw`.

    >>> table(["a"], [[raw("<i>x</i>")], ["<y>"]]).count("<tr>")
    3
    """
    cls = f" class='{escape(css_class)}'" if css_class else ""
    head = "".join(f"<th style='{TH_STYLE}'>{escape(c)}</th>" for c in columns)
    body = "".join("<tr>" + "".join(_td(v) for v in row) + "</tr>" for row in rows)
    return f"<table{cls} style='{style}'><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def kv_table(rows: Iterable[tuple[Any, Any]]) -> str:
    """A plain two-column key/value ``<table>`` (keys as left-aligned row headers) for object
    summaries; values escaped unless :func:`raw`.

    >>> kv_table([("status", "running")])
    "<table><tr><th style='text-align:left'>status</th><td style='text-align:left'>running</td></tr></table>"
    """
    body = "".join(
        f"<tr><th style='text-align:left'>{escape(k)}</th><td style='text-align:left'>{escape(v)}</td></tr>" for k, v in rows
    )
    return f"<table>{body}</table>"
