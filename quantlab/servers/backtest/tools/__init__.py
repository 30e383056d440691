"""The backtest server's MCP tools, one module per job, each a top-level typed function.

* :mod:`.runs` - ``run_backtest``, ``get_run``, ``list_runs``
* :mod:`.data` - ``upload_data``, ``list_datasets``
* :mod:`.sweep` - ``run_sweep``, ``walk_forward``

Every tool reads the server's :class:`~quantlab.servers.backtest.backend.Backend` (run store, worker
pool, data root) from the state the server's lifespan owns (:func:`.common.backend`), never from a
global; its docstring is its description and its return type its output schema.
"""
from __future__ import annotations

from mcp.types import ToolAnnotations

from . import data, runs, sweep

_READ = ToolAnnotations(read_only_hint=True, open_world_hint=False)

#: ``(tool, annotations)`` in the order the server lists them
TOOLS = [
    (runs.run_backtest, ToolAnnotations(read_only_hint=False, open_world_hint=False)),
    (runs.get_run, _READ),
    (runs.list_runs, _READ),
    (data.upload_data, ToolAnnotations(read_only_hint=False, idempotent_hint=True, open_world_hint=False)),
    (data.list_datasets, _READ),
    (sweep.run_sweep, _READ),
    (sweep.walk_forward, _READ),
]

__all__ = ["TOOLS"]
