"""The entry point :func:`sweep`: check the inputs, expand the grid, pick the executor."""
from __future__ import annotations

import concurrent.futures as _cf
import math
import time
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from quantlab._util import dask_address, is_dask_address

from ..backtest import DEFAULT_FILL, check_data, check_fill, infer_periods_per_year
from ..costs import DEFAULT_CASH, DEFAULT_FEES, DEFAULT_SLIPPAGE
from ..strategy import Strategy, StrategyError
from .allocator import HeapAllocation, one_blas_thread
from .core import Context
from .executors import is_dask_client, progress_bar, run_dask, run_inprocess, run_processes
from .grid import SweepError, expand_grid
from .result import SweepResult, result_frame

__all__ = ["sweep"]


def _as_strategy(strategy: Strategy | str, sandbox: Any = False) -> Strategy:
    """``strategy`` as a :class:`Strategy` (:meth:`Strategy.coerce`), loaded into the sandbox unless ``sandbox=False``."""
    strategy = Strategy.coerce(strategy)
    if sandbox is not False and sandbox is not None:
        from .. import sandbox as _sandbox

        if not isinstance(strategy, _sandbox.SandboxedStrategy):
            strategy = _sandbox.load(strategy, limits=None if sandbox is True else sandbox)
    return strategy



def sweep(strategy: Strategy | str, data: pd.DataFrame | str, grid: Mapping[str, Any] | Sequence[Mapping[str, Any]],
          executor: Any = None, *, progress: Any = True, chunk: int | None = None,
          data_ref: str | None = None, sandbox: Any = False, holdout: float | None = None,
          **costs: Any) -> "SweepResult":
    """Backtest ``strategy`` for every parameter combination in ``grid``.

    Parameters
    ----------
    strategy : a :class:`Strategy` or its source code.
    data : an OHLCV DataFrame, or a data reference such as ``"sample"`` or ``"synthetic:seed=7,bars=100000"``.
    grid : a dict of lists (cartesian product in key order) or a list of parameter dicts; see :func:`expand_grid`.
    executor : ``None``/``"inprocess"``, ``"processes"`` (one per CPU), an ``int`` (that many processes),
        a ``concurrent.futures.ProcessPoolExecutor``, a ``dask.distributed.Client``, or a Dask scheduler
        address ``"dask://HOST:PORT"`` / ``"tcp://HOST:PORT"`` / ``"tls://HOST:PORT"`` (connected for this
        sweep, then closed).
    progress : show a tqdm progress bar; or a callable, called as ``progress(done, total)`` after every chunk.
    chunk : combinations per task (default: a few tasks per worker, at most 64 combinations each).
    data_ref : where the data came from (recorded, and used by :meth:`SweepResult.result` after ``from_dict``).
    holdout : a fraction in (0, 1): the last ``holdout`` of the bars is kept out of ``frame`` (so out of
        :meth:`SweepResult.best`) and the same rows' metrics on it are in ``metrics_oos``. Signals run on
        the whole data (indicators warm up on the bars before the holdout); each part is backtested alone.
    **costs : ``cash``, ``fees``, ``slippage``, ``periods_per_year`` and ``fill`` as for :func:`backtest`.
    sandbox : ``True`` (or :class:`~quantlab.engine.sandbox.SandboxLimits` / a dict of limits): the strategy's
        code runs only in the strategy sandbox (``docs/sandbox.md``), one sandboxed child per chunk of
        combinations, on every executor; the default runs your own code in the workers.

    Every row's metrics equal ``backtest(data, strategy, params, **costs).metrics``.

    Example
    -------
    >>> from quantlab.engine import data
    >>> res = sweep("def signals(data, n=10):\\n    return (data.close > data.close.rolling(n).mean()) * 1.0",
    ...             data.synthetic(1000, seed=2), {"n": [5, 10, 20]}, progress=False, fees=0.001)
    >>> len(res), list(res.frame.columns[:2])
    (3, ['n', 'total_return'])
    """
    strategy = _as_strategy(strategy, sandbox)
    if isinstance(data, str):
        from ..data import from_reference
        data_ref = data_ref or data
        data = from_reference(data)
    check_data(data, "or a data reference such as 'sample' (see quantlab.engine.data)")
    full_costs = resolve_costs(data, costs, "sweep")
    cut = holdout_start(len(data), holdout)

    combos = expand_grid(grid)
    names: list[str] = []
    for c in combos:
        names.extend(k for k in c if k not in names)
    try:
        strategy.resolve_params({k: None for k in names})
    except StrategyError as exc:
        raise SweepError(f"the grid names a parameter the strategy does not take: {exc}") from None
    resolved = [strategy.resolve_params(c) for c in combos]

    t0 = time.perf_counter()
    run_costs = full_costs if cut is None else {**full_costs, "windows": ((0, cut), (cut, len(data)))}
    rows, label = execute(strategy, data, run_costs, resolved, executor, chunk=chunk, progress=progress,
                          desc=f"sweep {strategy.name}")
    elapsed = time.perf_counter() - t0
    oos = None
    if cut is not None:
        def part(k: int) -> list:
            return [({key[2:]: v for key, v in m.items() if key.startswith(f"{k}:")} if m is not None else None, e)
                    for m, e in rows]
        rows, oos = part(0), result_frame(names, resolved, part(1))
        full_costs = {**full_costs, "holdout": float(holdout)}  # type: ignore[arg-type]
    frame = result_frame(names, resolved, rows)
    return SweepResult(strategy, frame, full_costs, data=data, data_ref=data_ref, executor=label,
                       elapsed=elapsed, params=resolved, param_names=names, metrics_oos=oos)


