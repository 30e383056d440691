"""Where a sweep runs: in this process, local worker processes, or a Dask cluster.

Each executor hands chunks of resolved parameter dicts to a :class:`~.core.Context` (built
once per process or worker, the data reaching it once) and puts the rows back in grid order;
a chunk whose worker died marks its rows as failed and the others go on.
"""
from __future__ import annotations

import concurrent.futures as _cf
import math
import multiprocessing as _mp
import os
import pickle
import tempfile
import time
from typing import Any

import pandas as pd

from ..strategy import Strategy
from .allocator import HeapAllocation, one_blas_thread, prime_allocator
from .core import Context
from .grid import SweepError

__all__ = ["run_inprocess", "run_processes", "run_dask", "progress_bar", "is_dask_client"]

# ---------------------------------------------------------------------------------------------
# worker-side state for processes and dask (data arrives once per worker)
# ---------------------------------------------------------------------------------------------
_WORKER: dict[str, Context] = {}


def _limits(strategy: Strategy) -> dict | None:
    """The sandbox limits of a sandboxed strategy (its workers sandbox it too), else None."""
    limits = getattr(strategy, "limits", None)
    return limits.to_dict() if limits is not None else None


def _load(code: str, name: str, limits: dict | None) -> Strategy:
    """The strategy in a worker: sandboxed again (never executed here) when the sweep was sandboxed."""
    if limits is None:
        return Strategy.from_code(code, name=name)
    from .. import sandbox

    return sandbox.load(code, name=name, limits=limits)


def _init_worker(token: str, code: str, name: str, data: pd.DataFrame, costs: dict, limits: dict | None = None) -> None:
    """Process-pool initializer: build the context once per worker process.

    """
    prime_allocator()
    _WORKER.clear()
    _WORKER[token] = Context(_load(code, name, limits), data, costs)


def _worker_context(token: str, code: str, name: str, costs: dict, path: str | None,
                    limits: dict | None = None) -> Context:
    ctx = _WORKER.get(token)
    if ctx is None:
        if path is None:
            raise RuntimeError("sweep worker has no data: the pool was not started by this sweep "
                               "(internal error; please report it).")
        with open(path, "rb") as fh:  # a pool passed in by the caller: load the one-off file once
            data = pickle.load(fh)
        _WORKER.clear()
        prime_allocator()
        ctx = _WORKER[token] = Context(_load(code, name, limits), data, costs)
    return ctx


def _process_chunk(token: str, code: str, name: str, costs: dict, path: str | None,
                   start: int, combos: list[dict], limits: dict | None = None) -> tuple[int, list]:
    ctx = _worker_context(token, code, name, costs, path, limits)
    with one_blas_thread(), HeapAllocation():
        return start, ctx.run(combos)


def _dask_chunk(code: str, name: str, costs: dict, data: pd.DataFrame, start: int,
                combos: list[dict], limits: dict | None = None) -> tuple[int, list]:
    """Dask task: ``data`` is the scattered frame (resolved on the worker, never shipped per task)."""
    key = (code, name, id(data), repr(sorted(costs.items())), repr(sorted((limits or {}).items())))
    cache = _DASK_CACHE.get(key)
    if cache is None:
        _DASK_CACHE.clear()
        prime_allocator()
        cache = _DASK_CACHE[key] = Context(_load(code, name, limits), data, costs)
    with one_blas_thread(), HeapAllocation():
        return start, cache.run(combos)


_DASK_CACHE: dict[Any, Context] = {}

# ---------------------------------------------------------------------------------------------
# executors
# ---------------------------------------------------------------------------------------------
def _chunks(n: int, size: int) -> list[tuple[int, int]]:
    size = max(1, int(size))
    return [(i, min(n, i + size)) for i in range(0, n, size)]


def is_dask_client(obj: Any) -> bool:
    return type(obj).__module__.startswith("distributed") and hasattr(obj, "scatter") and hasattr(obj, "submit")


class _CallbackProgress:
    """``progress=callable``: called as ``callable(done, total)`` after every finished chunk."""

    def __init__(self, fn: Any, total: int) -> None:
        self.fn, self.total, self.n = fn, total, 0

    def update(self, k: int) -> None:
        self.n += int(k)
        self.fn(self.n, self.total)

    def __enter__(self) -> "_CallbackProgress":
        return self

    def __exit__(self, *exc: Any) -> None:
        pass


