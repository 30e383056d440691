"""The backtest MCP server: run strategy code on named data, keep the runs.

Tools
-----
``run_backtest(code, name, params={}, data="sample", cash=100000, fees=0.0002, slippage=0, periods_per_year=None, fill="next_open", timeout=60)``
    run ``signals(data, **params)`` in a worker process; returns the run id, metrics,
    trade count, bar count and the equity curve downsampled to at most 2,000 points.
``get_run(run_id, part="all", offset=0, limit=None)``
    the stored result: ``part="all"`` is exactly ``BacktestResult.to_dict()``
    (rebuild it with ``BacktestResult.from_dict``); other parts are paged columns.
``list_runs(limit=50)``, ``upload_data(data, format="parquet-base64")``, ``list_datasets()``;
``run_sweep(code, name, grid, ...)`` (a parameter grid) and ``walk_forward(code, name, grid, train, test, ...)``
(parameters chosen per training window, judged out of sample), see :mod:`~quantlab.servers.backtest.tools.sweep`.

The tools are top-level typed functions in :mod:`quantlab.servers.backtest.tools`; the server's
lifespan owns their state (:class:`~quantlab.servers.backtest.backend.Backend`: run store, worker
pool, data root), starts the workers and stops them when the server ends.

Run it with ``python -m quantlab.servers.backtest --runs DIR [--data-root DIR] [--http PORT]``.

Example
-------
>>> server = build_server("/tmp/qlruns")
>>> import asyncio
>>> sorted(t.name for t in asyncio.run(server.list_tools()))
['get_run', 'list_datasets', 'list_runs', 'run_backtest', 'run_sweep', 'upload_data', 'walk_forward']
"""
from __future__ import annotations

import contextlib
import logging
import os
from typing import Any, AsyncIterator, Literal

from mcp.server.mcpserver import MCPServer

from quantlab.servers.backtest.backend import INLINE_TEXT_ROWS, MAX_UNPAGED_BARS, PAGE_BARS, Backend
from quantlab.servers.backtest.models import RunSummary, UploadInfo
from quantlab.servers.backtest.tools import TOOLS
from quantlab.servers.backtest.worker import EQUITY_POINTS

__all__ = [
    "build_server", "Backend", "INLINE_TEXT_ROWS", "MAX_UNPAGED_BARS", "PAGE_BARS", "EQUITY_POINTS",
    "RunSummary", "UploadInfo",
]

log = logging.getLogger("quantlab.servers.backtest")

INSTRUCTIONS = """\
Backtest trading strategies. A strategy is Python source defining
`def signals(data, **params) -> pd.Series` of target positions in [-1, 1] per bar
(data: DataFrame with a DatetimeIndex and open, high, low, close, volume).
Call run_backtest with the code and a data reference ('sample',
'synthetic:seed=7,bars=100000', 'file:<path under the data root>', or the
'upload:<sha>' that upload_data returns); get_run returns the full stored result.
"""


def build_server(
    runs_dir: str | os.PathLike[str],
    *,
    data_root: str | os.PathLike[str] | None = None,
    workers: int = 2,
    memory_mb: int | None = 2048,
    warm_after: float = 0.0,
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = "WARNING",
    auth_token: str | None = None,
) -> MCPServer:
    """The backtest MCP server (stdio or HTTP is the caller's choice).

    Its lifespan makes the :class:`Backend` (run store, worker pool, data root), starts the
    ``workers`` after ``warm_after`` seconds (so a client spawning several servers gets them all
    initialized first; a run that arrives earlier waits for them) and stops them when the server
    ends; tools read it through their context. ``auth_token``: over HTTP, require
    ``Authorization: Bearer <auth_token>`` on every request (the SDK's own check, see
    :mod:`quantlab.servers.auth`).

    >>> server = build_server("/tmp/qlruns", workers=1)
    >>> server.name
    'quantlab-backtest'
    """
    from quantlab import __version__
    from quantlab.servers.auth import bearer_auth

    @contextlib.asynccontextmanager
    async def lifespan(_: MCPServer) -> AsyncIterator[Backend]:
        backend = Backend(runs_dir, data_root=data_root, workers=workers, memory_mb=memory_mb)
        await backend.pool.start(delay=warm_after)
        try:
            yield backend
        finally:
            await backend.pool.close()

    mcp: MCPServer[Any] = MCPServer("quantlab-backtest", version=__version__, instructions=INSTRUCTIONS,
                                    log_level=log_level, lifespan=lifespan,
                                    **(bearer_auth(auth_token) if auth_token else {}))
    for fn, annotations in TOOLS:
        mcp.add_tool(fn, annotations=annotations)
    return mcp
