"""Backtest runs: ``run_backtest`` (run strategy code in a worker), ``get_run`` (a stored run, whole or
paged), ``list_runs``.

The strategy never runs in the server: a worker process loads the data and runs the engine, and
``signals()`` is evaluated in a sandboxed child of the worker's zygote (see
:mod:`quantlab.servers.backtest.worker`).
"""
from __future__ import annotations

import json
import time
from typing import Annotated, Any, Literal

import anyio
from mcp.server.mcpserver import Context
from mcp.types import CallToolResult, TextContent
from pydantic import Field

from quantlab._util import to_jsonable

from ..backend import INLINE_TEXT_ROWS
from ..models import RunList, RunSummary
from ..store import RunNotFound, check_run_id
from ..worker import WorkerFailure
from quantlab.engine.costs import DEFAULT_CASH, DEFAULT_FEES, DEFAULT_SLIPPAGE

from .common import CODE_HELP, DATA_HELP, Cash, Fees, Fill, PeriodsPerYear, Slippage, ToolError, backend, tool_errors

__all__ = ["run_backtest", "get_run", "list_runs"]


@tool_errors
async def run_backtest(
    code: Annotated[str, Field(description=CODE_HELP)],
    name: Annotated[str, Field(description="A name for the strategy (shown in run lists and error messages).")],
    ctx: Context,
    params: Annotated[dict[str, Any], Field(description="Keyword arguments for `signals`, overriding its defaults.")] = {},  # noqa: B006
    data: Annotated[str, Field(description=DATA_HELP)] = "sample",
    cash: Cash = DEFAULT_CASH,
    fees: Fees = DEFAULT_FEES,
    slippage: Slippage = DEFAULT_SLIPPAGE,
    periods_per_year: PeriodsPerYear = None,
    fill: Fill = "next_open",
    timeout: Annotated[float, Field(gt=0, le=3600, description="Wall-clock limit in seconds; the run is stopped after it.")] = 60,
) -> RunSummary:
    """Backtest strategy code on a data reference and store the run.

    The target position decided on bar t is filled at bar t+1's open (fill="next_open",
    default) or at bar t's close (fill="close"); fees and slippage are
    fractions of traded notional. Returns the run id (for get_run), all metrics,
    the number of trades (closed and open), the number of bars and the equity curve
    downsampled to at most 2,000 points as columns {"time": [int ns], "equity": [...]}.
    Non-finite metric values are the strings "inf", "-inf", "nan".
    Errors (bad code, exceptions in `signals`, wrong-shaped signals, timeouts,
    the memory limit) come back as tool errors that say what to fix.
    """
    task = {
        "code": code,
        "name": name,
        "params": params,
        "data": data.strip(),
        "cash": cash,
        "fees": fees,
        "slippage": slippage,
        "periods_per_year": periods_per_year,
        "fill": fill,
        "timeout": timeout,  # the sandbox stops the strategy; the pool's limit is the backstop
    }
    t0 = time.perf_counter()
    try:
        summary = await backend(ctx).pool.run(task, timeout=timeout + 10)
    except WorkerFailure as exc:
        raise ToolError(f"[{exc.kind}] {exc}") from None
    summary["metrics"] = to_jsonable(summary["metrics"])
    summary["elapsed"] = time.perf_counter() - t0
    return summary  # type: ignore[return-value]


@tool_errors
async def get_run(
    run_id: Annotated[str, Field(description="A run id from run_backtest or list_runs.")],
    ctx: Context,
    part: Annotated[
        Literal["all", "summary", "equity", "returns", "positions", "trades"],
        Field(description="'all': the whole result as BacktestResult.to_dict(); 'summary': what was run and its metrics; or one part, paged."),
    ] = "all",
    offset: Annotated[int, Field(ge=0, description="First row of a paged part.")] = 0,
    limit: Annotated[int | None, Field(ge=1, description="Rows of a paged part (default: all).")] = None,
) -> CallToolResult:
    """Return a stored run as compact columnar data.

    part="all" returns exactly BacktestResult.to_dict() (index as int64 ns, floats as
    JSON numbers), so BacktestResult.from_dict(result) equals the in-process result.
    Runs over 100,000 bars must be paged: part="all" with offset/limit returns the
    per-bar lists (index, equity, returns, positions, benchmark) for those rows, the rest only on
    the first page, and "page": {offset, limit, total, next_offset}; concatenate the
    per-bar lists of all pages and drop "page" to get to_dict().
    part="summary" returns the code, params, data reference, costs and metrics.
    part="equity" | "returns" | "positions" | "trades" returns that part's columns
    for rows [offset, offset+limit) with total and next_offset (None at the end).
    The data is in structuredContent; results with many rows carry only a short text note.
    """
    # the result's shape depends on `part` (to_dict() or a page), so it is built here:
    # structuredContent plus compact JSON text (the SDK's conversion would indent every row)
    try:
        check_run_id(run_id)
    except ValueError as exc:
        raise ToolError(str(exc)) from None
    be = backend(ctx)
    try:
        await be.pool.wait_persisted(run_id)
    except TimeoutError:
        raise ToolError(f"run {run_id!r} is still being saved; try again in a moment.") from None
    try:
        payload, rows = await anyio.to_thread.run_sync(be.read, run_id, part, offset, limit)
    except RunNotFound as exc:
        raise ToolError(str(exc)) from None
    if rows <= INLINE_TEXT_ROWS:
        text = json.dumps(payload, separators=(",", ":"), allow_nan=False)
    else:
        text = (
            f"run {run_id} part={part}: {rows:,} rows of columnar data in structuredContent "
            "(use part='summary' for a short view, or offset/limit to page)."
        )
    return CallToolResult(content=[TextContent(type="text", text=text)], structured_content=payload)


@tool_errors
async def list_runs(
    ctx: Context,
    limit: Annotated[int, Field(ge=1, le=10_000, description="How many runs, newest first.")] = 50,
) -> RunList:
    """List stored runs, newest first.

    Returns {"runs": [{run_id, name, created, data, params, cash, fees, slippage, bars, trades, metrics}, ...]}.
    """
    be = backend(ctx)
    try:
        await be.pool.wait_all_persisted(timeout=30)
    except TimeoutError:
        pass  # list what is on disk
    runs = await anyio.to_thread.run_sync(be.store.list_runs, limit)
    return {"runs": to_jsonable(runs)}
