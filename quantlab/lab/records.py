"""What the lab reports about a deployment: :class:`DeploymentRecord` and :class:`StoreDeployOutcome`.

>>> DeploymentRecord(deployment_id="d1", strategy_name="SMA", status="running").ok
True
"""
from __future__ import annotations

import html
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from quantlab._util import html as qh

if TYPE_CHECKING:
    from quantlab.hub import StoredStrategy

    from .policy import PolicyCheck

__all__ = ["DeploymentRecord", "StoreDeployOutcome"]


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _table(rows: list[tuple[str, Any]]) -> str:
    """A key/value table whose values are already HTML."""
    return qh.kv_table((k, qh.raw(v)) for k, v in rows)



@dataclass
class DeploymentRecord:
    """One deployment as the lab knows it: the broker's id and status, the strategy commit, why it failed.

    >>> DeploymentRecord(deployment_id="d1", strategy_name="SMA", status="running").ok
    True
    """

    deployment_id: str | None
    strategy_name: str
    status: str
    commit: str | None = None
    symbol: str | None = None
    timeframe: int | None = None
    volume: float | None = None
    broker: str | None = None
    error: str | None = None
    forced: bool = False
    triggered_at: str = field(default_factory=_now)
    existing: bool = False  # True when an already-running deployment was returned instead of a new one

    @property
    def ok(self) -> bool:
        """``True`` unless the deployment failed."""
        return self.status != "failed"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def __repr__(self) -> str:
        extra = f", error={self.error!r}" if self.error else ""
        commit = self.commit[:12] if self.commit else None
        return (
            f"DeploymentRecord(id={self.deployment_id!r}, strategy={self.strategy_name!r}, status={self.status!r}, "
            f"symbol={self.symbol!r}, commit={commit!r}{extra})"
        )

    def _repr_html_(self) -> str:
        rows = [
            ("status", qh.status_html(self.status)),
            ("deployment", f"<code>{html.escape(str(self.deployment_id))}</code>"),
            ("symbol", html.escape(str(self.symbol))),
            ("commit", f"<code>{html.escape((self.commit or '')[:12])}</code>"),
            ("triggered", html.escape(self.triggered_at)),
        ]
        if self.error:
            rows.append(("error", qh.coloured(self.error, qh.RED)))
        return f"<div><b>Deployment</b> <code>{html.escape(self.strategy_name)}</code>{_table(rows)}</div>"


@dataclass
class StoreDeployOutcome:
    """What :meth:`Lab.store_and_deploy` did: the policy ``check``, the ``stored`` strategy, the deployment ``record``.

    ``ok`` is ``True`` when the strategy is stored and running on the broker; otherwise
    ``error`` says which step failed and why (the stored commit is kept either way).
    """

    check: PolicyCheck
    stored: StoredStrategy | None = None
    record: DeploymentRecord | None = None
    error: str | None = None
    steps: list[tuple[str, str, str]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.error is None and self.record is not None and self.record.ok

    def __repr__(self) -> str:
        commit = self.stored.commit[:12] if self.stored else None
        dep = self.record.deployment_id if self.record else None
        state = "ok" if self.ok else f"failed: {self.error}"
        return f"StoreDeployOutcome({state}; commit={commit!r}, deployment={dep!r}, policy={'pass' if self.check.passed else 'fail'})"

    def _repr_html_(self) -> str:
        rows = [(s, f"{html.escape(st)} {html.escape(d)}") for s, st, d in self.steps]
        head = qh.verdict(True, "stored and deployed") if self.ok else (
            f"{qh.verdict(False, 'failed')}: {html.escape(str(self.error))}")
        return f"<div>{head}{_table(rows)}</div>"