def progress_bar(total: int, enabled: Any, desc: str):
    if callable(enabled):
        return _CallbackProgress(enabled, total)
    from tqdm.auto import tqdm
    return tqdm(total=total, disable=not enabled, desc=desc, unit="run")


def _collect(rows: list, fut: Any, span: tuple[int, int], bar) -> None:
    """Put a finished chunk's rows in place; a chunk whose worker died marks its rows as failed."""
    a, b = span
    try:
        start, part = fut.result()
    except Exception as exc:  # noqa: BLE001 - e.g. BrokenProcessPool, KilledWorker: the other chunks go on
        part, start = [(None, f"{type(exc).__name__}: the worker running this combination failed: {exc}")] * (b - a), a
    rows[start:start + len(part)] = part
    bar.update(len(part))


def run_inprocess(ctx: Context, combos: list[dict], chunk: int, bar) -> list:
    prime_allocator()
    rows: list = []
    for a, b in _chunks(len(combos), chunk):
        rows.extend(ctx.run(combos[a:b]))
        bar.update(b - a)
    return rows


def _pool_context():
    """``fork`` where the platform has it (workers start in milliseconds and scripts need no
    ``if __name__ == "__main__"`` guard), else the platform default."""
    try:
        return _mp.get_context("fork")
    except ValueError:
        return _mp.get_context()


def run_processes(strategy: Strategy, data: pd.DataFrame, costs: dict, combos: list[dict], executor: Any,
                   chunk: int | None, bar) -> tuple[list, str]:
    token = f"{os.getpid()}-{time.monotonic_ns()}"
    own = not isinstance(executor, _cf.ProcessPoolExecutor)
    path = None
    limits = _limits(strategy)
    if limits is not None:  # start the sandbox's zygote here: forked pool workers share it
        from ..sandbox import warm

        warm(strategy.function.allow)
    if own:
        workers = (os.cpu_count() or 1) if executor == "processes" else int(executor)
        if workers < 1:
            raise SweepError(f"the number of processes must be at least 1, got {workers}.")
        pool = _cf.ProcessPoolExecutor(workers, mp_context=_pool_context(), initializer=_init_worker,
                                       initargs=(token, strategy.code, strategy.name, data, costs, _limits(strategy)))
    else:
        pool = executor
        workers = getattr(pool, "_max_workers", None) or os.cpu_count() or 1
        fd, path = tempfile.mkstemp(prefix="quantlab-sweep-", suffix=".pkl")
        with os.fdopen(fd, "wb") as fh:  # one file, read once per worker (not shipped per task)
            pickle.dump(data, fh, protocol=pickle.HIGHEST_PROTOCOL)
    size = chunk or max(1, min(64, math.ceil(len(combos) / (workers * 4))))
    rows: list = [None] * len(combos)
    done = False
    try:
        futs = {pool.submit(_process_chunk, token, strategy.code, strategy.name, costs, path, a, combos[a:b],
                            limits): (a, b)
                for a, b in _chunks(len(combos), size)}
        for fut in _cf.as_completed(futs):
            _collect(rows, fut, futs[fut], bar)
        done = True
    finally:
        if own:
            if not done:  # interrupted: do not wait for the running chunks
                for proc in list(getattr(pool, "_processes", {}).values()):
                    proc.terminate()
            pool.shutdown(wait=done, cancel_futures=True)
        if path is not None:
            try:
                os.unlink(path)
            except OSError:
                pass
    return rows, f"processes({workers})"


def run_dask(strategy: Strategy, data: pd.DataFrame, costs: dict, combos: list[dict], client: Any,
              chunk: int | None, bar) -> tuple[list, str]:
    from distributed import as_completed
    info = client.scheduler_info() if hasattr(client, "scheduler_info") else {}
    workers = info.get("workers", {}) if isinstance(info, dict) else {}
    threads = sum(int(w.get("nthreads", 1)) for w in workers.values()) or 1
    size = chunk or max(1, min(64, math.ceil(len(combos) / (threads * 4))))
    data_future = client.scatter(data, broadcast=True)
    rows: list = [None] * len(combos)
    futs = {client.submit(_dask_chunk, strategy.code, strategy.name, costs, data_future, a, combos[a:b],
                          _limits(strategy), pure=False): (a, b) for a, b in _chunks(len(combos), size)}
    try:
        for fut in as_completed(list(futs)):
            _collect(rows, fut, futs[fut], bar)
    finally:
        for f in futs:
            f.release()
        data_future.release()
    return rows, f"dask({len(workers)} workers, {threads} threads)"

