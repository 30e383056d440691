"""The assets hub's errors: each message says what to do about it.

>>> issubclass(IndexLockError, HubError), issubclass(SecretsFoundError, ValueError)
(True, True)
"""
from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    from .secrets import SecretFinding

__all__ = ["HubError", "DetachedHeadError", "IndexLockError", "SecretsFoundError"]


class HubError(RuntimeError):
    """Something the assets hub could not do; the message says what to do about it."""


class DetachedHeadError(HubError):
    """The hub repository is on a detached HEAD, so there is no branch to commit to."""


class IndexLockError(HubError):
    """Another process held the Git index (or a ref) lock for longer than ``lock_timeout``."""


class SecretsFoundError(HubError, ValueError):
    """The strategy code carries something that looks like a secret (see ``.findings``)."""

    def __init__(self, message: str, findings: "list[SecretFinding]"):
        super().__init__(message)
        self.findings = findings
