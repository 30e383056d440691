"""What the backtest server's tools return: typed dicts the SDK turns into output schemas
(``structuredContent`` plus the JSON text), so clients and agents see each result's fields.

Per-bar lists are typed loosely (``dict[str, Any]``) on purpose: a schema with item types makes
every client validate thousands of numbers one by one (~30 ms per call in the Python SDK).

Example
-------
>>> sorted(RunSummary.__annotations__)
['bars', 'elapsed', 'equity', 'metrics', 'name', 'run_id', 'trades']
"""
from __future__ import annotations

from typing import Annotated, Any

from pydantic import Field
from typing_extensions import TypedDict

__all__ = ["RunSummary", "UploadInfo", "RunList", "DatasetList", "SweepSummary", "WalkForwardSummary"]


class RunSummary(TypedDict):
    """What ``run_backtest`` returns."""

    run_id: Annotated[str, Field(description="Id of the stored run (get_run).")]
    name: str
    metrics: Annotated[dict[str, Any], Field(description="All metrics; non-finite values as 'inf', '-inf', 'nan'.")]
    trades: Annotated[int, Field(description="Number of trades (closed and open).")]
    bars: int
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


class SweepSummary(TypedDict):
    """What ``run_sweep`` returns."""

    result: Annotated[dict[str, Any], Field(description="SweepResult.to_dict(): rebuild with quantlab.engine.sweep.SweepResult.from_dict.")]
    runs: Annotated[int, Field(description="Number of parameter combinations.")]
    errors: Annotated[int, Field(description="Combinations whose run failed (see the 'error' column).")]
    best: Annotated[dict[str, Any] | None, Field(description="The row with the highest Sharpe ratio (params and metrics), or null.")]
    elapsed: Annotated[float, Field(description="Seconds the server spent on the call.")]


class WalkForwardSummary(TypedDict):
    """What ``walk_forward`` returns."""

    result: Annotated[dict[str, Any], Field(description="WalkForwardResult.to_dict(): rebuild with quantlab.engine.walkforward.WalkForwardResult.from_dict.")]
    folds: Annotated[int, Field(description="Number of folds.")]
    metrics: Annotated[dict[str, Any], Field(description="Metrics of the stitched out-of-sample equity, plus efficiency (mean OOS / mean IS metric) and folds; non-finite values as 'inf', '-inf', 'nan'.")]
    elapsed: Annotated[float, Field(description="Seconds the server spent on the call.")]
