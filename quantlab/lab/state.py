"""The Lab's agent state on disk: ``state.json``, shared safely by every process that opens the hub.

The file keeps the seed's keys (``created_at``, ``last_activity``, ``invocation_count``,
``mcp_connections``, ``deployments_triggered``). Two kernels (or a kernel and the CLI) may
run a :class:`~quantlab.Lab` on one hub at once, so every change is a read-merge-write
under an exclusive lock on ``state.json.lock``: each process adds its own invocation and
its own deployments to what is on disk *now*, never to a stale copy, so nothing is lost
and the counts are exact.

A file that cannot be used (truncated, not JSON, a list instead of an object, a count that
is text, a directory) is never silently replaced and never raises a raw error: it is
renamed to ``state.json.corrupt-<UTC time>`` beside it, a :class:`StateWarning` says where,
and the state is rebuilt from what is still good in it plus the ``rebuild`` callback (the
Lab passes one that reads the hub's deployments ledger).

Example
-------
>>> import tempfile, pathlib
>>> st = LabState(pathlib.Path(tempfile.mkdtemp()) / "state.json")
>>> st.touch()["invocation_count"]
1
>>> st.touch()["invocation_count"]
2
"""
from __future__ import annotations

import contextlib
import json
import os
import threading
import warnings
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping

from quantlab._util import atomic_write_text

__all__ = ["LabState", "StateWarning", "KEYS", "state_from_ledger", "HomeLock", "HubInUseError"]

#: the keys of the agent state, as the seed defined them
KEYS = ("created_at", "last_activity", "invocation_count", "mcp_connections", "deployments_triggered")


class StateWarning(UserWarning):
    """``state.json`` was unusable; it was kept aside and the state rebuilt (the message says where)."""


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _fresh() -> dict[str, Any]:
    now = _now()
    return {"created_at": now, "last_activity": now, "invocation_count": 0, "mcp_connections": {},
            "deployments_triggered": []}


def _problems(state: Any) -> list[str]:
    """What is wrong with a decoded ``state.json`` (empty list = usable)."""
    if not isinstance(state, dict):
        return [f"it holds a JSON {type(state).__name__}, not an object"]
    out = []
    for key in ("created_at", "last_activity"):
        if key in state and not isinstance(state[key], str):
            out.append(f"{key!r} is {type(state[key]).__name__}, not text")
    count = state.get("invocation_count", 0)
    if isinstance(count, bool) or not isinstance(count, int) or count < 0:
        out.append(f"'invocation_count' is {count!r}, not a whole number")
    deps = state.get("deployments_triggered", [])
    if not isinstance(deps, list) or not all(isinstance(d, dict) for d in deps):
        out.append("'deployments_triggered' is not a list of records")
    if not isinstance(state.get("mcp_connections", {}), dict):
        out.append("'mcp_connections' is not an object")
    return out


def _salvage(state: Any) -> dict[str, Any]:
    """The usable keys of a bad state (a whole number written as text counts as usable)."""
    if not isinstance(state, dict):
        return {}
    out: dict[str, Any] = {}
    for key in ("created_at", "last_activity"):
        if isinstance(state.get(key), str):
            out[key] = state[key]
    count = state.get("invocation_count")
    if isinstance(count, str) and count.strip().isdigit():
        out["invocation_count"] = int(count.strip())
    elif isinstance(count, int) and not isinstance(count, bool) and count >= 0:
        out["invocation_count"] = count
    deps = state.get("deployments_triggered")
    if isinstance(deps, list):
        out["deployments_triggered"] = [d for d in deps if isinstance(d, dict)]
    if isinstance(state.get("mcp_connections"), dict):
        out["mcp_connections"] = state["mcp_connections"]
    return out


