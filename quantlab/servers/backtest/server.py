"""The backtest MCP server: run strategy code on named data, keep the runs.

Tools
-----
``run_backtest(code, name, params={}, data="sample", cash=100000, fees=0, slippage=0, periods_per_year=None, fill="next_open", timeout=60)``
    run ``signals(data, **params)`` in a worker process; returns the run id, metrics,
    trade count, bar count and the equity curve downsampled to at most 2,000 points.
``get_run(run_id, part="all", offset=0, limit=None)``
    the stored result: ``part="all"`` is exactly ``BacktestResult.to_dict()``
    (rebuild it with ``BacktestResult.from_dict``); other parts are paged columns.
``list_runs(limit=50)``, ``upload_data(data, format="parquet-base64")``, ``list_datasets()``;
``run_sweep(code, name, grid, ...)`` (a parameter grid, see :mod:`~quantlab.servers.backtest.sweep_tool`).

Run it with ``python -m quantlab.servers.backtest --runs DIR [--data-root DIR] [--http PORT]``.

Example
-------
>>> server, backend = build_server("/tmp/qlruns")
>>> import asyncio
>>> sorted(t.name for t in asyncio.run(server.list_tools()))
['get_run', 'list_datasets', 'list_runs', 'run_backtest', 'run_sweep', 'upload_data']
"""
from __future__ import annotations

import base64
import binascii
import html
import io
import json
import logging
import os
import time
from pathlib import Path
from typing import Annotated, Any, Literal

import anyio
from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp_types import CallToolResult, TextContent, ToolAnnotations
from pydantic import Field
from typing_extensions import TypedDict

from quantlab._util import to_jsonable
from quantlab.engine.backtest import PAGE_BARS as _ENGINE_PAGE_BARS
from quantlab.servers.backtest.store import RunNotFound, RunStore, check_run_id
from quantlab.servers.backtest.worker import EQUITY_POINTS, WorkerFailure, WorkerPool

__all__ = [
    "build_server", "Backend", "INLINE_TEXT_ROWS", "MAX_UNPAGED_BARS", "PAGE_BARS", "EQUITY_POINTS",
    "RunSummary", "UploadInfo",
]

log = logging.getLogger("quantlab.servers.backtest")

#: results with at most this many rows are also sent as JSON text (beyond: a short text note)
INLINE_TEXT_ROWS = 20_000
#: get_run(part="all") without paging is refused beyond this many bars: one JSON-RPC
#: message of N rows costs the Python SDK's stdio reader O(N^2) (1M bars: > 1 min)
MAX_UNPAGED_BARS = 100_000
#: the page size the error message suggests (the engine's, which clients use too)
PAGE_BARS = _ENGINE_PAGE_BARS

INSTRUCTIONS = """\
Backtest trading strategies. A strategy is Python source defining
`def signals(data, **params) -> pd.Series` of target positions in [-1, 1] per bar
(data: DataFrame with a DatetimeIndex and open, high, low, close, volume).
Call run_backtest with the code and a data reference ('sample',
'synthetic:seed=7,bars=100000', 'file:<path under the data root>', or the
'upload:<sha>' that upload_data returns); get_run returns the full stored result.
"""


class RunSummary(TypedDict):
    """What ``run_backtest`` returns."""

    run_id: Annotated[str, Field(description="Id of the stored run (get_run).")]
    name: str
    metrics: Annotated[dict[str, Any], Field(description="All metrics; non-finite values as 'inf', '-inf', 'nan'.")]
    trades: Annotated[int, Field(description="Number of trades (closed and open).")]
    bars: int
    # typed loosely on purpose: a schema with item types makes every client validate
    # 4,000 numbers one by one (~30 ms per call in the Python SDK)
    equity: Annotated[
        dict[str, Any],
        Field(description="Equity downsampled to at most 2,000 points: {'time': [int64 ns since epoch, UTC], 'equity': [float]}."),
    ]
    elapsed: Annotated[float, Field(description="Seconds the server spent on the call.")]


class UploadInfo(TypedDict):
    """What ``upload_data`` returns: the data reference to pass to ``run_backtest``."""

    data: str
    rows: int
    columns: list[str]
    start: str
    end: str


class RunList(TypedDict):
    """What ``list_runs`` returns."""

    runs: Annotated[list[dict[str, Any]], Field(description="Stored runs, newest first.")]


class DatasetList(TypedDict):
    """What ``list_datasets`` returns."""

    datasets: Annotated[list[dict[str, Any]], Field(description="Data references with kind and description.")]


