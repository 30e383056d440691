"""The backtest MCP server (``python -m quantlab.servers.backtest``).

Runs strategy code in worker processes (timeout, memory limit), stores runs on
disk, accepts uploaded data. See :mod:`quantlab.servers.backtest.server` for the
tools and :func:`main` for the command line.

Example
-------
$ python -m quantlab.servers.backtest --runs ~/.quantlab/runs               # stdio
$ python -m quantlab.servers.backtest --runs runs --http 8765 --token-file t  # shared, HTTP (bearer token)
"""
from __future__ import annotations

__all__ = ["build_server", "main"]


def __getattr__(name: str):
    if name == "build_server":
        from quantlab.servers.backtest.server import build_server

        return build_server
    if name == "main":
        from quantlab.servers.backtest.__main__ import main

        return main
    raise AttributeError(f"module 'quantlab.servers.backtest' has no attribute {name!r}")