class LabState:
    """``state.json`` with locked, merging updates (see the module doc).

    Parameters
    ----------
    path : the ``state.json`` file (its folder is created).
    rebuild : called (no arguments) when the file has to be rebuilt; returns what it can
        recover, e.g. ``{"created_at": ..., "deployments_triggered": [...]}``.
    defaults : more keys and their starting values (the code agent's ``generations``, ``tokens``, ...).

    >>> import tempfile, pathlib
    >>> st = LabState(pathlib.Path(tempfile.mkdtemp()) / "state.json")
    >>> sorted(st.read())
    ['created_at', 'deployments_triggered', 'invocation_count', 'last_activity', 'mcp_connections']
    """

    def __init__(self, path: str | os.PathLike[str], rebuild: Callable[[], Mapping[str, Any]] | None = None,
                 defaults: Mapping[str, Any] | None = None) -> None:
        self.path = Path(path)
        self._defaults = json.loads(json.dumps(dict(defaults or {})))
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.lock_path = self.path.with_name(self.path.name + ".lock")
        self._rebuild = rebuild
        self._thread_lock = threading.Lock()  # flock is per open file: threads of one process queue here

    def __repr__(self) -> str:
        return f"LabState({str(self.path)!r})"

    def _fresh(self) -> dict[str, Any]:
        return {**_fresh(), **json.loads(json.dumps(self._defaults))}

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        with self._thread_lock:
            fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o600)
            try:
                try:
                    import fcntl
                except ImportError:  # pragma: no cover - Windows: one process per hub is the rule there
                    yield
                    return
                fcntl.flock(fd, fcntl.LOCK_EX)
                try:
                    yield
                finally:
                    fcntl.flock(fd, fcntl.LOCK_UN)
            finally:
                os.close(fd)

    # -- reading (caller holds the lock) ------------------------------------------------
    def _load(self) -> dict[str, Any]:
        path = self.path
        if not path.exists() and not path.is_symlink():
            state = self._fresh()
            state.update(self._recovered())
            self._write(state)  # now it exists: later loads never rebuild (and so never count) twice
            return state
        problem: str | None = None
        decoded: Any = None
        if path.is_dir():
            problem = "it is a directory"
        else:
            try:
                text = path.read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as exc:
                problem = f"it cannot be read ({type(exc).__name__}: {exc})"
            else:
                try:
                    decoded = json.loads(text)
                except ValueError as exc:
                    problem = "it is empty" if not text.strip() else f"it is not valid JSON ({exc})"
                else:
                    issues = _problems(decoded)
                    if issues:
                        problem = "; ".join(issues)
        if problem is None:
            state = self._fresh()
            state.update(decoded)
            return state
        return self._set_aside(problem, decoded)

    def _recovered(self) -> dict[str, Any]:
        if self._rebuild is None:
            return {}
        try:
            return dict(self._rebuild() or {})
        except Exception as exc:  # noqa: BLE001 - rebuilding is best effort
            warnings.warn(f"quantlab: could not rebuild the lab state from the ledger: {exc}", StateWarning, stacklevel=4)
            return {}

    def _set_aside(self, problem: str, decoded: Any) -> dict[str, Any]:
        stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S")
        aside = self.path.with_name(f"{self.path.name}.corrupt-{stamp}")
        n = 1
        while aside.exists():
            n += 1
            aside = self.path.with_name(f"{self.path.name}.corrupt-{stamp}-{n}")
        try:
            os.replace(self.path, aside)
            where = f"it was kept as {aside}"
        except OSError as exc:
            where = f"it could not be moved aside ({exc}); it is left at {self.path}"
            aside = None  # type: ignore[assignment]
        state = self._fresh()
        recovered = self._recovered()
        salvaged = _salvage(decoded)
        state.update(recovered)
        # what the bad file still had wins for the counters; the ledger wins for deployments it knows
        for key in ("created_at", "last_activity", "invocation_count"):
            if key in salvaged:
                state[key] = salvaged[key]
        if "created_at" in recovered and "created_at" in salvaged:
            state["created_at"] = min(recovered["created_at"], salvaged["created_at"])
        if salvaged.get("deployments_triggered") and not recovered.get("deployments_triggered"):
            state["deployments_triggered"] = salvaged["deployments_triggered"]
        warnings.warn(
            f"quantlab: the lab state {self.path} was unusable ({problem}); {where}. "
            f"The state was rebuilt from the hub's deployments ledger "
            f"({len(state['deployments_triggered'])} deployments, invocation_count {state['invocation_count']}).",
            StateWarning, stacklevel=4,
        )
        if aside is None:
            return state
        self._write(state)
        return state

    def _write(self, state: Mapping[str, Any]) -> None:
        atomic_write_text(self.path, json.dumps(state, indent=2, default=str))

    # -- public ---------------------------------------------------------------------------
    def read(self) -> dict[str, Any]:
        """The state as it is on disk now (repaired first if it was unusable)."""
        with self._locked():
            return self._load()

    def update(self, change: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
        """Apply ``change(state)`` to the state on disk, under the lock; return the new state."""
        with self._locked():
            state = self._load()
            change(state)
            self._write(state)
            return state

    def touch(self, deployment: Mapping[str, Any] | None = None,
              connections: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Count one invocation (and record ``deployment``, and this process's ``connections``).

        >>> import tempfile, pathlib
        >>> st = LabState(pathlib.Path(tempfile.mkdtemp()) / "state.json")
        >>> len(st.touch(deployment={"deployment_id": "1"})["deployments_triggered"])
        1
        """
        def change(state: dict[str, Any]) -> None:
            state["last_activity"] = _now()
            state["invocation_count"] = int(state.get("invocation_count", 0)) + 1
            if deployment is not None:
                state.setdefault("deployments_triggered", []).append(dict(deployment))
            if connections:
                merged = dict(state.get("mcp_connections") or {})
                for name, snap in connections.items():
                    merged[name] = {**dict(snap), "lab_pid": os.getpid()}
                state["mcp_connections"] = merged

        return self.update(change)


def state_from_ledger(events: Any, broker: str | None = None) -> dict[str, Any]:
    """What the deployments ledger (``hub.deployments()``, one row per event) says about the state:
    ``created_at`` (the first event) and ``deployments_triggered`` (each answered deploy, in order).

    >>> import pandas as pd
    >>> rows = pd.DataFrame([{"strategy_name": "S", "status": "pending", "triggered_at": "2026-01-01T00:00:00+00:00"},
    ...                      {"strategy_name": "S", "status": "running", "broker_deployment_id": "7",
    ...                       "triggered_at": "2026-01-01T00:00:00+00:00"}])
    >>> [d["deployment_id"] for d in state_from_ledger(rows)["deployments_triggered"]]
    ['7']
    """
    if events is None or len(events) == 0:
        return {}
    out: dict[str, Any] = {}
    records = events.to_dict("records") if hasattr(events, "to_dict") else list(events)

    def text(v: Any) -> Any:
        if v is None or (isinstance(v, float) and v != v):
            return None
        return v.isoformat(timespec="seconds") if hasattr(v, "isoformat") else v

    times = [text(r.get("triggered_at")) for r in records if text(r.get("triggered_at"))]
    if times:
        out["created_at"] = min(str(t) for t in times)
    deps = []
    for r in records:
        if r.get("status") not in ("running", "failed"):
            continue  # pending comes before the broker answered; stopped is not a deployment being triggered
        if broker is not None and text(r.get("broker")) not in (None, broker):
            continue
        deps.append({
            "deployment_id": text(r.get("broker_deployment_id")), "strategy_name": text(r.get("strategy_name")),
            "status": r.get("status"), "commit": text(r.get("commit")), "symbol": text(r.get("symbol")),
            "timeframe": text(r.get("timeframe")), "volume": text(r.get("volume")), "broker": text(r.get("broker")),
            "error": text(r.get("error")), "forced": bool(text(r.get("forced")) or False),
            "triggered_at": text(r.get("triggered_at")), "existing": False, "rebuilt_from": "ledger",
        })
    out["deployments_triggered"] = deps
    return out


class HubInUseError(RuntimeError):
    """Another process runs a lab with embedded servers on this hub (``.pid``, ``.command`` name it)."""

    def __init__(self, message: str, pid: int | None = None, command: str | None = None) -> None:
        super().__init__(message)
        self.pid = pid
        self.command = command


class HomeLock:
    """An exclusive, process-lifetime claim on a lab home (``<home>/lab.lock``: pid, command line, start time).

    The embedded broker serves one database from one process; a second lab on the same hub
    would start a second broker that is refused, after retries. Claiming the home first
    says at once who has it. The claim ends with :meth:`release` or when the process exits.

    >>> import tempfile
    >>> lock = HomeLock.acquire(tempfile.mkdtemp()); lock.release()
    """

    def __init__(self, path: Path, fd: int) -> None:
        self.path = path
        self._fd: int | None = fd

    def __repr__(self) -> str:
        return f"HomeLock({str(self.path)!r}, held={self._fd is not None})"

    @classmethod
    def acquire(cls, home: str | os.PathLike[str], hub: str | os.PathLike[str] | None = None) -> "HomeLock":
        import fcntl
        import sys

        path = Path(home) / "lab.lock"
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            try:
                info = json.loads(os.pread(fd, 65536, 0).decode("utf-8", "replace") or "{}")
            except ValueError:
                info = {}
            os.close(fd)
            pid = info.get("pid")
            command = info.get("command")
            since = info.get("started")
            where = hub or home
            raise HubInUseError(
                f"the hub {where} is in use by another lab: process {pid or '?'}"
                + (f" ({command})" if command else "") + (f", open since {since}" if since else "")
                + ". Close that lab (lab.close() or restart its kernel), or share servers between the two: "
                "run `quantlab broker start` once and give both labs a config whose 'broker' is that daemon "
                "(Lab.start(hub, config=...)).",
                pid=pid, command=command,
            ) from None
        record = {"pid": os.getpid(), "command": " ".join([sys.executable, *sys.argv])[:300], "started": _now()}
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(record).encode("utf-8"), 0)
        return cls(path, fd)

    def release(self) -> None:
        """Give the home up (idempotent)."""
        fd, self._fd = self._fd, None
        if fd is not None:
            with contextlib.suppress(OSError):
                os.ftruncate(fd, 0)
            os.close(fd)
