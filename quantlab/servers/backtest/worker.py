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

The server enforces the wall-clock timeout: a worker that does not answer in
time is killed and a fresh one is started.

Example
-------
>>> pool = WorkerPool(runs_dir="/tmp/runs", size=1)      # doctest: +SKIP
>>> await pool.start()                                    # doctest: +SKIP
>>> summary = await pool.run({"code": CODE, "name": "sma", "data": "sample"}, timeout=60)  # doctest: +SKIP
"""
from __future__ import annotations

import asyncio
import collections
import html
import logging
import multiprocessing
import os
import re
import resource
import sys
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["WorkerPool", "WorkerFailure", "EQUITY_POINTS"]

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
class _DataCache:
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


def _downsample(series, points: int = EQUITY_POINTS) -> dict[str, list]:
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


def _run(task: dict[str, Any], cache: _DataCache, memory_mb: int | None = None) -> tuple[dict[str, Any], Any]:
    from quantlab.engine import sandbox
    from quantlab.engine.backtest import SignalError, backtest
    from quantlab.engine.strategy import StrategyError

    t0 = time.perf_counter()
    ref = task.get("data") or "sample"
    name = task.get("name") or "strategy"
    timeout = float(task.get("timeout") or 300)
    limits = sandbox.SandboxLimits(cpu_seconds=timeout, wall_seconds=timeout,
                                   **({"memory_mb": memory_mb} if memory_mb else {}))
    try:
        # the static check first: refused code costs no data load and no process
        strategy = sandbox.load(task["code"], name=name, limits=limits)
    except sandbox.SandboxError as exc:
        raise WorkerFailure(_SANDBOX_KINDS.get(exc.kind, "sandbox"), str(exc)) from None
    except StrategyError as exc:
        raise WorkerFailure("strategy", str(exc)) from None
    data, data_hash, shared = cache.get(ref)
    object.__setattr__(strategy.function, "shared", shared)
    try:
        result = backtest(
            # a shallow copy (copy-on-write): a strategy that writes to its frame
            # cannot poison the cached data for later runs
            data.copy(deep=False),
            strategy,
            params=task.get("params") or None,
            cash=task.get("cash", 100_000),
            fees=task.get("fees", 0.0),
            slippage=task.get("slippage", 0.0),
            periods_per_year=task.get("periods_per_year"),
            fill=task.get("fill", "next_open"),
            data_ref=ref,
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
    if getattr(result, "_run_id", "") is None and hasattr(result, "_data_key"):
        # the run id hashes the data's content: reuse the hash cached with the data
        # instead of re-hashing 1M bars for every run (same id as in-process)
        result._data_key = data_hash
    elapsed = time.perf_counter() - t0
    summary = {
        "run_id": result.run_id,
        "name": name,
        "metrics": result.metrics,
        "trades": int(len(result.trades)),
        "bars": int(len(result.equity)),
        "equity": _downsample(result.equity),
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
    from quantlab.engine import sandbox as _sandbox

    try:  # start the zygote now, so the first run does not wait for its imports
        _sandbox._runner.zygote(tuple(sorted(_sandbox.allowed_modules() - _sandbox.DEFAULT_ALLOW)))
    except Exception as exc:  # noqa: BLE001 - every run will report it
        log.error("cannot start the strategy sandbox: %s", exc)
    runs = Path(runs_dir)
    cache = _DataCache(runs, Path(data_root) if data_root else None, cache_size)
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
            summary, result = _run(task, cache, memory_mb)
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


# ---------------------------------------------------------------------------
# in the server process
# ---------------------------------------------------------------------------
@dataclass(eq=False)
class _Worker:
    proc: Any
    conn: Any
    refs: collections.OrderedDict = field(default_factory=collections.OrderedDict)
    ready: bool = False
    dead: bool = False
    waiter: asyncio.Future | None = None
    saving: list = field(default_factory=list)

    @property
    def pid(self) -> int | None:
        return self.proc.pid


class WorkerPool:
    """A small pool of long-lived worker processes with timeouts and respawn.

    ``size`` workers are started once; :meth:`run` sends a task to an idle
    worker (preferring one that already holds the data reference), waits at
    most ``timeout`` seconds, kills and replaces the worker on timeout or crash.
    Each worker's pipe is watched by the event loop, so replies, "saved"
    notices and deaths are seen as they happen.

    Example
    -------
    >>> pool = WorkerPool("/tmp/runs", size=1, memory_mb=2048)   # doctest: +SKIP
    >>> await pool.start(); await pool.run(task, timeout=60)       # doctest: +SKIP
    """

    def __init__(
        self,
        runs_dir: str | os.PathLike[str],
        *,
        data_root: str | os.PathLike[str] | None = None,
        size: int = 2,
        memory_mb: int | None = 2048,
        cache_size: int = 4,
        start_method: str = "forkserver",
    ):
        self.runs_dir = str(runs_dir)
        self.data_root = str(data_root) if data_root else None
        self.size = max(1, int(size))
        self.memory_mb = memory_mb
        self.cache_size = cache_size
        self._ctx = multiprocessing.get_context(start_method)
        if start_method == "forkserver":
            self._ctx.set_forkserver_preload(
                ["quantlab.servers.backtest.worker", "quantlab.servers.backtest.store", "quantlab.engine.backtest", "pyarrow.parquet"]
            )
        self._workers: list[_Worker] = []
        self._idle: list[_Worker] = []
        self._cond: asyncio.Condition | None = None
        self._saving: dict[str, list] = {}  # run_id -> [count, asyncio.Event]
        self._background: set[asyncio.Future] = set()
        self._closed = False
        self._start_failures = 0
        self._broken: str | None = None

    def __repr__(self) -> str:
        return (
            f"WorkerPool(size={self.size}, memory_mb={self.memory_mb}, idle={len(self._idle)}, "
            f"workers={[w.pid for w in self._workers]})"
        )

    def _repr_html_(self) -> str:
        rows = "".join(
            f"<tr><td>{w.pid}</td><td>{'idle' if w in self._idle else ('starting' if not w.ready else 'busy')}</td>"
            f"<td>{html.escape(', '.join(map(str, w.refs))) or '—'}</td></tr>"
            for w in self._workers
        )
        return (
            f"<div><b>WorkerPool</b> <small>{self.size} workers · memory limit {self.memory_mb or '—'} MB</small>"
            f"<table><tr><th>pid</th><th>state</th><th>cached data</th></tr>{rows}</table></div>"
        )

    # -- lifecycle ---------------------------------------------------------------
    async def start(self, delay: float = 0.0) -> None:
        """Start the workers in the background after ``delay`` seconds (they become idle when ready).

        A short delay lets the server answer ``initialize`` first, so whoever spawned it
        (often together with other servers, on few cores) is not slowed down by the
        workers' imports; a run that arrives earlier just waits for them.
        """
        self._cond = asyncio.Condition()
        for _ in range(self.size):
            self._track(asyncio.ensure_future(self._spawn(delay=delay)))

    def _track(self, fut: asyncio.Future) -> None:
        self._background.add(fut)
        fut.add_done_callback(self._background.discard)

    async def _spawn(self, delay: float = 0.0) -> None:
        if delay:
            await asyncio.sleep(delay)
        if self._closed:
            return
        parent, child = self._ctx.Pipe(duplex=True)
        proc = self._ctx.Process(
            target=worker_main,
            args=(child, self.runs_dir, self.data_root, self.memory_mb, self.cache_size),
            name="quantlab-backtest-worker",
            daemon=True,
        )
        try:
            # the first start launches the forkserver (imports the engine): keep the loop free
            await asyncio.to_thread(proc.start)
        except Exception as exc:  # noqa: BLE001
            child.close()
            parent.close()
            self._start_failures += 1
            log.error("cannot start a backtest worker: %s", exc)
            if self._start_failures >= 5:
                self._broken = f"cannot start backtest workers: {type(exc).__name__}: {exc}"
                await self._notify()
            else:
                self._track(asyncio.ensure_future(self._spawn(delay=1.0)))
            return
        child.close()
        w = _Worker(proc=proc, conn=parent)
        self._workers.append(w)
        asyncio.get_running_loop().add_reader(parent.fileno(), self._on_readable, w)

    def _on_readable(self, w: _Worker) -> None:
        try:
            while not w.dead and w.conn.poll(0):
                self._dispatch(w, w.conn.recv())
        except (EOFError, OSError):
            self._on_death(w)

    def _dispatch(self, w: _Worker, msg: tuple) -> None:
        op = msg[0]
        if op == "ready":
            w.ready = True
            self._start_failures = 0
            self._track(asyncio.ensure_future(self._release(w)))
        elif op == "persisted":
            run_id, err = msg[1], msg[2]
            if err:
                log.error("run %s could not be saved: %s", run_id, err)
            if run_id in w.saving:
                w.saving.remove(run_id)
            self._saved(run_id)
        elif w.waiter is not None and not w.waiter.done():
            if op == "ok":  # the run is saved after the reply: note it before any later message
                run_id = msg[1]["run_id"]
                w.saving.append(run_id)
                entry = self._saving.setdefault(run_id, [0, asyncio.Event()])
                entry[0] += 1
            w.waiter.set_result(msg)
        else:
            log.warning("unexpected message from backtest worker %s: %r", w.pid, op)

    def _saved(self, run_id: str) -> None:
        entry = self._saving.get(run_id)
        if entry is not None:
            entry[0] -= 1
            if entry[0] <= 0:
                entry[1].set()
                del self._saving[run_id]

    def _on_death(self, w: _Worker) -> None:
        if w.dead:
            return
        was_ready = w.ready
        w.dead = True
        self._discard(w)
        if w.waiter is not None and not w.waiter.done():
            w.waiter.set_exception(EOFError("worker died"))
        for run_id in w.saving:
            self._saved(run_id)
        w.saving.clear()
        if self._closed:
            return
        if not was_ready:
            self._start_failures += 1
            if self._start_failures >= 5:
                self._broken = (
                    f"the backtest workers fail to start (exit code {w.proc.exitcode}); "
                    "see the server's stderr (is quantlab.engine importable?)."
                )
                self._track(asyncio.ensure_future(self._notify()))
                return
        self._track(asyncio.ensure_future(self._spawn(delay=0.0 if was_ready else 1.0)))

    async def _notify(self) -> None:
        assert self._cond is not None
        async with self._cond:
            self._cond.notify_all()

    async def _release(self, w: _Worker) -> None:
        assert self._cond is not None
        async with self._cond:
            if not w.dead and w in self._workers and w not in self._idle:
                self._idle.append(w)
            self._cond.notify_all()

    def _discard(self, w: _Worker) -> None:
        w.dead = True
        try:
            asyncio.get_running_loop().remove_reader(w.conn.fileno())
        except Exception:  # noqa: BLE001 - closed already
            pass
        if w in self._workers:
            self._workers.remove(w)
        if w in self._idle:
            self._idle.remove(w)
        try:
            if w.proc.is_alive():
                w.proc.kill()
            w.proc.join(5)
        except Exception:  # noqa: BLE001
            pass
        try:
            w.conn.close()
        except Exception:  # noqa: BLE001
            pass

    def _replace(self, w: _Worker) -> None:
        """Kill ``w`` and start a fresh worker in its place."""
        for run_id in w.saving:
            self._saved(run_id)
        w.saving.clear()
        self._discard(w)
        if not self._closed:
            self._track(asyncio.ensure_future(self._spawn()))

    async def close(self) -> None:
        """Stop every worker (politely, then by force)."""
        self._closed = True
        for t in list(self._background):
            t.cancel()
        for w in list(self._workers):
            try:
                w.conn.send(("stop",))
            except Exception:  # noqa: BLE001
                pass
        deadline = time.monotonic() + 3
        for w in list(self._workers):
            await asyncio.to_thread(w.proc.join, max(0.0, deadline - time.monotonic()))
            self._discard(w)

    async def _acquire(self, ref: str | None) -> _Worker:
        assert self._cond is not None, "WorkerPool.start() was not called"
        async with self._cond:
            while not self._idle:
                if self._broken:
                    raise WorkerFailure("internal", self._broken)
                await self._cond.wait()
            # data affinity: a worker that already holds the data reference
            chosen = next((w for w in self._idle if ref in w.refs), self._idle[0])
            self._idle.remove(chosen)
            return chosen

    # -- public ---------------------------------------------------------------------
    async def run(self, task: dict[str, Any], timeout: float) -> dict[str, Any]:
        """Run one backtest task in a worker; return its summary or raise :class:`WorkerFailure`."""
        ref = task.get("data") or "sample"
        name = task.get("name")
        w = await self._acquire(ref)
        w.waiter = asyncio.get_running_loop().create_future()
        try:
            w.conn.send(("run", task))
            msg = await asyncio.wait_for(w.waiter, timeout)
        except asyncio.TimeoutError:
            self._replace(w)
            raise WorkerFailure(
                "timeout",
                f"strategy {name!r} did not finish within {timeout:g} s and was stopped "
                "(an endless loop? a slow pure-Python loop over the bars?). Vectorise it with pandas/numpy "
                "or pass a larger `timeout`. The worker was restarted.",
            ) from None
        except (EOFError, OSError, ConnectionError):
            code = w.proc.exitcode
            if code is None:
                w.proc.join(1)
                code = w.proc.exitcode
            self._on_death(w)
            if code is not None and code < 0:
                import signal as _signal

                try:
                    signame = _signal.Signals(-code).name
                except ValueError:
                    signame = f"signal {-code}"
                how = (
                    f"killed by {signame}: most likely it exceeded the memory limit of {self.memory_mb} MB "
                    "or crashed inside a C extension"
                )
            else:
                how = f"exited with code {code}: does the strategy call os._exit()?"
            raise WorkerFailure(
                "crashed", f"the worker running strategy {name!r} died ({how}). The worker was restarted."
            ) from None
        except BaseException:  # cancelled: the worker is in an unknown state
            self._replace(w)
            raise
        finally:
            w.waiter = None
        if msg[0] == "error" and msg[1] == "memory":
            # a worker that hit MemoryError may be fragmented or half-broken: replace it
            self._replace(w)
            raise WorkerFailure(
                "memory",
                f"strategy {name!r} exceeded the worker's memory limit of {self.memory_mb} MB "
                "(MemoryError). Use less memory (work on columns, avoid copies of the whole frame) or "
                "start the server with a larger --memory-mb. The worker was restarted.",
            )
        if msg[0] == "ok":
            w.refs[ref] = True
            w.refs.move_to_end(ref)
            while len(w.refs) > self.cache_size:
                w.refs.popitem(last=False)
        await self._release(w)
        if msg[0] == "ok":
            return msg[1]
        if msg[0] == "error":
            raise WorkerFailure(msg[1], msg[2])
        raise WorkerFailure("internal", f"unexpected worker reply {msg[0]!r}")

    async def wait_persisted(self, run_id: str, timeout: float = 120) -> None:
        """Wait until a run that was just computed is on disk (returns at once otherwise)."""
        entry = self._saving.get(run_id)
        if entry is not None:
            await asyncio.wait_for(entry[1].wait(), timeout)

    async def wait_all_persisted(self, timeout: float = 120) -> None:
        """Wait until every run computed so far is on disk."""
        events = [entry[1] for entry in list(self._saving.values())]
        if events:
            await asyncio.wait_for(asyncio.gather(*(e.wait() for e in events)), timeout)

    async def wait_idle(self, timeout: float = 120) -> None:
        """Wait until every worker is started and idle (used by tests and benchmarks)."""
        assert self._cond is not None

        async def _wait() -> None:
            async with self._cond:
                while len(self._idle) < self.size:
                    await self._cond.wait()

        await asyncio.wait_for(_wait(), timeout)
