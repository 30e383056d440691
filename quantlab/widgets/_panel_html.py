"""The deploy panel's HTML: what will be stored, the code and its diff, the policy check, the progress.

Functions of plain values (no widget state), so :class:`~quantlab.widgets.panel.DeployPanel` keeps
only its state and behaviour, and its static rendering is the same HTML.

>>> timeframe_label(60)
'1 hour (H1)'
"""
from __future__ import annotations

import difflib
from typing import Any

from quantlab.engine.backtest import BacktestResult
from quantlab.engine.strategy import Strategy
from quantlab.hub import AssetsHub, HubError, StoredStrategy
from quantlab.lab import PolicyCheck
from quantlab.servers.broker.constants import TIMEFRAME_MINUTES

from . import _render as R
from ._validation import badges_html

__all__ = ["timeframe_label", "check_table_html", "failed_rules", "details", "code_html", "info_html", "steps_html",
           "STEPS", "STEP_ICON"]

STEPS = ["validate", "store", "deploy", "record"]
STEP_ICON = {"start": "⏳", "done": "✔", "failed": "✘", "skipped": "–"}
PRE_STYLE = f"margin:2px 0;max-height:320px;overflow:auto;font-size:11px;background:{R.PANEL_BG};padding:6px"
DIFF_COLOUR = {"+": R.GREEN, "-": R.RED, "@": R.GREY}


def timeframe_label(minutes: int) -> str:
    """``60`` -> ``'1 hour (H1)'``; the unit always shown.

    >>> timeframe_label(1), timeframe_label(240), timeframe_label(7)
    ('1 minute (M1)', '4 hours (H4)', '7 minutes')
    """
    for size, unit in ((10080, "week"), (1440, "day"), (60, "hour"), (1, "minute")):
        if minutes % size == 0:
            n = minutes // size
            text = f"{n} {unit}{'s' if n != 1 else ''}"
            break
    name = {m: n for n, m in TIMEFRAME_MINUTES.items()}.get(minutes)
    return f"{text} ({name})" if name else text


def check_table_html(check: PolicyCheck) -> str:
    """The policy check as an HTML table: metric, rule, value and a pass/fail badge.

    >>> from quantlab.lab.policy import DeploymentPolicy
    >>> html = check_table_html(DeploymentPolicy().check({"sharpe": 1, "max_drawdown": 0.1, "profit_factor": 2, "trades": 9}))
    >>> "PASSED" in html
    True
    """
    cf = R.check_frame(check)
    if cf is None or len(cf) == 0:
        return f"<div style='color:{R.GREY}'>No policy rules.</div>"
    rows = []
    for r in cf.to_dict("records"):
        metric = str(r["metric"])
        rows.append(
            f"<tr><td style='{R.TD_STYLE}'>{R.escape(R.metric_label(metric))}</td>"
            f"<td style='{R.TD_STYLE};color:{R.GREY}'>{R.escape(R.rule_text(r))}</td>"
            f"<td style='{R.TDR_STYLE}'>{R.escape(R.fmt_metric(metric, r['value']))}</td>"
            f"<td style='{R.TD_STYLE}'>{R.badge(bool(r['passed']))}</td></tr>"
        )
    head = "".join(f"<th style='{R.TH_STYLE}'>{h}</th>" for h in ("Metric", "Rule", "Value", ""))
    return (
        f"<table class='quantlab-policy' style='{R.TABLE_STYLE}'><thead><tr>{head}</tr></thead>"
        f"<tbody>{''.join(rows)}</tbody></table>" + R.verdict_html(check)
    )


def details(summary: str, body: str) -> str:
    """A folded section (HTML ``<details>``): works in the live widget and in static HTML alike."""
    return f"<details style='margin:4px 0'><summary style='cursor:pointer'>{R.escape(summary)}</summary>{body}</details>"


def failed_rules(check: PolicyCheck) -> str:
    """The failed rules of a check in one line: ``metric = value, needs rule; ...``."""
    cf = R.check_frame(check)
    if cf is None:
        return "no check"
    failed = cf[~cf["passed"].astype(bool)]
    return "; ".join(
        f"{r['metric']} = {R.fmt_metric(str(r['metric']), r['value'])}, needs {R.rule_text(r)}" for r in failed.to_dict("records")
    ) or "failed"


