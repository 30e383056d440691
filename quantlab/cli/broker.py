"""``quantlab broker start|stop|status``: the paper broker as a background HTTP daemon.

The daemon is ``python -m quantlab.servers.broker --http PORT`` bound to
127.0.0.1 with a bearer token, so deployments outlive a notebook kernel and a
second kernel can see and stop them. Its state folder (``--home``, default
``~/.quantlab/broker``) holds ``broker.pid``, ``broker.token`` (mode 0600),
``broker.json`` (port, url, db, pid) and ``broker.log``; the database defaults
to ``<home>/broker.db``.

Example
-------
$ quantlab broker start --clock accelerated:10
$ quantlab broker status
$ quantlab broker stop
"""
from __future__ import annotations

import argparse
import json
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from quantlab._util import kill_process, pid_alive, quantlab_home  # noqa: F401 - quantlab_home used by cli.paper
from quantlab.servers.auth import private_file

__all__ = ["register", "start", "stop", "status", "default_state_dir"]


def default_state_dir() -> Path:
    """``$QUANTLAB_HOME/broker`` or ``~/.quantlab/broker``."""
    return quantlab_home() / "broker"


def _home(args: Any) -> Path:
    return Path(args.home).expanduser() if getattr(args, "home", None) else default_state_dir()


def _port_open(port: int, timeout: float = 0.3) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout):
            return True
    except OSError:
        return False


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _read_state(home: Path, kind: str = "broker") -> dict[str, Any] | None:
    f = home / f"{kind}.json"
    if not f.is_file():
        return None
    try:
        return json.loads(f.read_text())
    except (OSError, ValueError):
        return None


def _is_daemon(state: dict[str, Any]) -> bool:
    """Whether ``state["pid"]`` is still the broker daemon ``start`` launched: alive, with the broker's
    command line and (when recorded) the same start time. A stale ``broker.json`` whose pid now
    belongs to some other program is not the daemon, and is never signalled."""
    pid = state.get("pid")
    if not pid or not pid_alive(int(pid)):
        return False
    try:
        import psutil

        proc = psutil.Process(int(pid))
        cmdline = proc.cmdline()
        created = proc.create_time()
    except ImportError:  # pragma: no cover - psutil ships with jupyter; without it trust the pid
        return True
    except Exception:  # noqa: BLE001 - psutil.Error: gone, or not ours to inspect
        return False
    if state.get("module", "quantlab.servers.broker") not in cmdline:
        return False
    if state.get("db") and state["db"] not in cmdline:
        return False
    recorded = state.get("create_time")
    return recorded is None or abs(float(recorded) - created) < 1.0


def status(home: str | Path | None = None, kind: str = "broker") -> dict[str, Any]:
    """State of the daemon in ``home``: ``{"running": bool, "pid", "port", "url", "db", "token_file", ...}``.

    >>> status("/tmp/nonexistent-quantlab-home")["running"]
    False
    """
    home = Path(home).expanduser() if home else default_state_dir()
    st = _read_state(home, kind) or {}
    pid = st.get("pid")
    running = bool(pid) and _is_daemon(st) and bool(st.get("port")) and _port_open(int(st["port"]))
    return {"running": running, "home": str(home), **st}


