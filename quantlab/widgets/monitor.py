"""``quantlab.monitor``: the lab's deployments, live: a table and a chart per deployment.

A background thread calls ``lab.deployments()`` every ``interval`` seconds and
redraws the table (status, position in lots, PnL in the account currency, deals,
last error), then :meth:`Lab.activity <quantlab.Lab.activity>` for the chosen
deployment and redraws its chart: the paper market's candles with the fills
marked, the position in lots beside the backtest's expected position on the same
bars, the PnL, and the paper market's clock. It stops when
the monitor is closed (``monitor.close()``, or the front end closing the
widget), when "auto-refresh" is unticked, and never outlives the lab: after
``max_errors`` consecutive failures (e.g. the lab was closed) it stops by itself.

Example (in a notebook cell)::

    m = quantlab.monitor(lab, interval=2.0)
    m                       # the live table and chart
    m.show("3")             # chart deployment 3
    m.refresh()             # refresh now; returns the DataFrame
    m.close()               # stop refreshing
"""
from __future__ import annotations

import threading
import time
from typing import Any

import ipywidgets as widgets
import pandas as pd

from quantlab.hub import ACTIVE_DEPLOYMENT_STATUSES
from quantlab.lab import Lab
from quantlab.lab.activity import DeploymentActivity

from . import _live
from . import _render as R
from ._base import StaticFallback

__all__ = ["Monitor", "monitor", "deployments_html", "activity_html"]

COLUMNS = ["deployment_id", "strategy_name", "symbol", "status", "position", "pnl", "trades", "commit", "triggered_at",
           "last_error"]
UNITS = {"position": "position (lots)", "pnl": "PnL"}


def deployments_html(df: pd.DataFrame | None, currency: str = "") -> str:
    """The deployments table as HTML: status in colour, PnL coloured by sign (in ``currency``), short commits.

    >>> "No deployments yet." in deployments_html(pd.DataFrame())
    True
    """
    if df is None or len(df) == 0:
        return f"<div style='color:{R.GREY}'>No deployments yet.</div>"
    hidden = {"status_source"}
    cols = [c for c in COLUMNS if c in df.columns] + [c for c in df.columns if c not in COLUMNS and c not in hidden]
    shown = df[cols].copy()
    if "commit" in shown.columns:
        R.raw_column(shown, "commit", (R.raw(f"<code>{R.escape(str(v)[:12])}</code>") if not R.is_missing(v) else ""
                                       for v in shown["commit"]))
    if "status" in shown.columns:
        R.raw_column(shown, "status", (R.raw(R.status_html(v)) for v in shown["status"]))
    if "pnl" in shown.columns:
        R.raw_column(shown, "pnl", (R.raw(R.signed_html("pnl", v)) for v in shown["pnl"]))
    if "last_error" in shown.columns:
        shown["last_error"] = ["" if R.is_missing(v) else str(v) for v in shown["last_error"]]
    shown = shown.rename(columns={**UNITS, "pnl": f"PnL ({currency})" if currency else "PnL", "trades": "deals"})
    return R.frame_html(shown.reset_index(drop=True), max_rows=500, css_class="quantlab-deployments")


def activity_html(activity: DeploymentActivity | None, *, max_candles: int = 200) -> str:
    """One deployment's chart (inline SVG): candles with fills, position vs the backtest's, PnL, market clock."""
    if activity is None:
        return f"<div style='color:{R.GREY}'>No deployment chosen.</div>"
    return f"<div class='quantlab-activity'>{_live.activity_svg(activity, max_candles=max_candles)}</div>"


