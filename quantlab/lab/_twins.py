"""The two faces of every Lab step: one core coroutine (run on the MCP client's event-loop thread)
becomes a sync method for cells and scripts and an ``a``-prefixed async twin for ``await``."""
from __future__ import annotations

import asyncio
import functools
from typing import TYPE_CHECKING, Any, Awaitable, Callable, Coroutine

if TYPE_CHECKING:
    from .lab import Lab

__all__ = ["_twins", "_counted"]


def _twins(core: Callable[..., Coroutine[Any, Any, Any]]) -> tuple[Callable[..., Any], Callable[..., Awaitable[Any]]]:
    """Make the sync method and the async twin of one core coroutine (which runs on the MCP loop)."""

    @functools.wraps(core)
    def sync(self: "Lab", *args: Any, **kwargs: Any) -> Any:
        self._check_open()
        return self.mcp.run(self._tracked(core(self, *args, **kwargs)))

    @functools.wraps(core)
    async def twin(self: "Lab", *args: Any, **kwargs: Any) -> Any:
        self._check_open()
        coro = self._tracked(core(self, *args, **kwargs))
        if asyncio.get_running_loop() is self.mcp.loop:  # awaited inside another step, on the lab's own loop
            return await coro
        return await asyncio.wrap_future(self.mcp.submit(coro))

    sync.__name__ = core.__name__.lstrip("_")
    twin.__name__ = "a" + sync.__name__
    twin.__doc__ = f"Async twin of :meth:`Lab.{sync.__name__}` (``await lab.{twin.__name__}(...)``)."
    return sync, twin


def _counted(core: Callable[..., Coroutine[Any, Any, Any]],
             trials_of: Callable[[Any], tuple[str, int]]) -> Callable[..., Coroutine[Any, Any, Any]]:
    """``core`` that also adds its trials to the hub (every backtest and sweep combination counts
    toward the deflated Sharpe of its strategy family); internal callers use ``core`` directly."""

    @functools.wraps(core)
    async def counted(self: "Lab", *args: Any, **kwargs: Any) -> Any:
        out = await core(self, *args, **kwargs)
        name, n = trials_of(out)
        await asyncio.to_thread(self.hub.record_trials, name, n)
        return out

    return counted