def summary(state: dict[str, Any], timeout: float = 30.0) -> dict[str, Any]:
    """Ask the running daemon for its account and deployments (best effort; ``{"error": ...}`` if it cannot).

    >>> summary({"url": "http://127.0.0.1:9/mcp", "token_file": "/nonexistent"})["error"][:12]
    'cannot reach'
    """
    import asyncio

    async def ask() -> dict[str, Any]:
        import httpx2
        from mcp import Client
        from mcp.client.streamable_http import streamable_http_client

        token = Path(state["token_file"]).read_text().strip()
        async with httpx2.AsyncClient(headers={"Authorization": f"Bearer {token}"}) as h:
            async with Client(streamable_http_client(state["url"], http_client=h)) as c:
                acc = (await c.call_tool("get_account_info", {})).structured_content
                clock = (await c.call_tool("get_clock", {})).structured_content
                names = {t.name for t in (await c.list_tools()).tools}
                deps = None
                if "list_deployments" in names:  # a runner (quantlab paper / runner daemons)
                    res = await c.call_tool("list_deployments", {})
                    deps = None if res.is_error else (res.structured_content or {}).get("result")
        out = {"balance": acc["balance"], "equity": acc["equity"], "margin": acc["margin"], "currency": acc["currency"],
               "clock": clock}
        if deps is not None:
            out["deployments"] = {s: sum(d["status"] == s for d in deps) for s in ("running", "stopped", "failed")}
        return out

    try:
        return asyncio.run(asyncio.wait_for(ask(), timeout))
    except BaseException as exc:  # noqa: BLE001 - status must always answer
        if isinstance(exc, KeyboardInterrupt):
            raise
        return {"error": f"cannot reach the broker at {state.get('url')}: {type(exc).__name__}: {exc}"}


def start(home: str | Path | None = None, *, db: str | None = None, port: int | None = None, clock: str = "stepped",
          extra: list[str] | None = None, timeout: float = 30.0, kind: str = "broker",
          command: list[str] | None = None) -> dict[str, Any]:
    """Start the daemon (or return the running one) and wait until it accepts connections.

    ``kind`` names its files in ``home`` (``<kind>.json``, ``.pid``, ``.token``, ``.log``);
    ``command`` replaces the broker's (``-m MODULE ...`` with ``{port}``, ``{token_file}`` and
    ``{db}`` filled in): ``quantlab runner`` and ``quantlab paper`` start the runner this way."""
    home = Path(home).expanduser() if home else default_state_dir()
    home.mkdir(parents=True, exist_ok=True)
    cur = status(home, kind)
    if cur["running"]:
        cur["already_running"] = True
        return cur
    db = str(Path(db).expanduser().resolve()) if db else str(home / f"{kind}.db")
    port = int(port) if port else _free_port()
    if _port_open(port):
        raise RuntimeError(f"port {port} on 127.0.0.1 is already in use; pass another --port.")
    token_file = home / f"{kind}.token"
    logf = home / f"{kind}.log"
    log = open(private_file(logf), "ab")
    if command is None:
        command = ["-m", "quantlab.servers.broker", "--db", "{db}", "--http", "{port}", "--token-file", "{token_file}",
                   "--clock", clock]
    fill = {"{port}": str(port), "{token_file}": str(token_file), "{db}": db}
    cmd = [sys.executable, *(fill.get(a, a) for a in command), *(extra or [])]
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True, close_fds=True)
    log.close()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            tail = logf.read_text(errors="replace")[-800:]
            raise RuntimeError(f"the {kind} exited with code {proc.returncode}; log {logf}:\n{tail}")
        if _port_open(port) and token_file.is_file():
            break
        time.sleep(0.1)
    else:
        proc.kill()
        raise RuntimeError(f"the {kind} did not open port {port} within {timeout:.0f} s; see {logf}.")
    try:
        import psutil

        create_time: float | None = psutil.Process(proc.pid).create_time()
    except Exception:  # noqa: BLE001 - without psutil the command line check alone guards stop()
        create_time = None
    state = {"pid": proc.pid, "port": port, "url": f"http://127.0.0.1:{port}/mcp", "db": db,
             "token_file": str(token_file), "clock": clock, "started": time.time(), "create_time": create_time,
             "command": cmd, "module": command[1], "kind": kind}
    private_file(home / f"{kind}.pid").write_text(f"{proc.pid}\n")
    private_file(home / f"{kind}.json").write_text(json.dumps(state, indent=1))
    return {"running": True, "home": str(home), "already_running": False, **state}


