"""A small MCP server used by the client tests (stdio by default, ``--http PORT`` for streamable HTTP).

Run: ``python tests/client/mcp_test_server.py [--http PORT] [--token SECRET] [--fail-start MSG]``.
"""
from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time


def _early_exit() -> None:
    """``--fail-start MSG``: die like a misconfigured server, before the (slow) SDK import."""
    if "--start-delay" in sys.argv:
        time.sleep(float(sys.argv[sys.argv.index("--start-delay") + 1]))
    if "--fail-start" in sys.argv:
        print("test server starting", file=sys.stderr, flush=True)
        print(f"fatal: {sys.argv[sys.argv.index('--fail-start') + 1]}", file=sys.stderr, flush=True)
        sys.exit(3)


if __name__ == "__main__":
    _early_exit()

from mcp.server.mcpserver import MCPServer  # noqa: E402
from mcp.server.mcpserver.exceptions import ToolError

server = MCPServer("quantlab-test")


@server.tool()
def echo(text: str) -> str:
    """Return ``text`` unchanged."""
    return text


@server.tool()
def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


@server.tool()
def stats(values: list[float]) -> dict[str, float]:
    """Count, sum and mean of ``values``."""
    n = len(values)
    return {"n": float(n), "sum": float(sum(values)), "mean": float(sum(values) / n) if n else 0.0}


@server.tool()
async def sleep(seconds: float) -> str:
    """Sleep ``seconds`` then answer."""
    await asyncio.sleep(seconds)
    return f"slept {seconds}"


@server.tool()
def fail(message: str) -> str:
    """Always fail with ``message`` as a tool error."""
    raise ToolError(message)


@server.tool()
def getenv(name: str) -> str:
    """The value of environment variable ``name`` in the server ("" if unset)."""
    return os.environ.get(name, "")


@server.tool()
def pid() -> int:
    """The server's process id."""
    return os.getpid()


def _bearer_app(app, token: str):
    async def guarded(scope, receive, send):
        if scope["type"] == "http":
            headers = dict(scope.get("headers") or [])
            if headers.get(b"authorization", b"").decode() != f"Bearer {token}":
                await send({"type": "http.response.start", "status": 401,
                            "headers": [(b"content-type", b"text/plain")]})
                await send({"type": "http.response.body", "body": b"missing or wrong bearer token"})
                return
        await app(scope, receive, send)

    return guarded


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--http", type=int, default=None)
    parser.add_argument("--token", default=None)
    parser.add_argument("--fail-start", default=None)
    parser.add_argument("--start-delay", type=float, default=0.0)
    args = parser.parse_args()
    print("test server starting", file=sys.stderr, flush=True)
    if args.http is None:
        server.run()
        return
    import uvicorn

    app = server.streamable_http_app()
    if args.token:
        app = _bearer_app(app, args.token)
    uvicorn.run(app, host="127.0.0.1", port=args.http, log_level="warning")


if __name__ == "__main__":
    main()
