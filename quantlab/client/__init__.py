"""quantlab.client: call MCP servers from notebook cells, papermill runs and plain scripts.

- :class:`AsyncMCPHub`: the async core. Named connections to several MCP servers
  (stdio subprocesses or streamable HTTP), retry with exponential backoff, per-call
  timeouts, argument checks against each tool's input schema, automatic reconnect
  after a server dies, and the hub's state (``hub.state()``).
- :class:`MCPHub`: the same API, blocking. It runs the core on one dedicated
  event-loop thread, so it works inside a running Jupyter kernel without
  nest-asyncio, from many threads at once, and survives ``Ctrl-C``.

Servers are configured in the ``mcpServers`` shape MCP users already write, from a dict,
a JSON file, or ``quantlab.toml`` / ``pyproject.toml [tool.quantlab]``; an entry's ``on_connect``
list of tool calls runs after every (re)connect (``${VAR}`` read from the environment then,
never stored or shown). Results wrapped as ``{"result": x}`` (by the MCP SDK or FastMCP) come
back as ``x``.

Errors (all in this module)::

    ClientError
    ├── TransportError
    │   └── ConnectError
    ├── TimeoutError          (also builtins.TimeoutError)
    ├── ProtocolError
    │   ├── ArgumentsError    (also ValueError)
    │   └── ToolNotFoundError (also LookupError)
    ├── ToolError
    └── ServerNotFoundError   (also KeyError)

Example
-------
>>> import sys
>>> from quantlab.client import MCPHub, ToolError
>>> cfg = {"mcpServers": {"time": {"command": sys.executable, "args": ["-m", "mcp_server_time"]}}}
>>> with MCPHub.from_config(cfg) as hub:
...     sorted(t["name"] for t in hub.tools("time"))
['convert_time', 'get_current_time']
"""
from __future__ import annotations

from ._config import OnConnectCall, ServerConfig, find_config_file, load_config
from ._core import AsyncMCPHub, ConnectReport, ConnectResult, backoff_delays, wraps_result
from ._errors import (
    ArgumentsError,
    ClientError,
    ConnectError,
    ProtocolError,
    ServerNotFoundError,
    TimeoutError,
    ToolError,
    ToolNotFoundError,
    TransportError,
)
from ._sync import MCPHub
from ._transports import HttpTransport, StdioTransport, Transport, register_transport

__all__ = [
    "AsyncMCPHub",
    "MCPHub",
    "ServerConfig",
    "OnConnectCall",
    "load_config",
    "wraps_result",
    "find_config_file",
    "backoff_delays",
    "ConnectResult",
    "ConnectReport",
    "Transport",
    "StdioTransport",
    "HttpTransport",
    "register_transport",
    "ClientError",
    "TransportError",
    "ConnectError",
    "TimeoutError",
    "ProtocolError",
    "ArgumentsError",
    "ToolNotFoundError",
    "ToolError",
    "ServerNotFoundError",
]
