"""``quantlab.deploy_panel``: the one-click store-and-deploy cell.

The panel shows what will be stored (strategy name, the file that will actually
be written — or the commit that already holds this code and these parameters —,
commit message preview, the code and its diff against the last stored version,
both folded) and the deployment policy check, takes the symbol, timeframe (by
default the backtest's bar size; another one warns) and volume, and runs
``lab.store_and_deploy`` in a worker thread when "Store & Deploy" is clicked, so
the kernel stays responsive while each step's progress and the outcome appear.
The button is disabled while the policy fails (unless "deploy anyway" is ticked)
and while a submission runs; a "Stop" button appears for the running
deployment, and after it stopped a "Redeploy" button deploys the stored commit again.

Example (in a notebook cell)::

    panel = quantlab.deploy_panel(result, lab)
    panel                                  # the widget
    panel.click()                          # or from code: press the button and wait
    panel.outcome.record.deployment_id

(Size: the panel's state machine: the form, the submit / stop / redeploy threads and the ~20
properties notebooks and tests read; its HTML is :mod:`quantlab.widgets._panel_html`.)
"""
from __future__ import annotations

import threading
from typing import Any

import ipywidgets as widgets
import pandas as pd

from quantlab.engine.backtest import BacktestResult
from quantlab.engine.data import bar_size
from quantlab.engine.strategy import Strategy
from quantlab.hub import ACTIVE_DEPLOYMENT_STATUSES, StoredStrategy
from quantlab.lab import DeploymentPolicy, DeploymentRecord, Lab, PolicyCheck, StoreDeployOutcome
from quantlab.servers.broker.constants import TIMEFRAME_MINUTES

from . import _render as R
from ._panel_html import (  # noqa: F401 - check_table_html, timeframe_label re-exported
    STEPS, check_table_html, code_html, failed_rules, info_html, steps_html, timeframe_label,
)
from ._base import StaticFallback

__all__ = ["DeployPanel", "deploy_panel", "DeployPanelError"]

#: the broker's bar sizes the panel offers first (minutes -> MT5 name); the backtest's own is always offered
TIMEFRAMES: dict[int, str] = {m: name for name, m in TIMEFRAME_MINUTES.items() if name in
                              ("M1", "M5", "M15", "M30", "H1", "H4", "D1", "W1")}


def backtest_minutes(result: BacktestResult) -> int | None:
    """The backtest's bar size in whole minutes (``None`` without a time index)."""
    size = bar_size(result.equity.index)
    if size is None or size < pd.Timedelta(minutes=1):
        return None
    return int(size / pd.Timedelta(minutes=1))


class DeployPanelError(RuntimeError):
    """The panel cannot submit: the policy fails and "deploy anyway" is not
    ticked, a submission is already running, or it already deployed."""


