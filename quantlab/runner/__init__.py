"""quantlab.runner: deployments of stored strategies on any MetaTrader 5 MCP server.

The runner is an MCP server (``python -m quantlab.runner``, or ``python -m
quantlab.servers.runner``) that is itself an MCP client of the broker. It loads a
stored strategy by commit from the assets hub and trades it on every completed bar
with the standard MT5 tools only, evaluating ``signals()`` in one sandboxed
process per deployment. See :mod:`quantlab.runner.core` for the trading rules and
:mod:`quantlab.runner.server` for the tools.

Example
-------
$ python -m quantlab.runner --db runner.db --hub ./assets-hub --broker broker.json
"""
from __future__ import annotations

__all__ = ["Runner", "RunnerError", "MAGIC_BASE", "build_server"]


def __getattr__(name: str):
    if name in ("Runner", "RunnerError", "MAGIC_BASE"):
        from . import core

        return getattr(core, name)
    if name == "build_server":
        from .server import build_server

        return build_server
    raise AttributeError(name)