class Monitor(StaticFallback, widgets.VBox):
    """The lab's deployments, live (an ``ipywidgets.VBox``); build it with :func:`monitor`.

    ``refresh()`` reloads now, ``show(deployment_id)`` charts another deployment,
    ``close()`` stops the background refresh for good, ``frame`` is the last
    deployments DataFrame, ``activity`` the charted :class:`DeploymentActivity`,
    ``refreshes`` counts the reloads, ``running`` tells whether the refresh thread is alive.
    Its parts are public ipywidgets: ``refresh_button``, ``auto_refresh`` (checkbox),
    ``status_line``, ``table``, ``picker`` (which deployment to chart), ``stop_button``, ``chart``.

    Example
    -------
    >>> m = monitor(lab, interval=1.0)   # doctest: +SKIP
    >>> m.frame[["deployment_id", "status", "pnl"]]  # doctest: +SKIP
    >>> m.activity.fills.tail()  # doctest: +SKIP
    >>> m.close(); m.running  # doctest: +SKIP
    False
    """

    def __init__(self, lab: Lab, interval: float = 2.0, *, autostart: bool = True, max_errors: int = 5,
                 bars: int = 500, expected: bool = True, max_candles: int = 200):
        self._closed = False
        self._thread: threading.Thread | None = None
        self._stop_event = threading.Event()
        if not isinstance(lab, Lab):
            raise TypeError(f"monitor() needs a quantlab.Lab (from Lab.start()); got {type(lab).__name__}.")
        if not interval or interval <= 0:
            raise ValueError(f"interval must be a positive number of seconds; got {interval!r}.")
        self._lab = lab
        self._interval = float(interval)
        self._max_errors = int(max_errors)
        self._bars = int(bars)
        self._expected_on = bool(expected)
        self._max_candles = int(max_candles)
        self._refresh_lock = threading.Lock()
        self._frame: pd.DataFrame | None = None
        self._activity: DeploymentActivity | None = None
        self._expected: tuple[Any, pd.Series | None] = (None, None)  # (deployment, last bar) -> expected lots
        self._chosen: str | None = None
        self._error: str | None = None
        self._errors_in_row = 0
        self._refreshes = 0
        self._refreshed_at: float | None = None

        self.status_line = widgets.HTML()
        self.table = widgets.HTML()
        self.chart = widgets.HTML()
        self.auto_refresh = widgets.Checkbox(value=autostart, description=f"auto-refresh every {self._interval:g}s", indent=False,
                                      layout=widgets.Layout(width="auto"))
        self.refresh_button = widgets.Button(description="Refresh", icon="refresh", layout=widgets.Layout(width="110px"))
        self.picker = widgets.Dropdown(options=[], description="Deployment", layout=widgets.Layout(width="360px"))
        self.stop_button = widgets.Button(description="Stop it", button_style="danger", icon="stop",
                                        layout=widgets.Layout(width="100px"))
        self.refresh_button.on_click(lambda _b: self.refresh())
        self.stop_button.on_click(lambda _b: self._stop_selected())
        self.auto_refresh.observe(self._on_auto, names="value")
        self.picker.observe(self._on_pick, names="value")
        for w in (self.refresh_button, self.stop_button, self.picker):
            w.add_class("quantlab-monitor-control")
        super().__init__(children=[
            widgets.HBox([self.refresh_button, self.auto_refresh, self.status_line], layout=widgets.Layout(align_items="center")),
            self.table,
            widgets.HBox([self.picker, self.stop_button]),
            self.chart,
        ])
        self.add_class("quantlab-monitor")
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
    def activity(self) -> DeploymentActivity | None:
        """The charted deployment's :class:`DeploymentActivity` (``None`` before the first deployment)."""
        return self._activity

    @property
    def deployment(self) -> str | None:
        """The charted deployment's id."""
        return self._chosen

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

    def show(self, deployment_id: Any) -> "Monitor":
        """Chart ``deployment_id`` (the newest running one is charted by default); returns ``self``."""
        dep = str(deployment_id)
        if self._frame is not None and dep not in set(self._frame["deployment_id"].astype(str)):
            known = ", ".join(self._frame["deployment_id"].astype(str)) or "none"
            raise ValueError(f"no deployment {dep!r} in this lab (known: {known}); see lab.deployments().")
        self._chosen = dep
        if self.picker.value != dep and dep in self.picker.options:
            self.picker.value = dep
        self.refresh()
        return self

    def refresh(self) -> pd.DataFrame | None:
        """Reload the deployments and the chosen one's activity now and redraw; returns the DataFrame (``None`` on error)."""
        with self._refresh_lock:
            try:
                self._frame = self._lab.deployments()
                self._choose()
                self._activity = self._load_activity() if self._chosen else None
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
                self._error = f"could not draw the monitor: {type(exc).__name__}: {exc}"
                self.status_line.value = f"<span style='color:{R.RED}'>{R.escape(self._error)}</span>"
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
        if not self.auto_refresh.value:
            self.auto_refresh.value = True
        self._render()
        return self

    def pause(self, timeout: float | None = 5.0) -> "Monitor":
        """Stop automatic refreshing (``start()`` resumes); returns ``self``."""
        self._stop_event.set()
        t = self._thread
        if t is not None and t is not threading.current_thread():
            t.join(timeout)
        if self.auto_refresh.value:
            self.auto_refresh.value = False
        self._render()
        return self

    def close(self) -> None:
        """Stop refreshing for good and close the widget (and its children); it still renders as static HTML."""
        if self.__dict__.get("_closed", False):
            return
        self._closed = True
        self._stop_event.set()
        t = self._thread
        if t is not None and t is not threading.current_thread():
            t.join(max(5.0, self._interval + 5.0))
        for name in ("status_line", "table", "chart", "auto_refresh", "refresh_button", "picker", "stop_button"):
            child = self.__dict__.get(name)
            if child is not None:
                child.close()
        super().close()

    # -- internals --------------------------------------------------------------------------------
    def _choose(self) -> None:
        """Keep the chosen deployment; else chart the newest active one, else the newest."""
        df = self._frame
        if df is None or df.empty:
            self._chosen = None
            return
        ids = df["deployment_id"].dropna().astype(str).tolist()
        if self._chosen in ids:
            return
        active = [str(d) for d, s in zip(df["deployment_id"], df["status"]) if str(s) in ACTIVE_DEPLOYMENT_STATUSES
                  and not R.is_missing(d)]
        self._chosen = (active or ids or [None])[-1]

    def _load_activity(self) -> DeploymentActivity:
        act = self._lab.activity(self._chosen, bars=self._bars, expected=False)
        if self._expected_on:
            key = (act.deployment_id, act.bars.index[-1] if len(act.bars) else None, len(act.bars))
            if self._expected[0] != key:  # the backtest reruns only when the market moved
                self._expected = (key, self._lab.expected_lots(act))
            act.expected = self._expected[1]
        return act

    def _loop(self, stop: threading.Event) -> None:
        while not stop.wait(self._interval):
            if self._closed:
                break
            self.refresh()
            if self._errors_in_row >= self._max_errors:
                self._error = f"stopped auto-refresh after {self._errors_in_row} failures in a row: {self._error}"
                stop.set()
                self.auto_refresh.value = False
                self._render()
                break

    def _on_auto(self, change: Any) -> None:
        if change["new"] and not self.running and not self._closed:
            self.start()
        elif not change["new"] and self.running:
            self._stop_event.set()

    def _on_pick(self, change: Any) -> None:
        if change["new"] and change["new"] != self._chosen and not self._closed:
            self._chosen = str(change["new"])
            threading.Thread(target=self.refresh, name="quantlab-monitor-pick", daemon=True).start()

    def _stop_selected(self) -> None:
        dep = self._chosen
        if not dep:
            return
        self.stop_button.disabled = True
        try:
            self._lab.stop(dep)
        except Exception as exc:  # noqa: BLE001 - shown in the widget
            self._error = f"stopping {dep} failed: {type(exc).__name__}: {exc}"
            self._render()
        finally:
            self.stop_button.disabled = False
        self.refresh()

    def _state_text(self) -> str:
        return "closed" if self._closed else ("live" if (self.running and not self._stop_event.is_set()) else "paused")

    def _status_html(self) -> str:
        when = time.strftime("%H:%M:%S", time.localtime(self._refreshed_at)) if self._refreshed_at else "never"
        act = self._activity
        clock = ""
        if act is not None and act.market_time is not None:
            clock = f" · market time <b class='market-clock'>{act.market_time:%Y-%m-%d %H:%M}</b>"
        err = f" <span style='color:{R.RED}'>{R.escape(self._error)}</span>" if self._error else ""
        return f"<small style='color:{R.GREY}'>{self._state_text()} · refreshed {when}{clock}</small>{err}"

    def _render(self) -> None:
        currency = self._activity.currency if self._activity is not None else ""
        self.table.value = deployments_html(self._frame, currency)
        self.chart.value = activity_html(self._activity, max_candles=self._max_candles) if self._frame is not None and len(self._frame) else ""
        self.status_line.value = self._status_html()
        df = self._frame
        options: list[tuple[str, str]] = []
        status = ""
        if df is not None and len(df):
            for d, name, s in zip(df["deployment_id"], df["strategy_name"], df["status"]):
                if not R.is_missing(d):
                    options.append((f"{d} · {name} ({s})", str(d)))
                    if str(d) == self._chosen:
                        status = str(s)
        if [v for _, v in self.picker.options] != [v for _, v in options] or list(self.picker.options) != options:
            self.picker.options = options
        if self._chosen is not None and self.picker.value != self._chosen and self._chosen in [v for _, v in options]:
            self.picker.value = self._chosen
        self.stop_button.disabled = status not in ACTIVE_DEPLOYMENT_STATUSES

    def __repr__(self) -> str:
        df = self._frame
        n = 0 if df is None else len(df)
        counts = ""
        if df is not None and n and "status" in df.columns:
            counts = ", ".join(f"{k} {v}" for k, v in df["status"].astype(str).value_counts().items())
        shown = f"; charting {self._chosen}" if self._chosen else ""
        return (f"Monitor({n} deployment(s){': ' + counts if counts else ''}{shown}; {self._state_text()}, "
                f"every {self._interval:g}s)")

    def to_html(self) -> str:
        """A static HTML rendering: the table and the chart as last refreshed."""
        currency = self._activity.currency if self._activity is not None else ""
        chart = activity_html(self._activity, max_candles=self._max_candles) if self._activity is not None else ""
        return f"<div class='quantlab-monitor'>{self._status_html()}{deployments_html(self._frame, currency)}{chart}</div>"


def monitor(lab: Lab, interval: float = 2.0, **kwargs: Any) -> Monitor:
    """The lab's deployments, live: a table of ``lab.deployments()`` (status, position in lots, PnL) and a
    chart of the chosen deployment (candles with fills, paper vs backtest position, PnL, market clock),
    refreshing every ``interval`` seconds.

    The refresh runs in a background thread, so the kernel stays free; it stops
    when the monitor is closed. "Stop it" stops the charted deployment.
    Keywords: ``bars`` (candles fetched, 500), ``expected`` (draw the backtest's position, True),
    ``max_candles`` (candles drawn, 200), ``autostart``, ``max_errors``.

    Example
    -------
    >>> m = monitor(lab, interval=2.0)   # doctest: +SKIP
    >>> lab.advance(5); m.refresh()  # doctest: +SKIP
    >>> m.close()  # doctest: +SKIP
    """
    return Monitor(lab, interval, **kwargs)
