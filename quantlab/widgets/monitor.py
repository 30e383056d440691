"""``quantlab.monitor``: a live table of the lab's deployments.

A background thread calls ``lab.deployments()`` every ``interval`` seconds and
redraws the table (status, position, PnL, trades, last error). It stops when
the monitor is closed (``monitor.close()``, or the front end closing the
widget), when "auto-refresh" is unticked, and never outlives the lab: after
``max_errors`` consecutive failures (e.g. the lab was closed) it stops by itself.

Example (in a notebook cell)::

    m = quantlab.monitor(lab, interval=2.0)
    m                       # the live table
    m.refresh()             # refresh now; returns the DataFrame
    m.close()               # stop refreshing
"""
from __future__ import annotations

import threading
import time
from typing import Any

import ipywidgets as widgets
import pandas as pd

from . import _render as R
from ._base import StaticFallback

__all__ = ["Monitor", "monitor"]

COLUMNS = ["deployment_id", "strategy_name", "symbol", "status", "position", "pnl", "trades", "commit", "triggered_at",
           "last_error"]
_STATUS_COLOR = {"running": R.GREEN, "stopped": R.GREY, "failed": R.RED, "error": R.RED}
_ACTIVE = {"running", "pending", "starting", "active"}


def deployments_html(df: pd.DataFrame | None) -> str:
    """The deployments table as HTML: status in colour, PnL coloured by sign, short commits.

    >>> "No deployments yet." in deployments_html(pd.DataFrame())
    True
    """
    if df is None or len(df) == 0:
        return f"<div style='color:{R.GREY}'>No deployments yet.</div>"
    hidden = {"status_source"}
    cols = [c for c in COLUMNS if c in df.columns] + [c for c in df.columns if c not in COLUMNS and c not in hidden]
    shown = df[cols].copy()
    if "commit" in shown.columns:
        R.raw_column(shown, "commit", (R.raw(f"<code>{R.escape(str(v)[:12])}</code>") if not R._is_missing(v) else ""
                                       for v in shown["commit"]))
    if "status" in shown.columns:
        R.raw_column(shown, "status", (
            R.raw(f"<b style='color:{_STATUS_COLOR.get(str(s).lower(), R.GREY)}'>{R.escape(s)}</b>") for s in shown["status"]
        ))
    if "pnl" in shown.columns:
        R.raw_column(shown, "pnl", [
            R.raw(f"<span style='color:{R.GREEN if (v or 0) > 0 else R.RED if (v or 0) < 0 else R.GREY}'>{R.escape(R.fmt_metric('pnl', v))}</span>")
            if not R._is_missing(v) else "—"
            for v in shown["pnl"]
        ])
    if "last_error" in shown.columns:
        shown["last_error"] = ["" if R._is_missing(v) else str(v) for v in shown["last_error"]]
    return R.frame_html(shown.reset_index(drop=True), max_rows=500, css_class="quantlab-deployments")


