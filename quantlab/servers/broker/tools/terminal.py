"""Terminal and account tools: ``initialize``, ``login``, ``shutdown``, ``get_account_info``,
``get_terminal_info``, ``get_version``, ``get_last_error`` (names, arguments and results of the
public MT5 MCP server).

The paper terminal is initialized when a session starts, so ``initialize`` is optional here
(and required on the real server); ``login`` succeeds for the paper account's own number.
"""
from __future__ import annotations

from typing import Any

from mcp.server.mcpserver import Context

from quantlab import __version__

from .. import constants as C
from ..book import MAX_COUNT
from ..models import AccountInfo, only
from .common import inline, session

__all__ = ["initialize", "shutdown", "login", "get_account_info", "get_terminal_info", "get_version", "get_last_error"]

_ERRORS = {C.RES_S_OK: "OK", C.RES_E_FAIL: "Generic fail", C.RES_E_INVALID_PARAMS: "Invalid parameters",
           C.RES_E_NOT_FOUND: "Not found"}


@inline
def initialize(path: str, ctx: Context) -> bool:
    """Initialize the MetaTrader 5 terminal (the paper terminal: any path). Call it first, as on the real server.

    Returns True if initialization was successful, False otherwise."""
    s = session(ctx)
    s.initialized = True
    s.last_error = (C.RES_S_OK, "OK")
    return True


@inline
def shutdown(ctx: Context) -> bool:
    """Shut down the connection to the terminal; other tools fail until initialize() is called again."""
    session(ctx).initialized = False
    return True


@inline
def login(login: int, password: str, server: str, ctx: Context) -> bool:
    """Log in to the trading account: True for the paper account's login number (see get_account_info), else False.

    The password is not checked (and never stored) by the paper broker."""
    s = session(ctx)
    broker = s.require()
    ok = int(login) == int(broker.account_info()["login"])
    s.last_error = (C.RES_S_OK, "OK") if ok else (C.RES_E_AUTH_FAILED, "Authorization failed")
    return ok


@inline
def get_account_info(ctx: Context) -> AccountInfo:
    """Information about the trading account: balance, equity, margin, margin_free, margin_level, leverage,
    margin_mode (0 netting, 2 hedging), login ..."""
    return only(AccountInfo, session(ctx).require().account_info())  # type: ignore[return-value]


@inline
def get_terminal_info(ctx: Context) -> dict[str, Any]:
    """Information about the (paper) terminal, MT5 terminal_info fields."""
    s = session(ctx)
    broker = s.require()
    return {"community_account": False, "community_connection": False, "connected": True, "dlls_allowed": False,
            "trade_allowed": True, "tradeapi_disabled": False, "email_enabled": False, "ftp_enabled": False,
            "notifications_enabled": False, "mqid": False, "build": 4000, "maxbars": MAX_COUNT, "codepage": 0,
            "ping_last": 0, "community_balance": 0.0, "retransmission": 0.0, "company": "quantlab",
            "name": "quantlab paper broker", "language": "English", "path": broker.store.path,
            "data_path": broker.store.path, "commondata_path": broker.store.path}


@inline
def get_version(ctx: Context) -> dict[str, Any]:
    """The terminal version: version, build, date."""
    session(ctx).require()
    return {"version": 500, "build": 4000, "date": "1 Jan 2026", "quantlab": __version__}


@inline
def get_last_error(ctx: Context) -> dict[str, Any]:
    """The last error: code and description (1 = OK)."""
    code, message = session(ctx).last_error
    return {"code": code, "description": _ERRORS.get(code, message or "Unknown error")}
