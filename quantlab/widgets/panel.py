"""``quantlab.deploy_panel``: the one-click store-and-deploy cell.

The panel shows what will be stored (strategy name, file path in the assets hub,
commit message preview) and the deployment policy check, takes the symbol,
timeframe and volume, and runs ``lab.store_and_deploy`` in a worker thread when
"Store & Deploy" is clicked, so the kernel stays responsive while each step's
progress and the outcome appear. The button is disabled while the policy fails
(unless "deploy anyway" is ticked) and while a submission runs; a "Stop" button
appears for the running deployment.

Example (in a notebook cell)::

    panel = quantlab.deploy_panel(result, lab)
    panel                                  # the widget
    panel.click()                          # or from code: press the button and wait
    panel.outcome.record.deployment_id
"""
from __future__ import annotations

import threading
from typing import Any, Mapping

import ipywidgets as widgets

from . import _render as R
from ._base import StaticFallback

__all__ = ["DeployPanel", "deploy_panel", "DeployPanelError"]

STEPS = ["validate", "store", "deploy", "record"]
_STATUS_ICON = {"start": "⏳", "done": "✔", "failed": "✘", "skipped": "–"}
_ACTIVE_STATUSES = {"running", "pending", "starting", "deployed", "active", "open"}


class DeployPanelError(RuntimeError):
    """The panel cannot submit: the policy fails and "deploy anyway" is not
    ticked, a submission is already running, or it already deployed."""


def _get(obj: Any, name: str, default: Any = None) -> Any:
    if obj is None:
        return default
    if isinstance(obj, Mapping):
        return obj.get(name, default)
    return getattr(obj, name, default)


def check_table_html(check: Any) -> str:
    """The policy check as an HTML table: metric, rule, value and a pass/fail badge.

    >>> from quantlab.lab.policy import DeploymentPolicy
    >>> html = check_table_html(DeploymentPolicy().check({"sharpe": 1, "max_drawdown": 0.1, "profit_factor": 2, "trades": 9}))
    >>> "PASSED" in html
    True
    """
    cf = R.check_frame(check)
    if cf is None or len(cf) == 0:
        return f"<div style='color:{R.GREY}'>No policy rules.</div>"
    rows = []
    for r in cf.to_dict("records"):
        metric = str(r["metric"])
        rows.append(
            f"<tr><td style='{R.TD_STYLE}'>{R.escape(R.metric_label(metric))}</td>"
            f"<td style='{R.TD_STYLE};color:{R.GREY}'>{R.escape(R._rule_text(r))}</td>"
            f"<td style='{R.TDR_STYLE}'>{R.escape(R.fmt_metric(metric, r['value']))}</td>"
            f"<td style='{R.TD_STYLE}'>{R.badge(bool(r['passed']))}</td></tr>"
        )
    head = "".join(f"<th style='{R.TH_STYLE}'>{h}</th>" for h in ("Metric", "Rule", "Value", ""))
    return (
        f"<table class='quantlab-policy' style='{R.TABLE_STYLE}'><thead><tr>{head}</tr></thead>"
        f"<tbody>{''.join(rows)}</tbody></table>" + R.verdict_html(check)
    )


