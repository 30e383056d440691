"""The default costs of a backtest, defined once (stdlib only, so the command line can show them
in ``--help`` without importing pandas).

Every place that runs or reports a backtest takes its defaults from here: :func:`quantlab.backtest`,
:meth:`quantlab.Lab.backtest` / :meth:`~quantlab.Lab.sweep`, :func:`quantlab.sweep`, the backtest
server's tools, the code agent, ``quantlab backtest|deploy|report``. Results record the costs
they used (``result.costs``) and everything that shows metrics shows them beside.

>>> from quantlab.engine.costs import DEFAULT_FEES, DEFAULT_SLIPPAGE, DEFAULT_CASH
>>> DEFAULT_FEES, DEFAULT_SLIPPAGE, DEFAULT_CASH
(0.0, 0.0, 100000.0)
"""
from __future__ import annotations

__all__ = ["DEFAULT_FEES", "DEFAULT_SLIPPAGE", "DEFAULT_CASH", "default_costs"]

#: Fees as a fraction of traded notional, charged per unit of turnover.
DEFAULT_FEES = 0.0
#: Slippage as a fraction of the fill price.
DEFAULT_SLIPPAGE = 0.0
#: Starting cash (account currency).
DEFAULT_CASH = 100_000.0


def default_costs() -> dict[str, float]:
    """The default costs as a ``result.costs``-shaped dict.

    >>> sorted(default_costs())
    ['cash', 'fees', 'slippage']
    """
    return {"fees": DEFAULT_FEES, "slippage": DEFAULT_SLIPPAGE, "cash": DEFAULT_CASH}
