"""Worker processes that run strategy code for the backtest server.

Strategy code is untrusted: it may loop forever, eat memory, raise, return
nonsense or try to reach the host. It never runs in the server process, nor in
the workers themselves: a small pool of long-lived worker processes
(``forkserver`` start method, the engine pre-imported) loads the data and runs
the engine, and each run's ``signals()`` is evaluated by
:func:`quantlab.engine.sandbox.run_signals` in a sandboxed child forked from the
worker's zygote (static check, scrubbed environment, rlimits, seccomp/Landlock,
audit hook; see ``docs/sandbox.md``). Each worker

* sets ``RLIMIT_AS`` to ``memory_mb`` so a memory eater gets ``MemoryError``
  (or dies) instead of taking the machine down;
* loads data references itself and keeps the last few in an LRU cache (with a
  shared-memory copy the sandboxed children map), so a 1M-bar frame is not
  pickled for every call;
* writes each finished run to the runs directory (Parquet + JSON) *after* it
  has sent its short reply, so persistence does not sit on the caller's path.

The server's side (starting workers, timeouts, respawn) is
:class:`~quantlab.servers.backtest.pool.WorkerPool`.

Example
-------
>>> downsample(__import__("pandas").Series([1.0, 2.0, 3.0], index=[0, 1, 2]), points=2)
{'time': [0, 2], 'equity': [1.0, 3.0]}
"""
from __future__ import annotations

import collections
import logging
import os
import resource
import sys
import time
import traceback
from pathlib import Path
from typing import Any

__all__ = ["WorkerFailure", "EQUITY_POINTS", "DataCache", "run_task", "worker_main", "downsample"]

log = logging.getLogger("quantlab.servers.backtest")

#: the most equity points ``run_backtest`` returns inline
EQUITY_POINTS = 2_000



class WorkerFailure(Exception):
    """A run failed; ``kind`` says how (``strategy``, ``signals``, ``raised``,
    ``memory``, ``timeout``, ``crashed``, ``data``, ``params``, ``internal``)
    and the message says what to do."""

    def __init__(self, kind: str, message: str):
        super().__init__(message)
        self.kind = kind

    def __repr__(self) -> str:
        return f"WorkerFailure(kind={self.kind!r}, message={str(self)!r})"


# ---------------------------------------------------------------------------
# inside the worker process
# ---------------------------------------------------------------------------
class DataCache:
    """LRU cache of loaded data references (lives in one worker process)."""

    def __init__(self, runs_dir: Path, data_root: Path | None, size: int):
        self.runs_dir = runs_dir
        self.data_root = data_root
        self.size = max(1, size)
        self._items: collections.OrderedDict[tuple, Any] = collections.OrderedDict()

    def _key(self, ref: str) -> tuple:
        if ref.startswith("file:") and self.data_root is not None:
            # a file that changed on disk must be re-read: key on its stat
            p = (self.data_root / ref[5:]).resolve()
            try:
                st = p.stat()
                return (ref, st.st_mtime_ns, st.st_size)
            except OSError:
                return (ref,)
        return (ref,)

    def get(self, ref: str):
        """``(frame, content_hash, shared)`` of a data reference, loaded once and kept (LRU);
        ``shared`` is the frame in shared memory for the sandboxed children (made on first use)."""
        key = self._key(ref)
        if key in self._items:
            self._items.move_to_end(key)
            return self._items[key]
        from quantlab.engine.data import content_hash
        from quantlab.engine.sandbox import SharedData

        data = self._load(ref)
        item = (data, content_hash(data), SharedData(data))
        self._items[key] = item
        while len(self._items) > self.size:
            _, (_, _, shared) = self._items.popitem(last=False)
            shared.close()
        return item

    def _load(self, ref: str):
        from quantlab.servers.backtest.store import RunStore, UploadNotFound

        try:
            return RunStore(self.runs_dir).load_data(ref, data_root=self.data_root)
        except MemoryError:
            raise
        except UploadNotFound as exc:
            raise WorkerFailure("data", str(exc)) from None
        except Exception as exc:  # noqa: BLE001 - any loader error is the caller's bad reference
            raise WorkerFailure("data", f"cannot load data {ref!r}: {exc}") from None