def stop(home: str | Path | None = None, timeout: float = 10.0, kind: str = "broker") -> dict[str, Any]:
    """Stop the daemon (SIGTERM, then SIGKILL after ``timeout``); its database stays."""
    home = Path(home).expanduser() if home else default_state_dir()
    st = _read_state(home, kind) or {}
    pid = st.get("pid")
    was = bool(pid) and _is_daemon(st)  # a stale pid now used by another program is left alone
    if was:
        kill_process(int(pid), grace=timeout)
    for name in (f"{kind}.pid", f"{kind}.json"):
        (home / name).unlink(missing_ok=True)
    return {"stopped": was, "pid": pid, "home": str(home), "stale": bool(pid) and not was}


# -- argparse face --------------------------------------------------------------------------
def _cmd_start(args: argparse.Namespace) -> int:
    extra = []
    for flag in ("symbols", "mode", "feed"):
        v = getattr(args, flag, None)
        if v:
            extra += [f"--{flag}", str(v)]
    st = start(_home(args), db=args.db, port=args.port, clock=args.clock, extra=extra)
    if args.json:
        print(json.dumps(st, indent=1))
    else:
        verb = "already running" if st.get("already_running") else "started"
        print(f"broker {verb}: {st['url']} (pid {st['pid']}, db {st['db']}, token in {st['token_file']})")
    return 0


def _cmd_stop(args: argparse.Namespace) -> int:
    st = stop(_home(args))
    if args.json:
        print(json.dumps(st, indent=1))
    else:
        if st["stopped"]:
            print(f"broker stopped (pid {st['pid']})")
        elif st["stale"]:
            print(f"broker was not running (its state file named pid {st['pid']}, which is not the broker now: "
                  "left alone; the stale state file was removed)")
        else:
            print("broker was not running")
    return 0


def _cmd_status(args: argparse.Namespace) -> int:
    st = status(_home(args))
    if st["running"]:
        st["summary"] = summary(st)
    if args.json:
        print(json.dumps(st, indent=1))
    elif st["running"]:
        print(f"broker running: {st['url']} (pid {st['pid']}, db {st['db']}, clock {st.get('clock')}, token in {st['token_file']})")
        sm = st["summary"]
        if "error" in sm:
            print(f"  {sm['error']}")
        else:
            d = sm.get("deployments")
            deps = f"deployments: {d['running']} running, {d['stopped']} stopped, {d['failed']} failed; " if d else ""
            print(f"  balance {sm['balance']:,.2f} {sm['currency']}, equity {sm['equity']:,.2f}, margin {sm['margin']:,.2f}; "
                  f"{deps}market time {sm['clock'].get('time_iso')}")
    else:
        print(f"broker not running (state folder {st['home']})")
    return 0 if st["running"] else 3


def register(subparsers: Any) -> None:
    """Add ``quantlab broker start|stop|status``."""
    p = subparsers.add_parser("broker", help="run the paper-trading broker as a background HTTP daemon",
                              description="Manage the paper broker daemon (MT5-dialect MCP server over HTTP on 127.0.0.1).")
    sub = p.add_subparsers(dest="broker_command", metavar="start|stop|status")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--home", default=None, help="state folder (default $QUANTLAB_HOME/broker or ~/.quantlab/broker)")
    common.add_argument("--json", action="store_true", help="print machine-readable JSON")
    s = sub.add_parser("start", parents=[common], help="start the daemon (no-op if running)")
    s.add_argument("--db", default=None, help="database file (default <home>/broker.db)")
    s.add_argument("--port", type=int, default=None, help="port on 127.0.0.1 (default: a free one)")
    s.add_argument("--clock", default="stepped", help="stepped, realtime or accelerated:N")
    s.add_argument("--symbols", default=None, help="comma-separated symbols (new database only)")
    s.add_argument("--mode", choices=["netting", "hedging"], default=None, help="account mode (new database only)")
    s.add_argument("--feed", default=None, help="synthetic or a folder of CSV/Parquet files (new database only)")
    s.set_defaults(func=_cmd_start)
    sub.add_parser("stop", parents=[common], help="stop the daemon").set_defaults(func=_cmd_stop)
    sub.add_parser("status", parents=[common], help="is the daemon running? (exit code 3 if not)").set_defaults(func=_cmd_status)
    p.set_defaults(func=lambda a: (p.print_help(), 0)[1])
