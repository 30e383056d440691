"""The Git assets hub: strategies with their backtest metrics, and the deployments ledger.

>>> from quantlab.hub import AssetsHub
>>> hub = AssetsHub("./assets-hub")                       # doctest: +SKIP
>>> stored = hub.store(strategy, result)                  # doctest: +SKIP
>>> hub.strategies(), hub.history("SMA cross"), hub.load("SMA cross")   # doctest: +SKIP

See :mod:`quantlab.hub.assets` (the hub), :mod:`quantlab.hub.ledger` (deployment
events), :mod:`quantlab.hub.slug` (safe file names), :mod:`quantlab.hub.secrets`
(the secret guard) and :mod:`quantlab.hub.message` (the commit message format).
"""
from __future__ import annotations

from .assets import (
    AssetsHub,
    CodeDiff,
    DetachedHeadError,
    HubError,
    IndexLockError,
    SecretsFoundError,
    StoredStrategy,
)
from .ledger import ACTIVE_STATUSES as ACTIVE_DEPLOYMENT_STATUSES
from .ledger import STATUSES as DEPLOYMENT_STATUSES
from .message import commit_message
from .secrets import SecretFinding, find_secrets
from .slug import slugify

__all__ = [
    "AssetsHub",
    "StoredStrategy",
    "CodeDiff",
    "HubError",
    "DetachedHeadError",
    "IndexLockError",
    "SecretsFoundError",
    "SecretFinding",
    "DEPLOYMENT_STATUSES",
    "ACTIVE_DEPLOYMENT_STATUSES",
    "commit_message",
    "find_secrets",
    "slugify",
]
