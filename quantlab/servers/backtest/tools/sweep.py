"""Parameter searches: ``run_sweep`` (:func:`quantlab.engine.sweep.sweep`: one row of metrics per
combination) and ``walk_forward`` (:func:`quantlab.engine.walkforward.walk_forward`: parameters chosen
on each training window, judged on the next test window). Both run in a child process
(:mod:`quantlab.servers.backtest.sweep_tool`, :func:`run_in_child`), so strategy code never executes
inside the server, with MCP progress notifications and a timeout that kills the child and its workers.
"""
from __future__ import annotations

import json
import math
import signal
import subprocess
import sys
import time
from typing import TYPE_CHECKING, Annotated, Any

import anyio
from mcp.server.mcpserver import Context
from pydantic import Field

from quantlab._util import kill_process

from ..models import SweepSummary, WalkForwardSummary
from ..sweep_tool import EXECUTOR_HELP
from quantlab.engine.costs import DEFAULT_CASH, DEFAULT_FEES, DEFAULT_SLIPPAGE

from .common import CODE_HELP, DATA_HELP, Cash, Fees, Fill, PeriodsPerYear, Slippage, ToolError, backend, tool_errors

if TYPE_CHECKING:  # pragma: no cover
    from ..backend import Backend

__all__ = ["run_sweep", "walk_forward", "best_row", "run_in_child"]


def best_row(result: dict[str, Any]) -> dict[str, Any] | None:
    """The row of a ``SweepResult.to_dict()`` with the highest Sharpe ratio among those without error.

    >>> best_row({"columns": ["n", "sharpe", "error"], "data": {"n": [1, 2], "sharpe": [0.5, 1.5], "error": [None, None]}})
    {'row': 1, 'n': 2, 'sharpe': 1.5}
    """
    cols = result["data"]
    sharpe, err = cols.get("sharpe", []), cols.get("error", [])
    best_i, best_v = None, -math.inf
    for i, (v, e) in enumerate(zip(sharpe, err)):
        if e is None and isinstance(v, (int, float)) and v > best_v:
            best_i, best_v = i, v
    if best_i is None:
        return None
    return {"row": best_i, **{c: cols[c][best_i] for c in result["columns"] if c != "error"}}


def _task(be: "Backend", code: str, name: str, grid: Any, data: str, costs: dict[str, Any], executor: str,
          workers: int | None, timeout: float) -> dict[str, Any]:
    """What the sweep child needs: the code, grid, data reference, costs, where to run and the server's limits."""
    return {
        "code": code, "name": name, "grid": grid, "data": data.strip(), "costs": costs,
        "executor": executor, "workers": workers or be.pool.size,
        "runs_dir": str(be.runs_dir), "data_root": str(be.data_root) if be.data_root else None,
        "memory_mb": be.pool.memory_mb, "timeout": timeout,
    }


