"""``quantlab report``: the ``04_report`` notebook for one strategy, and what it found (:class:`ReportOutcome`)."""
from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Mapping

import pandas as pd

from .index import reports_table_html
from .inputs import looks_like_file
from .notebooks import REPORT, NotebookError, execute, first_line, notebook_path, notebooks_dir

__all__ = ["POLICY_PARAMETERS", "ReportOutcome", "run_report"]

#: notebook parameters of ``04_report`` that set the deployment policy
POLICY_PARAMETERS = ("min_sharpe", "max_drawdown", "min_profit_factor", "min_trades")


@dataclass
class ReportOutcome:
    """One report: its ``name``, ``notebook`` and ``html`` paths, whether it ran (``ok``),
    the policy ``verdict`` (``"PASS"``/``"FAIL"``), key ``metrics``, the ``error`` line if a cell
    failed, and the wall time."""

    name: str
    notebook: str
    html: str | None
    ok: bool
    verdict: str | None = None
    metrics: dict[str, Any] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)
    error: str | None = None
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def __repr__(self) -> str:
        state = f"verdict={self.verdict}" if self.ok else f"error={self.error!r}"
        return f"ReportOutcome({self.name!r}, {state}, html={self.html!r}, {self.seconds:.1f}s)"

    def _repr_html_(self) -> str:
        return reports_table_html(pd.DataFrame([self.to_dict()]))


def _report_parameters(strategy: Any, params: Mapping[str, Any] | None, data: Any, hub: Any,
                       policy: Mapping[str, Any] | None, extra: Mapping[str, Any] | None) -> dict[str, Any]:
    ref = str(strategy)
    if Path(ref).expanduser().exists() or looks_like_file(ref):
        ref = str(Path(ref).expanduser().absolute())
    if isinstance(data, (str, os.PathLike)):
        text = str(data).strip()
        if text.startswith("file:"):
            data = "file:" + str(Path(text[5:]).expanduser().absolute())
        elif ":" not in text and text != "sample":      # a CSV/Parquet path, relative to the caller's folder
            data = str(Path(text).expanduser().absolute())
    parameters: dict[str, Any] = {"strategy": ref, "params": dict(params or {}), "data": data}
    if hub is not None:
        parameters["hub"] = str(Path(hub).expanduser().absolute())
    unknown = set(policy or {}) - set(POLICY_PARAMETERS)
    if unknown:
        raise ValueError(f"unknown policy threshold(s) {sorted(unknown)}; use {list(POLICY_PARAMETERS)}.")
    parameters.update(policy or {})
    parameters.update(extra or {})
    return parameters


def run_report(
    strategy: Any,
    output: str | os.PathLike[str],
    *,
    params: Mapping[str, Any] | None = None,
    data: Any = "sample",
    hub: str | os.PathLike[str] | None = None,
    policy: Mapping[str, Any] | None = None,
    name: str | None = None,
    extra: Mapping[str, Any] | None = None,
    raise_on_error: bool = True,
    timeout: float | None = 600,
) -> ReportOutcome:
    """Run the ``04_report`` notebook for ``strategy`` into ``output`` (``.ipynb``) and HTML beside it.

    ``strategy`` is a ``.py`` file or a hub commit/name (with ``hub``); ``params`` override the
    strategy's defaults; ``policy`` sets thresholds (``min_sharpe``, ``max_drawdown``,
    ``min_profit_factor``, ``min_trades``); ``extra`` sets any other notebook parameter
    (``cash``, ``fees``, ``slippage``). With ``raise_on_error=False`` a failing report returns an
    outcome with ``ok=False`` and the ``error`` line instead of raising :class:`NotebookError`.

    >>> run_report("strategies/sma_cross.py", "out/sma.ipynb", params={"fast": 5}).verdict   # doctest: +SKIP
    'PASS'
    """
    t0 = time.perf_counter()
    output = Path(output).expanduser().absolute()
    if output.suffix != ".ipynb":
        output = output.with_suffix(".ipynb")
    summary = output.with_suffix(".json")
    parameters = _report_parameters(strategy, params, data, hub, policy, extra)
    parameters["summary_path"] = str(summary)
    label = name or Path(str(strategy)).stem or str(strategy)
    summary.unlink(missing_ok=True)
    try:
        execute(notebook_path(REPORT), output, parameters, cwd=notebooks_dir(), timeout=timeout)
    except NotebookError as exc:
        if raise_on_error:
            raise
        return ReportOutcome(label, str(output), str(exc.html) if exc.html else None, False,
                             error=first_line(exc), seconds=time.perf_counter() - t0)
    info = json.loads(summary.read_text(encoding="utf-8")) if summary.is_file() else {}
    return ReportOutcome(label, str(output), str(output.with_suffix(".html")), True, verdict=info.get("verdict"),
                         metrics=info.get("metrics", {}), failures=info.get("failures", []),
                         seconds=time.perf_counter() - t0)

