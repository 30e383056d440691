"""``quantlab paper start|stop|status``, ``quantlab runner start|stop|status``, ``quantlab advance N``.

``quantlab paper start`` runs the runner as a token-protected HTTP daemon on 127.0.0.1 that owns
the paper broker (its stdio child): deployments outlive the kernel and the terminal, they trade
on the paper market's clock (``--clock stepped|realtime|accelerated:N``, chosen at start), and
every other ``quantlab`` command uses this daemon automatically while it runs. ``quantlab
runner start --broker ENTRY.json`` does the same for any MT5-dialect broker (``mt5mcp`` ...).
``quantlab advance N`` steps a stepped paper market N bars; the deployments act on each.

Example
-------
$ quantlab paper start --clock accelerated:5
$ quantlab deploy sma.py --symbol EURUSD
$ quantlab deployments
$ quantlab paper stop
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from . import broker as daemon
from ._common import default_hub, lab_options, open_lab

__all__ = ["register", "paper_home", "runner_home", "running_runner"]


def paper_home() -> Path:
    """``$QUANTLAB_HOME/paper``: the paper daemon's files (runner and broker databases, token, log)."""
    return daemon.quantlab_home() / "paper"


def runner_home() -> Path:
    """``$QUANTLAB_HOME/runner``: the runner daemon's files."""
    return daemon.quantlab_home() / "runner"


def running_runner() -> dict[str, Any] | None:
    """The state of a running paper or runner daemon (paper first), else ``None``."""
    for home, kind in ((paper_home(), "paper"), (runner_home(), "runner")):
        st = daemon.status(home, kind)
        if st["running"]:
            return st
    return None


def _runner_command(home: Path, broker_file: Path, hub: str, clock: str) -> list[str]:
    return ["-m", "quantlab.runner", "--db", "{db}", "--http", "{port}", "--token-file", "{token_file}",
            "--broker", str(broker_file), "--hub", str(Path(hub).expanduser().resolve()), "--clock", clock]


def start_paper(home: Path | None = None, *, clock: str = "stepped", hub: str | None = None, port: int | None = None,
                extra: list[str] | None = None) -> dict[str, Any]:
    """Start the paper daemon (runner + its paper broker) or return the running one."""
    from quantlab.lab.defaults import paper_broker_entry

    home = home or paper_home()
    home.mkdir(parents=True, exist_ok=True)
    entry = paper_broker_entry(home, clock=clock)
    entry["args"] += list(extra or [])
    broker_file = home / "broker_entry.json"
    daemon.private_file(broker_file).write_text(json.dumps(entry))
    return daemon.start(home, port=port, clock=clock, kind="paper",
                        command=_runner_command(home, broker_file, hub or default_hub(),
                                                "stepped" if clock == "stepped" else "live"))


def start_runner(broker: str, home: Path | None = None, *, hub: str | None = None, port: int | None = None,
                 clock: str = "auto") -> dict[str, Any]:
    """Start a runner daemon for the broker entry in ``broker`` (a JSON file: an entry, or mcpServers with 'broker')."""
    home = home or runner_home()
    home.mkdir(parents=True, exist_ok=True)
    return daemon.start(home, port=port, clock=clock, kind="runner",
                        command=_runner_command(home, Path(broker).expanduser().resolve(), hub or default_hub(), clock))


def _print(st: dict[str, Any], what: str, as_json: bool) -> None:
    if as_json:
        print(json.dumps(st, indent=1))
        return
    verb = "already running" if st.get("already_running") else "started"
    print(f"{what} {verb}: {st['url']} (pid {st['pid']}, clock {st.get('clock')}, token in {st['token_file']}); "
          f"quantlab commands use it until `quantlab {what} stop`")


def _stop(home: Path, kind: str, as_json: bool) -> int:
    st = daemon.stop(home, kind=kind)
    print(json.dumps(st) if as_json else (f"{kind} daemon stopped (pid {st['pid']})" if st["stopped"]
                                          else f"{kind} daemon was not running"))
    return 0