async def run_in_child(ctx: Context, task: dict[str, Any], timeout: float, what: str, memory_mb: int | None) -> dict[str, Any]:
    """Run ``task`` in the sweep child process (:mod:`quantlab.servers.backtest.sweep_tool`): progress lines
    become MCP progress notifications, a timeout kills the child and its workers, a failure is a
    :class:`ToolError` (``what`` names the job in it); returns the child's ``to_dict()``."""
    proc = await anyio.open_process([sys.executable, "-m", "quantlab.servers.backtest.sweep_tool"],
                                    stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                    start_new_session=True)
    out_chunks: list[bytes] = []
    err_lines: list[str] = []

    async def read_stdout() -> None:
        async for chunk in proc.stdout:
            out_chunks.append(chunk)

    async def read_stderr() -> None:
        buf = b""
        async for chunk in proc.stderr:
            buf += chunk
            *lines, buf = buf.split(b"\n")
            for raw in lines:
                line = raw.decode("utf-8", "replace")
                if line.startswith('{"progress"'):
                    try:
                        p = json.loads(line)
                        await ctx.report_progress(p["progress"], p["total"], f"{p['progress']}/{p['total']} runs")
                    except Exception:  # noqa: BLE001 - progress is best effort
                        pass
                elif line.strip():
                    err_lines.append(line)
        if buf.strip():
            err_lines.append(buf.decode("utf-8", "replace"))

    try:
        with anyio.move_on_after(timeout) as scope:
            await proc.stdin.send(json.dumps(task).encode())
            await proc.stdin.aclose()
            async with anyio.create_task_group() as tg:
                tg.start_soon(read_stdout)
                tg.start_soon(read_stderr)
            await proc.wait()
    finally:
        if proc.returncode is None:
            kill_process(proc.pid, grace=0, group=True)
            with anyio.CancelScope(shield=True):
                await proc.wait()
        else:
            kill_process(proc.pid, grace=0, group=True)  # leftover pool workers, if any
    if scope.cancelled_caught:
        raise ToolError(f"[timeout] the {what} did not finish within {timeout:g} s and was stopped; "
                        "raise `timeout`, use a smaller grid or executor='processes' with more workers.")
    raw = b"".join(out_chunks)
    if proc.returncode != 0 or not raw:
        tail = "\n".join(err_lines[-15:])
        if proc.returncode in (-signal.SIGKILL, -signal.SIGSEGV) or "MemoryError" in tail:
            raise ToolError(f"[crash] the {what} process died (exit {proc.returncode}); it may have hit the "
                            f"{memory_mb} MB memory limit.\n{tail}")
        raise ToolError(f"[crash] the {what} process failed (exit {proc.returncode}).\n{tail}")
    out = json.loads(raw)
    if "ok" not in out:
        raise ToolError(f"[{out.get('kind', 'error')}] {out.get('error')}")
    return out["ok"]


@tool_errors
async def run_sweep(
    code: Annotated[str, Field(description=CODE_HELP + " (Optionally also `signals_many(data, params)`.)")],
    name: Annotated[str, Field(description="A name for the strategy.")],
    grid: Annotated[
        dict[str, list[Any]] | list[dict[str, Any]],
        Field(description="Parameters: a dict of lists (every combination, in key order) or a list of parameter dicts."),
    ],
    ctx: Context,
    data: Annotated[str, Field(description=DATA_HELP)] = "sample",
    cash: Cash = DEFAULT_CASH,
    fees: Fees = DEFAULT_FEES,
    slippage: Slippage = DEFAULT_SLIPPAGE,
    periods_per_year: PeriodsPerYear = None,
    fill: Fill = "next_open",
    holdout: Annotated[float | None, Field(gt=0, lt=1, description="Fraction of the last bars kept out of the rows' metrics (and so out of the choice of the best row) and reported per row in result.metrics_oos.")] = None,
    executor: Annotated[str, Field(description=f"Where the runs execute: {EXECUTOR_HELP}")] = "processes",
    workers: Annotated[int | None, Field(ge=1, le=256, description="Local worker processes for executor='processes' (default: the server's worker count).")] = None,
    timeout: Annotated[float, Field(gt=0, le=86_400, description="Wall-clock limit in seconds; the sweep is stopped after it.")] = 600,
) -> SweepSummary:
    """Backtest strategy code for every parameter combination of a grid and return one row of metrics per combination.

    The metrics of each row equal run_backtest's for the same parameters. A combination
    that fails (the strategy raises, bad signals) has its message in the 'error' column;
    the others finish. Progress is reported as MCP progress notifications.
    Returns {"result": SweepResult.to_dict() (columnar: params, metrics, error, in grid
    order), "runs", "errors", "best": the highest-Sharpe row, "elapsed"}.
    """
    be = backend(ctx)
    task = _task(be, code, name, grid, data, {"cash": cash, "fees": fees, "slippage": slippage,
                 "periods_per_year": periods_per_year, "fill": fill, "holdout": holdout}, executor, workers, timeout)
    t0 = time.perf_counter()
    result = await run_in_child(ctx, task, timeout, "sweep", be.pool.memory_mb)
    errors = sum(e is not None for e in result["data"]["error"])
    return {"result": result, "runs": len(result["data"]["error"]), "errors": errors, "best": best_row(result),
            "elapsed": time.perf_counter() - t0}


