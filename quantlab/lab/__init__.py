"""The workflow layer: :class:`Lab` (backtest → validate → store → deploy → record) and its policy.

>>> from quantlab.lab import Lab, DeploymentPolicy   # doctest: +SKIP
"""
from __future__ import annotations

from .defaults import default_home, embedded_servers
from .lab import DeploymentRecord, Lab, LabError, PolicyError, StoreDeployOutcome
from .policy import DeploymentPolicy, PolicyCheck

__all__ = [
    "Lab", "LabError", "PolicyError", "DeploymentRecord", "StoreDeployOutcome",
    "DeploymentPolicy", "PolicyCheck", "embedded_servers", "default_home",
]
