"""A tiny MCP server with an MT5-style ``login`` for the ``on_connect`` tests (stdio only).

Run: ``python tests/client/login_server.py``.
"""
from __future__ import annotations

import os

from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError

server = MCPServer("quantlab-test-login")
_SESSION = {"logins": 0}


@server.tool()
def login(login: int, password: str, server: str) -> bool:
    """MT5-style login: True for the tests' password, False for "false"; any other password is
    echoed in the tool error (as careless servers do), so the tests can check the client scrubs it."""
    if password == "s3cret" + "-pw":
        _SESSION["logins"] += 1
        return True
    if password == "false":
        return False
    raise ToolError(f"login {login} on {server} refused for password {password!r}")


@server.tool()
def logins() -> int:
    """How many successful ``login`` calls this server process has seen."""
    return _SESSION["logins"]


@server.tool()
def items(n: int) -> list[int]:
    """``[0, 1, ..., n-1]`` (a list result, which the SDK wraps as ``{"result": [...]}``)."""
    return list(range(n))


@server.tool()
def pid() -> int:
    """The server's process id."""
    return os.getpid()


if __name__ == "__main__":
    server.run()
