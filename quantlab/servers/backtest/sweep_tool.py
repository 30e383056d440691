"""The backtest server's ``run_sweep`` tool: a parameter sweep on the server's machine (or its Dask cluster).

The sweep runs in a child process (``python -m quantlab.servers.backtest.sweep_tool``) so
strategy code never executes inside the server: the child loads the data reference, runs
:func:`quantlab.engine.sweep.sweep` on local worker processes, in-process, or on a Dask
scheduler, reports progress on stderr (forwarded as MCP progress notifications) and prints
``SweepResult.to_dict()`` on stdout. A timeout kills the child and its workers.

:func:`~quantlab.servers.backtest.server.build_server` adds the tool with :func:`register`.

Example
-------
>>> from quantlab.servers.backtest.server import build_server
>>> server, backend = build_server("/tmp/qlruns", workers=1)
>>> import asyncio
>>> "run_sweep" in [t.name for t in asyncio.run(server.list_tools())]
True
"""
from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from typing import Annotated, Any, Literal

import anyio
from mcp.server.mcpserver import Context
from mcp.server.mcpserver.exceptions import ToolError
from mcp_types import ToolAnnotations
from pydantic import Field
from typing_extensions import TypedDict

from quantlab._util import dask_address, is_dask_address, kill_process

__all__ = ["register", "SweepSummary", "run_child"]

#: what the ``executor`` argument accepts
EXECUTOR_HELP = (
    "'processes' (the server's worker count, or `workers`), 'inprocess' (one child process), "
    "or a Dask scheduler as 'dask://HOST:PORT' / 'tcp://HOST:PORT' / 'tls://HOST:PORT'."
)


class SweepSummary(TypedDict):
    """What ``run_sweep`` returns."""

    result: Annotated[dict[str, Any], Field(description="SweepResult.to_dict(): rebuild with quantlab.engine.sweep.SweepResult.from_dict.")]
    runs: Annotated[int, Field(description="Number of parameter combinations.")]
    errors: Annotated[int, Field(description="Combinations whose run failed (see the 'error' column).")]
    best: Annotated[dict[str, Any] | None, Field(description="The row with the highest Sharpe ratio (params and metrics), or null.")]
    elapsed: Annotated[float, Field(description="Seconds the server spent on the call.")]


# ---------------------------------------------------------------------------------------------
# the child process
# ---------------------------------------------------------------------------------------------
def _executor(spec: str, workers: int):
    spec = spec.strip()
    if spec in ("inprocess", "processes"):
        return None if spec == "inprocess" else max(1, workers), None
    if is_dask_address(spec):
        from distributed import Client

        client = Client(dask_address(spec), timeout=30)
        return client, client
    raise ValueError(f"unknown executor {spec!r}; use {EXECUTOR_HELP}")


def _set_memory_limit(memory_mb: int | None) -> None:
    if not memory_mb:
        return
    try:
        import resource

        limit = int(memory_mb) * 2**20
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    except (ImportError, ValueError, OSError):
        pass


def run_child(task: dict[str, Any]) -> dict[str, Any]:
    """Run one sweep task (what the child process does); returns ``{"ok": to_dict}`` or ``{"error", "kind"}``.

    >>> out = run_child({"code": "def signals(data, n=2):\\n    return data.close * 0", "name": "flat",
    ...                  "grid": {"n": [1, 2]}, "data": "synthetic:seed=1,bars=300", "costs": {},
    ...                  "executor": "inprocess", "workers": 1, "runs_dir": "/tmp/qlruns"})
    >>> out["ok"]["data"]["n"]
    [1, 2]
    """
    from quantlab.engine import sandbox
    from quantlab.engine.strategy import StrategyError
    from quantlab.engine.sweep import SweepError, sweep

    def progress(done: int, total: int) -> None:
        sys.stderr.write(json.dumps({"progress": done, "total": total}) + "\n")
        sys.stderr.flush()

    # the code never runs in this process: checked, then evaluated in sandboxed children (docs/sandbox.md)
    timeout = float(task.get("timeout") or 600)
    limits = {"cpu_seconds": timeout, "wall_seconds": timeout}
    if task.get("memory_mb"):
        limits["memory_mb"] = int(task["memory_mb"])
    try:
        strategy = sandbox.load(task["code"], name=task.get("name") or "strategy", limits=limits)
    except sandbox.SandboxError as exc:
        return {"kind": "sandbox", "error": str(exc)}
    except StrategyError as exc:
        return {"kind": "strategy", "error": str(exc)}
    try:
        from quantlab.servers.backtest.store import RunStore

        data = RunStore(task["runs_dir"]).load_data(task["data"], task.get("data_root"))
    except Exception as exc:  # noqa: BLE001 - any loader error is the caller's bad reference
        return {"kind": "data", "error": f"cannot load data {task['data']!r}: {exc}"}
    try:
        executor, client = _executor(task.get("executor") or "processes", int(task.get("workers") or 1))
    except Exception as exc:  # noqa: BLE001
        return {"kind": "executor", "error": f"{type(exc).__name__}: {exc}"}
    try:
        res = sweep(strategy, data, task["grid"], executor, progress=progress, data_ref=task["data"],
                    **{k: v for k, v in (task.get("costs") or {}).items() if v is not None})
        return {"ok": res.to_dict()}
    except (SweepError, TypeError, ValueError) as exc:
        return {"kind": "grid", "error": str(exc)}
    except MemoryError:
        return {"kind": "memory", "error": "the sweep ran out of memory; use a smaller grid or less data."}
    finally:
        if client is not None:
            client.close()


