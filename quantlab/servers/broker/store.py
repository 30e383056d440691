"""SQLite (WAL) storage of every piece of broker state.

One database file holds the account, orders, deals, positions and the feed's
clock (deployments, their journal and alerts live in the runner's own database,
:mod:`quantlab.runner.store`; a file from before still has those tables, unused). Each tool call runs inside one
transaction (:meth:`Store.tx`): it commits as a whole or not at all, so a
rejected request or a crash never leaves a partial write, and ``SIGKILL``
followed by a restart on the same file loses nothing that was acknowledged.

Example
-------
>>> st = Store(":memory:")
>>> with st.tx():
...     st.set_meta("hello", {"a": 1})
>>> st.get_meta("hello")
{'a': 1}
"""
from __future__ import annotations

import json
import os
import sqlite3
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

__all__ = ["Store", "SCHEMA", "DatabaseInUseError", "lock_database"]

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS account (
    id INTEGER PRIMARY KEY CHECK (id = 1), login INTEGER, name TEXT, server TEXT, company TEXT,
    currency TEXT, leverage INTEGER, margin_mode INTEGER, balance REAL, deposit REAL, commission REAL
);
CREATE TABLE IF NOT EXISTS orders (
    ticket INTEGER PRIMARY KEY, time_setup INTEGER, time_setup_msc INTEGER, time_done INTEGER, time_done_msc INTEGER,
    time_expiration INTEGER, type INTEGER, type_time INTEGER, type_filling INTEGER, state INTEGER, magic INTEGER,
    position_id INTEGER, position_by_id INTEGER, reason INTEGER, volume_initial REAL, volume_current REAL,
    price_open REAL, sl REAL, tp REAL, price_current REAL, price_stoplimit REAL, symbol TEXT, comment TEXT,
    external_id TEXT
);
CREATE INDEX IF NOT EXISTS orders_state ON orders(state);
CREATE TABLE IF NOT EXISTS deals (
    ticket INTEGER PRIMARY KEY, "order" INTEGER, time INTEGER, time_msc INTEGER, type INTEGER, entry INTEGER,
    magic INTEGER, position_id INTEGER, reason INTEGER, volume REAL, price REAL, commission REAL, swap REAL,
    profit REAL, fee REAL, symbol TEXT, comment TEXT, external_id TEXT
);
CREATE INDEX IF NOT EXISTS deals_magic ON deals(magic);
CREATE TABLE IF NOT EXISTS positions (
    ticket INTEGER PRIMARY KEY, time INTEGER, time_msc INTEGER, time_update INTEGER, time_update_msc INTEGER,
    type INTEGER, magic INTEGER, identifier INTEGER, reason INTEGER, volume REAL, price_open REAL, sl REAL, tp REAL,
    swap REAL, symbol TEXT, comment TEXT, external_id TEXT
);
"""


class DatabaseInUseError(RuntimeError):
    """Another process serves this database (``.pid`` names it, ``.started`` says since when)."""

    def __init__(self, message: str, pid: int | None = None, started: str | None = None) -> None:
        super().__init__(message)
        self.pid = pid
        self.started = started


def lock_database(db: str | os.PathLike[str], what: str = "broker", hint: str = "quantlab broker status"):
    """Hold an exclusive lock on ``<db>.lock`` for the life of the process (one server per database).

    Two servers on one file would each act on their own copy of the state (a broker moving its
    own clock, a runner trading a deployment twice), so a second one is refused at once with
    :class:`DatabaseInUseError` naming the first one's pid and start time (never its command line:
    it may carry a broker's token). ``what`` names the
    server in the message, ``hint`` the command that reaches the running one. Returns the open
    lock file (keep it; the lock ends when it is closed or the process exits), or ``None`` for
    ``:memory:``.

    >>> import tempfile, os
    >>> db = os.path.join(tempfile.mkdtemp(), "x.db")
    >>> held = lock_database(db, "runner")
    >>> lock_database(db, "runner")                                      # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    quantlab.servers.broker.store.DatabaseInUseError: another runner (pid ...) is already serving ...
    >>> held.close()
    """
    if str(db) == ":memory:":
        return None
    import fcntl

    path = Path(f"{db}.lock").expanduser()
    path.parent.mkdir(parents=True, exist_ok=True)
    f = open(path, "a+")
    try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        f.seek(0)
        text = f.read().strip()
        f.close()
        try:
            info = json.loads(text) if text.startswith("{") else {"pid": int(text)}
        except ValueError:
            info = {}
        pid, started = info.get("pid"), info.get("started")
        raise DatabaseInUseError(
            f"another {what} (pid {pid or '?'}{', running since ' + started if started else ''}) is already serving "
            f"{db}; connect to it ({hint}) or stop it first.", pid=pid, started=started) from None
    import time

    f.seek(0)
    f.truncate()
    f.write(json.dumps({"pid": os.getpid(), "what": what,
                        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}))
    f.flush()
    return f


class Store:
    """A thread-safe SQLite connection in WAL mode with nested transactions.

    ``tx()`` opens ``BEGIN IMMEDIATE`` (or a ``SAVEPOINT`` when nested) and
    commits on success, rolls back on any exception. All access is serialised
    by one re-entrant lock, which callers may also hold across several calls
    (``with store.lock:``).

    >>> st = Store(":memory:"); st.path
    ':memory:'
    """

    #: the tables this store creates (a subclass with other tables overrides it)
    schema: str = SCHEMA

    def __init__(self, path: str | Path):
        self.path = str(path)
        if self.path != ":memory:":
            Path(self.path).expanduser().parent.mkdir(parents=True, exist_ok=True)
        self.conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        self.conn.row_factory = sqlite3.Row
        self.conn.execute("PRAGMA journal_mode=WAL")
        self.conn.execute("PRAGMA synchronous=NORMAL")
        self.conn.execute("PRAGMA busy_timeout=5000")
        self.conn.executescript(self.schema)
        self.lock = threading.RLock()
        self._depth = 0

    @contextmanager
    def tx(self) -> Iterator[sqlite3.Connection]:
        """One atomic unit: all statements inside commit together or not at all."""
        with self.lock:
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

    # -- helpers -------------------------------------------------------------------
    def q(self, sql: str, args: tuple | list = ()) -> list[dict[str, Any]]:
        """Rows of a query as dicts."""
        return [dict(r) for r in self.conn.execute(sql, args).fetchall()]

    def one(self, sql: str, args: tuple | list = ()) -> dict[str, Any] | None:
        r = self.conn.execute(sql, args).fetchone()
        return None if r is None else dict(r)

    def scalar(self, sql: str, args: tuple | list = ()) -> Any:
        r = self.conn.execute(sql, args).fetchone()
        return None if r is None else r[0]

    def x(self, sql: str, args: tuple | list = ()) -> sqlite3.Cursor:
        return self.conn.execute(sql, args)

    def insert(self, table: str, row: dict[str, Any]) -> int:
        cols = ", ".join(f'"{c}"' for c in row)
        marks = ", ".join("?" for _ in row)
        return self.conn.execute(f"INSERT INTO {table} ({cols}) VALUES ({marks})", list(row.values())).lastrowid

    def update(self, table: str, key: str, value: Any, **fields: Any) -> None:
        sets = ", ".join(f'"{c}" = ?' for c in fields)
        self.conn.execute(f"UPDATE {table} SET {sets} WHERE {key} = ?", [*fields.values(), value])

    def get_meta(self, key: str, default: Any = None) -> Any:
        v = self.scalar("SELECT value FROM meta WHERE key = ?", (key,))
        return default if v is None else json.loads(v)

    def set_meta(self, key: str, value: Any) -> None:
        self.conn.execute("INSERT INTO meta(key, value) VALUES(?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                          (key, json.dumps(value)))

    def close(self) -> None:
        with self.lock:
            self.conn.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.path!r})"

    def _repr_html_(self) -> str:
        import html

        return f"<code>{html.escape(repr(self))}</code> (SQLite, WAL)"
