"""The paper-trading broker: an MCP server that speaks MetaTrader 5's dialect.

``python -m quantlab.servers.broker --db PATH`` runs it over stdio (``--http PORT``
for streamable HTTP on 127.0.0.1 with a bearer token). The pieces:

* :mod:`.constants` - official MetaTrader5 constant values (order types, actions, retcodes, timeframes)
* :mod:`.feed` - symbol specs and the bar feed (seeded synthetic or CSV/Parquet replay) with its clock cursor
* :mod:`.store` - SQLite (WAL) storage, one transaction per tool call
* :mod:`.book` - :class:`Broker`: account, orders, deals, positions (netting or hedging)
* :mod:`.server` - the MCP tools and resources

Example
-------
>>> from quantlab.servers.broker import Broker
>>> b = Broker.open(":memory:", symbols=["EURUSD"])
>>> b.order_send({"action": 1, "symbol": "EURUSD", "volume": 0.01, "type": 0})["retcode"]
10009
"""
from __future__ import annotations

from .book import Broker, BrokerConfig, TradeError
from .feed import Feed, SymbolSpec

__all__ = ["Broker", "BrokerConfig", "TradeError", "Feed", "SymbolSpec"]