class Backend:
    """The server's state: the run store, the worker pool, the data root.

    Example
    -------
    >>> Backend("/tmp/qlruns")  # doctest: +ELLIPSIS
    Backend(runs='/tmp/qlruns', data_root=None, workers=2, memory_mb=2048)
    """

    def __init__(
        self,
        runs_dir: str | os.PathLike[str],
        *,
        data_root: str | os.PathLike[str] | None = None,
        workers: int = 2,
        memory_mb: int | None = 2048,
    ):
        self.runs_dir = Path(runs_dir).expanduser().resolve()
        self.runs_dir.mkdir(parents=True, exist_ok=True)
        self.data_root = Path(data_root).expanduser().resolve() if data_root else None
        self.store = RunStore(self.runs_dir)
        self.pool = WorkerPool(self.runs_dir, data_root=self.data_root, size=workers, memory_mb=memory_mb)

    def __repr__(self) -> str:
        return (
            f"Backend(runs={str(self.runs_dir)!r}, data_root={str(self.data_root) if self.data_root else None!r}, "
            f"workers={self.pool.size}, memory_mb={self.pool.memory_mb})"
        )

    def _repr_html_(self) -> str:
        return f"<pre>{html.escape(repr(self))}</pre>"

    # -- uploads -------------------------------------------------------------------
    def upload(self, data: Any, fmt: str) -> dict[str, Any]:
        """Decode, validate and store an uploaded frame; returns :class:`UploadInfo`."""
        import pandas as pd

        from quantlab.engine import data as qdata

        if fmt == "parquet-base64":
            if not isinstance(data, str):
                raise ToolError("format='parquet-base64' needs `data` as a base64 string of a Parquet file (df.to_parquet()).")
            try:
                raw = base64.b64decode(data, validate=True)
            except (binascii.Error, ValueError) as exc:
                raise ToolError(f"`data` is not valid base64 ({exc}); send base64.b64encode(df.to_parquet()).decode().") from None
            try:
                df = pd.read_parquet(io.BytesIO(raw))
            except Exception as exc:  # noqa: BLE001
                raise ToolError(f"`data` is not a readable Parquet file ({type(exc).__name__}: {exc}).") from None
        elif fmt == "columnar":
            if isinstance(data, str):
                try:
                    data = json.loads(data)
                except ValueError as exc:
                    raise ToolError(f"format='columnar' needs a JSON object of columns ({exc}).") from None
            if not isinstance(data, dict):
                raise ToolError("format='columnar' needs {'time': [int ns or ISO strings], 'open': [...], 'high': [...], 'low': [...], 'close': [...], 'volume': [...]}.")
            cols = dict(data)
            tkey = next((k for k in ("time", "index", "timestamp", "date") if k in cols), None)
            if tkey is None:
                raise ToolError("format='columnar': no time column; give 'time' as int64 nanoseconds since the epoch or ISO strings.")
            times = cols.pop(tkey)
            try:
                if times and all(isinstance(t, int) for t in times[:10]):
                    index = pd.to_datetime(times, unit="ns")
                else:
                    index = pd.to_datetime(times)
                df = pd.DataFrame(cols, index=pd.DatetimeIndex(index, name="time"))
            except Exception as exc:  # noqa: BLE001
                raise ToolError(f"format='columnar': cannot build a frame ({type(exc).__name__}: {exc}); all columns must have the same length.") from None
        else:
            raise ToolError(f"unknown format {fmt!r}; use 'parquet-base64' or 'columnar'.")
        try:
            df = qdata.validate(df, source="upload")
        except ValueError as exc:
            raise ToolError(str(exc)) from None
        sha = qdata.content_hash(df)
        info = {
            "data": f"upload:{sha}",
            "rows": int(len(df)),
            "columns": [str(c) for c in df.columns],
            "start": df.index[0].isoformat() if len(df) else "",
            "end": df.index[-1].isoformat() if len(df) else "",
        }
        self.store.save_upload(df, sha, info)
        return info

    def datasets(self) -> list[dict[str, Any]]:
        from quantlab.engine import data as qdata

        out = list(qdata.list_references(self.data_root))
        for u in self.store.list_uploads():
            out.append(
                {
                    "ref": u["data"],
                    "kind": "upload",
                    "description": f"uploaded frame, {u['rows']:,} rows, {u['start']} to {u['end']}",
                    "rows": u["rows"],
                    "start": u["start"],
                    "end": u["end"],
                }
            )
        return out

    # -- runs ------------------------------------------------------------------------
    def read(self, run_id: str, part: str, offset: int, limit: int | None) -> tuple[dict[str, Any], int]:
        """The payload of ``get_run`` and its row count."""
        if part == "summary":
            meta = self.store.read_meta(run_id)
            meta.pop("result", None)
            return to_jsonable(meta), 0
        if part == "all":
            if limit is None and not offset:
                bars = self.store.bars(run_id)
                if bars > MAX_UNPAGED_BARS:
                    raise ToolError(
                        f"run {run_id} has {bars:,} bars: too many for one message (~{bars * 80 // 1_000_000} MB of JSON). "
                        f"Fetch it in pages: get_run(run_id, part='all', offset=0, limit={PAGE_BARS}), then the next_offset "
                        "of each page's 'page' field, concatenating index/equity/returns/positions."
                    )
            d = self.store.read_result(run_id, offset, limit)
            rows = max((len(v) for v in _iter_lists(d)), default=0)
            return d, rows
        if part in ("equity", "returns", "positions"):
            page = self.store.read_series(run_id, part, offset, limit)
        else:
            try:
                page = self.store.read_part(run_id, part, offset, limit)
            except KeyError as exc:
                raise ToolError(str(exc.args[0])) from None
        page = {"run_id": run_id, "part": part, **page}
        return page, page["total"] or 0




