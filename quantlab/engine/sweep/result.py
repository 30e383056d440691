"""Parameter sweeps: one strategy, a grid of parameters, one row of metrics per combination.

:func:`sweep` runs every combination of a grid through the same execution model
and metrics as :func:`~quantlab.engine.backtest.backtest` (the numbers are
identical), on one of three executors:

==========================================  ===============================================================
``None`` / ``"inprocess"``                   this process; signals are computed per combination (or for many
                                             combinations at once, see *batched signals*), then the numpy core
                                             runs on each position column without building pandas results
``"processes"``, an ``int``, or a            local worker processes; the data reaches each worker **once**
``concurrent.futures.ProcessPoolExecutor``   (pool initializer, or a one-off file for a pool you pass in)
a ``dask.distributed.Client``                a Dask cluster; the data is scattered once to every worker
                                             (``broadcast=True``) and tasks reference that future; the
                                             combinations travel in chunks
==========================================  ===============================================================

A combination that fails (the strategy raises, its signals are not valid) gets
its message in the ``error`` column and NaN metrics; the others finish.

Batched signals
---------------
A strategy may also define ``signals_many(data, params)`` next to ``signals``:
``params`` is a list of parameter dicts (defaults filled in) and it returns the
target positions of all of them at once — a 2-D array ``(bars, len(params))``,
a DataFrame with ``len(params)`` columns, or an iterable of ``len(params)``
arrays/Series. The sweep calls it on chunks of combinations and falls back to
``signals`` one by one if it raises, so errors still land in the right row.
It must return exactly what ``signals`` would (``result(i)`` recomputes a row
with ``signals``).

Example
-------
>>> from quantlab.engine import data
>>> code = '''
... def signals(data, fast=10, slow=50):
...     c = data.close
...     return (c.rolling(fast).mean() > c.rolling(slow).mean()).astype(float)
... '''
>>> res = sweep(code, data.synthetic(2000, seed=1), {"fast": [5, 10], "slow": [50, 100]}, progress=False)
>>> res.frame[["fast", "slow"]].values.tolist()
[[5, 50], [5, 100], [10, 50], [10, 100]]
>>> res.best("sharpe").name in range(4)
True
"""
from __future__ import annotations

import concurrent.futures as _cf
import html
import itertools
import math
import multiprocessing as _mp
import os
import pickle
import tempfile
import time
from collections.abc import Mapping, Sequence
from typing import Any, Iterable

import numpy as np
import pandas as pd

from .. import stats as _stats
from ..backtest import BacktestResult, _returns, _signals_array, backtest, infer_periods_per_year, simulate
from ..strategy import Strategy, StrategyError

__all__ = ["sweep", "SweepResult", "expand_grid", "SweepError"]

#: Name of the optional batched-signals function a strategy may define.
BATCH_HOOK = "signals_many"
_NAT = np.iinfo(np.int64).min
_BATCH_BYTES = 16 * 2**20  # signal columns asked from ``signals_many`` at once
_INT_METRICS = ("trades", "open_trades", "max_drawdown_duration")


class SweepError(ValueError):
    """A sweep that cannot start: an empty or malformed grid, unknown parameters, unusable data or executor."""


