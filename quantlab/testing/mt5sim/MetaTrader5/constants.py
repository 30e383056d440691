"""The constants of the official ``MetaTrader5`` package (same names and values), and its result types:
named tuples for accounts, symbols, ticks, orders, deals and trade results, numpy dtypes for rates and
ticks. The simulated terminal (this package's ``__init__``) re-exports every name.

>>> TIMEFRAME_H1, ORDER_TYPE_SELL, TRADE_RETCODE_DONE
(16385, 1, 10009)
"""
from __future__ import annotations

from collections import namedtuple

import numpy as np

# -- constants (values of the official package) ---------------------------------------
TIMEFRAME_M1, TIMEFRAME_M2, TIMEFRAME_M3, TIMEFRAME_M4, TIMEFRAME_M5, TIMEFRAME_M6 = 1, 2, 3, 4, 5, 6
TIMEFRAME_M10, TIMEFRAME_M12, TIMEFRAME_M15, TIMEFRAME_M20, TIMEFRAME_M30 = 10, 12, 15, 20, 30
TIMEFRAME_H1, TIMEFRAME_H2, TIMEFRAME_H3, TIMEFRAME_H4 = 16385, 16386, 16387, 16388
TIMEFRAME_H6, TIMEFRAME_H8, TIMEFRAME_H12 = 16390, 16392, 16396
TIMEFRAME_D1, TIMEFRAME_W1, TIMEFRAME_MN1 = 16408, 32769, 49153
_TF_MIN = {1: 1, 2: 2, 3: 3, 4: 4, 5: 5, 6: 6, 10: 10, 12: 12, 15: 15, 20: 20, 30: 30, 16385: 60, 16386: 120,
           16387: 180, 16388: 240, 16390: 360, 16392: 480, 16396: 720, 16408: 1440, 32769: 10080, 49153: 43200}

ORDER_TYPE_BUY, ORDER_TYPE_SELL, ORDER_TYPE_BUY_LIMIT, ORDER_TYPE_SELL_LIMIT = 0, 1, 2, 3
ORDER_TYPE_BUY_STOP, ORDER_TYPE_SELL_STOP, ORDER_TYPE_BUY_STOP_LIMIT, ORDER_TYPE_SELL_STOP_LIMIT = 4, 5, 6, 7
ORDER_TYPE_CLOSE_BY = 8
TRADE_ACTION_DEAL, TRADE_ACTION_PENDING, TRADE_ACTION_SLTP = 1, 5, 6
TRADE_ACTION_MODIFY, TRADE_ACTION_REMOVE, TRADE_ACTION_CLOSE_BY = 7, 8, 10
ORDER_FILLING_FOK, ORDER_FILLING_IOC, ORDER_FILLING_RETURN, ORDER_FILLING_BOC = 0, 1, 2, 3
ORDER_TIME_GTC, ORDER_TIME_DAY, ORDER_TIME_SPECIFIED, ORDER_TIME_SPECIFIED_DAY = 0, 1, 2, 3
ORDER_STATE_STARTED, ORDER_STATE_PLACED, ORDER_STATE_CANCELED, ORDER_STATE_PARTIAL = 0, 1, 2, 3
ORDER_STATE_FILLED, ORDER_STATE_REJECTED, ORDER_STATE_EXPIRED = 4, 5, 6
DEAL_TYPE_BUY, DEAL_TYPE_SELL = 0, 1
DEAL_ENTRY_IN, DEAL_ENTRY_OUT, DEAL_ENTRY_INOUT, DEAL_ENTRY_OUT_BY = 0, 1, 2, 3
POSITION_TYPE_BUY, POSITION_TYPE_SELL = 0, 1
ACCOUNT_MARGIN_MODE_RETAIL_NETTING, ACCOUNT_MARGIN_MODE_EXCHANGE, ACCOUNT_MARGIN_MODE_RETAIL_HEDGING = 0, 1, 2
SYMBOL_FILLING_FOK, SYMBOL_FILLING_IOC = 1, 2
COPY_TICKS_ALL, COPY_TICKS_INFO, COPY_TICKS_TRADE = -1, 1, 2

TRADE_RETCODE_REQUOTE, TRADE_RETCODE_REJECT, TRADE_RETCODE_CANCEL = 10004, 10006, 10007
TRADE_RETCODE_PLACED, TRADE_RETCODE_DONE, TRADE_RETCODE_DONE_PARTIAL = 10008, 10009, 10010
TRADE_RETCODE_ERROR, TRADE_RETCODE_TIMEOUT, TRADE_RETCODE_INVALID = 10011, 10012, 10013
TRADE_RETCODE_INVALID_VOLUME, TRADE_RETCODE_INVALID_PRICE, TRADE_RETCODE_INVALID_STOPS = 10014, 10015, 10016
TRADE_RETCODE_TRADE_DISABLED, TRADE_RETCODE_MARKET_CLOSED, TRADE_RETCODE_NO_MONEY = 10017, 10018, 10019
TRADE_RETCODE_PRICE_CHANGED, TRADE_RETCODE_PRICE_OFF, TRADE_RETCODE_INVALID_EXPIRATION = 10020, 10021, 10022
TRADE_RETCODE_ORDER_CHANGED, TRADE_RETCODE_TOO_MANY_REQUESTS, TRADE_RETCODE_NO_CHANGES = 10023, 10024, 10025
TRADE_RETCODE_SERVER_DISABLES_AT, TRADE_RETCODE_CLIENT_DISABLES_AT = 10026, 10027
TRADE_RETCODE_LOCKED, TRADE_RETCODE_FROZEN, TRADE_RETCODE_INVALID_FILL = 10028, 10029, 10030
TRADE_RETCODE_CONNECTION, TRADE_RETCODE_INVALID_ORDER, TRADE_RETCODE_POSITION_CLOSED = 10031, 10035, 10036
TRADE_RETCODE_INVALID_CLOSE_VOLUME, TRADE_RETCODE_HEDGE_PROHIBITED = 10038, 10046

