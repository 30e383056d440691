"""Processes: is one alive, and stop one (or its process group) politely, then firmly."""
from __future__ import annotations

import os
import signal
import sys
import time

__all__ = ["pid_alive", "kill_process"]


def pid_alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie does not count: it has exited and waits to be reaped).

    >>> pid_alive(os.getpid())
    True
    """
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except OSError:  # pragma: no cover - e.g. Windows for a pid that is gone
        return False
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            return fh.read().rsplit(b")", 1)[-1].split()[0] != b"Z"
    except (OSError, IndexError):
        return True


def _send(pid: int, sig: int, group: bool) -> bool:
    """Send ``sig``; False when there is nothing left to signal."""
    try:
        if group:
            try:
                os.killpg(pid, sig)
                return True
            except ProcessLookupError:  # not a group leader (or gone): signal the process itself
                pass
        os.kill(pid, sig)
        return True
    except (ProcessLookupError, PermissionError):
        return False


def kill_process(pid: int, grace: float = 1.0, *, group: bool = False) -> bool:
    """Stop ``pid``: SIGTERM, wait up to ``grace`` seconds, then SIGKILL (and wait up to 1 s more).

    ``grace <= 0`` sends SIGKILL at once. ``group=True`` signals the process group that ``pid``
    leads (a child started with ``start_new_session=True`` and its own children), falling back
    to the process alone; when the leader has already exited, what is left of its group is
    killed at once. Returns whether the process itself was running. On Windows it terminates
    the process only.

    >>> import subprocess, sys
    >>> p = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"], start_new_session=True)
    >>> kill_process(p.pid, grace=2, group=True), p.wait() != 0
    (True, True)
    """
    alive = pid_alive(pid)
    if sys.platform == "win32":  # pragma: no cover
        if alive:
            try:
                os.kill(pid, signal.SIGTERM)
            except OSError:
                pass
        return alive
    if not alive:
        if group:  # the leader is gone: its group may still hold children (pool workers); kill those
            try:
                os.killpg(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        return False
    steps = ((signal.SIGKILL, 1.0),) if grace <= 0 else ((signal.SIGTERM, grace), (signal.SIGKILL, 1.0))
    for sig, wait in steps:
        if not _send(pid, sig, group):
            return True
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            if not pid_alive(pid):
                return True
            time.sleep(0.02)
    return True
