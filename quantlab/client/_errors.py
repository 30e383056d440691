"""The exceptions of :mod:`quantlab.client`, one hierarchy in the style of httpx.

::

    ClientError                      every error raised by the client
    ├── TransportError               the connection failed or died (process killed, HTTP gone)
    │   └── ConnectError             could not connect, after all retries
    ├── TimeoutError                 a call ran past its limit (also a builtins.TimeoutError)
    ├── ProtocolError                the server or the request broke the MCP contract
    │   ├── ArgumentsError           arguments do not match the tool's input schema (also a ValueError)
    │   └── ToolNotFoundError        no such tool on that server (also a LookupError)
    ├── ToolError                    the tool ran and reported an error (``isError``)
    └── ServerNotFoundError          no such server in the configuration (also a KeyError)

Example
-------
>>> from quantlab.client import ClientError, ToolError
>>> issubclass(ToolError, ClientError)
True
>>> try:
...     raise ToolError("no data for 'XYZ'", server="backtest", tool="run")
... except ClientError as exc:
...     print(exc)
tool 'run' on server 'backtest' failed: no data for 'XYZ'
"""
from __future__ import annotations

from quantlab._util.errors import QuantlabErrorMixin

import builtins
from typing import Any

__all__ = [
    "ClientError",
    "TransportError",
    "ConnectError",
    "TimeoutError",
    "ProtocolError",
    "ArgumentsError",
    "ToolNotFoundError",
    "ToolError",
    "ServerNotFoundError",
]


class ClientError(QuantlabErrorMixin, Exception):
    """Base class of every error raised by :mod:`quantlab.client`.

    ``server`` (and ``tool`` where it applies) name what failed.

    >>> str(ClientError("something broke", server="time"))
    'something broke'
    """

    def __init__(self, message: str, *, server: str | None = None, tool: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.server = server
        self.tool = tool

    def __reduce__(self) -> tuple[Any, ...]:  # keep pickling (dask, multiprocessing) working
        return (_rebuild, (type(self), self.__dict__.copy(), self.args))


def _rebuild(cls: type, state: dict[str, Any], args: tuple[Any, ...]) -> ClientError:
    exc = cls.__new__(cls)
    Exception.__init__(exc, *args)
    exc.__dict__.update(state)
    return exc


class TransportError(ClientError):
    """The connection to a server failed or died (process killed, HTTP endpoint gone).

    The next call on that server reconnects by itself (with the hub's retry/backoff).

    >>> issubclass(TransportError, ClientError)
    True
    """


class ConnectError(TransportError):
    """Could not connect to a server after every attempt.

    Carries ``server``, ``target`` (the command line or URL), ``attempts``, ``cause``
    (the last underlying exception) and ``stderr`` (the last lines the server wrote to
    stderr, stdio only).

    >>> e = ConnectError("could not connect", server="x", target="python -m x", attempts=4)
    >>> e.attempts
    4
    """

    def __init__(
        self,
        message: str,
        *,
        server: str | None = None,
        target: str | None = None,
        attempts: int = 0,
        cause: BaseException | None = None,
        stderr: str = "",
    ) -> None:
        super().__init__(message, server=server)
        self.target = target
        self.attempts = attempts
        self.cause = cause
        self.stderr = stderr


class TimeoutError(ClientError, builtins.TimeoutError):  # noqa: A001 - deliberate, like httpx
    """A call took longer than its ``timeout``. The connection stays usable.

    Also a :class:`builtins.TimeoutError`, so ``except TimeoutError`` catches it either way.

    >>> e = TimeoutError("too slow", server="s", tool="t", limit=0.5)
    >>> isinstance(e, builtins.TimeoutError), e.limit
    (True, 0.5)
    """

    def __init__(self, message: str, *, server: str | None = None, tool: str | None = None, limit: float | None = None) -> None:
        super().__init__(message, server=server, tool=tool)
        self.limit = limit


class ProtocolError(ClientError):
    """The request or the server's answer broke the MCP contract (bad arguments, unknown tool, bad reply).

    >>> issubclass(ArgumentsError, ProtocolError)
    True
    """


class ArgumentsError(ProtocolError, ValueError):
    """The arguments do not match the tool's input schema; nothing was sent.

    ``field`` is the dotted path of the offending argument (``""`` for the whole object),
    ``errors`` lists every problem found.

    >>> e = ArgumentsError("bad", server="s", tool="add", field="a")
    >>> e.field
    'a'
    """

    def __init__(
        self,
        message: str,
        *,
        server: str | None = None,
        tool: str | None = None,
        field: str = "",
        errors: list[str] | None = None,
    ) -> None:
        super().__init__(message, server=server, tool=tool)
        self.field = field
        self.errors = errors or []


class ToolNotFoundError(ProtocolError, LookupError):
    """The server has no tool by that name.

    >>> issubclass(ToolNotFoundError, LookupError)
    True
    """


class ToolError(ClientError):
    """The tool ran and answered with an error (``isError: true``); ``message`` is the server's text.

    >>> e = ToolError("division by zero", server="calc", tool="div")
    >>> e.server, e.tool, e.message
    ('calc', 'div', 'division by zero')
    """

    def __str__(self) -> str:
        return f"tool {self.tool!r} on server {self.server!r} failed: {self.message}"


class ServerNotFoundError(ClientError, KeyError):
    """No server by that name is configured.

    >>> str(ServerNotFoundError("no server 'x'", server="x"))
    "no server 'x'"
    """

    def __str__(self) -> str:  # KeyError would repr() the message
        return self.message