RES_S_OK, RES_E_FAIL, RES_E_INVALID_PARAMS, RES_E_NO_MEMORY, RES_E_NOT_FOUND = 1, -1, -2, -3, -4
RES_E_INVALID_VERSION, RES_E_AUTH_FAILED, RES_E_UNSUPPORTED, RES_E_AUTO_TRADING_DISABLED = -5, -6, -7, -8
RES_E_INTERNAL_FAIL, RES_E_INTERNAL_FAIL_SEND, RES_E_INTERNAL_FAIL_RECEIVE = -10000, -10001, -10002
RES_E_INTERNAL_FAIL_INIT, RES_E_INTERNAL_FAIL_CONNECT, RES_E_INTERNAL_FAIL_TIMEOUT = -10003, -10004, -10005

# -- result types ------------------------------------------------------------------------------
AccountInfo = namedtuple("AccountInfo", "login trade_mode leverage limit_orders margin_so_mode trade_allowed trade_expert "
                         "margin_mode currency_digits fifo_close balance credit profit equity margin margin_free "
                         "margin_level margin_so_call margin_so_so margin_initial margin_maintenance assets liabilities "
                         "commission_blocked name server currency company")
TerminalInfo = namedtuple("TerminalInfo", "community_account community_connection connected dlls_allowed trade_allowed "
                          "tradeapi_disabled email_enabled ftp_enabled notifications_enabled mqid build maxbars codepage "
                          "ping_last community_balance retransmission company name language path data_path commondata_path")
SymbolInfo = namedtuple("SymbolInfo", "custom chart_mode select visible session_deals session_buy_orders session_sell_orders "
                        "volume volumehigh volumelow time digits spread spread_float ticks_bookdepth trade_calc_mode "
                        "trade_mode start_time expiration_time trade_stops_level trade_freeze_level trade_exemode swap_mode "
                        "swap_rollover3days margin_hedged_use_leg expiration_mode filling_mode order_mode order_gtc_mode "
                        "option_mode option_right bid bidhigh bidlow ask askhigh asklow last lasthigh lastlow volume_real "
                        "point trade_tick_value trade_tick_value_profit trade_tick_value_loss trade_tick_size "
                        "trade_contract_size tick_value tick_value_profit tick_value_loss tick_size contract_size "
                        "volume_min volume_max volume_step volume_limit swap_long swap_short margin_initial "
                        "margin_maintenance currency_base currency_profit currency_margin description path name")
Tick = namedtuple("Tick", "time bid ask last volume time_msc flags volume_real")
TradePosition = namedtuple("TradePosition", "ticket time time_msc time_update time_update_msc type magic identifier reason "
                           "volume price_open sl tp price_current swap profit symbol comment external_id")
TradeOrder = namedtuple("TradeOrder", "ticket time_setup time_setup_msc time_done time_done_msc time_expiration type "
                        "type_time type_filling state magic position_id position_by_id reason volume_initial "
                        "volume_current price_open sl tp price_current price_stoplimit symbol comment external_id")
TradeDeal = namedtuple("TradeDeal", "ticket order time time_msc type entry magic position_id reason volume price "
                       "commission swap profit fee symbol comment external_id")
TradeRequest = namedtuple("TradeRequest", "action magic order symbol volume price stoplimit sl tp deviation type "
                          "type_filling type_time expiration comment position position_by")
OrderSendResult = namedtuple("OrderSendResult", "retcode deal order volume price bid ask comment request_id "
                             "retcode_external request")
OrderCheckResult = namedtuple("OrderCheckResult", "retcode balance equity profit margin margin_free margin_level "
                              "comment request")

RATE_DTYPE = np.dtype([("time", "<i8"), ("open", "<f8"), ("high", "<f8"), ("low", "<f8"), ("close", "<f8"),
                       ("tick_volume", "<u8"), ("spread", "<i4"), ("real_volume", "<u8")])
TICK_DTYPE = np.dtype([("time", "<i8"), ("bid", "<f8"), ("ask", "<f8"), ("last", "<f8"), ("volume", "<u8"),
                       ("time_msc", "<i8"), ("flags", "<u4"), ("volume_real", "<f8")])
