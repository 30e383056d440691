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

import sqlite3
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

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


class RunnerStore:
    """One SQLite connection in WAL mode; :meth:`tx` is one atomic unit (nested = savepoint).

    >>> RunnerStore(":memory:").path
    ':memory:'
    """

    def __init__(self, path: str | Path):
        self.path = str(path)
        if self.path != ":memory:":
            Path(self.path).expanduser().parent.mkdir(parents=True, exist_ok=True)
        self.conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        self.conn.row_factory = sqlite3.Row
        self.conn.execute("PRAGMA journal_mode=WAL")
        self.conn.execute("PRAGMA synchronous=NORMAL")
        self.conn.execute("PRAGMA busy_timeout=5000")
        self.conn.executescript(SCHEMA)
        self._depth = 0

    def __repr__(self) -> str:
        return f"RunnerStore({self.path!r})"

    @contextmanager
    def tx(self) -> Iterator[sqlite3.Connection]:
        """Commit everything inside at once, or nothing (on any exception)."""
        depth = self._depth
        name = f"sp{depth}"
        self.conn.execute("BEGIN IMMEDIATE" if depth == 0 else f"SAVEPOINT {name}")
        self._depth += 1
        try:
            yield self.conn
        except BaseException:
            self._depth -= 1
            self.conn.execute("ROLLBACK" if depth == 0 else f"ROLLBACK TO {name}")
            if depth:
                self.conn.execute(f"RELEASE {name}")
            raise
        else:
            self._depth -= 1
            self.conn.execute("COMMIT" if depth == 0 else f"RELEASE {name}")

    def q(self, sql: str, args: tuple | list = ()) -> list[dict[str, Any]]:
        return [dict(r) for r in self.conn.execute(sql, args).fetchall()]

    def one(self, sql: str, args: tuple | list = ()) -> dict[str, Any] | None:
        r = self.conn.execute(sql, args).fetchone()
        return None if r is None else dict(r)

    def insert(self, table: str, row: dict[str, Any]) -> int:
        cols = ", ".join(f'"{c}"' for c in row)
        marks = ", ".join("?" for _ in row)
        return int(self.conn.execute(f"INSERT INTO {table} ({cols}) VALUES ({marks})", list(row.values())).lastrowid)

    def update(self, table: str, key: str, value: Any, **cols: Any) -> None:
        sets = ", ".join(f'"{c}" = ?' for c in cols)
        self.conn.execute(f"UPDATE {table} SET {sets} WHERE {key} = ?", [*cols.values(), value])

    def close(self) -> None:
        self.conn.close()
