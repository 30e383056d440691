"""The deployments ledger: one JSON object per line in ``deployments.jsonl``.

Every deployment event (pending, running, failed, stopped) is appended as one
line and committed by :meth:`quantlab.hub.AssetsHub.record_deployment`, so
``git log -- deployments.jsonl`` is the audit trail.

Fields of an event (:data:`FIELDS`; extra keys such as ``symbol`` or ``volume``
are kept after them):

=====================  ==========================================================
``strategy_name``      display name of the strategy (required)
``backtest_results``   the metrics the decision was based on (dict)
``deployment_type``    ``"paper_trading"`` (default)
``triggered_at``       ISO 8601 time the deployment was triggered (default: now, UTC)
``status``             ``pending`` | ``running`` | ``failed`` | ``stopped`` (required)
``commit``             sha of the strategy commit in the hub
``broker``             broker (MCP server) name, e.g. ``"broker"``
``broker_deployment_id``  the id the broker gave the deployment
``error``              why it failed (``None`` otherwise)
``forced``             ``True`` when deployed although the policy failed
``policy``             the policy check summary (``PolicyCheck.to_dict()``)
``recorded_at``        when the line was written (set by the hub)
=====================  ==========================================================

A *deployment* is identified by ``(commit, broker_deployment_id)``. An event
without a broker id (``pending`` before the broker answered, or ``failed``
because it never did) is superseded by any later event for the same commit,
so a pending -> running sequence shows up as one running deployment.

Example
-------
>>> e = normalize_event({"strategy_name": "SMA", "status": "pending", "commit": "abc"})
>>> e["deployment_type"], e["forced"]
('paper_trading', False)
"""
from __future__ import annotations

import json
import warnings
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Mapping

from quantlab._util import to_jsonable

from .message import one_line

if TYPE_CHECKING:  # pandas loads when a frame is asked for (listing deployments from the shell needs none)
    import pandas as pd

__all__ = ["LEDGER_FILE", "STATUSES", "ACTIVE_STATUSES", "FIELDS", "normalize_event", "read_events", "events_frame", "latest_status", "ledger_message"]

LEDGER_FILE = "deployments.jsonl"
STATUSES = ("pending", "running", "failed", "stopped")
#: the statuses of a deployment that is (about to be) trading: it can be stopped
ACTIVE_STATUSES = ("pending", "running")
FIELDS = (
    "strategy_name",
    "backtest_results",
    "deployment_type",
    "triggered_at",
    "status",
    "commit",
    "broker",
    "broker_deployment_id",
    "error",
    "forced",
    "policy",
    "recorded_at",
)


def _now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def normalize_event(event: Mapping[str, Any]) -> dict[str, Any]:
    """Check a deployment event and fill its defaults (see the module doc for the fields).

    Raises ``ValueError`` naming the problem: no ``strategy_name``, or a
    ``status`` outside :data:`STATUSES`.

    >>> normalize_event({"strategy_name": "x", "status": "RUNNING"})["status"]
    'running'
    """
    if not isinstance(event, Mapping):
        raise TypeError(f"a deployment event is a dict, got {type(event).__name__}.")
    e = dict(event)
    name = e.get("strategy_name")
    if not name or not str(name).strip():
        raise ValueError("deployment event without 'strategy_name'; give the stored strategy's name.")
    status = str(e.get("status") or "").strip().lower()
    if status not in STATUSES:
        raise ValueError(f"deployment status {e.get('status')!r} is not one of {', '.join(STATUSES)}.")
    triggered = e.get("triggered_at") or _now_iso()
    if isinstance(triggered, datetime):
        triggered = (triggered if triggered.tzinfo else triggered.replace(tzinfo=timezone.utc)).isoformat()
    out: dict[str, Any] = {
        "strategy_name": str(name),
        "backtest_results": e.get("backtest_results") or {},
        "deployment_type": e.get("deployment_type") or "paper_trading",
        "triggered_at": str(triggered),
        "status": status,
        "commit": e.get("commit"),
        "broker": e.get("broker"),
        "broker_deployment_id": None if e.get("broker_deployment_id") is None else str(e["broker_deployment_id"]),
        "error": None if e.get("error") is None else str(e["error"]),
        "forced": bool(e.get("forced", False)),
        "policy": e.get("policy"),
        "recorded_at": _now_iso(),
    }
    for key, value in e.items():
        if key not in out:
            out[key] = value
    return to_jsonable(out)


