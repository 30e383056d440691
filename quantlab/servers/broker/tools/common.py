"""What every broker tool shares: the per-session state and the rule that turns failures into tool errors.

Example
-------
>>> from quantlab.servers.broker import Broker
>>> s = Session(Broker.open(":memory:", symbols=["EURUSD"]), clock=None)
>>> s.initialized, s.last_error
(True, (1, 'OK'))
"""
from __future__ import annotations

import functools
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, Callable

from mcp.server.mcpserver import Context
from mcp.server.mcpserver.exceptions import ToolError

from .. import constants as C
from ..book import Broker, TradeError
from ..feed import FeedError

if TYPE_CHECKING:  # pragma: no cover
    from ..clock import Clock

__all__ = ["Session", "session", "inline", "threaded", "sized", "iso", "epoch", "NOT_INITIALIZED"]

NOT_INITIALIZED = (-10004, "No IPC connection")


@dataclass
class Session:
    """One client session's view of the broker: the broker and clock (shared), and whether this
    session has the terminal initialized (``shutdown`` closes it, ``initialize`` opens it again)."""

    broker: Broker
    clock: "Clock | None"
    initialized: bool = True
    last_error: tuple[int, str] = field(default=(C.RES_S_OK, "OK"))

    def require(self) -> Broker:
        """The broker, or a tool error like the real terminal's after ``shutdown``."""
        if not self.initialized:
            self.last_error = NOT_INITIALIZED
            raise ToolError(f"Error: {NOT_INITIALIZED[0]} - {NOT_INITIALIZED[1]}. Call initialize() first.")
        return self.broker


def session(ctx: Context) -> Session:
    """The :class:`Session` the server's lifespan made for this connection."""
    return ctx.request_context.lifespan_context


def _guarded(fn: Callable[..., Any]) -> Callable[..., Any]:
    def run(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except ToolError:
            raise
        except TradeError as exc:
            _note(kwargs, exc.retcode, exc.message)
            raise ToolError(f"{exc}\nResult: {{'retcode': {exc.retcode}, 'comment': {exc.message!r}}}") from None
        except (FeedError, ValueError, TypeError, KeyError) as exc:
            _note(kwargs, C.RES_E_INVALID_PARAMS, str(exc))
            raise ToolError(f"{C.retcode_name(C.RES_E_INVALID_PARAMS)} ({C.RES_E_INVALID_PARAMS}): {exc}") from None
        except Exception as exc:  # noqa: BLE001 - never crash the server
            _note(kwargs, C.RES_E_FAIL, str(exc))
            raise ToolError(f"{C.retcode_name(C.TRADE_RETCODE_ERROR)} ({C.TRADE_RETCODE_ERROR}): internal error "
                            f"{type(exc).__name__}: {exc}; the request was not applied.") from None

    return run


def _note(kwargs: dict[str, Any], code: int, message: str) -> None:
    ctx = kwargs.get("ctx")
    if ctx is not None:
        try:
            session(ctx).last_error = (code, message)
        except (ValueError, AttributeError):  # pragma: no cover - outside a request
            pass


def inline(fn: Callable[..., Any]) -> Callable[..., Any]:
    """A quick (sub-millisecond) tool run on the event loop itself, no worker-thread hop per call,
    with every anticipated failure turned into a tool error carrying the MT5 retcode."""
    run = _guarded(fn)

    @functools.wraps(fn)
    async def wrapper(*args: Any, **kwargs: Any) -> Any:
        return run(*args, **kwargs)

    return wrapper


def threaded(fn: Callable[..., Any]) -> Callable[..., Any]:
    """A tool that may take a while (bars, history, advance): run in a worker thread, same error rule."""
    run = _guarded(fn)

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        return run(*args, **kwargs)

    return wrapper


def sized(heavy: Callable[[dict[str, Any]], bool]) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """A tool that is quick for small requests and may take a while for big ones: run on the event loop
    when ``heavy(arguments)`` is false (no worker-thread hop on the one-bar-at-a-time path), else in a
    worker thread; same error rule as :func:`inline`.

    >>> @sized(lambda kw: kw.get("bars", 1) > 1000)
    ... def f(ctx=None, bars=1):
    ...     return bars
    >>> import asyncio; asyncio.run(f(bars=3))
    3
    """
    def deco(fn: Callable[..., Any]) -> Callable[..., Any]:
        run = _guarded(fn)

        @functools.wraps(fn)
        async def wrapper(*args: Any, **kwargs: Any) -> Any:
            try:
                big = bool(heavy(kwargs))
            except Exception:  # noqa: BLE001 - odd arguments: the tool itself says what is wrong
                big = False
            if not big:
                return run(*args, **kwargs)
            import anyio

            return await anyio.to_thread.run_sync(functools.partial(run, *args, **kwargs))

        return wrapper

    return deco


def iso(t: int) -> str:
    """Epoch seconds → ISO-8601 with ``Z``, as the real server formats ``time``.

    >>> iso(1704067200)
    '2024-01-01T00:00:00Z'
    """
    return datetime.fromtimestamp(int(t), timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def iso_ms(t_ms: int) -> str:
    """Epoch milliseconds → ISO-8601 with milliseconds and ``Z`` (the real server's ``time_msc``).

    >>> iso_ms(1704067200123)
    '2024-01-01T00:00:00.123Z'
    """
    return datetime.fromtimestamp(int(t_ms) // 1000, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S") + f".{int(t_ms) % 1000:03d}Z"


def epoch(d: datetime | None) -> int | None:
    """A datetime argument → epoch seconds (naive means UTC, as the real server's terminal reads it)."""
    if d is None:
        return None
    if d.tzinfo is None:
        d = d.replace(tzinfo=timezone.utc)
    return int(d.timestamp())