class DeployPanel(StaticFallback, widgets.VBox):
    """The store-and-deploy panel (an ``ipywidgets.VBox``); build it with :func:`deploy_panel`.

    For code (tests, papermill): :meth:`click` (submit and wait), :meth:`stop`,
    :attr:`outcome`, :attr:`error`, :attr:`steps`, :attr:`check`, :attr:`running`,
    and the form fields :attr:`symbol`, :attr:`timeframe`, :attr:`volume`, :attr:`force`.

    Example
    -------
    >>> panel = deploy_panel(result, lab)     # doctest: +SKIP
    >>> panel.force = True  # doctest: +SKIP
    >>> panel.click().ok  # doctest: +SKIP
    True
    """

    def __init__(
        self,
        result: Any,
        lab: Any,
        policy: Any = None,
        *,
        strategy: Any = None,
        symbol: str | None = None,
        timeframe: int = 1,
        volume: float = 0.1,
    ):
        self._result = result
        self._lab = lab
        self._policy = policy
        self._strategy = strategy if strategy is not None else getattr(result, "strategy", None)
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._running = False
        self._stopping = False
        self._outcome: Any = None
        self._error: str | None = None
        self._steps: list[tuple[str, str, str]] = []
        self._stopped_record: Any = None

        self._check = lab.validate(result, policy=policy)
        self._preview, preview_error = self._make_preview()
        try:
            symbols = list(lab.symbols())
        except Exception as exc:  # noqa: BLE001 - shown in the panel
            symbols, self._error = [], f"could not list the broker's symbols: {type(exc).__name__}: {exc}"
        if symbol is not None and symbol not in symbols:
            symbols.insert(0, symbol)

        self._info = widgets.HTML(self._info_html(preview_error))
        self._symbol = widgets.Dropdown(options=symbols, value=symbol or (symbols[0] if symbols else None),
                                        description="Symbol")
        self._timeframe = widgets.BoundedIntText(value=int(timeframe), min=1, max=1_000_000, description="Timeframe")
        self._volume = widgets.BoundedFloatText(value=float(volume), min=0.0, max=1e12, step=0.01, description="Volume")
        self._force = widgets.Checkbox(value=False, description="deploy anyway (ignore the failed policy)",
                                       indent=False, layout=widgets.Layout(width="auto"))
        self._deploy_btn = widgets.Button(description="Store & Deploy", button_style="success", icon="rocket",
                                          layout=widgets.Layout(width="160px"))
        self._stop_btn = widgets.Button(description="Stop", button_style="danger", icon="stop",
                                        layout=widgets.Layout(width="100px", display="none"))
        self._progress = widgets.IntProgress(value=0, min=0, max=len(STEPS), description="",
                                             layout=widgets.Layout(width="300px", visibility="hidden"))
        self._steps_html = widgets.HTML()
        self._outcome_html = widgets.HTML()

        self._force.observe(lambda _change: self._sync_buttons(), names="value")
        self._deploy_btn.on_click(lambda _b: self._submit())
        self._stop_btn.on_click(lambda _b: self._submit_stop())
        super().__init__(children=[
            self._info,
            widgets.HBox([self._symbol, self._timeframe, self._volume], layout=widgets.Layout(flex_flow="row wrap")),
            self._force,
            widgets.HBox([self._deploy_btn, self._stop_btn, self._progress]),
            self._steps_html,
            self._outcome_html,
        ])
        self._sync_buttons()
        self._render_outcome()

    # -- form fields ---------------------------------------------------------------------
    @property
    def symbol(self) -> str | None:
        """The chosen symbol."""
        return self._symbol.value

    @symbol.setter
    def symbol(self, value: str) -> None:
        self._symbol.value = value

    @property
    def timeframe(self) -> int:
        """The chosen timeframe."""
        return int(self._timeframe.value)

    @timeframe.setter
    def timeframe(self, value: int) -> None:
        self._timeframe.value = int(value)

    @property
    def volume(self) -> float:
        """The chosen volume."""
        return float(self._volume.value)

    @volume.setter
    def volume(self, value: float) -> None:
        self._volume.value = float(value)

    @property
    def force(self) -> bool:
        """Whether "deploy anyway" is ticked."""
        return bool(self._force.value)

    @force.setter
    def force(self, value: bool) -> None:
        self._force.value = bool(value)

    # -- state -----------------------------------------------------------------------------
    @property
    def check(self) -> Any:
        """The policy check (``PolicyCheck``) of the result."""
        return self._check

    @property
    def preview(self) -> Any:
        """What ``lab.hub.preview`` says will be stored (name, path, message), or ``None``."""
        return self._preview

    @property
    def outcome(self) -> Any:
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
        return bool(self._outcome is not None and _get(self._outcome, "ok", False))

    @property
    def deployment_id(self) -> str | None:
        """The deployment id of a successful submission."""
        return _get(_get(self._outcome, "record"), "deployment_id")

    @property
    def can_submit(self) -> bool:
        """Whether "Store & Deploy" is enabled now."""
        policy_ok = bool(_get(self._check, "passed", False)) or self.force
        return policy_ok and not self._running and not self.deployed and self._symbol.value is not None

    # -- actions -------------------------------------------------------------------------------
    def click(self, timeout: float | None = None) -> Any:
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

    def stop(self, timeout: float | None = None) -> Any:
        """Press "Stop" from code: stop the deployment and wait; returns the ``DeploymentRecord``."""
        thread = self._submit_stop(raise_if_disabled=True)
        assert thread is not None
        thread.join(timeout)
        if self._error and self._stopped_record is None:
            raise DeployPanelError(self._error)
        return self._stopped_record

    def _why_disabled(self) -> str:
        if self._running:
            return "a store & deploy is already running; wait for it to finish."
        if self.deployed:
            return f"already deployed (deployment {self.deployment_id}); make a new panel to deploy again."
        if self._symbol.value is None:
            return "no symbol to deploy to: the broker listed none."
        return ("the deployment policy fails (" + _failed_rules(self._check)
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
            self._progress.value = 0
            self._progress.bar_style = "info"
            self._progress.layout.visibility = "visible"
            self._render_steps()
            self._outcome_html.value = f"<div style='color:{R.GREY}'>storing and deploying…</div>"
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
            if not _get(outcome, "ok", False):
                self._error = str(_get(outcome, "error", None) or "store & deploy did not succeed")
        except Exception as exc:  # noqa: BLE001 - shown in the panel
            self._error = f"{type(exc).__name__}: {exc}"
        finally:
            self._running = False
            self._progress.bar_style = "success" if self.deployed else "danger"
            if self.deployed:
                self._progress.value = len(STEPS)
            self._render_steps()
            self._render_outcome()
            self._sync_buttons()
            self._lock.release()

    def _on_step(self, step: str, status: str, detail: str = "") -> None:
        # called by the lab while it works: record, redraw, and never raise into the lab's flow
        self._steps.append((str(step), str(status), str(detail or "")))
        try:
            self._progress.value = min(len(STEPS), sum(1 for _, s, _ in self._steps if s == "done"))
            if status == "failed":
                self._progress.bar_style = "danger"
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
        self._stop_btn.disabled = True
        self._stop_btn.description = "Stopping…"

        def work() -> None:
            try:
                self._stopped_record = self._lab.stop(dep)
            except Exception as exc:  # noqa: BLE001 - shown in the panel
                self._error = f"stopping {dep} failed: {type(exc).__name__}: {exc}"
            finally:
                self._stopping = False
                self._stop_btn.description = "Stop"
                self._render_outcome()
                self._sync_buttons()

        thread = threading.Thread(target=work, name="quantlab-stop", daemon=True)
        thread.start()
        return thread

    # -- rendering ------------------------------------------------------------------------------
    def _make_preview(self) -> tuple[Any, str | None]:
        hub = getattr(self._lab, "hub", None)
        if hub is None or not hasattr(hub, "preview"):
            return None, None
        try:
            return hub.preview(self._strategy, self._result), None
        except Exception as exc:  # noqa: BLE001 - shown in the panel
            return None, f"{type(exc).__name__}: {exc}"

    def _info_html(self, preview_error: str | None) -> str:
        p = self._preview
        name = _get(p, "name") or getattr(self._result, "name", None) or "strategy"
        path = _get(p, "path")
        message = _get(p, "message") or _get(p, "commit_message")
        rows = [("Strategy", f"<b>{R.escape(name)}</b> <code>{R.escape(R.params_text(getattr(self._result, 'params', None)))}</code>")]
        if path is not None:
            rows.append(("File", f"<code>{R.escape(path)}</code>"))
        if message:
            rows.append(("Commit message", f"<pre style='margin:0;white-space:pre-wrap;font-size:11px'>{R.escape(message)}</pre>"))
        secrets = _get(p, "secrets") or []
        if secrets:
            rows.append(("Secrets", f"<span style='color:{R.RED}'>the code looks like it holds secrets; the hub will refuse "
                                    f"to store it: {R.escape('; '.join(map(str, secrets)))}</span>"))
        if preview_error:
            rows.append(("Preview", f"<span style='color:{R.RED}'>{R.escape(preview_error)}</span>"))
        elif p is not None and path is None and not message:
            rows.append(("Preview", f"<pre style='margin:0'>{R.escape(p)}</pre>"))
        table = "".join(
            f"<tr><td style='{R.TD_STYLE};text-align:left;vertical-align:top;color:{R.GREY}'>{k}</td>"
            f"<td style='{R.TD_STYLE};text-align:left'>{v}</td></tr>"
            for k, v in rows
        )
        return (
            f"<div><b>Will store in the assets hub</b><table style='{R.TABLE_STYLE}'>{table}</table>"
            f"<div style='margin-top:6px'><b>Deployment policy</b></div>{check_table_html(self._check)}</div>"
        )

    def _render_steps(self) -> None:
        latest: dict[str, tuple[str, str]] = {}
        for step, status, detail in self._steps:
            latest[step] = (status, detail)
        order = STEPS + [s for s in latest if s not in STEPS]
        cells = []
        for step in order:
            status, detail = latest.get(step, ("", ""))
            icon = _STATUS_ICON.get(status, "·")
            color = R.GREEN if status == "done" else R.RED if status == "failed" else R.GREY
            cells.append(
                f"<tr><td style='{R.TD_STYLE};color:{color}'>{icon}</td><td style='{R.TD_STYLE}'>{R.escape(step)}</td>"
                f"<td style='{R.TD_STYLE};color:{R.GREY}'>{R.escape(detail)}</td></tr>"
            )
        self._steps_html.value = f"<table style='{R.TABLE_STYLE}'>{''.join(cells)}</table>" if self._steps else ""

    def _render_outcome(self) -> None:
        if self._running:
            return
        o = self._outcome
        parts = []
        if self.deployed:
            stored, record = _get(o, "stored"), _get(o, "record")
            commit = _get(stored, "commit") or _get(record, "commit") or ""
            parts.append(
                f"<div style='color:{R.GREEN}'><b>✔ Stored and deployed.</b></div>"
                f"<div>commit <code>{R.escape(str(commit)[:12])}</code> · file <code>{R.escape(_get(stored, 'file', None) or _get(stored, 'path', ''))}</code></div>"
                f"<div>deployment <code>{R.escape(_get(record, 'deployment_id', ''))}</code> on "
                f"<b>{R.escape(_get(record, 'symbol', self.symbol))}</b>: status "
                f"<b>{R.escape(_get(self._stopped_record, 'status', None) or _get(record, 'status', ''))}</b></div>"
            )
        if self._error:
            parts.append(f"<div style='color:{R.RED}'><b>✘ {R.escape(self._error)}</b></div>")
        self._outcome_html.value = "".join(parts)

    def _sync_buttons(self) -> None:
        self._deploy_btn.disabled = not self.can_submit
        if self._running:
            self._deploy_btn.description = "Running…"
        elif self.deployed:
            self._deploy_btn.description = "Deployed ✓"
        else:
            self._deploy_btn.description = "Store & Deploy"
        self._deploy_btn.tooltip = "" if self.can_submit else self._why_disabled()
        passed = bool(_get(self._check, "passed", False))
        self._force.disabled = passed or self._running or self.deployed
        record = _get(self._outcome, "record")
        status = str(_get(self._stopped_record, "status", None) or _get(record, "status", "") or "").lower()
        show_stop = self.deployed and self._stopped_record is None and (status in _ACTIVE_STATUSES or not status)
        self._stop_btn.layout.display = None if show_stop else "none"
        self._stop_btn.disabled = self._stopping

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
        if self._symbol.value is None:
            return "no symbol"
        return "blocked by the policy"

    def __repr__(self) -> str:
        name = getattr(self._result, "name", None) or "strategy"
        verdict = "PASSED" if _get(self._check, "passed", False) else "FAILED"
        return (
            f"DeployPanel({name!r} -> symbol={self.symbol!r}, timeframe={self.timeframe}, volume={self.volume}; "
            f"policy {verdict}{', deploy anyway' if self.force else ''}; {self._state_text()})"
        )

    def to_html(self) -> str:
        """A static HTML rendering: what will be stored, the policy check, the form values, progress and outcome."""
        form = (
            f"<div style='margin:6px 0'>symbol <b>{R.escape(self.symbol)}</b> · timeframe <b>{self.timeframe}</b>"
            f" · volume <b>{self.volume}</b>{' · <b>deploy anyway</b>' if self.force else ''} · state: "
            f"<i>{R.escape(self._state_text())}</i></div>"
        )
        return f"<div class='quantlab-deploy-panel'>{self._info.value}{form}{self._steps_html.value}{self._outcome_html.value}</div>"



def _failed_rules(check: Any) -> str:
    cf = R.check_frame(check)
    if cf is None:
        return "no check"
    failed = cf[~cf["passed"].astype(bool)]
    return "; ".join(
        f"{r['metric']} = {R.fmt_metric(str(r['metric']), r['value'])}, needs {R._rule_text(r)}" for r in failed.to_dict("records")
    ) or "failed"


def deploy_panel(result: Any, lab: Any, policy: Any = None, **kwargs: Any) -> DeployPanel:
    """The one-click store-and-deploy panel for a backtest ``result``.

    Shows the file path and commit message ``lab.hub.preview`` announces, the
    policy check (``lab.validate(result, policy)``; ``policy=None`` uses
    ``lab.policy``), and fields for symbol (from ``lab.symbols()``), timeframe
    and volume. "Store & Deploy" runs ``lab.store_and_deploy`` in a worker thread
    and reports each step; it is disabled while the policy fails unless
    "deploy anyway" is ticked, and while a submission runs.

    Keyword arguments: ``strategy`` (for the preview, default ``result.strategy``),
    ``symbol``, ``timeframe`` (default 1), ``volume`` (default 0.1).

    Example
    -------
    >>> panel = deploy_panel(result, lab, symbol="EURUSD")   # doctest: +SKIP
    >>> outcome = panel.click()  # doctest: +SKIP
    >>> outcome.record.deployment_id, outcome.stored.commit  # doctest: +SKIP
    """
    return DeployPanel(result, lab, policy, **kwargs)
