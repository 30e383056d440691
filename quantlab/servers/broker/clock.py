"""The market clock that moves the paper broker's feed: stepped, realtime or accelerated.

Example
-------
>>> parse_clock("accelerated:50")
('accelerated', 50.0)
"""
from __future__ import annotations

import html
import threading
import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from .book import Broker

__all__ = ["Clock", "parse_clock"]


class Clock:
    """Moves the feed: ``stepped`` (only the ``advance`` tool), ``realtime`` (one bar per bar
    period) or ``accelerated:N`` (N bars per second), in a background thread.

    >>> from quantlab.servers.broker import Broker
    >>> Clock(Broker.open(":memory:", symbols=["EURUSD"]), "accelerated:5")
    Clock(mode='accelerated', bars_per_second=5, running=False)
    """

    def __init__(self, broker: "Broker", spec: str = "stepped"):
        self.broker = broker
        self.mode, self.rate = parse_clock(spec)
        if self.mode == "realtime":
            self.rate = 1.0 / broker.feed.step
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.last_error: str | None = None

    def start(self) -> "Clock":
        if self.mode != "stepped" and self._thread is None:
            self._thread = threading.Thread(target=self._run, name="quantlab-broker-clock", daemon=True)
            self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        owed = 0.0
        last = time.monotonic()
        tick = min(0.1, 1.0 / max(self.rate, 1e-9))
        while not self._stop.wait(tick):
            now = time.monotonic()
            owed += (now - last) * self.rate
            last = now
            n = int(owed)
            if n <= 0:
                continue
            owed -= n
            try:
                self.broker.advance(n)
                self.last_error = None
            except Exception as exc:  # noqa: BLE001 - the clock keeps ticking; the error is reported by get_clock
                self.last_error = f"{type(exc).__name__}: {exc}"

    def info(self) -> dict[str, Any]:
        """Mode, bars per second and the last error of the background clock."""
        return {"mode": self.mode, "bars_per_second": self.rate, "last_error": self.last_error}

    def __repr__(self) -> str:
        running = self._thread is not None and self._thread.is_alive()
        return f"Clock(mode={self.mode!r}, bars_per_second={self.rate:g}, running={running})"

    def _repr_html_(self) -> str:
        return f"<code>{html.escape(repr(self))}</code>"


def parse_clock(spec: str) -> tuple[str, float]:
    """``'stepped'``, ``'realtime'`` or ``'accelerated:N'`` → ``(mode, bars_per_second)``.

    >>> parse_clock("stepped")
    ('stepped', 0.0)
    """
    s = (spec or "stepped").strip().lower()
    if s in ("stepped", "realtime"):
        return s, 0.0
    if s.startswith("accelerated"):
        _, _, n = s.partition(":")
        try:
            rate = float(n or 10)
        except ValueError:
            raise ValueError(f"clock {spec!r}: N in accelerated:N must be a number of bars per second.") from None
        if rate <= 0:
            raise ValueError(f"clock {spec!r}: N must be > 0.")
        return "accelerated", rate
    raise ValueError(f"unknown clock {spec!r}; use stepped, realtime or accelerated:N.")