class DeployPanel(StaticFallback, widgets.VBox):
    """The store-and-deploy panel (an ``ipywidgets.VBox``); build it with :func:`deploy_panel`.

    For code (tests, papermill): :meth:`click` (submit and wait), :meth:`stop`,
    :meth:`redeploy`, :attr:`outcome`, :attr:`error`, :attr:`steps`, :attr:`check`,
    :attr:`running`, :attr:`status`, :attr:`timeframe_warning`, and the form fields
    :attr:`symbol`, :attr:`timeframe` (minutes), :attr:`volume`, :attr:`force`.
    Its parts are public ipywidgets: ``info_view``, ``symbol_input``, ``timeframe_input``,
    ``volume_input``, ``force_box``, ``deploy_button``, ``stop_button``, ``redeploy_button``,
    ``progress``, ``steps_view``, ``outcome_view``, ``warning_view``.

    Example
    -------
    >>> panel = deploy_panel(result, lab)     # doctest: +SKIP
    >>> panel.force = True  # doctest: +SKIP
    >>> panel.click().ok  # doctest: +SKIP
    True
    """

    def __init__(
        self,
        result: BacktestResult,
        lab: Lab,
        policy: DeploymentPolicy | None = None,
        *,
        strategy: Strategy | None = None,
        symbol: str | None = None,
        timeframe: int | None = None,
        volume: float = 0.1,
    ):
        if not isinstance(result, BacktestResult):
            raise TypeError(f"deploy_panel() needs a BacktestResult (from lab.backtest); got {type(result).__name__}.")
        if not isinstance(lab, Lab):
            raise TypeError(f"deploy_panel() needs a quantlab.Lab (from Lab.start()); got {type(lab).__name__}.")
        self._result = result
        self._lab = lab
        self._policy = policy
        self._strategy = strategy if strategy is not None else result.strategy
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._running = False
        self._stopping = False
        self._outcome: StoreDeployOutcome | None = None
        self._record: DeploymentRecord | None = None  # the live deployment (after a redeploy: the new one)
        self._error: str | None = None
        self._steps: list[tuple[str, str, str]] = []
        self._stopped_record: DeploymentRecord | None = None
        self._bar_minutes = backtest_minutes(result)

        self._check: PolicyCheck = lab.validate(result, policy=policy)
        self._existing, self._preview, preview_error = self._make_preview()
        try:
            symbols = list(lab.symbols())
        except Exception as exc:  # noqa: BLE001 - shown in the panel
            symbols, self._error = [], f"could not list the broker's symbols: {type(exc).__name__}: {exc}"
        if symbol is not None and symbol not in symbols:
            symbols.insert(0, symbol)
        minutes = int(timeframe) if timeframe is not None else (self._bar_minutes or 1)
        choices = sorted({*TIMEFRAMES, minutes, *([self._bar_minutes] if self._bar_minutes else [])})

        self.info_view = widgets.HTML(self._info_html(preview_error))
        self.symbol_input = widgets.Dropdown(options=symbols, value=symbol or (symbols[0] if symbols else None),
                                             description="Symbol")
        self.timeframe_input = widgets.Dropdown(options=[(timeframe_label(m), m) for m in choices], value=minutes,
                                                description="Timeframe")
        self.volume_input = widgets.BoundedFloatText(value=float(volume), min=0.0, max=1e12, step=0.01,
                                                     description="Volume (lots)",
                                                     style={"description_width": "initial"})
        self.warning_view = widgets.HTML()
        self.force_box = widgets.Checkbox(value=False, description="deploy anyway (ignore the failed policy)",
                                          indent=False, layout=widgets.Layout(width="auto"))
        self.deploy_button = widgets.Button(description="Store & Deploy", button_style="success", icon="rocket",
                                            layout=widgets.Layout(width="160px"))
        self.stop_button = widgets.Button(description="Stop", button_style="danger", icon="stop",
                                          layout=widgets.Layout(width="100px", display="none"))
        self.redeploy_button = widgets.Button(description="Redeploy", button_style="success", icon="repeat",
                                              layout=widgets.Layout(width="120px", display="none"))
        self.progress = widgets.IntProgress(value=0, min=0, max=len(STEPS), description="",
                                            layout=widgets.Layout(width="300px", visibility="hidden"))
        self.steps_view = widgets.HTML()
        self.outcome_view = widgets.HTML()

        self.force_box.observe(lambda _change: self._sync_buttons(), names="value")
        self.timeframe_input.observe(lambda _change: self._render_warning(), names="value")
        self.deploy_button.on_click(lambda _b: self._submit())
        self.stop_button.on_click(lambda _b: self._submit_stop())
        self.redeploy_button.on_click(lambda _b: self._submit_redeploy())
        super().__init__(children=[
            self.info_view,
            widgets.HBox([self.symbol_input, self.timeframe_input, self.volume_input],
                         layout=widgets.Layout(flex_flow="row wrap")),
            self.warning_view,
            self.force_box,
            widgets.HBox([self.deploy_button, self.stop_button, self.redeploy_button, self.progress]),
            self.steps_view,
            self.outcome_view,
        ])
        self.add_class("quantlab-deploy-panel")
        self._render_warning()
        self._sync_buttons()
        self._render_outcome()

    # -- form fields ---------------------------------------------------------------------
    @property
    def symbol(self) -> str | None:
        """The chosen symbol."""
        return self.symbol_input.value

    @symbol.setter
    def symbol(self, value: str) -> None:
        self.symbol_input.value = value

    @property
    def timeframe(self) -> int:
        """The chosen bar size in minutes (by default the backtest's)."""
        return int(self.timeframe_input.value)

    @timeframe.setter
    def timeframe(self, value: int) -> None:
        minutes = int(value)
        if minutes not in [v for _, v in self.timeframe_input.options]:
            self.timeframe_input.options = sorted([*self.timeframe_input.options, (timeframe_label(minutes), minutes)],
                                                  key=lambda o: o[1])
        self.timeframe_input.value = minutes

    @property
    def volume(self) -> float:
        """The chosen volume in lots."""
        return float(self.volume_input.value)

    @volume.setter
    def volume(self, value: float) -> None:
        self.volume_input.value = float(value)

    @property
    def force(self) -> bool:
        """Whether "deploy anyway" is ticked."""
        return bool(self.force_box.value)

    @force.setter
    def force(self, value: bool) -> None:
        self.force_box.value = bool(value)

    # -- state -----------------------------------------------------------------------------
    @property
    def check(self) -> PolicyCheck:
        """The policy check of the result."""
        return self._check

    @property
    def preview(self) -> dict[str, Any] | None:
        """What ``lab.hub.preview`` says a new store would write (name, path, message), or ``None``."""
        return self._preview

    @property
    def existing(self) -> StoredStrategy | None:
        """The stored strategy that already holds this code and these parameters (nothing new is written)."""
        return self._existing

    @property
    def file(self) -> str | None:
        """The hub file the deployment will use: the existing one, else the one a store will write."""
        if self._existing is not None:
            return self._existing.file
        return self._preview["path"] if self._preview else None

    @property
    def outcome(self) -> StoreDeployOutcome | None:
        """The ``StoreDeployOutcome`` of the last submission (``None`` before, or if it raised)."""
        return self._outcome

    @property
    def error(self) -> str | None:
        """The error text of the last submission, ``None`` if it succeeded (or none ran)."""
        return self._error

    @property
    def steps(self) -> list[tuple[str, str, str]]:
        """Every ``(step, status, detail)`` reported by ``on_step`` so far."""
        return list(self._steps)

    @property
    def running(self) -> bool:
        """True while a submission runs."""
        return self._running

    @property
    def deployed(self) -> bool:
        """True once a submission succeeded."""
        return self._outcome is not None and self._outcome.ok

    @property
    def deployment_id(self) -> str | None:
        """The id of the panel's deployment (after a redeploy: the new one)."""
        return self._record.deployment_id if self._record is not None else None

    @property
    def status(self) -> str | None:
        """The deployment's status as the panel knows it: ``running``, ``stopped``, … (``None`` before)."""
        if self._stopped_record is not None:
            return self._stopped_record.status
        return self._record.status if self._record is not None else None

    @property
    def timeframe_warning(self) -> str | None:
        """Why the chosen timeframe differs from the backtest's bars (``None`` when it matches)."""
        if self._bar_minutes is None:
            return ("the backtest's bars have no time index, so its bar size is unknown; make sure the timeframe "
                    "is the one the parameters were tuned on.")
        if self.timeframe == self._bar_minutes:
            return None
        return (f"the backtest ran on {timeframe_label(self._bar_minutes)} bars but the deployment would trade "
                f"{timeframe_label(self.timeframe)} bars: every length in bars (e.g. a 100-bar average) then means "
                f"a different span of time.")

    @property
    def can_submit(self) -> bool:
        """Whether "Store & Deploy" is enabled now."""
        policy_ok = self._check.passed or self.force
        return policy_ok and not self._running and not self.deployed and self.symbol_input.value is not None

    # -- actions -------------------------------------------------------------------------------
    def click(self, timeout: float | None = None) -> StoreDeployOutcome | None:
        """Press "Store & Deploy" from code and wait until it finishes; returns :attr:`outcome`.

        Raises :class:`DeployPanelError` if the button is disabled (the policy fails
        and "deploy anyway" is not ticked, a submission runs, or it already deployed).
        """
        thread = self._submit(raise_if_disabled=True)
        assert thread is not None
        thread.join(timeout)
        if thread.is_alive():
            raise TimeoutError(f"store & deploy still running after {timeout}s; the panel keeps running it.")
        return self._outcome

    def stop(self, timeout: float | None = None) -> DeploymentRecord | None:
        """Press "Stop" from code: stop the deployment and wait; returns the ``DeploymentRecord``."""
        thread = self._submit_stop(raise_if_disabled=True)
        assert thread is not None
        thread.join(timeout)
        if self._error and self._stopped_record is None:
            raise DeployPanelError(self._error)
        return self._stopped_record

    def redeploy(self, timeout: float | None = None) -> DeploymentRecord | None:
        """Press "Redeploy" from code (after Stop): deploy the stored commit again and wait; returns the new record."""
        thread = self._submit_redeploy(raise_if_disabled=True)
        assert thread is not None
        thread.join(timeout)
        if self._error:
            raise DeployPanelError(self._error)
        return self._record

    def _why_disabled(self) -> str:
        if self._running:
            return "a store & deploy is already running; wait for it to finish."
        if self.deployed:
            return f"already deployed (deployment {self.deployment_id}); make a new panel to deploy again."
        if self.symbol_input.value is None:
            return "no symbol to deploy to: the broker listed none."
        return ("the deployment policy fails (" + failed_rules(self._check)
                + "); tick 'deploy anyway' (panel.force = True) to deploy regardless.")

    def _submit(self, raise_if_disabled: bool = False) -> threading.Thread | None:
        if not self._lock.acquire(blocking=False):
            if raise_if_disabled:
                raise DeployPanelError("cannot submit: " + self._why_disabled())
            return None
        started = False
        try:
            if not self.can_submit:
                if raise_if_disabled:
                    raise DeployPanelError("cannot submit: " + self._why_disabled())
                return None
            self._running = True
            self._error = None
            self._outcome = None
            self._steps = []
            kwargs = dict(symbol=self.symbol, timeframe=self.timeframe, volume=self.volume,
                          policy=self._policy, force=self.force, on_step=self._on_step)
            self._sync_buttons()
            self.progress.value = 0
            self.progress.bar_style = "info"
            self.progress.layout.visibility = "visible"
            self._render_steps()
            self.outcome_view.value = f"<div style='color:{R.GREY}'>storing and deploying…</div>"
            thread = threading.Thread(target=self._work, kwargs=kwargs, name="quantlab-deploy", daemon=True)
            self._thread = thread
            thread.start()
            started = True
            return thread
        finally:
            if not started:
                self._running = False
                self._lock.release()
                self._sync_buttons()

    def _work(self, **kwargs: Any) -> None:
        try:
            outcome = self._lab.store_and_deploy(self._result, **kwargs)
            self._outcome = outcome
            self._record = outcome.record
            if not outcome.ok:
                self._error = str(outcome.error or "store & deploy did not succeed")
        except Exception as exc:  # noqa: BLE001 - shown in the panel
            self._error = f"{type(exc).__name__}: {exc}"
        finally:
            self._running = False
            self.progress.bar_style = "success" if self.deployed else "danger"
            if self.deployed:
                self.progress.value = len(STEPS)
            self._render_steps()
            self._render_outcome()
            self._sync_buttons()
            self._lock.release()

    def _on_step(self, step: str, status: str, detail: str = "") -> None:
        # called by the lab while it works: record, redraw, and never raise into the lab's flow
        self._steps.append((str(step), str(status), str(detail or "")))
        try:
            self.progress.value = min(len(STEPS), sum(1 for _, s, _ in self._steps if s == "done"))
            if status == "failed":
                self.progress.bar_style = "danger"
            self._render_steps()
        except Exception:  # noqa: BLE001 - a display glitch must not fail a deployment
            pass

    def _submit_stop(self, raise_if_disabled: bool = False) -> threading.Thread | None:
        dep = self.deployment_id
        if dep is None or self._stopping or self._stopped_record is not None:
            if raise_if_disabled:
                raise DeployPanelError("nothing to stop: no running deployment from this panel.")
            return None
        self._stopping = True
        self.stop_button.disabled = True
        self.stop_button.description = "Stopping…"

        def work() -> None:
            try:
                self._stopped_record = self._lab.stop(dep)
            except Exception as exc:  # noqa: BLE001 - shown in the panel
                self._error = f"stopping {dep} failed: {type(exc).__name__}: {exc}"
            finally:
                self._stopping = False
                self.stop_button.description = "Stop"
                self._render_outcome()
                self._sync_buttons()

        thread = threading.Thread(target=work, name="quantlab-stop", daemon=True)
        thread.start()
        return thread

    def _submit_redeploy(self, raise_if_disabled: bool = False) -> threading.Thread | None:
        outcome = self._outcome
        if outcome is None or outcome.stored is None or self._stopped_record is None or self._running:
            if raise_if_disabled:
                raise DeployPanelError("nothing to redeploy: Redeploy follows Stop of this panel's deployment.")
            return None
        self._running = True
        self._error = None
        self._sync_buttons()
        stored = outcome.stored

        def work() -> None:
            try:
                self._record = self._lab.deploy(stored, symbol=self.symbol, timeframe=self.timeframe,
                                                volume=self.volume, policy=self._policy, force=self.force)
                self._stopped_record = None
            except Exception as exc:  # noqa: BLE001 - shown in the panel
                self._error = f"redeploying {stored.commit[:12]} failed: {type(exc).__name__}: {exc}"
            finally:
                self._running = False
                self._render_outcome()
                self._sync_buttons()

        thread = threading.Thread(target=work, name="quantlab-redeploy", daemon=True)
        thread.start()
        return thread

    # -- rendering ------------------------------------------------------------------------------
    def _make_preview(self) -> tuple[StoredStrategy | None, dict[str, Any] | None, str | None]:
        hub = self._lab.hub
        try:
            existing = hub.find(self._strategy.sha256, self._result.params) if self._strategy is not None else None
            return existing, hub.preview(self._strategy, self._result), None
        except Exception as exc:  # noqa: BLE001 - shown in the panel
            return None, None, f"{type(exc).__name__}: {exc}"

    def _info_html(self, preview_error: str | None) -> str:
        return info_html(self._result, self._check, self._preview, self._existing, preview_error,
                         code_html(self._strategy, self._lab.hub))

    def _render_warning(self) -> None:
        why = self.timeframe_warning
        self.warning_view.value = (f"<div class='quantlab-timeframe-warning' style='color:{R.AMBER}'>⚠ Timeframe: "
                                   f"{R.escape(why)}</div>" if why else "")

    def _render_steps(self) -> None:
        self.steps_view.value = steps_html(self._steps)

    def _render_outcome(self) -> None:
        if self._running:
            return
        parts = []
        o = self._outcome
        if self.deployed and o is not None and o.stored is not None and self._record is not None:
            record = self._record
            parts.append(
                f"<div style='color:{R.GREEN}'><b>✔ Stored and deployed.</b></div>"
                f"<div>commit <code>{R.escape(o.stored.commit[:12])}</code> · file <code>{R.escape(o.stored.file)}</code></div>"
                f"<div>deployment <code>{R.escape(record.deployment_id)}</code> on <b>{R.escape(record.symbol)}</b>, "
                f"{R.escape(timeframe_label(record.timeframe or self.timeframe))} bars: status {R.status_html(self.status)}</div>"
            )
        if self._error:
            parts.append(f"<div style='color:{R.RED}'><b>✘ {R.escape(self._error)}</b></div>")
        self.outcome_view.value = "".join(parts)

    def _sync_buttons(self) -> None:
        self.deploy_button.disabled = not self.can_submit
        if self._running:
            self.deploy_button.description = "Running…"
        elif self.deployed:
            self.deploy_button.description = "Deployed ✓"
        else:
            self.deploy_button.description = "Store & Deploy"
        self.deploy_button.tooltip = "" if self.can_submit else self._why_disabled()
        self.force_box.disabled = self._check.passed or self._running or self.deployed
        live = self.deployed and self._stopped_record is None and (self.status in ACTIVE_DEPLOYMENT_STATUSES)
        self.stop_button.layout.display = None if live else "none"
        self.stop_button.disabled = self._stopping
        stopped = self.deployed and self._stopped_record is not None
        self.redeploy_button.layout.display = None if stopped else "none"
        self.redeploy_button.disabled = self._running

    # -- display -------------------------------------------------------------------------------------
    def _state_text(self) -> str:
        if self._running:
            return "running"
        if self._stopped_record is not None:
            return f"stopped deployment {self.deployment_id}"
        if self.deployed:
            return f"deployed {self.deployment_id}"
        if self._error:
            return f"failed: {self._error}"
        if self.can_submit:
            return "ready"
        if self.symbol_input.value is None:
            return "no symbol"
        return "blocked by the policy"

    def __repr__(self) -> str:
        name = self._result.name or "strategy"
        verdict = "PASSED" if self._check.passed else "FAILED"
        return (
            f"DeployPanel({name!r} -> symbol={self.symbol!r}, timeframe={timeframe_label(self.timeframe)}, "
            f"volume={self.volume} lots; policy {verdict}{', deploy anyway' if self.force else ''}; {self._state_text()})"
        )

    def to_html(self) -> str:
        """A static HTML rendering: what will be stored, the policy check, the form values, progress and outcome."""
        form = (
            f"<div style='margin:6px 0'>symbol <b>{R.escape(self.symbol)}</b> · timeframe "
            f"<b>{R.escape(timeframe_label(self.timeframe))}</b> · volume <b>{self.volume} lots</b>"
            f"{' · <b>deploy anyway</b>' if self.force else ''} · state: <i>{R.escape(self._state_text())}</i></div>"
        )
        return (f"<div class='quantlab-deploy-panel'>{self.info_view.value}{form}{self.warning_view.value}"
                f"{self.steps_view.value}{self.outcome_view.value}</div>")


def deploy_panel(result: BacktestResult, lab: Lab, policy: DeploymentPolicy | None = None, **kwargs: Any) -> DeployPanel:
    """The one-click store-and-deploy panel for a backtest ``result``.

    Shows the file path and commit message ``lab.hub.preview`` announces, the
    policy check (``lab.validate(result, policy)``; ``policy=None`` uses
    ``lab.policy``), and fields for symbol (from ``lab.symbols()``), timeframe
    and volume. "Store & Deploy" runs ``lab.store_and_deploy`` in a worker thread
    and reports each step; it is disabled while the policy fails unless
    "deploy anyway" is ticked, and while a submission runs.

    Keyword arguments: ``strategy`` (for the preview, default ``result.strategy``),
    ``symbol``, ``timeframe`` (minutes; default the backtest's bar size, another one
    warns), ``volume`` (lots, default 0.1).

    Example
    -------
    >>> panel = deploy_panel(result, lab, symbol="EURUSD")   # doctest: +SKIP
    >>> outcome = panel.click()  # doctest: +SKIP
    >>> outcome.record.deployment_id, outcome.stored.commit  # doctest: +SKIP
    """
    return DeployPanel(result, lab, policy, **kwargs)