def _iter_lists(node: Any):
    if isinstance(node, list):
        yield node
    elif isinstance(node, dict):
        for v in node.values():
            yield from _iter_lists(v)


def build_server(
    runs_dir: str | os.PathLike[str],
    *,
    data_root: str | os.PathLike[str] | None = None,
    workers: int = 2,
    memory_mb: int | None = 2048,
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = "WARNING",
    auth_token: str | None = None,
) -> tuple[MCPServer, Backend]:
    """Build the backtest MCP server and its :class:`Backend` (start ``backend.pool`` before serving).

    ``auth_token``: over HTTP, require ``Authorization: Bearer <auth_token>`` on every request.

    >>> server, backend = build_server("/tmp/qlruns", workers=1)
    >>> server.name
    'quantlab-backtest'
    """
    backend = Backend(runs_dir, data_root=data_root, workers=workers, memory_mb=memory_mb)
    from quantlab import __version__

    from quantlab.servers.auth import bearer_auth

    # over HTTP every request needs the bearer token (the SDK's own check; see quantlab.servers.auth)
    mcp = MCPServer("quantlab-backtest", version=__version__, instructions=INSTRUCTIONS, log_level=log_level,
                    **(bearer_auth(auth_token) if auth_token else {}))

    @mcp.tool(annotations=ToolAnnotations(read_only_hint=False, open_world_hint=False))
    async def run_backtest(
        code: Annotated[str, Field(description="Python source defining `def signals(data, **params) -> pd.Series` of target positions in [-1, 1].")],
        name: Annotated[str, Field(description="A name for the strategy (shown in run lists and error messages).")],
        params: Annotated[dict[str, Any], Field(description="Keyword arguments for `signals`, overriding its defaults.")] = {},  # noqa: B006
        data: Annotated[str, Field(description="Data reference: 'sample', 'synthetic:seed=7,bars=100000', 'file:<path under the data root>' or 'upload:<sha>' from upload_data.")] = "sample",
        cash: Annotated[float, Field(gt=0, description="Starting cash.")] = 100_000,
        fees: Annotated[float, Field(ge=0, lt=1, description="Fees as a fraction of traded notional (0.001 = 10 bp).")] = 0,
        slippage: Annotated[float, Field(ge=0, lt=1, description="Slippage as a fraction of the fill price.")] = 0,
        periods_per_year: Annotated[float | None, Field(gt=0, description="Bars per year for annualised metrics; default: inferred from the bars observed per calendar year.")] = None,
        fill: Annotated[Literal["next_open", "close"], Field(description="When a target decided on bar t trades: 'next_open' (bar t+1's open, default) or 'close' (bar t's own close).")] = "next_open",
        timeout: Annotated[float, Field(gt=0, le=3600, description="Wall-clock limit in seconds; the run is stopped after it.")] = 60,
    ) -> RunSummary:
        """Backtest strategy code on a data reference and store the run.

        The target position decided on bar t is filled at bar t+1's open (fill="next_open",
        default) or at bar t's close (fill="close"); fees and slippage are
        fractions of traded notional. Returns the run id (for get_run), all metrics,
        the number of trades (closed and open), the number of bars and the equity curve
        downsampled to at most 2,000 points as columns {"time": [int ns], "equity": [...]}.
        Non-finite metric values are the strings "inf", "-inf", "nan".
        Errors (bad code, exceptions in `signals`, wrong-shaped signals, timeouts,
        the memory limit) come back as tool errors that say what to fix.
        """
        task = {
            "code": code,
            "name": name,
            "params": params,
            "data": data.strip(),
            "cash": cash,
            "fees": fees,
            "slippage": slippage,
            "periods_per_year": periods_per_year,
            "fill": fill,
            "timeout": timeout,  # the sandbox stops the strategy; the pool's limit is the backstop
        }
        t0 = time.perf_counter()
        try:
            summary = await backend.pool.run(task, timeout=timeout + 10)
        except WorkerFailure as exc:
            raise ToolError(f"[{exc.kind}] {exc}") from None
        summary["metrics"] = to_jsonable(summary["metrics"])
        summary["elapsed"] = time.perf_counter() - t0
        return summary  # type: ignore[return-value]

    @mcp.tool(annotations=ToolAnnotations(read_only_hint=True, open_world_hint=False))
    async def get_run(
        run_id: Annotated[str, Field(description="A run id from run_backtest or list_runs.")],
        part: Annotated[
            Literal["all", "summary", "equity", "returns", "positions", "trades"],
            Field(description="'all': the whole result as BacktestResult.to_dict(); 'summary': what was run and its metrics; or one part, paged."),
        ] = "all",
        offset: Annotated[int, Field(ge=0, description="First row of a paged part.")] = 0,
        limit: Annotated[int | None, Field(ge=1, description="Rows of a paged part (default: all).")] = None,
    ) -> CallToolResult:
        """Return a stored run as compact columnar data.

        part="all" returns exactly BacktestResult.to_dict() (index as int64 ns, floats as
        JSON numbers), so BacktestResult.from_dict(result) equals the in-process result.
        Runs over 100,000 bars must be paged: part="all" with offset/limit returns the
        per-bar lists (index, equity, returns, positions) for those rows, the rest only on
        the first page, and "page": {offset, limit, total, next_offset}; concatenate the
        per-bar lists of all pages and drop "page" to get to_dict().
        part="summary" returns the code, params, data reference, costs and metrics.
        part="equity" | "returns" | "positions" | "trades" returns that part's columns
        for rows [offset, offset+limit) with total and next_offset (None at the end).
        The data is in structuredContent; results with many rows carry only a short text note.
        """
        try:
            check_run_id(run_id)
        except ValueError as exc:
            raise ToolError(str(exc)) from None
        try:
            await backend.pool.wait_persisted(run_id)
        except TimeoutError:
            raise ToolError(f"run {run_id!r} is still being saved; try again in a moment.") from None
        try:
            payload, rows = await anyio.to_thread.run_sync(backend.read, run_id, part, offset, limit)
        except RunNotFound as exc:
            raise ToolError(str(exc)) from None
        if rows <= INLINE_TEXT_ROWS:
            text = json.dumps(payload, separators=(",", ":"), allow_nan=False)
        else:
            text = (
                f"run {run_id} part={part}: {rows:,} rows of columnar data in structuredContent "
                "(use part='summary' for a short view, or offset/limit to page)."
            )
        return CallToolResult(content=[TextContent(type="text", text=text)], structured_content=payload)

    @mcp.tool(annotations=ToolAnnotations(read_only_hint=True, open_world_hint=False))
    async def list_runs(
        limit: Annotated[int, Field(ge=1, le=10_000, description="How many runs, newest first.")] = 50,
    ) -> RunList:
        """List stored runs, newest first.

        Returns {"runs": [{run_id, name, created, data, params, cash, fees, slippage, bars, trades, metrics}, ...]}.
        """
        try:
            await backend.pool.wait_all_persisted(timeout=30)
        except TimeoutError:
            pass  # list what is on disk
        runs = await anyio.to_thread.run_sync(backend.store.list_runs, limit)
        return {"runs": to_jsonable(runs)}

    @mcp.tool(annotations=ToolAnnotations(read_only_hint=False, idempotent_hint=True, open_world_hint=False))
    async def upload_data(
        data: Annotated[
            str | dict[str, list[Any]],
            Field(description="The frame: base64 of a Parquet file (format='parquet-base64'), or columns {'time': [...], 'open': [...], ...} (format='columnar')."),
        ],
        format: Annotated[Literal["parquet-base64", "columnar"], Field(description="How `data` is encoded.")] = "parquet-base64",  # noqa: A002
    ) -> UploadInfo:
        """Upload an OHLCV DataFrame once; returns the reference 'upload:<sha256>' to backtest it.

        The frame needs a DatetimeIndex (sorted, unique) and columns open, high, low, close, volume.
        Uploads are cached on disk by content hash: sending the same frame again is a no-op,
        and the reference stays valid after the server restarts.
        """
        return await anyio.to_thread.run_sync(backend.upload, data, format)

    @mcp.tool(annotations=ToolAnnotations(read_only_hint=True, open_world_hint=False))
    async def list_datasets() -> DatasetList:
        """List data references: the shipped sample, synthetic spec examples, uploads and files under the data root.

        Returns {"datasets": [{"ref", "kind", "description", ...}, ...]}; pass a "ref" as run_backtest's `data`.
        """
        return {"datasets": await anyio.to_thread.run_sync(backend.datasets)}

    # parameter sweeps (quantlab.engine.sweep) in a child process: see sweep_tool
    from quantlab.servers.backtest.sweep_tool import register as _register_sweep

    _register_sweep(mcp, backend)

    return mcp, backend

