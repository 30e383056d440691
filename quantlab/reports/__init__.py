"""Run quantlab's notebooks headless: the demo, papermill reports, many reports at once.

The parts, one job each: :mod:`.notebooks` (find and execute), :mod:`.inputs` (a report's
strategy and data), :mod:`.demo`, :mod:`.report` (one report), :mod:`.batch` (many, on
processes or Dask), :mod:`.index` (the HTML index).

What ``quantlab demo`` and ``quantlab report`` do, as functions:

- :func:`notebooks_dir` — where the shipped notebooks are (the checkout's ``notebooks/``,
  else the package data ``quantlab/notebooks/``).
- :func:`execute` — run a notebook with papermill (parameters injected) and write the
  HTML export beside it; a failing cell raises :class:`NotebookError` naming the cell
  and the error (the executed notebook and its HTML are still written).
- :func:`run_demo` — the quickstart into a folder, with its own assets hub.
- :func:`run_report` — the ``04_report`` notebook for one strategy.
- :func:`run_many` — several reports in parallel (local processes, a Dask
  ``LocalCluster`` or a ``dask://HOST:PORT`` scheduler) and an ``index.html`` linking them.
- :func:`resolve_strategy`, :func:`load_data` — what the report notebook itself uses to
  turn its parameters into a ``Strategy`` and a data frame, with readable errors.

Example
-------
>>> from quantlab.reports import run_report
>>> out = run_report("notebooks/strategies/sma_cross.py", "sma.ipynb", params={"fast": 10})  # doctest: +SKIP
>>> out.html, out.verdict                                                                  # doctest: +SKIP
('/home/me/sma.html', 'PASS')
"""
from __future__ import annotations

from .batch import load_many, run_many
from .demo import DemoOutcome, run_demo
from .index import reports_table_html, write_index
from .inputs import load_data, resolve_strategy
from .notebooks import NotebookError, execute, export_html, notebook_path, notebooks_dir
from .report import POLICY_PARAMETERS, ReportOutcome, run_report

__all__ = [
    "NotebookError", "notebooks_dir", "notebook_path", "execute", "export_html",
    "DemoOutcome", "run_demo", "ReportOutcome", "run_report", "load_many", "run_many", "write_index", "reports_table_html",
    "resolve_strategy", "load_data", "POLICY_PARAMETERS",
]
