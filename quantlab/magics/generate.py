"""``%%generate NAME [--model M] [--attempts N]``: the cell body is the idea; binds a ``Generation``.

The generation runs on the active Lab (``Lab.active()``, else one is started on ``./assets-hub`` and
bound to ``lab``)
while a live view shows each attempt as it happens (status per check, metrics, cost); the view
ends on the review of the best candidate (``quantlab.review(gen)``).

Example
-------
In a notebook::

    %load_ext quantlab

    %%generate trend --model offline --attempts 4
    Trend following on hourly bars, flat when volatility is high.

    trend.best            # the candidate that passed, trend.attempts for every one
"""
from __future__ import annotations

import html
import queue
import time
from typing import Any

from IPython.core.error import UsageError
from IPython.core.magic import Magics, cell_magic, magics_class
from IPython.core.magic_arguments import argument, magic_arguments, parse_argstring

__all__ = ["GenerateMagics", "live_html"]


def live_html(gen: Any, running: Any = None, step: str = "") -> str:
    """The live view: one row per attempt so far (checks with their status, metrics, cost)."""
    rows = []
    for c in gen.attempts:
        checks = " ".join(f"{html.escape(ch.name)} {'✔' if ch.status == 'pass' else '✘' if ch.status == 'fail' else '–'}"
                          for ch in c.checks)
        if c is running:
            checks += f" … {html.escape(step)}"
        m = c.metrics
        sharpe = f"{m['sharpe']:.2f}" if isinstance(m.get("sharpe"), float) else ""
        failed = next((ch.detail for ch in c.checks if ch.status == "fail"), c.error or "")
        rows.append(f"<tr><td>{c.attempt}</td><td style='text-align:left'>{html.escape(c.name or '…')}</td>"
                    f"<td style='text-align:left'>{checks}</td><td>{sharpe}</td><td>${c.cost_usd:.4f}</td>"
                    f"<td style='text-align:left'><small>{html.escape(failed[:200])}</small></td></tr>")
    return (f"<div><b>generating</b> <small>{html.escape(gen.model)} · ${gen.usage['cost_usd']:.4f}</small>"
            "<table><tr><th>#</th><th>name</th><th>checks</th><th>sharpe</th><th>cost</th><th>failure</th></tr>"
            + "".join(rows) + "</table></div>")


@magics_class
class GenerateMagics(Magics):
    """``%%generate`` (see :mod:`quantlab.magics.generate`)."""

    @magic_arguments()
    @argument("--model", "-m", default=None, help="'openai:gpt-4.1', 'anthropic:...', 'offline', 'replay:PATH' "
                                                     "(default: quantlab.toml / QUANTLAB_MODEL / offline)")
    @argument("--attempts", "-n", type=int, default=5, help="most attempts (default 5)")
    @argument("--data", default="sample", help="data reference (default 'sample')")
    @argument("--budget", type=float, default=None, help="most USD to spend on the model")
    @argument("name", help="the variable to bind the Generation to")
    @cell_magic
    def generate(self, line: str, cell: str) -> Any:
        """Generate a strategy from the idea in the cell; bind the ``Generation`` to NAME.

        Usage: ``%%generate NAME [--model M] [--attempts N] [--data REF] [--budget USD]``
        """
        try:
            args = parse_argstring(self.generate, line)
        except SystemExit:
            raise UsageError("usage: %%generate NAME [--model M] [--attempts N]") from None
        if not args.name.isidentifier():
            raise UsageError(f"%%generate {args.name!r}: NAME must be a Python variable name.")
        idea = cell.strip()
        if not idea:
            raise UsageError("%%generate needs the idea in the cell body, e.g. 'trend following with a volatility filter'.")
        from IPython.display import HTML, display

        from quantlab.lab.lab import Lab

        lab = Lab.active()
        if lab is None:  # start one and keep it (a lab only lives as long as someone holds it)
            lab = Lab.start("./assets-hub", progress=False)
            var = "lab" if "lab" not in self.shell.user_ns else "_generate_lab"
            self.shell.user_ns[var] = lab
            print(f"started a Lab on ./assets-hub as `{var}` (no active lab)")
        events: "queue.Queue[tuple[str, Any, Any]]" = queue.Queue()
        handle = display(HTML("<i>starting…</i>"), display_id=True)
        future = lab.submit("generate", idea, args.data, model=args.model, max_attempts=args.attempts,
                            budget_usd=args.budget, on_attempt=lambda e, c, g: events.put((e, c, g)))
        gen, running, step = None, None, ""
        try:
            while True:
                done = future.done()
                while not events.empty():
                    event, cand, gen = events.get_nowait()
                    running, step = (cand, {"start": "asking the model", "answer": "checking"}.get(event, "")) \
                        if event != "done" else (None, "")
                if gen is not None and handle is not None:
                    handle.update(HTML(live_html(gen, running, step)))
                if done:
                    break
                time.sleep(0.1)
            gen = future.result()
        except KeyboardInterrupt:
            future.cancel()
            raise
        except Exception as exc:  # noqa: BLE001 - one clear line in the notebook
            raise UsageError(f"%%generate {args.name}: {exc}") from None
        self.shell.user_ns[args.name] = gen
        if handle is not None:
            handle.update(gen)
        best = gen.best
        print(f"{'✔' if best else '✘'} {args.name}: {len(gen.attempts)} attempt(s), stop: {gen.stop_reason}; "
              f"{gen.model}" + (f"; best: attempt {best.attempt} {best.name!r}" if best else ""))
        if any(c.run_id for c in gen.attempts):
            from quantlab.widgets import review

            display(review(gen))
        return None


def load_ipython_extension(ipython: Any) -> None:
    """Register ``%%generate``."""
    ipython.register_magics(GenerateMagics)
