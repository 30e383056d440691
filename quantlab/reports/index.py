"""The HTML index of a batch of reports: one table row per report, linked to its HTML page."""
from __future__ import annotations

from quantlab._util import decode_number
from quantlab.engine.formatting import fmt_metric

import html as _html
import os
from pathlib import Path
from typing import Any

import pandas as pd

from quantlab._util import html as qh

__all__ = ["reports_table_html", "write_index"]


def reports_table_html(frame: pd.DataFrame, base: str | os.PathLike[str] | None = None) -> str:
    """The reports as an HTML table: name (linked to its HTML, relative to ``base``), verdict,
    key metrics, time, and the failed rules or the error line.

    >>> reports_table_html(pd.DataFrame([{"name": "x", "ok": False, "error": "boom", "html": None}]))[:7]
    '<table>'
    """
    esc = _html.escape
    keys = ["total_return", "sharpe", "max_drawdown", "profit_factor", "trades"]
    head = "".join(f"<th>{esc(h)}</th>" for h in ["report", "verdict", *keys, "time", "details"])
    body = []
    for row in frame.to_dict("records"):
        target = row.get("html")
        href = os.path.relpath(target, base) if target and base is not None else target
        link = f"<a href='{esc(str(href))}'>{esc(row['name'])}</a>" if target else esc(row["name"])
        if row.get("ok"):
            verdict = qh.verdict(row.get("verdict") == "PASS", str(row.get("verdict")))
            details = esc("; ".join(row.get("failures") or []))
        else:
            verdict = qh.verdict(None, "ERROR")
            details = qh.coloured(str(row.get("error")), qh.RED)
        metrics = row.get("metrics") or {}
        cells = "".join(f"<td style='text-align:right'>{esc(_fmt(k, metrics.get(k)))}</td>" for k in keys)
        seconds = row.get("seconds") or 0.0
        body.append(f"<tr><td>{link}</td><td>{verdict}</td>{cells}<td>{seconds:.1f}s</td><td>{details}</td></tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def write_index(frame: pd.DataFrame, path: str | os.PathLike[str], *, executor: str = "") -> Path:
    """Write the HTML index of a batch of reports (see :func:`reports_table_html`) to ``path``.

    >>> write_index(run_many(specs, "out"), "out/index.html")   # doctest: +SKIP
    """
    path = Path(path)
    ok = int(frame["ok"].sum()) if len(frame) else 0
    passed = int((frame["verdict"] == "PASS").sum()) if len(frame) else 0
    page = (
        "<!doctype html><html><head><meta charset='utf-8'><title>quantlab reports</title>"
        "<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}"
        "td,th{border-bottom:1px solid #ddd;padding:4px 10px}th{text-align:left}</style></head><body>"
        f"<h1>quantlab reports</h1><p>{len(frame)} reports, {ok} ran, {passed} pass the policy"
        + (f" · executor <code>{_html.escape(executor)}</code>" if executor else "")
        + f"</p>{reports_table_html(frame, path.parent)}</body></html>"
    )
    path.write_text(page, encoding="utf-8")
    return path


def _fmt(name: str, value: Any) -> str:
    """The metric as the single reports show it (percents, 2-decimal ratios, counts)."""
    return "" if value is None else fmt_metric(name, decode_number(value))
