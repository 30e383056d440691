"""Data references: ``upload_data`` (a frame sent once, cached by content hash) and ``list_datasets``."""
from __future__ import annotations

from typing import Annotated, Any, Literal

import anyio
from mcp.server.mcpserver import Context
from pydantic import Field

from ..models import DatasetList, UploadInfo
from .common import backend, tool_errors

__all__ = ["upload_data", "list_datasets"]


@tool_errors
async def upload_data(
    data: Annotated[
        str | dict[str, list[Any]],
        Field(description="The frame: base64 of a Parquet file (format='parquet-base64'), or columns {'time': [...], 'open': [...], ...} (format='columnar')."),
    ],
    ctx: Context,
    format: Annotated[Literal["parquet-base64", "columnar"], Field(description="How `data` is encoded.")] = "parquet-base64",  # noqa: A002
) -> UploadInfo:
    """Upload an OHLCV DataFrame once; returns the reference 'upload:<sha256>' to backtest it.

    The frame needs a DatetimeIndex (sorted, unique) and columns open, high, low, close, volume.
    Uploads are cached on disk by content hash: sending the same frame again is a no-op,
    and the reference stays valid after the server restarts.
    """
    return await anyio.to_thread.run_sync(backend(ctx).upload, data, format)  # type: ignore[return-value]


@tool_errors
async def list_datasets(ctx: Context) -> DatasetList:
    """List data references: the shipped sample, synthetic spec examples, uploads and files under the data root.

    Returns {"datasets": [{"ref", "kind", "description", ...}, ...]}; pass a "ref" as run_backtest's `data`.
    """
    return {"datasets": await anyio.to_thread.run_sync(backend(ctx).datasets)}
