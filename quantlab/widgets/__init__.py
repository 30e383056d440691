"""quantlab's notebook widgets (ipywidgets + matplotlib PNG charts).

- :func:`review` — metrics with policy badges, equity/drawdown chart, monthly
  returns heat map, sortable trades; several results get a comparison table.
- :func:`deploy_panel` — the one-click store-and-deploy cell.
- :func:`monitor` — a live table of the lab's deployments.

Every widget also renders as static HTML with inline PNG charts (``text/html``)
and has a text ``repr``, so executed and exported notebooks show them without
a widget manager.

Example
-------
>>> from quantlab.widgets import review     # doctest: +SKIP
>>> review(result)
"""
from .monitor import Monitor, monitor
from .panel import DeployPanel, DeployPanelError, deploy_panel
from .review import Review, review

__all__ = ["review", "deploy_panel", "monitor", "Review", "DeployPanel", "DeployPanelError", "Monitor"]