class Monitor(StaticFallback, widgets.VBox):
    """Live deployments table (an ``ipywidgets.VBox``); build it with :func:`monitor`.

    ``refresh()`` reloads now, ``close()`` stops the background refresh for good,
    ``frame`` is the last DataFrame, ``refreshes`` counts the reloads,
    ``running`` tells whether the refresh thread is alive.

    Example
    -------
    >>> m = monitor(lab, interval=1.0)   # doctest: +SKIP
    >>> m.frame[["deployment_id", "status", "pnl"]]  # doctest: +SKIP
    >>> m.close(); m.running  # doctest: +SKIP
    False
    """

    def __init__(self, lab: Any, interval: float = 2.0, *, autostart: bool = True, max_errors: int = 5):
        self._closed = False
        self._thread: threading.Thread | None = None
        self._stop_event = threading.Event()
        if not callable(getattr(lab, "deployments", None)):
            raise TypeError(f"monitor() needs a Lab (anything with .deployments()); got {type(lab).__name__}.")
        if not interval or interval <= 0:
            raise ValueError(f"interval must be a positive number of seconds; got {interval!r}.")
        self._lab = lab
        self._interval = float(interval)
        self._max_errors = int(max_errors)
        self._refresh_lock = threading.Lock()
        self._frame: pd.DataFrame | None = None
        self._error: str | None = None
        self._errors_in_row = 0
        self._refreshes = 0
        self._refreshed_at: float | None = None

        self._status = widgets.HTML()
        self._table = widgets.HTML()
        self._auto = widgets.Checkbox(value=autostart, description=f"auto-refresh every {self._interval:g}s", indent=False,
                                      layout=widgets.Layout(width="auto"))
        self._refresh_btn = widgets.Button(description="Refresh", icon="refresh", layout=widgets.Layout(width="110px"))
        self._stop_pick = widgets.Dropdown(options=[], description="Deployment", layout=widgets.Layout(width="320px"))
        self._stop_btn = widgets.Button(description="Stop it", button_style="danger", icon="stop",
                                        layout=widgets.Layout(width="100px"))
        self._refresh_btn.on_click(lambda _b: self.refresh())
        self._stop_btn.on_click(lambda _b: self._stop_selected())
        self._auto.observe(self._on_auto, names="value")
        super().__init__(children=[
            widgets.HBox([self._refresh_btn, self._auto, self._status], layout=widgets.Layout(align_items="center")),
            self._table,
            widgets.HBox([self._stop_pick, self._stop_btn]),
        ])
        if self.comm is not None and hasattr(self.comm, "on_close"):
            self.comm.on_close(lambda _msg: self._stop_event.set())  # the front end closed the widget
        self.refresh()
        if autostart:
            self.start()

    # -- public ------------------------------------------------------------------------
    @property
    def interval(self) -> float:
        """Seconds between automatic refreshes."""
        return self._interval

    @property
    def frame(self) -> pd.DataFrame | None:
        """The deployments DataFrame of the last successful refresh."""
        return self._frame

    @property
    def error(self) -> str | None:
        """The error of the last refresh, ``None`` if it worked."""
        return self._error

    @property
    def refreshes(self) -> int:
        """How many refreshes ran (manual and automatic)."""
        return self._refreshes

    @property
    def running(self) -> bool:
        """True while the background refresh thread is alive."""
        return self._thread is not None and self._thread.is_alive()

    def refresh(self) -> pd.DataFrame | None:
        """Reload ``lab.deployments()`` now and redraw; returns the DataFrame (``None`` on error)."""
        with self._refresh_lock:
            try:
                df = self._lab.deployments()
                self._frame = df if isinstance(df, pd.DataFrame) else pd.DataFrame(df)
                self._error = None
                self._errors_in_row = 0
            except Exception as exc:  # noqa: BLE001 - shown in the widget
                self._error = f"{type(exc).__name__}: {exc}"
                self._errors_in_row += 1
            self._refreshes += 1
            self._refreshed_at = time.time()
            try:
                self._render()
            except Exception as exc:  # noqa: BLE001 - keep refreshing; say what went wrong
                self._error = f"could not draw the table: {type(exc).__name__}: {exc}"
                self._status.value = f"<span style='color:{R.RED}'>{R.escape(self._error)}</span>"
            return self._frame if self._error is None else None

    def start(self) -> "Monitor":
        """(Re)start automatic refreshing; returns ``self``."""
        if self._closed:
            raise RuntimeError("this monitor is closed; create a new one with quantlab.monitor(lab).")
        if self.running:
            return self
        self._stop_event = threading.Event()
        self._thread = threading.Thread(target=self._loop, args=(self._stop_event,), name="quantlab-monitor", daemon=True)
        self._thread.start()
        if not self._auto.value:
            self._auto.value = True
        self._render()
        return self

    def pause(self, timeout: float | None = 5.0) -> "Monitor":
        """Stop automatic refreshing (``start()`` resumes); returns ``self``."""
        self._stop_event.set()
        t = self._thread
        if t is not None and t is not threading.current_thread():
            t.join(timeout)
        if self._auto.value:
            self._auto.value = False
        self._render()
        return self

    def close(self) -> None:
        """Stop refreshing for good and close the widget (and its children)."""
        if self.__dict__.get("_closed", False):
            return
        self._closed = True
        self._stop_event.set()
        t = self._thread
        if t is not None and t is not threading.current_thread():
            t.join(max(5.0, self._interval + 5.0))
        for name in ("_status", "_table", "_auto", "_refresh_btn", "_stop_pick", "_stop_btn"):
            child = self.__dict__.get(name)
            if child is not None:
                child.close()
        super().close()

    # -- internals --------------------------------------------------------------------------------
    def _loop(self, stop: threading.Event) -> None:
        while not stop.wait(self._interval):
            if self._closed:
                break
            self.refresh()
            if self._errors_in_row >= self._max_errors:
                self._error = f"stopped auto-refresh after {self._errors_in_row} failures in a row: {self._error}"
                stop.set()
                self._auto.value = False
                self._render()
                break

    def _on_auto(self, change: Any) -> None:
        if change["new"] and not self.running and not self._closed:
            self.start()
        elif not change["new"] and self.running:
            self._stop_event.set()

    def _stop_selected(self) -> None:
        dep = self._stop_pick.value
        if not dep:
            return
        self._stop_btn.disabled = True
        try:
            self._lab.stop(dep)
        except Exception as exc:  # noqa: BLE001 - shown in the widget
            self._error = f"stopping {dep} failed: {type(exc).__name__}: {exc}"
            self._render()
        finally:
            self._stop_btn.disabled = False
        self.refresh()

    def _render(self) -> None:
        self._table.value = deployments_html(self._frame)
        when = time.strftime("%H:%M:%S", time.localtime(self._refreshed_at)) if self._refreshed_at else "never"
        state = "closed" if self._closed else ("live" if (self.running and not self._stop_event.is_set()) else "paused")
        err = f" <span style='color:{R.RED}'>{R.escape(self._error)}</span>" if self._error else ""
        self._status.value = f"<small style='color:{R.GREY}'>{state} · refreshed {when}</small>{err}"
        df = self._frame
        active = []
        if df is not None and len(df) and {"deployment_id", "status"} <= set(df.columns):
            active = [str(d) for d, s in zip(df["deployment_id"], df["status"]) if str(s).lower() in _ACTIVE]
        if list(self._stop_pick.options) != active:
            keep = self._stop_pick.value
            self._stop_pick.options = active
            self._stop_pick.value = keep if keep in active else (active[0] if active else None)
        self._stop_btn.disabled = not active

    def __repr__(self) -> str:
        df = self._frame
        n = 0 if df is None else len(df)
        counts = ""
        if df is not None and n and "status" in df.columns:
            counts = ", ".join(f"{k} {v}" for k, v in df["status"].astype(str).value_counts().items())
        state = "closed" if self._closed else ("live" if self.running else "paused")
        return f"Monitor({n} deployment(s){': ' + counts if counts else ''}; {state}, every {self._interval:g}s)"

    def to_html(self) -> str:
        """A static HTML rendering of the table as last refreshed."""
        return f"<div class='quantlab-monitor'>{self._status.value}{deployments_html(self._frame)}</div>"



def monitor(lab: Any, interval: float = 2.0, **kwargs: Any) -> Monitor:
    """A live table of ``lab.deployments()`` (status, position, PnL) refreshing every ``interval`` seconds.

    The refresh runs in a background thread, so the kernel stays free; it stops
    when the monitor is closed. A "Stop it" button stops a chosen running deployment.

    Example
    -------
    >>> m = monitor(lab, interval=2.0)   # doctest: +SKIP
    >>> lab.advance(5); m.refresh()  # doctest: +SKIP
    >>> m.close()  # doctest: +SKIP
    """
    return Monitor(lab, interval, **kwargs)