def _strategy_traceback(exc: BaseException) -> str:
    """The traceback frames that are in the strategy's own code (not the engine's)."""
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if f.filename.startswith("<strategy")]
    if not frames:
        return ""
    lines = []
    for f in frames[-3:]:
        lines.append(f"  {f.filename}, line {f.lineno}, in {f.name}")
    return "\n" + "\n".join(lines)


def downsample(series, points: int = EQUITY_POINTS) -> dict[str, list]:
    """At most ``points`` evenly spaced samples of a Series (first and last kept),
    as columnar ``{"time": [int ns], "equity": [...]}``."""
    import numpy as np

    n = len(series)
    if n > points:
        idx = np.unique(np.linspace(0, n - 1, points).round().astype(np.int64))
    else:
        idx = np.arange(n)
    times = _index_ns(series.index)[idx]
    return {"time": times.tolist(), "equity": np.asarray(series.to_numpy(dtype="float64"))[idx].tolist()}


def _index_ns(index) -> "Any":
    import numpy as np
    import pandas as pd

    if isinstance(index, pd.DatetimeIndex):
        if index.tz is not None:
            index = index.tz_convert("UTC").tz_localize(None)
        return np.asarray(index.as_unit("ns").asi8)
    return np.asarray(index, dtype="int64")


_SANDBOX_KINDS = {"static": "sandbox", "forbidden": "sandbox", "cpu": "cpu", "memory": "memory",
                  "output": "output", "timeout": "timeout", "crashed": "crashed", "internal": "internal"}


def run_task(task: dict[str, Any], cache: DataCache, memory_mb: int | None = None) -> tuple[dict[str, Any], Any]:
    from quantlab.engine import sandbox
    from quantlab.engine.backtest import DEFAULT_CASH, DEFAULT_FEES, DEFAULT_SLIPPAGE, SignalError, backtest
    from quantlab.engine.strategy import StrategyError

    t0 = time.perf_counter()
    ref = task.get("data") or "sample"
    name = task.get("name") or "strategy"
    timeout = float(task.get("timeout") or 300)
    # the run's limit is wall-clock time; CPU time is a backstop a second later, so a busy loop is
    # reported as the timeout the caller set (with equal limits, either could fire first)
    limits = sandbox.SandboxLimits(cpu_seconds=timeout + 1, wall_seconds=timeout,
                                   **({"memory_mb": memory_mb} if memory_mb else {}))
    try:
        # the static check first: refused code costs no data load and no process
        strategy = sandbox.load(task["code"], name=name, limits=limits)
    except sandbox.SandboxError as exc:
        raise WorkerFailure(_SANDBOX_KINDS.get(exc.kind, "sandbox"), str(exc)) from None
    except StrategyError as exc:
        raise WorkerFailure("strategy", str(exc)) from None
    data, data_hash, shared = cache.get(ref)
    strategy.share(shared)  # the sandboxed children map the cached frame instead of receiving it
    try:
        result = backtest(
            # a shallow copy (copy-on-write): a strategy that writes to its frame
            # cannot poison the cached data for later runs
            data.copy(deep=False),
            strategy,
            params=task.get("params") or None,
            cash=task.get("cash", DEFAULT_CASH),
            fees=task.get("fees", DEFAULT_FEES),
            slippage=task.get("slippage", DEFAULT_SLIPPAGE),
            periods_per_year=task.get("periods_per_year"),
            fill=task.get("fill", "next_open"),
            data_ref=ref,
            # the run id hashes the data's content: reuse the hash cached with the data instead of
            # re-hashing 1M bars for every run (same id as in-process)
            data_hash=data_hash,
        )
    except MemoryError:
        raise
    except sandbox.SandboxError as exc:
        raise WorkerFailure(_SANDBOX_KINDS.get(exc.kind, "sandbox"), str(exc)) from None
    except SignalError as exc:
        if getattr(exc, "exc_type", None):  # the strategy's own exception, with its line
            raise WorkerFailure("raised", str(exc)) from None
        raise WorkerFailure("signals", f"strategy {name!r} returned unusable signals: {exc}") from None
    except StrategyError as exc:
        raise WorkerFailure("strategy", str(exc) + _strategy_traceback(exc)) from None
    except SystemExit as exc:
        raise WorkerFailure("raised", f"strategy {name!r} called exit({exc.code!r}); `signals` must return the positions instead.") from None
    except RecursionError as exc:
        raise WorkerFailure("raised", f"strategy {name!r} raised RecursionError: {exc}" + _strategy_traceback(exc)) from None
    except Exception as exc:  # noqa: BLE001 - user code may raise anything
        tb = _strategy_traceback(exc)
        where = "" if tb else " (inside the engine, while using its output)"
        raise WorkerFailure(
            "raised", f"strategy {name!r} raised {type(exc).__name__}: {exc}{where}{tb}"
        ) from None
    elapsed = time.perf_counter() - t0
    summary = {
        "run_id": result.run_id,
        "name": name,
        "metrics": result.metrics,
        "trades": int(len(result.trades)),
        "bars": int(len(result.equity)),
        "equity": downsample(result.equity),
        "elapsed": elapsed,
    }
    return summary, result


