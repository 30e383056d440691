"""The default costs of a backtest, defined once (stdlib only, so the command line can show them
in ``--help`` without importing pandas).

Every place that runs or reports a backtest takes its defaults from here: :func:`quantlab.backtest`,
:meth:`quantlab.Lab.backtest` / :meth:`~quantlab.Lab.sweep`, :func:`quantlab.sweep`, the backtest
server's tools, the code agent, ``quantlab backtest|deploy|report``. Results record the costs
they used (``result.costs``) and everything that shows metrics shows them beside.

>>> from quantlab.engine.costs import DEFAULT_FEES, DEFAULT_SLIPPAGE, DEFAULT_CASH
>>> DEFAULT_FEES, DEFAULT_SLIPPAGE, DEFAULT_CASH
(0.0002, 0.0, 100000.0)
"""
from __future__ import annotations

__all__ = ["DEFAULT_FEES", "DEFAULT_SLIPPAGE", "DEFAULT_CASH", "default_costs", "format_costs"]

#: Fees as a fraction of traded notional, charged per unit of turnover: 2 bp (0.02 %), so a
#: Sharpe ratio quoted anywhere in quantlab has costs in it unless someone asks for ``fees=0``.
DEFAULT_FEES = 0.0002
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


def format_costs(costs: dict | None) -> str:
    """The costs a run used, for people (what the CLI's stats block and the review widget show).

    >>> format_costs({"fees": 0.0002, "slippage": 0.0, "cash": 100000.0})
    'fees 0.02%, slippage 0%, cash 100,000'
    """
    costs = costs or {}
    return (f"fees {_pct(costs.get('fees', 0.0))}, slippage {_pct(costs.get('slippage', 0.0))}, "
            f"cash {float(costs.get('cash', 0.0)):,.0f}")


def _pct(x: float) -> str:
    s = f"{100 * float(x):.4f}".rstrip("0").rstrip(".")
    return f"{s}%"