# ---------------------------------------------------------------------------------------------
# grid
# ---------------------------------------------------------------------------------------------
def expand_grid(grid: Mapping[str, Any] | Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The list of parameter dicts a grid stands for, in sweep order.

    A dict of lists is the cartesian product over its keys in dict order (the
    last key varies fastest, like :func:`itertools.product`); a scalar value
    counts as a one-element list. A list of dicts is taken as is.

    >>> expand_grid({"fast": [5, 10], "slow": [50, 100]})
    [{'fast': 5, 'slow': 50}, {'fast': 5, 'slow': 100}, {'fast': 10, 'slow': 50}, {'fast': 10, 'slow': 100}]
    >>> expand_grid([{"fast": 3}, {"fast": 4, "slow": 9}])
    [{'fast': 3}, {'fast': 4, 'slow': 9}]
    """
    if isinstance(grid, Mapping):
        if not grid:
            raise SweepError("the grid is empty; give a dict of lists, e.g. {'fast': [5, 10], 'slow': [50, 100]}.")
        keys = [str(k) for k in grid]
        values = []
        for k, v in grid.items():
            if isinstance(v, (str, bytes)) or not isinstance(v, Iterable):
                v = [v]
            v = list(v.tolist() if isinstance(v, (np.ndarray, pd.Index, pd.Series)) else v)
            if not v:
                raise SweepError(f"grid parameter {k!r} has no values; give at least one.")
            values.append(v)
        return [dict(zip(keys, combo)) for combo in itertools.product(*values)]
    if isinstance(grid, (str, bytes)) or not isinstance(grid, Iterable):
        raise SweepError(f"grid must be a dict of lists or a list of dicts, got {type(grid).__name__}.")
    combos = list(grid)
    if not combos:
        raise SweepError("the grid is empty; give at least one parameter dict.")
    bad = [i for i, c in enumerate(combos) if not isinstance(c, Mapping)]
    if bad:
        raise SweepError(f"grid item {bad[0]} is a {type(combos[bad[0]]).__name__}, not a dict; "
                         "a list grid holds parameter dicts like {'fast': 5, 'slow': 50}.")
    return [{str(k): v for k, v in c.items()} for c in combos]


def _as_strategy(strategy: Strategy | str) -> Strategy:
    if isinstance(strategy, str):
        return Strategy.from_code(strategy)
    if not isinstance(strategy, Strategy):
        raise TypeError(f"strategy must be a quantlab Strategy or its source code, got {type(strategy).__name__}.")
    return strategy


# ---------------------------------------------------------------------------------------------
# the in-process core: signals -> target columns -> metrics, no pandas result objects
# ---------------------------------------------------------------------------------------------
class _LightColumn:
    __slots__ = ("values",)

    def __init__(self, values: np.ndarray) -> None:
        self.values = values

    def to_numpy(self, dtype: Any = None, copy: bool = False) -> np.ndarray:
        return self.values if dtype is None else self.values.astype(dtype, copy=copy)

    def notna(self) -> "_LightColumn":
        v = self.values
        return _LightColumn(v != _NAT if v.dtype == np.int64 else ~np.isnan(v))

    def __len__(self) -> int:
        return self.values.size


class _LightTrades:
    """The two trade columns ``compute_metrics`` reads (``pnl``, ``exit_time``), without building a
    DataFrame per run (that costs more than the metrics on short data). If ``compute_metrics`` ever
    needs more, the sweep switches to a real DataFrame for good."""

    usable = True
    __slots__ = ("_cols",)

    def __init__(self, pnl: np.ndarray, exit_ns: np.ndarray) -> None:
        self._cols = {"pnl": _LightColumn(pnl), "exit_time": _LightColumn(exit_ns)}

    def __getitem__(self, key: str) -> _LightColumn:
        return self._cols[key]

    def __len__(self) -> int:
        return len(self._cols["pnl"])


class _Context:
    """Everything a worker needs, built once: data arrays, strategy, costs."""

    __slots__ = ("data", "strategy", "close", "i8", "cash", "fees", "slippage", "ppy", "hook")

    def __init__(self, strategy: Strategy, data: pd.DataFrame, costs: Mapping[str, float]) -> None:
        self.data = data
        self.strategy = strategy
        self.close = data["close"].to_numpy(dtype=np.float64)
        idx = data.index if data.index.unit == "ns" else data.index.as_unit("ns")
        self.i8 = idx.asi8
        self.cash = float(costs["cash"])
        self.fees = float(costs["fees"])
        self.slippage = float(costs["slippage"])
        self.ppy = float(costs["periods_per_year"])
        hook = strategy.function.__globals__.get(BATCH_HOOK)
        self.hook = hook if callable(hook) else None

    def metrics(self, target: np.ndarray) -> dict[str, Any]:
        """Metrics of one validated target column — the same arithmetic as ``backtest()``."""
        out = simulate(self.close, target, self.cash, self.fees, self.slippage)
        equity, units = out["equity"], out["units"]
        rets = _returns(equity, self.cash)
        xi = out["exit_idx"]
        closed = xi >= 0
        exit_ns = np.where(closed, self.i8[np.where(closed, xi, 0)], _NAT)
        if _LightTrades.usable:
            try:
                return _stats.compute_metrics(equity, rets, units, _LightTrades(out["pnl"], exit_ns), self.ppy,
                                              cash=self.cash)
            except (AttributeError, TypeError, KeyError, IndexError):  # compute_metrics wants more of a frame
                _LightTrades.usable = False
        trades = pd.DataFrame({"pnl": out["pnl"], "exit_time": exit_ns.view("datetime64[ns]")})
        return _stats.compute_metrics(equity, rets, units, trades, self.ppy, cash=self.cash)

    def _columns(self, combos: list[dict[str, Any]]) -> list[Any] | None:
        """Raw signal columns from the batched hook, or None if there is none or it failed."""
        if self.hook is None or len(combos) < 2:
            return None
        try:
            raw = self.hook(self.data.copy(deep=False), [dict(c) for c in combos])
            if isinstance(raw, pd.DataFrame):
                if not raw.index.equals(self.data.index):
                    return None
                raw = raw.to_numpy()
            if isinstance(raw, np.ndarray):
                if raw.ndim != 2:
                    return None
                raw = np.asfortranarray(raw)  # contiguous columns: validating a strided column is slow
                cols = [raw[:, j] for j in range(raw.shape[1])]
            else:
                cols = list(raw)
        except Exception:  # noqa: BLE001 - fall back to signals() per combination
            return None
        return cols if len(cols) == len(combos) else None

    def run(self, combos: list[dict[str, Any]]) -> list[tuple[dict[str, Any] | None, str | None]]:
        """Metrics (or an error message) for each resolved parameter dict."""
        # batched signals are asked for a few at a time: all columns of a batch live at once, and
        # more than ~16 MB of them makes the allocator hand memory back and fault it in again
        # (measured: 64 columns of 100,000 bars ran 1.4x slower than 20)
        step = max(2, int(_BATCH_BYTES // (8 * max(1, self.close.size))))
        rows: list[tuple[dict[str, Any] | None, str | None]] = []
        for a in range(0, len(combos), step):
            rows.extend(self._run_batch(combos[a:a + step]))
        return rows

    def _run_batch(self, combos: list[dict[str, Any]]) -> list[tuple[dict[str, Any] | None, str | None]]:
        cols = self._columns(combos)
        rows: list[tuple[dict[str, Any] | None, str | None]] = []
        s = self.strategy
        for j, params in enumerate(combos):
            try:
                # a shallow copy (copy-on-write): a strategy that adds columns cannot affect the next run
                sig = cols[j] if cols is not None else s.function(self.data.copy(deep=False), **params)
                target = _signals_array(sig, self.data, s.name)
                rows.append((self.metrics(target), None))
            except Exception as exc:  # noqa: BLE001 - a failing combination is reported in its row
                rows.append((None, f"{type(exc).__name__}: {exc}"))
        return rows


# ---------------------------------------------------------------------------------------------
# worker-side state for processes and dask (data arrives once per worker)
# ---------------------------------------------------------------------------------------------
_WORKER: dict[str, _Context] = {}


_BLAS: list[Any] = []


def _one_blas_thread():
    """Limit BLAS to one thread while sweeping: the only BLAS call per run (a dot product in the
    Sortino ratio) otherwise waits for a second BLAS thread on a busy machine (milliseconds per
    run), and the sweep parallelises over runs anyway. A no-op without ``threadpoolctl``."""
    if not _BLAS:
        try:
            from threadpoolctl import ThreadpoolController
            _BLAS.append(ThreadpoolController())  # scanning the loaded libraries takes ~30 ms: once
        except ImportError:  # pragma: no cover - optional
            _BLAS.append(None)
    if _BLAS[0] is None:  # pragma: no cover
        import contextlib
        return contextlib.nullcontext()
    return _BLAS[0].limit(limits=1, user_api="blas")


def _init_worker(token: str, code: str, name: str, data: pd.DataFrame, costs: dict) -> None:
    """Process-pool initializer: build the context once per worker process.

    """
    _prime_allocator()
    _WORKER.clear()
    _WORKER[token] = _Context(Strategy.from_code(code, name=name), data, costs)


def _worker_context(token: str, code: str, name: str, costs: dict, path: str | None) -> _Context:
    ctx = _WORKER.get(token)
    if ctx is None:
        if path is None:
            raise RuntimeError("sweep worker has no data: the pool was not started by this sweep "
                               "(internal error; please report it).")
        with open(path, "rb") as fh:  # a pool passed in by the caller: load the one-off file once
            data = pickle.load(fh)
        _WORKER.clear()
        _prime_allocator()
        ctx = _WORKER[token] = _Context(Strategy.from_code(code, name=name), data, costs)
    return ctx


def _process_chunk(token: str, code: str, name: str, costs: dict, path: str | None,
                   start: int, combos: list[dict]) -> tuple[int, list]:
    ctx = _worker_context(token, code, name, costs, path)
    with _one_blas_thread(), _HeapAllocation():
        return start, ctx.run(combos)


_PRIMED: list[bool] = []


def _prime_allocator() -> None:
    """Once per process: allocate and free one 31 MiB block.

    glibc serves blocks above its *mmap threshold* with a fresh ``mmap`` (page faults on first
    touch, ``munmap`` on free) and raises that threshold, adaptively, to the largest such block
    freed so far (up to 32 MiB); it also returns free heap memory above twice the threshold to the
    OS. The engine allocates a few dozen arrays of ``8 * bars`` bytes per run, so at the start
    threshold (128 KiB, or just above one bar array) most of them page-fault: a sweep spends about
    a third of its time there. Freeing one large block moves the threshold to where a program that
    once held a 31 MiB temporary would have it anyway; nothing else about the allocator changes
    (it stays adaptive). Measured: 20x fewer page faults, 1.5-1.8x faster on 100,000 bars."""
    if not _PRIMED:
        _PRIMED.append(True)
        block = np.empty(31 * 2**20 // 8)
        del block


class _HeapAllocation:
    """Let glibc serve the sweep's ~1 MB numpy arrays from the heap while a chunk runs, then restore
    the worker's memory policy and trim.

    Dask's nanny starts workers with ``MALLOC_TRIM_THRESHOLD_=65536`` (so freed memory goes back to
    the OS). Setting it also freezes glibc's mmap threshold at 128 KiB, so every array of more than
    16,000 floats becomes an ``mmap`` + page faults + ``munmap``: a sweep chunk then runs about 3x
    slower than in a plain process (:func:`_prime_allocator` cannot help there: the threshold no
    longer adapts). A no-op outside glibc or without that variable, so it never changes the
    malloc policy of a process that did not set one."""

    _M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3

    def __init__(self) -> None:
        self.libc = None
        trim = os.environ.get("MALLOC_TRIM_THRESHOLD_")
        if trim is None or not trim.isdigit():
            return
        try:
            import ctypes
            libc = ctypes.CDLL("libc.so.6")
            libc.mallopt, libc.malloc_trim  # noqa: B018 - glibc only
        except (OSError, AttributeError):
            return
        self.libc, self.trim = libc, int(trim)

    def __enter__(self) -> "_HeapAllocation":
        if self.libc is not None:
            self.libc.mallopt(self._M_MMAP_THRESHOLD, 32 * 2**20)
            self.libc.mallopt(self._M_TRIM_THRESHOLD, 256 * 2**20)
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.libc is not None:
            self.libc.mallopt(self._M_MMAP_THRESHOLD, 128 * 2**10)   # glibc's default
            self.libc.mallopt(self._M_TRIM_THRESHOLD, self.trim)
            self.libc.malloc_trim(0)


def _dask_chunk(code: str, name: str, costs: dict, data: pd.DataFrame, start: int,
                combos: list[dict]) -> tuple[int, list]:
    """Dask task: ``data`` is the scattered frame (resolved on the worker, never shipped per task)."""
    key = (code, name, id(data), tuple(sorted(costs.items())))
    cache = _DASK_CACHE.get(key)
    if cache is None:
        _DASK_CACHE.clear()
        _prime_allocator()
        cache = _DASK_CACHE[key] = _Context(Strategy.from_code(code, name=name), data, costs)
    with _one_blas_thread(), _HeapAllocation():
        return start, cache.run(combos)


_DASK_CACHE: dict[Any, _Context] = {}


# ---------------------------------------------------------------------------------------------
# executors
# ---------------------------------------------------------------------------------------------
def _chunks(n: int, size: int) -> list[tuple[int, int]]:
    size = max(1, int(size))
    return [(i, min(n, i + size)) for i in range(0, n, size)]


def _is_dask_client(obj: Any) -> bool:
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


def _progress(total: int, enabled: Any, desc: str):
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


def _run_inprocess(ctx: _Context, combos: list[dict], chunk: int, bar) -> list:
    _prime_allocator()
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


def _run_processes(strategy: Strategy, data: pd.DataFrame, costs: dict, combos: list[dict], executor: Any,
                   chunk: int | None, bar) -> tuple[list, str]:
    token = f"{os.getpid()}-{time.monotonic_ns()}"
    own = not isinstance(executor, _cf.ProcessPoolExecutor)
    path = None
    if own:
        workers = (os.cpu_count() or 1) if executor == "processes" else int(executor)
        if workers < 1:
            raise SweepError(f"the number of processes must be at least 1, got {workers}.")
        pool = _cf.ProcessPoolExecutor(workers, mp_context=_pool_context(), initializer=_init_worker,
                                       initargs=(token, strategy.code, strategy.name, data, costs))
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
        futs = {pool.submit(_process_chunk, token, strategy.code, strategy.name, costs, path, a, combos[a:b]): (a, b)
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


def _run_dask(strategy: Strategy, data: pd.DataFrame, costs: dict, combos: list[dict], client: Any,
              chunk: int | None, bar) -> tuple[list, str]:
    from distributed import as_completed
    info = client.scheduler_info() if hasattr(client, "scheduler_info") else {}
    workers = info.get("workers", {}) if isinstance(info, dict) else {}
    threads = sum(int(w.get("nthreads", 1)) for w in workers.values()) or 1
    size = chunk or max(1, min(64, math.ceil(len(combos) / (threads * 4))))
    data_future = client.scatter(data, broadcast=True)
    rows: list = [None] * len(combos)
    futs = {client.submit(_dask_chunk, strategy.code, strategy.name, costs, data_future, a, combos[a:b],
                          pure=False): (a, b) for a, b in _chunks(len(combos), size)}
    try:
        for fut in as_completed(list(futs)):
            _collect(rows, fut, futs[fut], bar)
    finally:
        for f in futs:
            f.release()
        data_future.release()
    return rows, f"dask({len(workers)} workers, {threads} threads)"


# ---------------------------------------------------------------------------------------------
# entry point
# ---------------------------------------------------------------------------------------------
def sweep(strategy: Strategy | str, data: pd.DataFrame | str, grid: Mapping[str, Any] | Sequence[Mapping[str, Any]],
          executor: Any = None, *, progress: Any = True, chunk: int | None = None,
          data_ref: str | None = None, **costs: Any) -> "SweepResult":
    """Backtest ``strategy`` for every parameter combination in ``grid``.

    Parameters
    ----------
    strategy : a :class:`Strategy` or its source code.
    data : an OHLCV DataFrame, or a data reference such as ``"sample"`` or ``"synthetic:seed=7,bars=100000"``.
    grid : a dict of lists (cartesian product in key order) or a list of parameter dicts; see :func:`expand_grid`.
    executor : ``None``/``"inprocess"``, ``"processes"`` (one per CPU), an ``int`` (that many processes),
        a ``concurrent.futures.ProcessPoolExecutor``, a ``dask.distributed.Client``, or a Dask scheduler
        address ``"dask://HOST:PORT"`` / ``"tcp://HOST:PORT"`` (connected for this sweep, then closed).
    progress : show a tqdm progress bar; or a callable, called as ``progress(done, total)`` after every chunk.
    chunk : combinations per task (default: a few tasks per worker, at most 64 combinations each).
    data_ref : where the data came from (recorded, and used by :meth:`SweepResult.result` after ``from_dict``).
    **costs : ``cash``, ``fees``, ``slippage``, ``periods_per_year`` as for :func:`backtest`.

    Every row's metrics equal ``backtest(data, strategy, params, **costs).metrics``.

    Example
    -------
    >>> from quantlab.engine import data
    >>> res = sweep("def signals(data, n=10):\\n    return (data.close > data.close.rolling(n).mean()) * 1.0",
    ...             data.synthetic(1000, seed=2), {"n": [5, 10, 20]}, progress=False, fees=0.001)
    >>> len(res), list(res.frame.columns[:2])
    (3, ['n', 'total_return'])
    """
    strategy = _as_strategy(strategy)
    if isinstance(data, str):
        from ..data import from_reference
        data_ref = data_ref or data
        data = from_reference(data)
    if not isinstance(data, pd.DataFrame) or "close" not in data.columns:
        raise TypeError("data must be an OHLCV pandas DataFrame with a 'close' column or a data reference "
                        "such as 'sample' (see quantlab.engine.data).")
    if not isinstance(data.index, pd.DatetimeIndex):
        raise TypeError("data must have a DatetimeIndex; use quantlab.engine.data.validate(df) to normalise it.")
    if len(data) == 0:
        raise ValueError("data has no bars.")
    unknown_costs = set(costs) - {"cash", "fees", "slippage", "periods_per_year"}
    if unknown_costs:
        raise TypeError(f"sweep() got unexpected keyword(s) {sorted(unknown_costs)}; costs are cash, fees, "
                        "slippage and periods_per_year.")
    cash = float(costs.get("cash", 100_000))
    fees = float(costs.get("fees", 0.0))
    slippage = float(costs.get("slippage", 0.0))
    if not (cash > 0 and math.isfinite(cash)):
        raise ValueError(f"cash must be a positive number, got {cash}.")
    if not (0.0 <= fees < 1.0) or not (0.0 <= slippage < 1.0):
        raise ValueError(f"fees and slippage are fractions of traded notional in [0, 1), got fees={fees}, "
                         f"slippage={slippage}.")
    if not np.isfinite(data["close"].to_numpy(dtype=np.float64)).all():
        raise ValueError("data 'close' contains NaN or infinite values; clean it with quantlab.engine.data.validate.")
    ppy = costs.get("periods_per_year")
    ppy = float(ppy) if ppy is not None else infer_periods_per_year(data.index)
    full_costs = {"cash": cash, "fees": fees, "slippage": slippage, "periods_per_year": ppy}

    combos = expand_grid(grid)
    names: list[str] = []
    for c in combos:
        names.extend(k for k in c if k not in names)
    try:
        strategy.resolve_params({k: None for k in names})
    except StrategyError as exc:
        raise SweepError(f"the grid names a parameter the strategy does not take: {exc}") from None
    resolved = [strategy.resolve_params(c) for c in combos]

    kind = "inprocess" if executor in (None, "inprocess") else executor
    own_client = None
    if isinstance(kind, str) and kind.startswith(("dask://", "tcp://", "tls://")):
        try:
            from distributed import Client
        except ImportError:
            raise SweepError("a Dask executor needs dask.distributed: pip install 'quantlab[dask]'.") from None
        address = "tcp://" + kind[len("dask://"):] if kind.startswith("dask://") else kind
        kind = own_client = Client(address, timeout=30)
    t0 = time.perf_counter()
    with _progress(len(combos), progress, f"sweep {strategy.name}") as bar, _closing(own_client):
        if kind == "inprocess":
            with _one_blas_thread(), _HeapAllocation():
                rows = _run_inprocess(_Context(strategy, data, full_costs), resolved, chunk or 32, bar)
            label = "inprocess"
        elif _is_dask_client(kind):
            rows, label = _run_dask(strategy, data, full_costs, resolved, kind, chunk, bar)
        elif kind == "processes" or isinstance(kind, _cf.ProcessPoolExecutor) or (
                isinstance(kind, (int, np.integer)) and not isinstance(kind, bool)):
            rows, label = _run_processes(strategy, data, full_costs, resolved, kind, chunk, bar)
        else:
            raise SweepError(f"unknown executor {executor!r}; use None/'inprocess', 'processes', a number of "
                             "processes, a concurrent.futures.ProcessPoolExecutor, a dask.distributed.Client "
                             "or 'dask://HOST:PORT'.")
    elapsed = time.perf_counter() - t0
    frame = _frame(names, resolved, rows)
    return SweepResult(strategy, frame, full_costs, data=data, data_ref=data_ref, executor=label,
                       elapsed=elapsed, params=resolved, param_names=names)


class _closing:
    def __init__(self, client: Any) -> None:
        self.client = client

    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: Any) -> None:
        if self.client is not None:
            self.client.close()


def _frame(names: list[str], resolved: list[dict], rows: list) -> pd.DataFrame:
    cols: dict[str, Any] = {k: [p.get(k) for p in resolved] for k in names}
    metric_names = list(_stats.METRICS)
    for m, _ in rows:
        if m is not None:
            metric_names += [k for k in m if k not in metric_names]
            break
    for k in metric_names:
        vals = [m.get(k, np.nan) if m is not None else np.nan for m, _ in rows]
        if k in _INT_METRICS:
            cols[k] = pd.array([None if (isinstance(v, float) and math.isnan(v)) else v for v in vals], dtype="Int64") \
                if any(m is None for m, _ in rows) else np.array(vals, dtype=np.int64)
        else:
            cols[k] = np.array(vals, dtype=np.float64)
    cols["error"] = pd.Series([e for _, e in rows], dtype=object)
    frame = pd.DataFrame(cols)
    for k in names:  # parameter columns: keep object dtype only when values are not plain numbers
        try:
            frame[k] = pd.to_numeric(frame[k]) if frame[k].map(lambda v: isinstance(v, (int, float, np.number))
                                                                 and not isinstance(v, bool)).all() else frame[k]
        except (TypeError, ValueError):
            pass
    return frame


# ---------------------------------------------------------------------------------------------
# result
# ---------------------------------------------------------------------------------------------
class _LazyResults(Sequence):
    """The successful runs of a sweep as :class:`BacktestResult` objects, computed on first access."""

    def __init__(self, owner: "SweepResult") -> None:
        self._owner = owner
        self._rows = [int(i) for i in owner.frame.index[owner.frame["error"].isna()]]

    def __len__(self) -> int:
        return len(self._rows)

    def __getitem__(self, i):
        if isinstance(i, slice):
            return [self._owner.result(self._rows[j]) for j in range(*i.indices(len(self._rows)))]
        return self._owner.result(self._rows[i])

    def __repr__(self) -> str:
        return f"<{len(self)} lazy BacktestResults of sweep {self._owner.strategy.name!r}>"


class SweepResult:
    """The outcome of :func:`sweep`.

    ``frame`` is a DataFrame with one row per combination in grid order: the
    parameters, every metric of :data:`quantlab.engine.stats.METRICS` and an
    ``error`` column (``None`` when the run succeeded). ``strategy``, ``costs``
    (cash, fees, slippage, periods_per_year), ``data_ref``, ``executor`` and
    ``elapsed`` (seconds) describe the run.

    :meth:`best` picks a row, :meth:`result` rebuilds one full
    :class:`BacktestResult`, :attr:`results` is a lazy sequence of them for
    ``quantlab.review``, :meth:`top` keeps the best ``n`` rows,
    :meth:`plot_heatmap` draws a metric over two parameters, and
    :meth:`to_dict`/:meth:`from_dict` round-trip through JSON.

    Example
    -------
    >>> from quantlab.engine import data
    >>> res = sweep("def signals(data, n=10):\\n    return (data.close > data.close.rolling(n).mean()) * 1.0",
    ...             data.synthetic(1000, seed=2), {"n": [5, 10]}, progress=False)
    >>> res.result(0).metrics == res.frame.iloc[0][list(res.result(0).metrics)].to_dict()
    True
    >>> SweepResult.from_dict(res.to_dict()).frame.equals(res.frame)
    True
    """

    def __init__(self, strategy: Strategy, frame: pd.DataFrame, costs: Mapping[str, float], *,
                 data: pd.DataFrame | None = None, data_ref: str | None = None, executor: str = "inprocess",
                 elapsed: float = float("nan"), params: list[dict] | None = None,
                 param_names: list[str] | None = None) -> None:
        self.strategy = strategy
        if param_names is None:
            cols = list(frame.columns)
            param_names = cols[: cols.index(_stats.METRICS[0])] if _stats.METRICS[0] in cols else []
        self._param_names = list(param_names)
        self.frame = frame
        self.costs = dict(costs)
        self.data_ref = data_ref
        self.executor = executor
        self.elapsed = float(elapsed)
        self._data = data
        self._params = params
        self._cache: dict[int, BacktestResult] = {}

    # -- structure -----------------------------------------------------------------------------
    @property
    def param_names(self) -> list[str]:
        """The parameter columns of :attr:`frame`, in order."""
        return list(self._param_names)

    @property
    def metric_names(self) -> list[str]:
        """The metric columns of :attr:`frame`, in order."""
        cols = list(self.frame.columns)
        return [c for c in cols if c not in self._param_names and c != "error"]

    @property
    def errors(self) -> pd.DataFrame:
        """The rows whose run failed (parameters and ``error``)."""
        return self.frame.loc[self.frame["error"].notna(), [*self.param_names, "error"]]

    def __len__(self) -> int:
        return len(self.frame)

    def params(self, i: int) -> dict[str, Any]:
        """The full parameter dict (strategy defaults filled in) of row ``i``.

        >>> from quantlab.engine import data
        >>> sweep("def signals(data, n=3, k=1):\\n    return data.close*0", data.synthetic(50),
        ...       [{"n": 4}], progress=False).params(0)
        {'n': 4, 'k': 1}
        """
        i = self._check_row(i)
        if self._params is not None:
            return dict(self._params[i])
        row = self.frame.iloc[i]
        return self.strategy.resolve_params({k: _py(row[k]) for k in self.param_names if not _isna(row[k])})

    def _check_row(self, i: int) -> int:
        n = len(self.frame)
        if not isinstance(i, (int, np.integer)) or isinstance(i, bool):
            raise TypeError(f"row must be an integer position, got {type(i).__name__}.")
        if not -n <= i < n:
            raise IndexError(f"row {i} is out of range for a sweep of {n} combinations.")
        return int(i) % n

    # -- picking -----------------------------------------------------------------------------
    def _check_metric(self, metric: str) -> None:
        if metric not in self.metric_names:
            raise KeyError(f"unknown metric {metric!r}; choose one of {', '.join(self.metric_names)}.")

    def best(self, metric: str = "sharpe", ascending: bool = False) -> pd.Series:
        """The row with the highest ``metric`` (lowest with ``ascending=True``); its name is the row position.

        Failed runs and NaN values are skipped.

        >>> from quantlab.engine import data
        >>> res = sweep("def signals(data, n=10):\\n    return (data.close > data.close.rolling(n).mean()) * 1.0",
        ...             data.synthetic(1000, seed=2), {"n": [5, 10, 20]}, progress=False)
        >>> int(res.best("max_drawdown", ascending=True)["n"]) in (5, 10, 20)
        True
        """
        self._check_metric(metric)
        ok = self.frame[self.frame["error"].isna() & self.frame[metric].notna()]
        if ok.empty:
            raise ValueError(f"no run has a value for {metric!r} (all {len(self.frame)} failed or are NaN); "
                             "see .errors.")
        return ok.sort_values(metric, ascending=ascending, kind="stable").iloc[0]

    def top(self, n: int = 10, metric: str = "sharpe", ascending: bool = False) -> "SweepResult":
        """A sweep result with only the best ``n`` successful rows (best first), e.g. for ``quantlab.review``."""
        self._check_metric(metric)
        ok = self.frame[self.frame["error"].isna() & self.frame[metric].notna()]
        rows = ok.sort_values(metric, ascending=ascending, kind="stable").index[: int(n)]
        sub = SweepResult(self.strategy, self.frame.loc[rows].reset_index(drop=True), self.costs, data=self._data,
                          data_ref=self.data_ref, executor=self.executor, elapsed=self.elapsed,
                          params=[self._params[i] for i in rows] if self._params is not None else None,
                          param_names=self._param_names)
        sub._cache = {j: self._cache[i] for j, i in enumerate(rows) if i in self._cache}
        return sub

    # -- full results ------------------------------------------------------------------------
    def attach(self, data: pd.DataFrame) -> "SweepResult":
        """Give the data back to a result rebuilt with :meth:`from_dict` (so :meth:`result` works); returns ``self``."""
        self._data = data
        return self

    def result(self, i: int) -> BacktestResult:
        """The full :class:`BacktestResult` of row ``i``: ``backtest()`` with that row's parameters (cached).

        Raises the run's error again for a failed row.
        """
        i = self._check_row(i)
        if i not in self._cache:
            if self._data is None:
                if self.data_ref is None:
                    raise ValueError("this sweep result has no data (it was rebuilt from a dict); "
                                     "call .attach(data) first.")
                from ..data import from_reference
                self._data = from_reference(self.data_ref)
            self._cache[i] = backtest(self._data, self.strategy, self.params(i), data_ref=self.data_ref,
                                      **self.costs)
        return self._cache[i]

    @property
    def results(self) -> Sequence:
        """The successful runs as a lazy sequence of :class:`BacktestResult` (computed when accessed).

        ``quantlab.review(res.top(5))`` compares the five best runs.
        """
        return _LazyResults(self)

    # -- charts ---------------------------------------------------------------------------------
    def plot_heatmap(self, x: str, y: str, metric: str = "sharpe", ax: Any = None, agg: str = "mean"):
        """Heat map of ``metric`` over parameters ``x`` (columns) and ``y`` (rows); returns the matplotlib Figure.

        Other parameters are aggregated with ``agg`` (default the mean). Works without a display.

        >>> from quantlab.engine import data
        >>> res = sweep("def signals(data, a=1, b=2):\\n    return data.close*0", data.synthetic(50),
        ...             {"a": [1, 2], "b": [3, 4]}, progress=False)
        >>> type(res.plot_heatmap("a", "b", "total_return")).__name__
        'Figure'
        """
        for p in (x, y):
            if p not in self.param_names:
                raise KeyError(f"unknown parameter {p!r}; choose from {', '.join(self.param_names)}.")
        if x == y:
            raise ValueError("x and y must be two different parameters.")
        self._check_metric(metric)
        table = self.frame.pivot_table(index=y, columns=x, values=metric, aggfunc=agg, dropna=False)
        table = table.astype(float).sort_index().sort_index(axis=1)
        if ax is None:
            from matplotlib.figure import Figure
            fig = Figure(figsize=(max(4.0, 0.45 * table.shape[1] + 2.5), max(3.0, 0.35 * table.shape[0] + 1.8)))
            ax = fig.add_subplot()
        else:
            fig = ax.figure
        values = np.ma.masked_invalid(table.to_numpy())
        im = ax.imshow(values, aspect="auto", origin="lower", cmap="viridis", interpolation="nearest")
        ax.set_xticks(range(table.shape[1]), [str(v) for v in table.columns], rotation=90 if table.shape[1] > 12 else 0)
        ax.set_yticks(range(table.shape[0]), [str(v) for v in table.index])
        ax.set_xlabel(x)
        ax.set_ylabel(y)
        ax.set_title(f"{self.strategy.name}: {metric}")
        fig.colorbar(im, ax=ax, label=metric)
        if table.size <= 100:
            for (r, c), v in np.ndenumerate(table.to_numpy()):
                if math.isfinite(v):
                    ax.text(c, r, f"{v:.3g}", ha="center", va="center", fontsize=7, color="white")
        return fig

    # -- serialisation ------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict (metrics as numbers, NaN/inf as strings) for sending over MCP; see :meth:`from_dict`."""
        from ..backtest import _enc_value
        cols = {}
        for c in self.frame.columns:
            s = self.frame[c]
            cols[c] = [None if (v is None or v is pd.NA) else _enc_value(v) for v in s.astype(object).tolist()]
        return {
            "version": 1,
            "strategy": {"name": self.strategy.name, "code": self.strategy.code},
            "param_names": self.param_names,
            "columns": list(self.frame.columns),
            "dtypes": {c: str(t) for c, t in self.frame.dtypes.items()},
            "data": cols,
            "costs": {k: _enc_value(v) for k, v in self.costs.items()},
            "data_ref": self.data_ref,
            "executor": self.executor,
            "elapsed": _enc_value(self.elapsed),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], data: pd.DataFrame | None = None) -> "SweepResult":
        """Rebuild a result from :meth:`to_dict` output; pass ``data`` (or use a ``data_ref``) to use :meth:`result`."""
        from ..backtest import _unjson
        if d.get("version") != 1:
            raise ValueError(f"unsupported sweep result version {d.get('version')!r}; expected 1.")
        strategy = Strategy.from_code(d["strategy"]["code"], name=d["strategy"]["name"])
        cols = {}
        for c in d["columns"]:
            vals = d["data"][c] if c == "error" else [_unjson(v) for v in d["data"][c]]
            dtype = d.get("dtypes", {}).get(c, "object")
            try:
                cols[c] = pd.Series(vals, dtype=dtype)
            except (TypeError, ValueError):
                cols[c] = pd.Series(vals, dtype=object)
        frame = pd.DataFrame(cols, columns=d["columns"])
        return cls(strategy, frame, {k: _unjson(v) for k, v in d["costs"].items()}, data=data,
                   data_ref=d.get("data_ref"), executor=d.get("executor", "?"),
                   elapsed=_unjson(d.get("elapsed", "nan")), param_names=d.get("param_names"))

    # -- display ----------------------------------------------------------------------------------
    def _best_text(self, metric: str = "sharpe") -> str:
        try:
            row = self.best(metric)
        except (ValueError, KeyError):
            return f"no best {metric}"
        params = ", ".join(f"{k}={_py(row[k])!r}" for k in self.param_names)
        return f"best {metric}={row[metric]:.4g} at row {row.name} ({params})"

    def __repr__(self) -> str:
        n_err = int(self.frame["error"].notna().sum())
        return (f"SweepResult(strategy={self.strategy.name!r}, runs={len(self.frame)}, errors={n_err}, "
                f"params={self.param_names}, {self._best_text()}, executor={self.executor!r}, "
                f"elapsed={self.elapsed:.3g}s)")

    def _repr_html_(self) -> str:
        n_err = int(self.frame["error"].notna().sum())
        head = self.frame.head(10).to_html(float_format=lambda v: f"{v:.4g}", na_rep="—", border=0)
        try:
            best = self.best("sharpe").to_frame().T.to_html(float_format=lambda v: f"{v:.4g}", na_rep="—", border=0)
        except (ValueError, KeyError):
            best = "<i>no successful run</i>"
        costs = ", ".join(f"{k}={v:g}" for k, v in self.costs.items())
        return (f"<div><b>Sweep</b> <code>{html.escape(self.strategy.name)}</code> <small>{len(self.frame):,} runs"
                f" · {n_err} errors · {html.escape(costs)} · {html.escape(self.executor)} · {self.elapsed:.3g} s"
                f"</small><br><b>best sharpe</b>{best}<b>first rows</b>{head}</div>")


def _isna(v: Any) -> bool:
    return v is None or v is pd.NA or (isinstance(v, float) and math.isnan(v))


def _py(v: Any) -> Any:
    return v.item() if isinstance(v, np.generic) else v
