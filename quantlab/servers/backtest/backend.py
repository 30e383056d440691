"""The backtest server's state: the run store, the worker pool and the data root, owned by the
server's lifespan (:func:`~quantlab.servers.backtest.server.build_server`) and read by the tools
through their context (:func:`~quantlab.servers.backtest.tools.common.backend`).

Example
-------
>>> Backend("/tmp/qlruns")  # doctest: +ELLIPSIS
Backend(runs='/tmp/qlruns', data_root=None, workers=2, memory_mb=2048)
"""
from __future__ import annotations

import base64
import binascii
import html
import io
import json
import os
from pathlib import Path
from typing import Any

from mcp.server.mcpserver.exceptions import ToolError

from quantlab._util import to_jsonable
from quantlab.engine.backtest import PAGE_BARS as _ENGINE_PAGE_BARS
from quantlab.servers.backtest.pool import WorkerPool
from quantlab.servers.backtest.store import RunStore

__all__ = ["Backend", "INLINE_TEXT_ROWS", "MAX_UNPAGED_BARS", "PAGE_BARS"]

#: results with at most this many rows are also sent as JSON text (beyond: a short text note)
INLINE_TEXT_ROWS = 20_000
#: get_run(part="all") without paging is refused beyond this many bars: one JSON-RPC
#: message of N rows costs the Python SDK's stdio reader O(N^2) (1M bars: > 1 min)
MAX_UNPAGED_BARS = 100_000
#: the page size the error message suggests (the engine's, which clients use too)
PAGE_BARS = _ENGINE_PAGE_BARS


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
