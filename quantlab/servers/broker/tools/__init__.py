"""The broker's MCP tools, one module per job, each a top-level typed function.

* :mod:`.terminal` - ``initialize``, ``login``, ``shutdown``, account, terminal, version, last error
* :mod:`.market` - symbols, symbol info and ticks, ``copy_rates_*``, ``copy_ticks_*``
* :mod:`.trading` - ``order_send``, ``order_check``, positions, orders, history
* :mod:`.paper` - the paper-only extras: ``advance``, ``get_clock``

Every tool reads the broker from the session state the server's lifespan hands out
(:class:`~quantlab.servers.broker.tools.common.Session`), never from a global.
"""
from __future__ import annotations

from . import market, paper, terminal, trading

#: the tools of the public MT5 MCP server, in its order
MT5_TOOLS = [
    terminal.initialize, terminal.shutdown, terminal.login, terminal.get_account_info, terminal.get_terminal_info,
    terminal.get_version, market.get_symbols, market.get_symbols_by_group, market.get_symbol_info,
    market.get_symbol_info_tick, market.symbol_select, market.copy_rates_from_pos, market.copy_rates_from_date,
    market.copy_rates_range, market.copy_ticks_from_pos, market.copy_ticks_from_date, market.copy_ticks_range,
    terminal.get_last_error, trading.order_send, trading.order_check, trading.positions_get,
    trading.positions_get_by_ticket, trading.orders_get, trading.orders_get_by_ticket, trading.history_orders_get,
    trading.history_deals_get,
]
#: paper-only extras: the stepped market clock
PAPER_TOOLS = [paper.advance, paper.get_clock]

__all__ = ["MT5_TOOLS", "PAPER_TOOLS"]
