"""Command line of the backtest MCP server.

Example
-------
$ python -m quantlab.servers.backtest --runs runs                      # stdio (default)
$ python -m quantlab.servers.backtest --runs runs --data-root ~/data --http 8765 --token s3cret
"""
from __future__ import annotations

import argparse
import hmac
import logging
import os
import sys
from typing import Any

__all__ = ["main", "build_parser", "BearerTokenMiddleware"]


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``python -m quantlab.servers.backtest``."""
    from pathlib import Path

    home = Path(os.environ.get("QUANTLAB_HOME") or Path.home() / ".quantlab").expanduser()
    p = argparse.ArgumentParser(
        prog="python -m quantlab.servers.backtest",
        description="quantlab backtest MCP server: run strategy code on data references, keep the runs on disk.",
    )
    p.add_argument("--runs", default=str(home / "runs"), help="runs directory (runs, uploads); default: %(default)s")
    p.add_argument("--data-root", default=None, help="directory whose files can be used as data 'file:<relative path>'")
    p.add_argument("--http", type=int, metavar="PORT", default=None, help="serve streamable HTTP on 127.0.0.1:PORT (path /mcp) instead of stdio")
    p.add_argument("--host", default="127.0.0.1", help="HTTP bind address (default %(default)s; keep it local unless you set --token)")
    p.add_argument("--token", default=os.environ.get("QUANTLAB_BACKTEST_TOKEN"), help="HTTP: require 'Authorization: Bearer TOKEN' (default: $QUANTLAB_BACKTEST_TOKEN)")
    p.add_argument("--workers", type=int, default=2, help="worker processes running strategies (default %(default)s)")
    p.add_argument("--memory-mb", type=int, default=2048, help="address-space limit per worker in MB, 0 = none (default %(default)s)")
    p.add_argument("--warm-after", type=float, default=0.5,
                   help="seconds after start-up before the workers are started (default %(default)s): lets a client "
                   "that spawns several servers get them all initialized first")
    p.add_argument("--log-level", default="WARNING", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    return p


class BearerTokenMiddleware:
    """ASGI middleware: HTTP requests must carry ``Authorization: Bearer <token>``.

    >>> app = BearerTokenMiddleware(inner_app, "s3cret")  # doctest: +SKIP
    """

    def __init__(self, app: Any, token: str):
        self.app = app
        self._expected = f"Bearer {token}".encode()

    def __repr__(self) -> str:
        return "BearerTokenMiddleware(token=***)"

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http":
            got = dict(scope.get("headers") or []).get(b"authorization", b"")
            if not hmac.compare_digest(got, self._expected):
                body = b'{"error":"unauthorized: send Authorization: Bearer <token> (the server was started with --token)"}'
                await send({"type": "http.response.start", "status": 401, "headers": [
                    (b"content-type", b"application/json"), (b"www-authenticate", b"Bearer")]})
                await send({"type": "http.response.body", "body": body})
                return
        await self.app(scope, receive, send)


async def _serve(args: argparse.Namespace) -> None:
    from quantlab.servers.backtest.server import build_server

    mcp, backend = build_server(
        args.runs, data_root=args.data_root, workers=args.workers, memory_mb=args.memory_mb or None,
        log_level=args.log_level,
    )
    await backend.pool.start(delay=args.warm_after)
    try:
        if args.http is None:
            await mcp.run_stdio_async()
        else:
            import uvicorn

            app = mcp.streamable_http_app(host=args.host, max_request_body_size=512 * 1024 * 1024)
            if args.token:
                app = BearerTokenMiddleware(app, args.token)
            config = uvicorn.Config(app, host=args.host, port=args.http, log_level=args.log_level.lower())
            print(f"quantlab backtest server: http://{args.host}:{args.http}/mcp (runs: {backend.runs_dir})", file=sys.stderr, flush=True)
            await uvicorn.Server(config).serve()
    finally:
        await backend.pool.close()


def main(argv: list[str] | None = None) -> int:
    """Run the backtest server until stdin closes (stdio) or it is interrupted (HTTP)."""
    args = build_parser().parse_args(argv)
    if args.http is not None and args.host not in ("127.0.0.1", "localhost", "::1") and not args.token:
        print("refusing to serve on a non-local address without --token", file=sys.stderr)
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
