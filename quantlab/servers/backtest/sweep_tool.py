"""The child process of the backtest server's ``run_sweep`` and ``walk_forward`` tools (:mod:`.tools.sweep`):
a parameter sweep (or a walk-forward optimisation) on the server's machine (or its Dask cluster).

The sweep runs in this child process (``python -m quantlab.servers.backtest.sweep_tool``) so
strategy code never executes inside the server: the child loads the data reference, runs
:func:`quantlab.engine.sweep.sweep` on local worker processes, in-process, or on a Dask
scheduler, reports progress on stderr (forwarded as MCP progress notifications) and prints
``SweepResult.to_dict()`` on stdout. A timeout kills the child and its workers.

The tool starts it and reads it; :func:`run_child` is what it does.
"""
from __future__ import annotations

import json
import os
import sys
from typing import Any

from quantlab._util import dask_address, is_dask_address

__all__ = ["run_child", "EXECUTOR_HELP"]

#: what the ``executor`` argument accepts
EXECUTOR_HELP = (
    "'processes' (the server's worker count, or `workers`), 'inprocess' (one child process), "
    "or a Dask scheduler as 'dask://HOST:PORT' / 'tcp://HOST:PORT' / 'tls://HOST:PORT'."
)


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

    ``task["kind"] == "walk_forward"`` runs :func:`~quantlab.engine.walkforward.walk_forward` instead, with
    ``task["walk_forward"]`` = ``{"train", "test", "step", "metric", "purge", "anchored"}``.

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
    limits = {"cpu_seconds": timeout + 1, "wall_seconds": timeout}  # wall time is the limit; CPU a backstop after it
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
    costs = {k: v for k, v in (task.get("costs") or {}).items() if v is not None}
    try:
        if task.get("kind") == "walk_forward":
            from quantlab.engine.walkforward import walk_forward

            wf = task["walk_forward"]
            res = walk_forward(strategy, data, task["grid"], wf["train"], wf["test"], wf.get("step"),
                               wf.get("metric") or "sharpe", executor, purge=int(wf.get("purge") or 0),
                               anchored=bool(wf.get("anchored")), progress=progress, data_ref=task["data"], **costs)
        else:
            res = sweep(strategy, data, task["grid"], executor, progress=progress, data_ref=task["data"], **costs)
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


if __name__ == "__main__":
    sys.exit(_child_main())
