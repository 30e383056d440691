"""The backtest server's pool of worker processes (in the server process).

The workers themselves (what runs inside them: data cache, sandboxed runs, saving) are
:mod:`quantlab.servers.backtest.worker`. The pool starts them with ``forkserver`` (the engine
pre-imported), sends each run to an idle worker (preferring one that already holds the data
reference), enforces the wall-clock timeout, and kills and replaces a worker that times out,
crashes or hits its memory limit. Each worker's pipe is watched by the event loop, so replies,
"saved" notices and deaths are seen as they happen.

Example
-------
>>> pool = WorkerPool("/tmp/runs", size=1, memory_mb=2048)
>>> pool
WorkerPool(size=1, memory_mb=2048, idle=0, workers=[])
"""
from __future__ import annotations

import asyncio
import collections
import html
import logging
import multiprocessing
import os
import time
from dataclasses import dataclass, field
from typing import Any

from quantlab.servers.backtest.worker import WorkerFailure, worker_main

__all__ = ["WorkerPool", "WorkerProcess"]

log = logging.getLogger("quantlab.servers.backtest")


@dataclass(eq=False)
class WorkerProcess:
    """One worker process as the pool sees it: its pipe, the data it holds, its state."""


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
        self._workers: list[WorkerProcess] = []
        self._idle: list[WorkerProcess] = []
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
        w = WorkerProcess(proc=proc, conn=parent)
        self._workers.append(w)
        asyncio.get_running_loop().add_reader(parent.fileno(), self._on_readable, w)

    def _on_readable(self, w: WorkerProcess) -> None:
        try:
            while not w.dead and w.conn.poll(0):
                self._dispatch(w, w.conn.recv())
        except (EOFError, OSError):
            self._on_death(w)

    def _dispatch(self, w: WorkerProcess, msg: tuple) -> None:
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

    def _on_death(self, w: WorkerProcess) -> None:
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

    async def _release(self, w: WorkerProcess) -> None:
        assert self._cond is not None
        async with self._cond:
            if not w.dead and w in self._workers and w not in self._idle:
                self._idle.append(w)
            self._cond.notify_all()

    def _discard(self, w: WorkerProcess) -> None:
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

    def _replace(self, w: WorkerProcess) -> None:
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

    async def _acquire(self, ref: str | None) -> WorkerProcess:
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
