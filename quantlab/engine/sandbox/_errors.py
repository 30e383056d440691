"""The sandbox's error type (``SignalError`` stays the engine's one class)."""
from __future__ import annotations

from quantlab._util.errors import QuantlabErrorMixin

__all__ = ["SandboxError"]


class SandboxError(QuantlabErrorMixin, RuntimeError):
    """Strategy code that the sandbox refused or stopped.

    ``kind`` says why: ``static`` (refused before it ran: a forbidden import,
    builtin or attribute), ``forbidden`` (it tried, at run time, to open a file,
    use the network, start a process, send a signal or load native code),
    ``cpu``, ``memory``, ``output``, ``timeout`` (a limit), ``crashed`` (the
    sandboxed process died) or ``internal``. ``line`` is the strategy's line
    when known.

    Example
    -------
    >>> from quantlab.engine.sandbox import check_code
    >>> try:
    ...     check_code("import os\\ndef signals(data):\\n    return data.close * 0")
    ... except SandboxError as exc:
    ...     print(exc.kind, exc.line)
    static 1
    """

    def __init__(self, message: str, *, kind: str = "forbidden", line: int | None = None):
        super().__init__(message)
        self.kind = kind
        self.line = line

    def __repr__(self) -> str:
        return f"SandboxError(kind={self.kind!r}, line={self.line!r}, message={str(self)!r})"

    def __reduce__(self):
        return (_rebuild, (str(self), self.kind, self.line))


def _rebuild(message: str, kind: str, line: int | None) -> SandboxError:
    return SandboxError(message, kind=kind, line=line)
