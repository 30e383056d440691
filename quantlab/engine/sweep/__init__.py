"""Parameter sweeps: one strategy, a grid of parameters, one row of metrics per combination.

The parts: :mod:`.grid` (which combinations), :mod:`.core` (signals -> metrics in one process),
:mod:`.executors` (in-process, processes, Dask), :mod:`.allocator` (allocator/BLAS tuning),
:mod:`.result` (:class:`SweepResult` and its heat map), :mod:`.run` (the entry point).

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

from .core import BATCH_HOOK
from .grid import SweepError, expand_grid
from .result import SweepResult
from .run import sweep

__all__ = ["sweep", "SweepResult", "expand_grid", "SweepError", "BATCH_HOOK"]
