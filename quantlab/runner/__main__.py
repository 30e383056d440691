"""``python -m quantlab.runner``: the runner over stdio (default) or token-protected HTTP on 127.0.0.1.

The broker is an ``mcpServers`` entry given as JSON text or a JSON file path
(``{"command": ..., "args": [...]}`` or ``{"url": ..., "headers": {...}}``, with
``on_connect`` calls where the client supports them).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m quantlab.runner", description=__doc__.splitlines()[0])
    p.add_argument("--broker", required=True, help="the broker's mcpServers entry: JSON text or a .json file")
    p.add_argument("--db", required=True, help="SQLite file holding the runner's state (created if missing)")
    p.add_argument("--hub", default=None, help="assets hub the strategies are loaded from (by commit)")
    p.add_argument("--clock", default="auto",
                   help="'stepped' (deployments act when the advance tool steps the paper broker), 'live' (poll the "
                        "broker's market) or 'auto' (stepped if the broker is a stepped paper broker; default)")
    p.add_argument("--poll", type=float, default=1.0, help="seconds between live polls (default 1)")
    p.add_argument("--lookback", type=int, default=300, help="default bars of history signals() sees (default 300)")
    p.add_argument("--timeout", type=float, default=10.0, help="seconds one signals() call may take (default 10)")
    p.add_argument("--no-proxy", action="store_true", help="do not serve the broker's own tools")
    p.add_argument("--http", type=int, default=None, metavar="PORT", help="serve streamable HTTP on 127.0.0.1:PORT/mcp")
    p.add_argument("--token-file", default=None, help="bearer token file for --http (generated if missing)")
    return p


def _entry(text: str) -> dict[str, Any]:
    t = text.strip()
    if not t.startswith("{"):
        t = Path(t).expanduser().read_text()
    entry = json.loads(t)
    if isinstance(entry, dict) and "mcpServers" in entry:
        entry = entry["mcpServers"]["broker"]
    return entry


def _warm() -> None:
    from quantlab.engine.sandbox import warm

    warm()
    import pandas  # noqa: F401 - the frames signals() gets

    import quantlab.hub  # noqa: F401 - strategies are loaded from the hub by commit


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from quantlab.servers.broker.store import DatabaseInUseError, lock_database

    try:
        broker = _entry(args.broker)
        if args.clock not in ("stepped", "live", "auto"):
            raise ValueError(f"--clock must be stepped, live or auto, got {args.clock!r}")
        # one runner per database: a second one would trade the same deployments twice
        _lock = lock_database(args.db, "runner", "quantlab runner status")  # noqa: F841 - held until exit
    except (OSError, ValueError, DatabaseInUseError) as exc:
        print(f"quantlab runner: {exc}", file=sys.stderr)
        return 2
    import os

    from .server import build_server

    token = None
    if args.http is not None:
        from quantlab.servers.auth import resolve_token

        os.umask(0o077)
        token, _ = resolve_token(None, args.token_file, env="QUANTLAB_RUNNER_TOKEN", default_file=f"{args.db}.token")
    server = build_server(broker, db=args.db, hub=args.hub, stepped={"stepped": True, "live": False}.get(args.clock),
                          poll=args.poll, lookback=args.lookback, timeout=args.timeout, proxy=not args.no_proxy,
                          auth_token=token)
    try:
        if args.http is not None:
            from quantlab.servers.broker.server import run_http  # the one HTTP runner of quantlab's servers

            print(f"quantlab runner: http://127.0.0.1:{args.http}/mcp", file=sys.stderr, flush=True)
            # a daemon outlives many deploys: start the sandbox's zygote and import what a deploy needs
            # (the hub's git, pandas) now, beside the server, so the first deploy_strategy does not wait
            # ~1 s for them (a stdio runner lives for one lab or one command: it does this on first use)
            import threading

            threading.Thread(target=_warm, name="runner-warm", daemon=True).start()
            run_http(server, args.http)
        else:
            server.run("stdio")
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
