"""Test support shipped with quantlab (like ``numpy.testing``): things tests of quantlab and of
projects built on it need, that are not part of the toolkit's own API.

* :mod:`quantlab.testing.mt5` - the public MT5 MCP server (``mt5mcp``) running on Linux against a
  simulated ``MetaTrader5`` terminal, and ``mcpServers`` entries / ``Lab.start`` configs for it.
* :mod:`quantlab.testing.pytest_mt5` - pytest fixtures over it (``mt5mcp``, ``mt5mcp_entry``,
  ``mt5mcp_config``).
"""
