"""What every part of the paper broker's book shares: the rejection error, the account settings, the caps.

Example
-------
>>> str(TradeError(10014, "volume 0 is below volume_min 0.01"))
'TRADE_RETCODE_INVALID_VOLUME (10014): volume 0 is below volume_min 0.01'
>>> rnd(1.23456, 2), ms(2)
(1.23, 2000)
"""
from __future__ import annotations

from dataclasses import dataclass

from . import constants as C

__all__ = ["TradeError", "BrokerConfig", "Rollback", "MAX_COUNT", "STOP_OUT_LEVEL", "REQUEST_FIELDS", "EPS",
           "rnd", "ms"]

MAX_COUNT = 100_000  # cap on bars per copy_rates_* call
STOP_OUT_LEVEL = 30.0  # margin level (%) at which the broker closes positions (account margin_so_so)
REQUEST_FIELDS = {
    "action", "magic", "order", "symbol", "volume", "price", "stoplimit", "sl", "tp", "deviation", "type",
    "type_filling", "type_time", "expiration", "comment", "position", "position_by",
}
EPS = 1e-9


class TradeError(Exception):
    """A rejected request: an MT5 ``retcode`` and a sentence saying what to change.

    >>> str(TradeError(10014, "volume 0 is below volume_min 0.01"))
    'TRADE_RETCODE_INVALID_VOLUME (10014): volume 0 is below volume_min 0.01'
    """

    def __init__(self, retcode: int, message: str):
        super().__init__(message)
        self.retcode = int(retcode)
        self.message = message

    def __str__(self) -> str:
        return f"{C.retcode_name(self.retcode)} ({self.retcode}): {self.message}"


@dataclass
class BrokerConfig:
    """Account and execution settings, fixed when the database is created.

    >>> BrokerConfig().margin_mode
    'netting'
    """

    balance: float = 100_000.0
    leverage: int = 100
    currency: str = "USD"
    margin_mode: str = "netting"  # or "hedging"
    spread: int | None = None  # points; None = each symbol's own
    slippage: int = 0  # points, always against the trader
    commission: float = 0.0  # account currency per lot per deal
    login: int = 5_000_001
    lookback: int = 300  # default deployment lookback (bars)


def rnd(x: float, nd: int) -> float:
    """``x`` rounded to ``nd`` digits, as a plain float."""
    return float(round(x, nd))


def ms(t: int) -> int:
    """Epoch seconds -> epoch milliseconds (MT5's ``*_msc`` fields)."""
    return int(t) * 1000


class Rollback(Exception):
    """Raised inside a transaction to undo it while still answering ``result`` (``order_check``)."""

    def __init__(self, result: dict):
        self.result = result
