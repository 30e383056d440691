"""One deployment's ``signals()``: its sandboxed session and its sliding window of bars.

Strategy code is untrusted, so it never runs in the runner's process. Each running
deployment owns one long-lived sandboxed child
(:class:`~quantlab.engine.sandbox.SignalSession`: no files, network, processes or
secrets; rlimits, seccomp and Landlock; docs/sandbox.md), which loads the strategy once
and evaluates one frame per completed bar. The runner keeps the deployment's sliding
window of bars (raw int64/float64 arrays) and sends the session that window; the
session answers with raw float64 frames (never pickles), and the backtest's own rule
(:func:`~quantlab.engine.signals.to_targets`) turns them into targets here.

The deployment's ``timeout`` is the session's limit per evaluation: an endless loop is
stopped after ``timeout`` seconds, its child killed, and that deployment fails while the
others go on. The calls block (pipes to the child), so the runner makes them in a
thread (:meth:`DeploymentSignals.evaluate_async`) and other deployments' bars and the
MCP server keep moving meanwhile.

Example
-------
>>> import numpy as np
>>> code = "def signals(data, n=3):\\n    return (data.close > data.close.rolling(n).mean()) * 1.0"
>>> s = DeploymentSignals.load(code, "up", {}, lookback=10, timeout=30)   # doctest: +SKIP
>>> t = np.arange(20, dtype=np.int64) * 60
>>> bars = {"time": t, **{f: np.linspace(1, 2, 20) for f in ("open", "high", "low", "close", "volume")}}
>>> s.push(bars, reset=True); s.targets(1)                               # doctest: +SKIP
[1.0]
"""
from __future__ import annotations

import asyncio
import math
from typing import Any, Mapping

import numpy as np

__all__ = ["DeploymentSignals", "StrategyFailed", "FIELDS", "SANDBOX_LIMITS"]

FIELDS = ("time", "open", "high", "low", "close", "volume")
#: limits of one sandboxed evaluation of ``signals()`` besides its time (the deployment's ``timeout``)
SANDBOX_LIMITS = {"memory_mb": 4096, "output_bytes": 200_000}


class StrategyFailed(Exception):
    """The strategy itself failed (raised, bad targets, a limit): its deployment fails, the others go on."""


def _describe(exc: BaseException) -> str:
    msg = f"{type(exc).__name__}: {exc}"
    line = getattr(exc, "line", None)
    if line and f"line {line}" not in msg:
        msg += f" (line {line})"
    return msg


class DeploymentSignals:
    """The sandboxed ``signals()`` of one deployment and the bars it sees (its last ``lookback`` + new ones).

    Make one with :meth:`load` (checks the code, reads its parameters in the sandbox and
    starts the deployment's session). :meth:`push` adds completed bars, :meth:`targets`
    evaluates them; both block, :meth:`evaluate_async` runs the pair in a thread.
    """

    def __init__(self, session: Any, name: str, params: dict[str, Any], lookback: int, timeout: float):
        self.session = session
        self.name = name
        self.params = params
        self.lookback = int(lookback)
        self.timeout = float(timeout)
        self.cols: dict[str, np.ndarray] = {}

    @classmethod
    def limits(cls, timeout: float) -> dict[str, Any]:
        """The sandbox limits of one evaluation: ``timeout`` seconds of wall-clock (and CPU) time."""
        t = max(float(timeout), 0.05)
        return {**SANDBOX_LIMITS, "cpu_seconds": max(1, math.ceil(t)), "wall_seconds": t}

    @classmethod
    def load(cls, code: str, name: str, params: Mapping[str, Any] | None, *, lookback: int,
             timeout: float) -> "DeploymentSignals":
        """Check ``code``, resolve ``params`` against its ``signals()`` defaults (in the sandbox), open its session.

        Raises :class:`StrategyFailed` saying why the strategy cannot run.
        """
        from quantlab.engine import sandbox

        try:
            strategy = sandbox.load(code, name=name or "strategy", limits=cls.limits(max(timeout, 30.0)))
            resolved = strategy.resolve_params(dict(params or {}))
            session = sandbox.SignalSession(code, resolved, name=strategy.name, limits=cls.limits(timeout))
        except Exception as exc:  # noqa: BLE001 - SandboxError, StrategyError, SignalError: the strategy's fault
            raise StrategyFailed(_describe(exc)) from None
        return cls(session, strategy.name, resolved, lookback, timeout)

    def push(self, bars: Mapping[str, np.ndarray], *, reset: bool = False) -> int:
        """Append completed ``bars`` (arrays of :data:`FIELDS`) to the window (``reset``: replace it); return how many."""
        n = len(bars["time"])
        new = {f: np.ascontiguousarray(bars[f], dtype=np.int64 if f == "time" else np.float64) for f in FIELDS}
        if reset or not self.cols:
            self.cols = new
        else:
            self.cols = {f: np.concatenate([self.cols[f], new[f]]) for f in FIELDS}
        keep = self.lookback + n
        if len(self.cols["time"]) > keep:
            self.cols = {f: v[-keep:] for f, v in self.cols.items()}
        return n

    def frame(self) -> Any:
        """The window as the OHLCV frame ``signals()`` gets (UTC ``DatetimeIndex`` named ``time``)."""
        import pandas as pd

        c = self.cols
        idx = pd.DatetimeIndex(c["time"].astype("datetime64[s]").astype("datetime64[ns]"), name="time").tz_localize("UTC")
        return pd.DataFrame({f: c[f] for f in FIELDS[1:]}, index=idx, copy=False)

    def targets(self, want: int = 1) -> list[float]:
        """``signals()`` over the window in the sandbox -> the targets of its last ``want`` bars."""
        from quantlab.engine.signals import to_targets  # the backtest's own rule: the same targets as the backtest

        if want <= 0 or not self.cols:
            return []
        data = self.frame()
        try:
            sig = self.session(data)
            out = to_targets(sig, data, self.name)
        except Exception as exc:  # noqa: BLE001 - the strategy's own failure or a sandbox limit
            if getattr(exc, "kind", None) == "timeout":
                raise StrategyFailed(f"signals() did not return within {self.timeout:g} s (an endless loop?); its "
                                     "sandboxed process was killed") from None
            raise StrategyFailed(_describe(exc)) from None
        return out[-want:].tolist()

    async def evaluate_async(self, bars: Mapping[str, np.ndarray] | None = None, *, reset: bool = False,
                             want: int = 1) -> list[float]:
        """:meth:`push` then :meth:`targets`, in a thread (the event loop keeps serving meanwhile)."""
        def run() -> list[float]:
            if bars is not None:
                self.push(bars, reset=reset)
            return self.targets(want)

        return await asyncio.to_thread(run)

    def close(self) -> None:
        """End the deployment's sandboxed process."""
        try:
            self.session.close()
        except Exception:  # noqa: BLE001 - already gone
            pass

    def __repr__(self) -> str:
        return (f"DeploymentSignals(name={self.name!r}, params={self.params!r}, lookback={self.lookback}, "
                f"timeout={self.timeout:g} s, bars={len(self.cols.get('time', ()))})")
