"""What connecting reports: :class:`ConnectResult` per server and the :class:`ConnectReport` of
:meth:`AsyncMCPHub.connect_all` (one failure never hides another).

>>> ConnectReport({"a": ConnectResult("a", ok=True, seconds=0.1)}).ok
['a']
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ._errors import ClientError, ConnectError
from ._state import html_tables, text_tables

__all__ = ["ConnectResult", "ConnectReport"]


@dataclass
class ConnectResult:
    """The outcome of connecting one server: ``ok``, ``seconds``, ``tools`` (names), ``attempts``, ``error``.

    >>> ConnectResult("time", ok=True, seconds=0.5, tools=["get_current_time"], attempts=1)
    ConnectResult('time': ok, 1 tools in 0.50 s)
    """

    server: str
    ok: bool
    seconds: float
    tools: list[str] = field(default_factory=list)
    attempts: int = 0
    error: ClientError | None = None

    def __repr__(self) -> str:
        if self.ok:
            return f"ConnectResult({self.server!r}: ok, {len(self.tools)} tools in {self.seconds:.2f} s)"
        return f"ConnectResult({self.server!r}: FAILED after {self.attempts} attempts: {self.error})"


class ConnectReport(dict):
    """``{server: ConnectResult}`` from :meth:`AsyncMCPHub.connect_all`; one failure never hides another.

    >>> r = ConnectReport({"a": ConnectResult("a", ok=True, seconds=0.1)})
    >>> r.ok, r.failed
    (['a'], [])
    >>> r.raise_for_errors()
    """

    @property
    def ok(self) -> list[str]:
        """Names of the servers that connected."""
        return [k for k, v in self.items() if v.ok]

    @property
    def failed(self) -> list[str]:
        """Names of the servers that did not."""
        return [k for k, v in self.items() if not v.ok]

    def raise_for_errors(self) -> None:
        """Raise a :class:`ConnectError` if any server failed; it lists every failure, not just the first.

        >>> ConnectReport().raise_for_errors()  # nothing failed: nothing raised
        """
        errors = [self[k].error for k in self.failed]
        if not errors:
            return
        first = errors[0]
        assert first is not None
        if len(errors) == 1:
            raise first
        msg = f"{len(errors)} of {len(self)} MCP servers failed to connect ({', '.join(self.failed)}):\n\n" + "\n\n".join(
            str(e) for e in errors
        )
        raise ConnectError(
            msg, server=first.server, target=getattr(first, "target", None), attempts=getattr(first, "attempts", 0),
            cause=getattr(first, "cause", None), stderr=getattr(first, "stderr", ""),
        )

    def _rows(self) -> list[dict[str, Any]]:
        return [
            {
                "server": k,
                "ok": "yes" if v.ok else "NO",
                "seconds": f"{v.seconds:.2f}",
                "tools": len(v.tools),
                "attempts": v.attempts,
                "error": "" if v.ok else (str(v.error).splitlines()[0] if v.error else ""),
            }
            for k, v in self.items()
        ]

    def __repr__(self) -> str:
        return text_tables([("connect", self._rows())])

    def _repr_html_(self) -> str:
        return html_tables([("connect", self._rows())])
