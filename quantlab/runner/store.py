"""SQLite (WAL) state of the runner: deployments, their journal, the bars they acted on, alerts.

Every bar a deployment acts on is committed as one transaction (the deployment's
position, target, last bar, the per-bar record and the journal lines), so a
``SIGKILL`` loses at most the bar in flight; on restart the runner reconciles
its positions from the broker before it trades again.

Example
-------
>>> st = RunnerStore(":memory:")
>>> with st.tx():
...     i = st.insert("journal", {"deployment_id": None, "time": 0, "wall_time": 0.0, "kind": "status", "message": "hi", "data": "{}"})
>>> st.one("SELECT message FROM journal WHERE id = ?", (i,))["message"]
'hi'
"""
from __future__ import annotations

from quantlab.servers.broker.store import Store

__all__ = ["RunnerStore", "SCHEMA"]

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS deployments (
    id INTEGER PRIMARY KEY AUTOINCREMENT, name TEXT, commit_sha TEXT, file TEXT, sha256 TEXT, code TEXT,
    params TEXT, symbol TEXT, timeframe INTEGER, volume REAL, magic INTEGER, config TEXT, status TEXT,
    created REAL, updated REAL, started_bar_time INTEGER, last_bar_time INTEGER, lots REAL DEFAULT 0,
    target REAL DEFAULT 0, error TEXT, bars INTEGER DEFAULT 0, orders INTEGER DEFAULT 0, skipped INTEGER DEFAULT 0
);
CREATE INDEX IF NOT EXISTS deployments_status ON deployments(status);
CREATE TABLE IF NOT EXISTS steps (
    deployment_id INTEGER, bar_time INTEGER, target REAL, lots REAL, price REAL, skipped INTEGER DEFAULT 0,
    PRIMARY KEY (deployment_id, bar_time)
);
CREATE TABLE IF NOT EXISTS fills (
    deployment_id INTEGER, bar_time INTEGER, deal INTEGER, "order" INTEGER, type INTEGER, volume REAL, price REAL,
    position INTEGER, wall_time REAL
);
CREATE INDEX IF NOT EXISTS fills_dep ON fills(deployment_id, bar_time);
CREATE TABLE IF NOT EXISTS journal (
    id INTEGER PRIMARY KEY AUTOINCREMENT, deployment_id INTEGER, time INTEGER, wall_time REAL, kind TEXT,
    message TEXT, data TEXT
);
CREATE INDEX IF NOT EXISTS journal_dep ON journal(deployment_id, id);
CREATE TABLE IF NOT EXISTS alerts (
    id INTEGER PRIMARY KEY AUTOINCREMENT, deployment_id INTEGER, symbol TEXT, kind TEXT, threshold REAL,
    status TEXT, created REAL, fired_time INTEGER, message TEXT, peak REAL
);
"""


class RunnerStore(Store):
    """One SQLite connection in WAL mode; :meth:`tx` is one atomic unit (nested = savepoint).

    >>> RunnerStore(":memory:").path
    ':memory:'
    """

    schema = SCHEMA