def _set_memory_limit(memory_mb: int | None) -> None:
    if not memory_mb:
        return
    limit = int(memory_mb) * 1024 * 1024
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    if hard != resource.RLIM_INFINITY:
        limit = min(limit, hard)
    resource.setrlimit(resource.RLIMIT_AS, (limit, hard))


def worker_main(conn, runs_dir: str, data_root: str | None, memory_mb: int | None, cache_size: int) -> None:
    """Entry point of one worker process: serve tasks from ``conn`` until EOF."""
    import threading
    from concurrent.futures import ThreadPoolExecutor

    # stdout may be the MCP stdio stream of the server: strategy prints go to stderr.
    try:
        os.dup2(2, 1)
    except OSError:
        pass
    sys.stdout = sys.stderr
    # pre-import what every run needs (free with forkserver: already imported)
    import numpy  # noqa: F401
    import pandas  # noqa: F401

    from quantlab.servers.backtest import store as _store

    try:
        import quantlab.engine.backtest  # noqa: F401
    except ImportError:  # engine missing: every run reports it
        pass
    _set_memory_limit(memory_mb)
    from quantlab.engine import sandbox

    try:  # start the zygote now, so the first run does not wait for its imports
        sandbox.warm()
    except Exception as exc:  # noqa: BLE001 - every run will report it
        log.error("cannot start the strategy sandbox: %s", exc)
    runs = Path(runs_dir)
    cache = DataCache(runs, Path(data_root) if data_root else None, cache_size)
    store = _store.RunStore(runs)
    lock = threading.Lock()

    def send(msg: tuple) -> None:
        with lock:
            try:
                conn.send(msg)
            except (BrokenPipeError, EOFError, ConnectionResetError):
                os._exit(0)  # the server is gone: nobody to answer, nothing to report

    idle = threading.Event()  # set while no backtest is running in this worker
    idle.set()

    def persist(result: Any, task: dict, summary: dict) -> None:
        try:
            store.write_run(result, task, summary, pause=idle.wait)
            send(("persisted", summary["run_id"], None))
        except BaseException as exc:  # noqa: BLE001
            send(("persisted", summary["run_id"], f"{type(exc).__name__}: {exc}"))

    # runs are saved on a background thread (pyarrow releases the GIL): the
    # worker takes the next task while the previous run is being written
    saver = ThreadPoolExecutor(max_workers=1, thread_name_prefix="quantlab-save")
    send(("ready", os.getpid()))
    while True:
        try:
            msg = conn.recv()
        except (EOFError, OSError, KeyboardInterrupt):
            break
        op = msg[0]
        if op == "stop":
            break
        if op == "ping":
            send(("pong", os.getpid()))
            continue
        if op != "run":
            send(("error", "internal", f"unknown worker op {op!r}"))
            continue
        task = msg[1]
        idle.clear()
        try:
            summary, result = run_task(task, cache, memory_mb)
        except WorkerFailure as exc:
            idle.set()
            send(("error", exc.kind, str(exc)))
            continue
        except MemoryError:
            idle.set()
            send(("error", "memory", f"memory limit of {memory_mb} MB exceeded"))
            continue
        except BaseException as exc:  # noqa: BLE001 - report, keep serving
            idle.set()
            send(("error", "internal", f"{type(exc).__name__}: {exc}"))
            continue
        idle.set()
        send(("ok", summary))
        saver.submit(persist, result, task, summary)
        del result
    saver.shutdown(wait=True)
