"""MetaTrader 5 constants, with the values of the official ``MetaTrader5`` Python package.

The broker speaks MT5's dialect, so every number a client sees (order types,
trade actions, return codes, timeframes, deal entries) is the one MT5 uses.

Example
-------
>>> ORDER_TYPE_BUY, ORDER_TYPE_SELL_STOP, TRADE_ACTION_DEAL, TRADE_RETCODE_DONE
(0, 5, 1, 10009)
>>> retcode_name(10014)
'TRADE_RETCODE_INVALID_VOLUME'
>>> TIMEFRAMES["H1"]
16385
"""
from __future__ import annotations

# -- order types (ENUM_ORDER_TYPE) -------------------------------------------------
ORDER_TYPE_BUY = 0
ORDER_TYPE_SELL = 1
ORDER_TYPE_BUY_LIMIT = 2
ORDER_TYPE_SELL_LIMIT = 3
ORDER_TYPE_BUY_STOP = 4
ORDER_TYPE_SELL_STOP = 5
ORDER_TYPE_BUY_STOP_LIMIT = 6
ORDER_TYPE_SELL_STOP_LIMIT = 7
ORDER_TYPE_CLOSE_BY = 8

# -- trade request actions (ENUM_TRADE_REQUEST_ACTIONS) -----------------------------
TRADE_ACTION_DEAL = 1
TRADE_ACTION_PENDING = 5
TRADE_ACTION_SLTP = 6
TRADE_ACTION_MODIFY = 7
TRADE_ACTION_REMOVE = 8
TRADE_ACTION_CLOSE_BY = 10

# -- filling / time types ----------------------------------------------------------
ORDER_FILLING_FOK = 0
ORDER_FILLING_IOC = 1
ORDER_FILLING_RETURN = 2
ORDER_FILLING_BOC = 3
ORDER_TIME_GTC = 0
ORDER_TIME_DAY = 1
ORDER_TIME_SPECIFIED = 2
ORDER_TIME_SPECIFIED_DAY = 3

# -- order states (ENUM_ORDER_STATE) -----------------------------------------------
ORDER_STATE_STARTED = 0
ORDER_STATE_PLACED = 1
ORDER_STATE_CANCELED = 2
ORDER_STATE_PARTIAL = 3
ORDER_STATE_FILLED = 4
ORDER_STATE_REJECTED = 5
ORDER_STATE_EXPIRED = 6

# -- reasons -------------------------------------------------------------------------
ORDER_REASON_CLIENT = 0
ORDER_REASON_EXPERT = 3
ORDER_REASON_SL = 4
ORDER_REASON_TP = 5
ORDER_REASON_SO = 6
DEAL_REASON_CLIENT = 0
DEAL_REASON_EXPERT = 3
DEAL_REASON_SL = 4
DEAL_REASON_TP = 5
DEAL_REASON_SO = 6
POSITION_REASON_CLIENT = 0
POSITION_REASON_EXPERT = 3

# -- deals and positions -------------------------------------------------------------
DEAL_TYPE_BUY = 0
DEAL_TYPE_SELL = 1
DEAL_TYPE_BALANCE = 2
DEAL_ENTRY_IN = 0
DEAL_ENTRY_OUT = 1
DEAL_ENTRY_INOUT = 2
DEAL_ENTRY_OUT_BY = 3
POSITION_TYPE_BUY = 0
POSITION_TYPE_SELL = 1

# -- account -------------------------------------------------------------------------
ACCOUNT_TRADE_MODE_DEMO = 0
ACCOUNT_MARGIN_MODE_RETAIL_NETTING = 0
ACCOUNT_MARGIN_MODE_EXCHANGE = 1
ACCOUNT_MARGIN_MODE_RETAIL_HEDGING = 2
ACCOUNT_STOPOUT_MODE_PERCENT = 0

# -- symbols -------------------------------------------------------------------------
SYMBOL_CALC_MODE_FOREX = 0
SYMBOL_CALC_MODE_CFD = 2
SYMBOL_TRADE_MODE_FULL = 4
SYMBOL_TRADE_EXECUTION_MARKET = 2
SYMBOL_FILLING_FOK = 1
SYMBOL_FILLING_IOC = 2

