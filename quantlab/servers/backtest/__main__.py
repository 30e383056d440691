"""Command line of the backtest MCP server.

Example
-------
$ python -m quantlab.servers.backtest --runs runs                      # stdio (default)
$ python -m quantlab.servers.backtest --runs runs --data-root ~/data --http 8765   # token in runs/backtest.token
"""
from __future__ import annotations

import argparse
import logging
import os
import sys

__all__ = ["main", "build_parser"]


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``python -m quantlab.servers.backtest``."""
    from quantlab._util import quantlab_home

    home = quantlab_home()
    p = argparse.ArgumentParser(
        prog="python -m quantlab.servers.backtest",
        description="quantlab backtest MCP server: run strategy code on data references, keep the runs on disk.",
    )
    p.add_argument("--runs", default=str(home / "runs"), help="runs directory (runs, uploads); default: %(default)s")
    p.add_argument("--data-root", default=None, help="directory whose files can be used as data 'file:<relative path>'")
    p.add_argument("--http", type=int, metavar="PORT", default=None, help="serve streamable HTTP on 127.0.0.1:PORT (path /mcp) instead of stdio")
    p.add_argument("--host", default="127.0.0.1", help="HTTP bind address (default %(default)s)")
    p.add_argument("--token", default=None, help="HTTP bearer token (visible in `ps`: prefer --token-file or $QUANTLAB_BACKTEST_TOKEN)")
    p.add_argument("--token-file", default=None, help="HTTP: file with the bearer token; generated (mode 0600) if missing. "
                   "Default: $QUANTLAB_BACKTEST_TOKEN if set, else <runs>/backtest.token")
    p.add_argument("--workers", type=int, default=2, help="worker processes running strategies (default %(default)s)")
    p.add_argument("--memory-mb", type=int, default=2048, help="address-space limit per worker in MB, 0 = none (default %(default)s)")
    p.add_argument("--warm-after", type=float, default=0.5,
                   help="seconds after start-up before the workers are started (default %(default)s): lets a client "
                   "that spawns several servers get them all initialized first")
    p.add_argument("--log-level", default="WARNING", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    return p


async def _serve(args: argparse.Namespace) -> None:
    from pathlib import Path

    from quantlab.servers.backtest.server import build_server

    mcp = build_server(
        args.runs, data_root=args.data_root, workers=args.workers, memory_mb=args.memory_mb or None,
        warm_after=args.warm_after, log_level=args.log_level, auth_token=getattr(args, "resolved_token", None),
    )
    if args.http is None:
        await mcp.run_stdio_async()
    else:
        import uvicorn

        app = mcp.streamable_http_app(host=args.host, max_request_body_size=512 * 1024 * 1024)
        config = uvicorn.Config(app, host=args.host, port=args.http, log_level=args.log_level.lower())
        where = "given with --token" if args.token_source is None else f"from {args.token_source}"
        print(f"quantlab backtest server: http://{args.host}:{args.http}/mcp (runs: {Path(args.runs).expanduser().resolve()}; "
              f"bearer token {where})", file=sys.stderr, flush=True)
        await uvicorn.Server(config).serve()


def main(argv: list[str] | None = None) -> int:
    """Run the backtest server until stdin closes (stdio) or it is interrupted (HTTP)."""
    args = build_parser().parse_args(argv)
    if args.http is not None:
        # it runs code: over HTTP it never serves without a bearer token (generated into a 0600 file if none is given)
        from pathlib import Path

        from quantlab.servers.auth import resolve_token

        try:
            args.resolved_token, args.token_source = resolve_token(
                args.token, args.token_file, env="QUANTLAB_BACKTEST_TOKEN",
                default_file=Path(args.runs).expanduser() / "backtest.token")
        except (OSError, ValueError) as exc:
            print(f"quantlab backtest server: no bearer token: {exc}", file=sys.stderr)
            return 2
    logging.basicConfig(level=args.log_level, stream=sys.stderr, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    import anyio

    try:
        anyio.run(_serve, args)
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