def ledger_message(event: Mapping[str, Any]) -> str:
    """The commit message of a ledger event: a subject, the error if any, then trailers.

    >>> print(ledger_message({"strategy_name": "SMA", "status": "running", "commit": "abc",
    ...                       "broker": "broker", "broker_deployment_id": "d1", "forced": False}), end="")
    Deployment running: SMA
    <BLANKLINE>
    Quantlab-Strategy-Commit: abc
    Quantlab-Broker: broker
    Quantlab-Deployment-Id: d1
    Quantlab-Status: running
    """
    lines = [f"Deployment {event['status']}: {one_line(event['strategy_name'])}", ""]
    if event.get("error"):
        lines += [f"Error: {one_line(event['error'])}", ""]
    trailers = [
        ("Quantlab-Strategy-Commit", event.get("commit")),
        ("Quantlab-Broker", event.get("broker")),
        ("Quantlab-Deployment-Id", event.get("broker_deployment_id")),
        ("Quantlab-Status", event.get("status")),
        ("Quantlab-Forced", "true" if event.get("forced") else None),
    ]
    lines += [f"{k}: {one_line(v)}" for k, v in trailers if v not in (None, "")]
    return "\n".join(lines) + "\n"


def read_events(path: str | Path) -> list[dict[str, Any]]:
    """All events in a ledger file, in order (a missing file = no events; bad lines are skipped with a warning)."""
    p = Path(path)
    if not p.exists():
        return []
    events = []
    for lineno, line in enumerate(p.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            warnings.warn(f"{p}:{lineno}: skipping a line that is not JSON ({exc.msg}).", stacklevel=2)
            continue
        if isinstance(obj, dict):
            events.append(obj)
    return events


def events_frame(events: Iterable[Mapping[str, Any]]) -> pd.DataFrame:
    """Events as a DataFrame with the :data:`FIELDS` columns first; times parsed as UTC."""
    import pandas as pd

    rows = list(events)
    extra = [k for r in rows for k in r if k not in FIELDS]
    columns = list(FIELDS) + list(dict.fromkeys(extra))
    frame = pd.DataFrame(rows, columns=columns)
    for col in ("triggered_at", "recorded_at"):
        frame[col] = pd.to_datetime(frame[col], utc=True, errors="coerce", format="ISO8601")
    frame["forced"] = frame["forced"].fillna(False).astype(bool)
    return frame


def latest_rows(events: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """One dict per deployment with its latest status (see the module doc for the key rule), oldest
    first; the rows of :func:`latest_status`, times as the ISO text the ledger holds.

    >>> rows = latest_rows([{"commit": "c1", "status": "pending", "strategy_name": "SMA"},
    ...                     {"commit": "c1", "status": "running", "broker_deployment_id": "7", "strategy_name": "SMA"}])
    >>> [(r["broker_deployment_id"], r["status"], r["events"]) for r in rows]
    [('7', 'running', 2)]
    """
    latest: dict[tuple[Any, Any], dict[str, Any]] = {}
    for e in events:
        key = (e.get("commit"), e.get("broker_deployment_id"))
        same = latest.pop(key, None)
        keyless = latest.pop((key[0], None), None) if key[1] is not None else None
        previous = same or keyless
        row = {
            "strategy_name": e.get("strategy_name"),
            "commit": e.get("commit"),
            "broker": e.get("broker"),
            "broker_deployment_id": e.get("broker_deployment_id"),
            "symbol": e.get("symbol", (previous or {}).get("symbol")),
            "status": e.get("status"),
            "triggered_at": e.get("triggered_at"),
            "first_triggered_at": (previous or {}).get("first_triggered_at", e.get("triggered_at")),
            "error": e.get("error"),
            "forced": bool(e.get("forced", False)) or bool((previous or {}).get("forced", False)),
            "events": (previous or {}).get("events", 0) + 1,
        }
        latest[key] = row
    return list(latest.values())


#: The columns of :func:`latest_status` (the keys of :func:`latest_rows`).
STATUS_COLUMNS = ["strategy_name", "commit", "broker", "broker_deployment_id", "symbol", "status", "triggered_at",
                  "first_triggered_at", "error", "forced", "events"]


def latest_status(events: Iterable[Mapping[str, Any]]) -> pd.DataFrame:
    """One row per deployment with its latest status (see the module doc for the key rule).

    Columns: ``strategy_name, commit, broker, broker_deployment_id, symbol, status,
    triggered_at, first_triggered_at, error, forced, events``.
    """
    import pandas as pd

    frame = pd.DataFrame(latest_rows(events), columns=STATUS_COLUMNS)
    for col in ("triggered_at", "first_triggered_at"):
        frame[col] = pd.to_datetime(frame[col], utc=True, errors="coerce", format="ISO8601")
    return frame.reset_index(drop=True)