def _child_main() -> int:
    # stdout is the result channel: keep it for the result only and point fd 1 (print, C extensions,
    # anything a library writes) at stderr, which the tool reads as a log
    result = os.fdopen(os.dup(1), "w", encoding="utf-8")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    task = json.loads(sys.stdin.read())
    _set_memory_limit(task.get("memory_mb") if not is_dask_address(task.get("executor")) else None)
    out = run_child(task)
    result.write(json.dumps(out, allow_nan=False))
    result.flush()
    return 0


# ---------------------------------------------------------------------------------------------
# the tool
# ---------------------------------------------------------------------------------------------
def _best(result: dict[str, Any]) -> dict[str, Any] | None:
    cols = result["data"]
    sharpe, err = cols.get("sharpe", []), cols.get("error", [])
    best_i, best_v = None, -math.inf
    for i, (v, e) in enumerate(zip(sharpe, err)):
        if e is None and isinstance(v, (int, float)) and v > best_v:
            best_i, best_v = i, v
    if best_i is None:
        return None
    return {"row": best_i, **{c: cols[c][best_i] for c in result["columns"] if c != "error"}}


def register(mcp: Any, backend: Any) -> None:
    """Add the ``run_sweep`` tool to the backtest server ``mcp`` (uses ``backend``'s runs dir, data root,
    worker count and memory limit)."""
    @mcp.tool(annotations=ToolAnnotations(read_only_hint=True, open_world_hint=False))
    async def run_sweep(
        code: Annotated[str, Field(description="Python source defining `def signals(data, **params) -> pd.Series` of target positions in [-1, 1] (optionally also `signals_many(data, params)`).")],
        name: Annotated[str, Field(description="A name for the strategy.")],
        grid: Annotated[
            dict[str, list[Any]] | list[dict[str, Any]],
            Field(description="Parameters: a dict of lists (every combination, in key order) or a list of parameter dicts."),
        ],
        ctx: Context,
        data: Annotated[str, Field(description="Data reference: 'sample', 'synthetic:seed=7,bars=100000', 'file:<path under the data root>' or 'upload:<sha>'.")] = "sample",
        cash: Annotated[float, Field(gt=0, description="Starting cash.")] = 100_000,
        fees: Annotated[float, Field(ge=0, lt=1, description="Fees as a fraction of traded notional.")] = 0,
        slippage: Annotated[float, Field(ge=0, lt=1, description="Slippage as a fraction of the fill price.")] = 0,
        periods_per_year: Annotated[float | None, Field(gt=0, description="Bars per year; default: inferred from the bars observed per calendar year.")] = None,
        fill: Annotated[Literal["next_open", "close"], Field(description="When a target decided on bar t trades: 'next_open' (bar t+1's open, default) or 'close' (bar t's close).")] = "next_open",
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
        task = {
            "code": code, "name": name, "grid": grid, "data": data.strip(),
            "costs": {"cash": cash, "fees": fees, "slippage": slippage, "periods_per_year": periods_per_year,
                      "fill": fill, "holdout": holdout},
            "executor": executor, "workers": workers or backend.pool.size,
            "runs_dir": str(backend.runs_dir), "data_root": str(backend.data_root) if backend.data_root else None,
            "memory_mb": backend.pool.memory_mb, "timeout": timeout,
        }
        t0 = time.perf_counter()
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
            raise ToolError(f"[timeout] the sweep did not finish within {timeout:g} s and was stopped; "
                            "raise `timeout`, use a smaller grid or executor='processes' with more workers.")
        raw = b"".join(out_chunks)
        if proc.returncode != 0 or not raw:
            tail = "\n".join(err_lines[-15:])
            if proc.returncode in (-signal.SIGKILL, -signal.SIGSEGV) or "MemoryError" in tail:
                raise ToolError(f"[crash] the sweep process died (exit {proc.returncode}); it may have hit the "
                                f"{backend.pool.memory_mb} MB memory limit.\n{tail}")
            raise ToolError(f"[crash] the sweep process failed (exit {proc.returncode}).\n{tail}")
        out = json.loads(raw)
        if "ok" not in out:
            raise ToolError(f"[{out.get('kind', 'error')}] {out.get('error')}")
        result = out["ok"]
        errors = sum(e is not None for e in result["data"]["error"])
        return {"result": result, "runs": len(result["data"]["error"]), "errors": errors, "best": _best(result),
                "elapsed": time.perf_counter() - t0}


if __name__ == "__main__":
    sys.exit(_child_main())