#: a window length: bars (>= 1) or a fraction of the data in (0, 1)
Window = Annotated[float, Field(gt=0, description="Bars (a whole number >= 1) or a fraction of the data in (0, 1).")]


@tool_errors
async def walk_forward(
    code: Annotated[str, Field(description=CODE_HELP)],
    name: Annotated[str, Field(description="A name for the strategy.")],
    grid: Annotated[
        dict[str, list[Any]] | list[dict[str, Any]],
        Field(description="Parameters to choose from on each training window: a dict of lists or a list of parameter dicts."),
    ],
    train: Window,
    test: Window,
    ctx: Context,
    step: Annotated[float | None, Field(gt=0, description="Bars (or a fraction) between fold starts; default `test` (test windows tile the data).")] = None,
    metric: Annotated[str, Field(description="The metric that chooses the parameters on each training window (max_drawdown, volatility and max_drawdown_duration are minimised, others maximised).")] = "sharpe",
    purge: Annotated[int, Field(ge=0, description="Bars left out between each training window and its test window.")] = 0,
    anchored: Annotated[bool, Field(description="Grow the training window from the first bar instead of sliding it.")] = False,
    data: Annotated[str, Field(description=DATA_HELP)] = "sample",
    cash: Cash = DEFAULT_CASH,
    fees: Fees = DEFAULT_FEES,
    slippage: Slippage = DEFAULT_SLIPPAGE,
    periods_per_year: PeriodsPerYear = None,
    fill: Fill = "next_open",
    executor: Annotated[str, Field(description=f"Where the runs execute: {EXECUTOR_HELP}")] = "processes",
    workers: Annotated[int | None, Field(ge=1, le=256, description="Local worker processes for executor='processes' (default: the server's worker count).")] = None,
    timeout: Annotated[float, Field(gt=0, le=86_400, description="Wall-clock limit in seconds; the run is stopped after it.")] = 600,
) -> WalkForwardSummary:
    """Walk-forward optimisation: on each fold, choose the grid's best parameters on the training window
    (by `metric`) and backtest them on the following test window; stitch the test windows' equity.

    Same engine as quantlab.walk_forward in a notebook (the code runs in a child process, its
    signals in the sandbox). Progress is reported as MCP progress notifications.
    Returns {"result": WalkForwardResult.to_dict() (rebuild with
    quantlab.engine.walkforward.WalkForwardResult.from_dict), "folds", "metrics" (of the stitched
    out-of-sample equity, plus efficiency = mean OOS / mean IS metric), "elapsed"}.
    """
    be = backend(ctx)
    task = _task(be, code, name, grid, data, {"cash": cash, "fees": fees, "slippage": slippage,
                 "periods_per_year": periods_per_year, "fill": fill}, executor, workers, timeout)
    task["kind"] = "walk_forward"
    task["walk_forward"] = {"train": _window(train), "test": _window(test),
                            "step": None if step is None else _window(step), "metric": metric, "purge": purge,
                            "anchored": anchored}
    t0 = time.perf_counter()
    result = await run_in_child(ctx, task, timeout, "walk-forward", be.pool.memory_mb)
    return {"result": result, "folds": len(result["folds"]["data"].get("fold", [])), "metrics": result["metrics"],
            "elapsed": time.perf_counter() - t0}


def _window(x: float) -> int | float:
    """A window argument as the engine takes it: whole bars as an int, a fraction as a float.

    >>> _window(200.0), _window(0.25)
    (200, 0.25)
    """
    if x >= 1:
        if x != int(x):
            raise ToolError(f"a window of {x} bars: give whole bars (>= 1) or a fraction of the data in (0, 1).")
        return int(x)
    return float(x)
