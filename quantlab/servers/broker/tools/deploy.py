"""Deployment tools inside the broker: ``deploy_strategy``, ``list_deployments``, ``get_deployment``,
``stop_deployment``, ``deployment_journal``, ``set_alert``, ``list_alerts``.

They move to the runner (``quantlab.runner``), which trades through the standard MT5 tools only;
they stay here until ``Lab`` deploys through it.
"""
from __future__ import annotations

from typing import Any, Literal

from mcp.server.mcpserver import Context

from .common import inline, session, threaded

__all__ = ["deploy_strategy", "list_deployments", "get_deployment", "stop_deployment", "deployment_journal",
           "set_alert", "list_alerts"]


@threaded
def deploy_strategy(name: str, code: str, symbol: str, volume: float, ctx: Context, timeframe: int | str = "M1",
                    params: dict[str, Any] | None = None, config: dict[str, Any] | None = None) -> dict[str, Any]:
    """Paper-trade a strategy: `code` is Python source defining signals(data, **params) -> target positions in
    [-1, 1] per bar (data: DataFrame with open, high, low, close, volume and a UTC DatetimeIndex). On every new
    completed bar the broker trades toward target x volume lots with magic = deployment_id. signals() must be
    causal: after a gap it is evaluated once over config.lookback (default 300) bars plus all new bars.
    Deploying the same code + params + symbol again returns the running deployment (existing: true).
    Returns {deployment_id, status ('running'), ...}."""
    return session(ctx).require().deployments.deploy(name, code, params, symbol, timeframe, volume, config)


@threaded
def list_deployments(ctx: Context, status: str | None = None) -> list[dict[str, Any]]:
    """All deployments (optionally only one status: pending, running, stopped, failed) with position and PnL."""
    return session(ctx).require().deployments.list(status)


@threaded
def get_deployment(deployment_id: int, ctx: Context) -> dict[str, Any]:
    """One deployment: status, error, lots (position), target, pnl / realized_pnl / floating_pnl, trades, open positions, last journal lines."""
    return session(ctx).require().deployments.get(deployment_id)


@threaded
def stop_deployment(deployment_id: int, ctx: Context) -> dict[str, Any]:
    """Stop a deployment: close its positions through the order path and set status 'stopped'."""
    return session(ctx).require().deployments.stop(deployment_id)


@threaded
def deployment_journal(deployment_id: int, ctx: Context, limit: int = 200, after_id: int = 0,
                       kind: str | None = None) -> list[dict[str, Any]]:
    """The deployment's trade journal, oldest first: every status change, signal (target change), order, fill,
    error and alert with feed time and wall time. Page with after_id; filter with kind."""
    return session(ctx).require().deployments.journal(deployment_id, limit, after_id, kind)


@inline
def set_alert(kind: Literal["price_above", "price_below", "drawdown"], threshold: float, ctx: Context,
              symbol: str | None = None, deployment_id: int | None = None) -> dict[str, Any]:
    """Set an alert that fires once into the journal: price_above / price_below (symbol's bid high/low crosses
    threshold), drawdown (a deployment's PnL, or the account's equity, falls `threshold` money below its peak)."""
    return session(ctx).require().deployments.set_alert(kind, threshold, symbol, deployment_id)


@inline
def list_alerts(ctx: Context, deployment_id: int | None = None, status: str | None = None) -> list[dict[str, Any]]:
    """Alerts with their status (active / fired) and the message they fired with."""
    return session(ctx).require().deployments.list_alerts(deployment_id, status)
