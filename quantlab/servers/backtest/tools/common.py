"""What every backtest tool shares: the server's :class:`~quantlab.servers.backtest.backend.Backend`
(owned by the lifespan, read through the context) and the rule that no failure crashes the server.

Example
-------
>>> @tool_errors
... async def broken() -> None:
...     raise KeyError("x")
>>> import asyncio
>>> try:
...     asyncio.run(broken())
... except ToolError as exc:
...     print(exc)
[internal] KeyError: 'x' (a bug in the backtest server; the server keeps running).
"""
from __future__ import annotations

import functools
import logging
from typing import TYPE_CHECKING, Annotated, Any, Awaitable, Callable, Literal, TypeVar

from mcp.server.mcpserver import Context
from mcp.server.mcpserver.exceptions import ToolError
from pydantic import Field

if TYPE_CHECKING:  # pragma: no cover
    from ..backend import Backend

__all__ = ["backend", "tool_errors", "ToolError", "DATA_HELP", "CODE_HELP", "Cash", "Fees", "Slippage", "PeriodsPerYear", "Fill"]

log = logging.getLogger("quantlab.servers.backtest")

T = TypeVar("T")

#: how a data reference is written (argument descriptions)
DATA_HELP = ("Data reference: 'sample', 'synthetic:seed=7,bars=100000', 'file:<path under the data root>' "
             "or 'upload:<sha>' from upload_data.")
#: what strategy code is (argument descriptions)
CODE_HELP = "Python source defining `def signals(data, **params) -> pd.Series` of target positions in [-1, 1]."

# the costs and conventions every run takes (run_backtest, run_sweep), described once
Cash = Annotated[float, Field(gt=0, description="Starting cash.")]
Fees = Annotated[float, Field(ge=0, lt=1, description="Fees as a fraction of traded notional (0.001 = 10 bp; default 0.0002 = 2 bp).")]
Slippage = Annotated[float, Field(ge=0, lt=1, description="Slippage as a fraction of the fill price.")]
PeriodsPerYear = Annotated[float | None, Field(gt=0, description="Bars per year for annualised metrics; default: inferred from the bars observed per calendar year.")]
Fill = Annotated[Literal["next_open", "close"], Field(description="When a target decided on bar t trades: 'next_open' (bar t+1's open, default) or 'close' (bar t's own close).")]


def backend(ctx: Context) -> "Backend":
    """The :class:`~quantlab.servers.backtest.backend.Backend` the server's lifespan made."""
    return ctx.request_context.lifespan_context


def tool_errors(fn: Callable[..., Awaitable[T]]) -> Callable[..., Awaitable[T]]:
    """Run a tool; a :class:`ToolError` passes through, anything unexpected becomes a tool error too
    (logged with its traceback on the server's stderr) instead of an opaque failure."""

    @functools.wraps(fn)
    async def run(*args: Any, **kwargs: Any) -> T:
        try:
            return await fn(*args, **kwargs)
        except ToolError:
            raise
        except Exception as exc:  # noqa: BLE001 - never crash the server; say what broke
            log.exception("tool %s failed", fn.__name__)
            raise ToolError(f"[internal] {type(exc).__name__}: {exc} (a bug in the backtest server; "
                            "the server keeps running).") from None

    return run
