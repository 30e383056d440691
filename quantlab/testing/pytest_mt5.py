"""pytest fixtures running the real public MT5 MCP server (``mt5mcp``) on the simulated terminal.

Use them from a ``conftest.py``::

    from quantlab.testing.pytest_mt5 import mt5mcp, mt5mcp_entry, mt5mcp_config  # noqa: F401

* ``mt5mcp`` (session): the path of the ``mt5mcp`` console script, building its venv on first use
  (needs the package index once; skipped with the reason if it cannot be built and ``CI`` is unset).
* ``mt5mcp_entry`` (function): ``mt5mcp_entry(account="netting"|"hedging", speed=0.0, login=True)`` ->
  an ``mcpServers`` entry with ``on_connect`` initialize/login; sets ``MT5SIM_PASSWORD`` for the test.
* ``mt5mcp_config`` (function): ``mt5mcp_config(account=..., **kw)`` -> a ``Lab.start(config=...)``
  config with quantlab's backtest server and ``broker`` = mt5mcp.
"""
from __future__ import annotations

import os

import pytest

from . import mt5 as _mt5


@pytest.fixture(scope="session")
def mt5mcp():
    try:
        return _mt5.ensure_mt5mcp()
    except (RuntimeError, OSError) as exc:
        if os.environ.get("CI"):
            raise
        pytest.skip(f"cannot build the mt5mcp environment here: {exc}")


@pytest.fixture
def mt5mcp_entry(mt5mcp, monkeypatch):
    monkeypatch.setenv("MT5SIM_PASSWORD", _mt5.SIM_PASSWORD)

    def make(**kwargs):
        return _mt5.mt5mcp_entry(mt5mcp, **kwargs)

    return make


@pytest.fixture
def mt5mcp_config(mt5mcp_entry, tmp_path):
    def make(**kwargs):
        return _mt5.lab_config(tmp_path / "runs", mt5mcp_entry(**kwargs))

    return make
