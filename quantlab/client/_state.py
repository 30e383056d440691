"""Small table renderers for the client's ``__repr__`` (text) and ``_repr_html_`` (HTML).

Kept dependency-free (no pandas import) so ``repr(hub)`` stays instant.

Example
-------
>>> print(text_tables([("servers", [{"server": "time", "tools": 2}])]))
servers
server  tools
------  -----
time        2
"""
from __future__ import annotations

from typing import Any, Iterable

from quantlab._util import html as qh

__all__ = ["text_tables", "html_tables"]

Table = tuple[str, list[dict[str, Any]]]


def _cell(v: Any, width: int = 60) -> str:
    s = "" if v is None else str(v)
    s = s.replace("\n", " ")
    return s if len(s) <= width else s[: width - 1] + "…"


def text_tables(tables: Iterable[Table], max_width: int = 60) -> str:
    """Plain-text tables, numbers right-aligned, cells cut at ``max_width``; an empty table prints ``(none)``."""
    out: list[str] = []
    for title, rows in tables:
        out.append(title)
        if not rows:
            out.append("(none)")
            out.append("")
            continue
        cols = list(rows[0])
        cells = [[_cell(r.get(c), max_width) for c in cols] for r in rows]
        widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(cols)]
        numeric = [all(isinstance(r.get(c), (int, float)) for r in rows) for c in cols]
        out.append("  ".join(c.ljust(w) for c, w in zip(cols, widths)).rstrip())
        out.append("  ".join("-" * w for w in widths))
        for row in cells:
            out.append("  ".join((v.rjust(w) if n else v.ljust(w)) for v, w, n in zip(row, widths, numeric)).rstrip())
        out.append("")
    return "\n".join(out).rstrip("\n")


def html_tables(tables: Iterable[Table]) -> str:
    """The same tables as HTML for notebooks.

    >>> "<table" in html_tables([("t", [{"a": 1}])])
    True
    """
    parts = ['<div class="quantlab-client">']
    for title, rows in tables:
        parts.append(f"<p><b>{qh.escape(title)}</b></p>")
        if not rows:
            parts.append("<p><i>(none)</i></p>")
            continue
        cols = list(rows[0])
        parts.append(qh.table(cols, ([_cell(r.get(c), 120) for c in cols] for r in rows), css_class="dataframe"))
    parts.append("</div>")
    return "".join(parts)