def holdout_start(n: int, holdout: float | None) -> int | None:
    """The first held-out bar for ``holdout`` (a fraction in (0, 1)) of ``n`` bars; None without holdout.

    >>> holdout_start(1000, 0.3)
    700
    """
    if holdout is None:
        return None
    h = float(holdout)
    if not 0.0 < h < 1.0:
        raise ValueError(f"holdout is the held-out fraction of the bars, in (0, 1), got {holdout!r}.")
    cut = int(round(n * (1.0 - h)))
    if cut < 2 or n - cut < 2:
        raise ValueError(f"holdout={holdout} leaves {cut} bars in sample and {n - cut} out of sample; "
                         "both need at least 2.")
    return cut


def resolve_costs(data: pd.DataFrame, costs: Mapping[str, Any], caller: str = "sweep") -> dict[str, Any]:
    """Checked ``cash, fees, slippage, periods_per_year, fill`` with defaults (as for ``backtest()``)."""
    unknown_costs = set(costs) - {"cash", "fees", "slippage", "periods_per_year", "fill"}
    if unknown_costs:
        raise TypeError(f"{caller}() got unexpected keyword(s) {sorted(unknown_costs)}; costs are cash, fees, "
                        "slippage, periods_per_year and fill.")
    fill = check_fill(costs.get("fill", DEFAULT_FILL))
    if fill == "next_open" and "open" not in data.columns:
        raise ValueError("fill='next_open' needs an 'open' column in the data; add it or pass fill='close'.")
    cash = float(costs.get("cash", DEFAULT_CASH))
    fees = float(costs.get("fees", DEFAULT_FEES))
    slippage = float(costs.get("slippage", DEFAULT_SLIPPAGE))
    if not (cash > 0 and math.isfinite(cash)):
        raise ValueError(f"cash must be a positive number, got {cash}.")
    if not (0.0 <= fees < 1.0) or not (0.0 <= slippage < 1.0):
        raise ValueError(f"fees and slippage are fractions of traded notional in [0, 1), got fees={fees}, "
                         f"slippage={slippage}.")
    if not np.isfinite(data["close"].to_numpy(dtype=np.float64)).all():
        raise ValueError("data 'close' contains NaN or infinite values; clean it with quantlab.engine.data.validate.")
    ppy = costs.get("periods_per_year")
    ppy = float(ppy) if ppy is not None else infer_periods_per_year(data.index)
    return {"cash": cash, "fees": fees, "slippage": slippage, "periods_per_year": ppy, "fill": fill}



def execute(strategy: Strategy, data: pd.DataFrame, full_costs: dict, resolved: list[dict], executor: Any,
            *, chunk: int | None = None, progress: Any = True, desc: str = "sweep") -> tuple[list, str]:
    """Run resolved parameter dicts on an executor (see :func:`sweep`); rows in order and the executor's label.

    Shared by :func:`sweep` and :func:`quantlab.engine.walkforward.walk_forward` (which passes
    ``full_costs["windows"]`` to get metrics per bar window).
    """
    kind = "inprocess" if executor in (None, "inprocess") else executor
    own_client = None
    if is_dask_address(kind):
        try:
            from distributed import Client
        except ImportError:
            raise SweepError("a Dask executor needs dask.distributed: pip install 'quantlab[dask]'.") from None
        kind = own_client = Client(dask_address(kind), timeout=30)
    with progress_bar(len(resolved), progress, desc) as bar, _closing(own_client):
        if kind == "inprocess":
            with one_blas_thread(), HeapAllocation():
                rows = run_inprocess(Context(strategy, data, full_costs), resolved, chunk or 32, bar)
            label = "inprocess"
        elif is_dask_client(kind):
            rows, label = run_dask(strategy, data, full_costs, resolved, kind, chunk, bar)
        elif kind == "processes" or isinstance(kind, _cf.ProcessPoolExecutor) or (
                isinstance(kind, (int, np.integer)) and not isinstance(kind, bool)):
            rows, label = run_processes(strategy, data, full_costs, resolved, kind, chunk, bar)
        else:
            raise SweepError(f"unknown executor {executor!r}; use None/'inprocess', 'processes', a number of "
                             "processes, a concurrent.futures.ProcessPoolExecutor, a dask.distributed.Client "
                             "or 'dask://HOST:PORT'.")
    return rows, label


class _closing:
    def __init__(self, client: Any) -> None:
        self.client = client

    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: Any) -> None:
        if self.client is not None:
            self.client.close()

