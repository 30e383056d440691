"""Fixtures of the MT5 tests: the real public MT5 MCP server (mt5mcp) on the simulated terminal, and our paper broker."""
from __future__ import annotations

import sys

import pytest

from quantlab.testing.pytest_mt5 import mt5mcp, mt5mcp_config, mt5mcp_entry  # noqa: F401 - fixtures


@pytest.fixture
def paper_entry(tmp_path):
    """``paper_entry(*args)`` -> an mcpServers entry for quantlab's paper broker over stdio (initialize on connect)."""

    def make(*args: str) -> dict:
        return {"command": sys.executable,
                "args": ["-m", "quantlab.servers.broker", "--db", str(tmp_path / "paper.db"), *args],
                "on_connect": [{"tool": "initialize", "arguments": {"path": "C:/Program Files/MetaTrader 5/terminal64.exe"}}]}

    return make