# -- trade server return codes (TRADE_RETCODE_*) -------------------------------------
TRADE_RETCODE_REQUOTE = 10004
TRADE_RETCODE_REJECT = 10006
TRADE_RETCODE_CANCEL = 10007
TRADE_RETCODE_PLACED = 10008
TRADE_RETCODE_DONE = 10009
TRADE_RETCODE_DONE_PARTIAL = 10010
TRADE_RETCODE_ERROR = 10011
TRADE_RETCODE_TIMEOUT = 10012
TRADE_RETCODE_INVALID = 10013
TRADE_RETCODE_INVALID_VOLUME = 10014
TRADE_RETCODE_INVALID_PRICE = 10015
TRADE_RETCODE_INVALID_STOPS = 10016
TRADE_RETCODE_TRADE_DISABLED = 10017
TRADE_RETCODE_MARKET_CLOSED = 10018
TRADE_RETCODE_NO_MONEY = 10019
TRADE_RETCODE_PRICE_CHANGED = 10020
TRADE_RETCODE_PRICE_OFF = 10021
TRADE_RETCODE_INVALID_EXPIRATION = 10022
TRADE_RETCODE_ORDER_CHANGED = 10023
TRADE_RETCODE_TOO_MANY_REQUESTS = 10024
TRADE_RETCODE_NO_CHANGES = 10025
TRADE_RETCODE_SERVER_DISABLES_AT = 10026
TRADE_RETCODE_CLIENT_DISABLES_AT = 10027
TRADE_RETCODE_LOCKED = 10028
TRADE_RETCODE_FROZEN = 10029
TRADE_RETCODE_INVALID_FILL = 10030
TRADE_RETCODE_CONNECTION = 10031
TRADE_RETCODE_ONLY_REAL = 10032
TRADE_RETCODE_LIMIT_ORDERS = 10033
TRADE_RETCODE_LIMIT_VOLUME = 10034
TRADE_RETCODE_INVALID_ORDER = 10035
TRADE_RETCODE_POSITION_CLOSED = 10036
TRADE_RETCODE_INVALID_CLOSE_VOLUME = 10038
TRADE_RETCODE_CLOSE_ORDER_EXIST = 10039
TRADE_RETCODE_LIMIT_POSITIONS = 10040
TRADE_RETCODE_REJECT_CANCEL = 10041
TRADE_RETCODE_LONG_ONLY = 10042
TRADE_RETCODE_SHORT_ONLY = 10043
TRADE_RETCODE_CLOSE_ONLY = 10044
TRADE_RETCODE_FIFO_CLOSE = 10045
TRADE_RETCODE_HEDGE_PROHIBITED = 10046

# -- terminal/API result codes (mt5.last_error()) ------------------------------------
RES_S_OK = 1
RES_E_FAIL = -1
RES_E_INVALID_PARAMS = -2
RES_E_NO_MEMORY = -3
RES_E_NOT_FOUND = -4
RES_E_INVALID_VERSION = -5
RES_E_AUTH_FAILED = -6
RES_E_UNSUPPORTED = -7
RES_E_AUTO_TRADING_DISABLED = -8
RES_E_INTERNAL_FAIL = -10000
RES_E_INTERNAL_FAIL_SEND = -10001
RES_E_INTERNAL_FAIL_RECEIVE = -10002
RES_E_INTERNAL_FAIL_INIT = -10003
RES_E_INTERNAL_FAIL_CONNECT = -10004
RES_E_INTERNAL_FAIL_TIMEOUT = -10005

