"""``quantlab servers``: list the configured MCP servers, connect to and ping each, show tools and latency.

Servers come from ``--config PATH`` (a ``{"mcpServers": ...}`` JSON or TOML file), else
``quantlab.toml`` / ``pyproject.toml [tool.quantlab]`` in the current directory, else the
embedded defaults (quantlab's own backtest and broker servers). A server that fails to
start is shown with its error (and the end of its stderr); the others are still listed.
Exit status: 0 when every server answered, 1 otherwise.

Examples
  quantlab servers
  quantlab servers --config mcp.json --json
"""
from __future__ import annotations

import argparse
import json
import sys
from typing import Any

__all__ = ["register", "run", "probe"]


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``quantlab servers`` to the top-level parser."""
    parser = subparsers.add_parser(
        "servers",
        help="list configured MCP servers, ping each, show tools and latency",
        description=__doc__.split("Examples")[0].strip(),
        epilog="Examples:\n  quantlab servers\n  quantlab servers --config mcp.json --json",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--config", metavar="PATH", default=None,
                        help="mcpServers JSON/TOML file (default: ./quantlab.toml, ./pyproject.toml, else the embedded servers)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.add_argument("--timeout", type=float, default=20.0, metavar="S",
                        help="seconds each server may take to start and initialize (default 20)")
    parser.add_argument("--retries", type=int, default=0, metavar="N",
                        help="connection retries per server, with 1 s, 2 s, 4 s ... backoff (default 0)")
    parser.add_argument("--debug", action="store_true", help="show the full traceback on errors")
    parser.set_defaults(func=run)


def _source(config: str | None) -> tuple[dict[str, Any], str]:
    from quantlab.client import find_config_file, load_config

    if config:
        return {"mcpServers": {k: v.to_entry() for k, v in load_config(config).items()}}, config
    found = find_config_file()
    if found is not None:
        servers = load_config(found)
        if servers:
            return {"mcpServers": {k: v.to_entry() for k, v in servers.items()}}, str(found)
    from quantlab.lab.defaults import embedded_servers

    return embedded_servers(), "embedded defaults (no quantlab.toml / pyproject.toml [tool.quantlab] here)"


def probe(config: dict[str, Any], *, timeout: float = 20.0, retries: int = 0) -> list[dict[str, Any]]:
    """Connect to every server in ``config`` at once, ping each; one row per server.

    >>> import sys
    >>> rows = probe({"mcpServers": {"time": {"command": sys.executable, "args": ["-m", "mcp_server_time"]}}})
    >>> rows[0]["ok"], rows[0]["tools"]
    (True, ['convert_time', 'get_current_time'])
    """
    from quantlab.client import MCPHub

    rows: list[dict[str, Any]] = []
    with MCPHub.from_config(config, max_retries=retries, connect_timeout=timeout) as hub:
        report = hub.connect_all()
        for name, res in report.items():
            cfg = hub.aio.server_config(name)
            row: dict[str, Any] = {
                "server": name, "ok": res.ok, "transport": cfg.transport, "target": cfg.target,
                "connect_s": round(res.seconds, 3), "latency_ms": None, "tools": sorted(res.tools), "error": None,
            }
            if res.ok:
                try:
                    row["latency_ms"] = round(min(hub.ping(name) for _ in range(3)), 3)
                    row["tools"] = sorted(t["name"] for t in hub.tools(name))
                except Exception as exc:  # noqa: BLE001 - shown in the table, never a crash
                    row["ok"], row["error"] = False, str(exc)
            else:
                row["error"] = str(res.error)
            rows.append(row)
    return rows


def run(args: argparse.Namespace) -> int:
    """Entry point of ``quantlab servers``."""
    config, origin = _source(args.config)
    names = list(config.get("mcpServers", {}))
    if not names:
        print(f"no MCP servers configured in {origin}", file=sys.stderr)
        return 1
    if not args.json:
        print(f"config: {origin}\nconnecting to {len(names)} server(s): {', '.join(names)} ...", file=sys.stderr)
    rows = probe(config, timeout=args.timeout, retries=args.retries)
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        from quantlab.client._state import text_tables

        table = [
            {
                "server": r["server"],
                "status": "ok" if r["ok"] else "FAILED",
                "transport": r["transport"],
                "latency ms": "" if r["latency_ms"] is None else f"{r['latency_ms']:.2f}",
                "start s": f"{r['connect_s']:.2f}",
                "tools": len(r["tools"]),
                "tool names": ", ".join(r["tools"]) if r["ok"] else (r["error"] or "").splitlines()[0],
            }
            for r in rows
        ]
        print(text_tables([("MCP servers", table)], max_width=400))
        for r in rows:
            if not r["ok"]:
                print(f"\n{r['server']} FAILED ({r['target']}):\n{r['error']}")
    return 0 if all(r["ok"] for r in rows) else 1
