"""quantlab: from a JupyterLab cell to a paper-traded strategy.

The public API is what this module exports. Heavy parts (widgets, the lab,
the MCP client) are imported lazily on first use so ``import quantlab`` stays fast.
"""
from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

# public name -> module that defines it
_LAZY = {
    # engine
    "Strategy": "quantlab.engine.strategy",
    "StrategyError": "quantlab.engine.strategy",
    "backtest": "quantlab.engine.backtest",
    "BacktestResult": "quantlab.engine.backtest",
    "SignalError": "quantlab.engine.signals",
    "options": "quantlab._util.errors",
    "SandboxError": "quantlab.engine.sandbox",
    "SandboxLimits": "quantlab.engine.sandbox",
    "DataError": "quantlab.engine.data",
    "sweep": "quantlab.engine.sweep",
    "SweepResult": "quantlab.engine.sweep",
    "check_lookahead": "quantlab.engine.lookahead",
    "LookaheadReport": "quantlab.engine.lookahead",
    "walk_forward": "quantlab.engine.walkforward",
    "WalkForwardResult": "quantlab.engine.walkforward",
    # workflow
    "Lab": "quantlab.lab.lab",
    "DeploymentPolicy": "quantlab.lab.policy",
    "PolicyError": "quantlab.lab.policy",
    "PolicyCheck": "quantlab.lab.policy",
    "Generation": "quantlab.agent",
    "ModelConfig": "quantlab.agent",
    # client
    "MCPHub": "quantlab.client",
    "AsyncMCPHub": "quantlab.client",
    "ToolError": "quantlab.client",
    "ClientError": "quantlab.client",
    # hub
    "AssetsHub": "quantlab.hub",
    "StoredStrategy": "quantlab.hub",
    # faces
    "review": "quantlab.widgets",
    "deploy_panel": "quantlab.widgets",
    "monitor": "quantlab.widgets",
    "Review": "quantlab.widgets",
    "DeployPanel": "quantlab.widgets",
    "Monitor": "quantlab.widgets",
}
_MODULES = {"data": "quantlab.data"}

__all__ = ["__version__", "data", "load_ipython_extension", *_LAZY]


def load_ipython_extension(ipython: Any) -> None:
    """``%load_ext quantlab``: adds ``%%strategy NAME`` and ``%quantlab status``."""
    from quantlab.magics import load_ipython_extension as load

    load(ipython)


def __getattr__(name: str) -> Any:
    if name in _MODULES:
        value = importlib.import_module(_MODULES[name])
        globals()[name] = value
        return value
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'quantlab' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