def code_html(strategy: Strategy | None, hub: AssetsHub) -> str:
    """The code being deployed and its diff against the last version stored under its name, folded."""
    if strategy is None:
        return ""
    code = strategy.code
    parts = [details(f"Code ({len(code.splitlines())} lines)", f"<pre class='quantlab-code' style='{PRE_STYLE}'>"
                     f"{R.escape(code)}</pre>")]
    previous = None
    try:
        history = hub.history(strategy.name)
        if len(history):
            previous = hub.get(history.iloc[0]["commit"])
    except HubError:
        previous = None  # never stored under this name
    if previous is None:
        parts.append(f"<div style='color:{R.GREY};font-size:11px'>no earlier version of "
                     f"{R.escape(strategy.name)!s} in the hub</div>")
    else:
        old = hub.code(previous)
        diff = list(difflib.unified_diff(old.splitlines(), code.splitlines(), f"{previous.file} ({previous.commit[:12]})",
                                         "this cell", lineterm=""))
        if diff:
            lines = "".join(f"<span style='color:{DIFF_COLOUR.get(line[:1], 'inherit')}'>{R.escape(line)}</span>\n"
                            for line in diff)
            parts.append(details(f"Diff against the last stored version ({previous.commit[:12]}, "
                                 f"{len(diff) - 2} lines)", f"<pre class='quantlab-diff' style='{PRE_STYLE}'>{lines}</pre>"))
        else:
            parts.append(f"<div style='color:{R.GREY};font-size:11px'>same code as the last stored version "
                         f"({R.escape(previous.commit[:12])})</div>")
    return "".join(parts)


def info_html(result: BacktestResult, check: PolicyCheck, preview: dict[str, Any] | None,
              existing: StoredStrategy | None, preview_error: str | None, code: str) -> str:
    """What will be stored (or the commit that already holds it), the code, the policy badges and check."""
    p = preview or {}
    name = p.get("name") or result.name or "strategy"
    rows = [("Strategy", f"<b>{R.escape(name)}</b> <code>{R.escape(R.params_text(result.params))}</code>")]
    if existing is not None:
        rows.append(("File", f"<code>{R.escape(existing.file)}</code> <span style='color:{R.GREY}'>already "
                             f"stored in commit <code>{R.escape(existing.commit[:12])}</code>: nothing new "
                             f"is written, the deployment uses it</span>"))
    elif p.get("path"):
        rows.append(("File", f"<code>{R.escape(p['path'])}</code> <span style='color:{R.GREY}'>(new)</span>"))
        if p.get("message"):
            rows.append(("Commit message", f"<pre style='margin:0;white-space:pre-wrap;font-size:11px'>"
                                           f"{R.escape(p['message'])}</pre>"))
    if p.get("secrets"):
        rows.append(("Secrets", f"<span style='color:{R.RED}'>the code looks like it holds secrets; the hub will refuse "
                                f"to store it: {R.escape('; '.join(map(str, p['secrets'])))}</span>"))
    if preview_error:
        rows.append(("Preview", f"<span style='color:{R.RED}'>{R.escape(preview_error)}</span>"))
    table = "".join(
        f"<tr><td style='{R.TD_STYLE};text-align:left;vertical-align:top;color:{R.GREY}'>{k}</td>"
        f"<td style='{R.TD_STYLE};text-align:left;white-space:normal'>{v}</td></tr>"
        for k, v in rows
    )
    title = "Will deploy from the assets hub" if existing is not None else "Will store in the assets hub"
    return (
        f"<div><b>{title}</b><table style='{R.TABLE_STYLE}'>{table}</table>{code}"
        f"<div style='margin-top:6px'><b>Deployment policy</b></div>{badges_html(result, check.policy)}{check_table_html(check)}</div>"
    )


def steps_html(steps: list[tuple[str, str, str]]) -> str:
    """The progress of a submission: the latest status of each step, in order."""
    latest: dict[str, tuple[str, str]] = {}
    for step, status, detail in steps:
        latest[step] = (status, detail)
    order = STEPS + [s for s in latest if s not in STEPS]
    cells = []
    for step in order:
        status, detail = latest.get(step, ("", ""))
        icon = STEP_ICON.get(status, "·")
        color = R.GREEN if status == "done" else R.RED if status == "failed" else R.GREY
        cells.append(
            f"<tr><td style='{R.TD_STYLE};color:{color}'>{icon}</td><td style='{R.TD_STYLE}'>{R.escape(step)}</td>"
            f"<td style='{R.TD_STYLE};color:{R.GREY}'>{R.escape(detail)}</td></tr>"
        )
    return f"<table style='{R.TABLE_STYLE}'>{''.join(cells)}</table>" if steps else ""