# -- timeframes (TIMEFRAME_*): name -> MT5 constant ----------------------------------
TIMEFRAMES: dict[str, int] = {
    "M1": 1, "M2": 2, "M3": 3, "M4": 4, "M5": 5, "M6": 6, "M10": 10, "M12": 12, "M15": 15,
    "M20": 20, "M30": 30,
    "H1": 16385, "H2": 16386, "H3": 16387, "H4": 16388, "H6": 16390, "H8": 16392, "H12": 16396,
    "D1": 16408, "W1": 32769, "MN1": 49153,
}
#: minutes of each timeframe (MN1 is served as 30 days of bars)
TIMEFRAME_MINUTES: dict[str, int] = {
    "M1": 1, "M2": 2, "M3": 3, "M4": 4, "M5": 5, "M6": 6, "M10": 10, "M12": 12, "M15": 15,
    "M20": 20, "M30": 30, "H1": 60, "H2": 120, "H3": 180, "H4": 240, "H6": 360, "H8": 480,
    "H12": 720, "D1": 1440, "W1": 10080, "MN1": 43200,
}

ORDER_TYPES = {k: v for k, v in globals().items() if k.startswith("ORDER_TYPE_")}
TRADE_ACTIONS = {k: v for k, v in globals().items() if k.startswith("TRADE_ACTION_")}
FILLING_TYPES = {k: v for k, v in globals().items() if k.startswith("ORDER_FILLING_")}
TIME_TYPES = {k: v for k, v in globals().items() if k.startswith("ORDER_TIME_")}
RETCODES = {v: k for k, v in globals().items() if k.startswith("TRADE_RETCODE_") or k.startswith("RES_")}


def retcode_name(code: int) -> str:
    """The MT5 name of a return code, e.g. ``10009 -> 'TRADE_RETCODE_DONE'``.

    >>> retcode_name(10019)
    'TRADE_RETCODE_NO_MONEY'
    """
    return RETCODES.get(int(code), f"RETCODE_{code}")


def timeframe_from_minutes(minutes: int) -> str:
    """The timeframe name for an integer number of minutes, the only form the public MT5 MCP
    server accepts (1-6, 10, 12, 15, 20, 30, 60, 120, 180, 240, 360, 480, 720, 1440, 10080, 43200).

    >>> timeframe_from_minutes(60)
    'H1'
    >>> timeframe_from_minutes(16385)
    Traceback (most recent call last):
    ...
    ValueError: Unsupported timeframe: 16385. Supported timeframes (in minutes): 1, 2, 3, 4, 5, 6, 10, 12, 15, 20, 30, 60, 120, 180, 240, 360, 480, 720, 1440, 10080, 43200
    """
    for name, m in TIMEFRAME_MINUTES.items():
        if m == minutes and not isinstance(minutes, bool):
            return name
    supported = ", ".join(str(m) for m in sorted(TIMEFRAME_MINUTES.values()))
    raise ValueError(f"Unsupported timeframe: {minutes}. Supported timeframes (in minutes): {supported}")


def parse_timeframe(tf: int | str) -> str:
    """Normalise a timeframe to its name (``"M1"``, ``"H1"`` ...).

    Accepts the name (``"H1"``, ``"TIMEFRAME_H1"``), the MT5 constant
    (``16385``) or, as the ``mcp_mt5`` server does, minutes (``60``).

    >>> parse_timeframe(60), parse_timeframe(16385), parse_timeframe("m5")
    ('H1', 'H1', 'M5')
    """
    if isinstance(tf, str):
        s = tf.strip().upper().removeprefix("TIMEFRAME_")
        if s in TIMEFRAMES:
            return s
        if s.isdigit():
            return parse_timeframe(int(s))
        raise ValueError(f"unknown timeframe {tf!r}; use one of {', '.join(TIMEFRAMES)} or minutes like 1, 5, 60.")
    if isinstance(tf, bool) or not isinstance(tf, int):
        raise ValueError(f"timeframe must be an int or a name like 'H1', got {tf!r}.")
    for name, const in TIMEFRAMES.items():
        if const == tf:
            return name
    for name, minutes in TIMEFRAME_MINUTES.items():
        if minutes == tf:
            return name
    raise ValueError(f"unknown timeframe {tf!r}; use one of {', '.join(TIMEFRAMES)} or minutes like 1, 5, 60.")