def _status(home: Path, kind: str, as_json: bool) -> int:
    st = daemon.status(home, kind)
    if st["running"]:
        st["summary"] = daemon.summary(st)
    if as_json:
        print(json.dumps(st, indent=1))
    elif st["running"]:
        sm = st["summary"]
        print(f"{kind} running: {st['url']} (pid {st['pid']}, clock {st.get('clock')})")
        if "error" in sm:
            print(f"  {sm['error']}")
        else:
            d = sm.get("deployments") or {}
            print(f"  balance {sm['balance']:,.2f} {sm['currency']}, equity {sm['equity']:,.2f}; deployments: "
                  f"{d.get('running', 0)} running, {d.get('stopped', 0)} stopped, {d.get('failed', 0)} failed; "
                  f"market time {(sm.get('clock') or {}).get('time_iso')}")
    else:
        print(f"{kind} not running (state folder {st['home']})")
    return 0 if st["running"] else 3


def register(subparsers: Any) -> None:
    """Add ``quantlab paper``, ``quantlab runner`` and ``quantlab advance``."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--json", action="store_true", help="print machine-readable JSON")

    p = subparsers.add_parser("paper", help="paper trading as a background daemon (runner + paper broker)",
                              description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="paper_command", metavar="start|stop|status")
    s = sub.add_parser("start", parents=[common], help="start the paper daemon (no-op if running)")
    s.add_argument("--clock", default="stepped", help="stepped (quantlab advance N), realtime or accelerated:N (bars/s)")
    s.add_argument("--hub", default=None, help="assets hub deployments load strategies from (default $QUANTLAB_HUB or ./assets-hub)")
    s.add_argument("--port", type=int, default=None, help="port on 127.0.0.1 (default: a free one)")
    s.add_argument("--symbols", default=None, help="comma-separated symbols (new database only)")
    s.add_argument("--mode", choices=["netting", "hedging"], default=None, help="account mode (new database only)")

    def _start(a: argparse.Namespace) -> int:
        extra = [x for flag in ("symbols", "mode") if getattr(a, flag) for x in (f"--{flag}", str(getattr(a, flag)))]
        _print(start_paper(clock=a.clock, hub=a.hub, port=a.port, extra=extra), "paper", a.json)
        return 0

    s.set_defaults(func=_start)
    sub.add_parser("stop", parents=[common], help="stop the paper daemon (deployments keep their state)").set_defaults(
        func=lambda a: _stop(paper_home(), "paper", a.json))
    sub.add_parser("status", parents=[common], help="is it running? (exit code 3 if not)").set_defaults(
        func=lambda a: _status(paper_home(), "paper", a.json))
    p.set_defaults(func=lambda a: (p.print_help(), 0)[1])

    r = subparsers.add_parser("runner", help="the runner as a background daemon for any MT5-dialect broker",
                              description="Manage the runner daemon (deployments on a configured broker).")
    rs = r.add_subparsers(dest="runner_command", metavar="start|stop|status")
    s = rs.add_parser("start", parents=[common], help="start the runner daemon (no-op if running)")
    s.add_argument("--broker", required=True, help="JSON file: the broker's mcpServers entry (or a config naming 'broker')")
    s.add_argument("--hub", default=None, help="assets hub (default $QUANTLAB_HUB or ./assets-hub)")
    s.add_argument("--port", type=int, default=None)
    s.add_argument("--clock", default="auto", help="stepped, live or auto (default)")
    s.set_defaults(func=lambda a: (_print(start_runner(a.broker, hub=a.hub, port=a.port, clock=a.clock), "runner", a.json), 0)[1])
    rs.add_parser("stop", parents=[common], help="stop the runner daemon").set_defaults(
        func=lambda a: _stop(runner_home(), "runner", a.json))
    rs.add_parser("status", parents=[common], help="is it running? (exit code 3 if not)").set_defaults(
        func=lambda a: _status(runner_home(), "runner", a.json))
    r.set_defaults(func=lambda a: (r.print_help(), 0)[1])

    a = subparsers.add_parser("advance", parents=[lab_options(), common],
                              help="step the stepped paper market N bars; deployments act on each",
                              description="Step the stepped paper market N bars (the paper daemon's when it runs).")
    a.add_argument("bars", type=int, help="number of bars")

    def _advance(args: argparse.Namespace) -> int:
        with open_lab(args, backtest=False) as lab:
            res = lab.advance(args.bars)
        print(json.dumps(res.to_dict()) if args.json else repr(res))
        return 0

    a.set_defaults(func=_advance)
