"""IPython magics: ``%%strategy`` and ``%quantlab``.

Load them with ``%load_ext quantlab`` (or ``%load_ext quantlab.magics``).

``%%strategy NAME [-v VAR] [--no-run]``
    The cell's code becomes a :class:`quantlab.Strategy` named NAME, checked on
    the spot (it must parse, define ``signals`` and load; then it is run once on
    500 synthetic bars unless ``--no-run``) and bound to the variable VAR
    (default: NAME if it is an identifier, else a slug of it, ``"SMA cross"`` ->
    ``sma_cross``). A broken strategy prints one clear error line instead of a
    traceback, and stops "Run All".

``%quantlab status``
    quantlab's version, the active Lab (``Lab.active()``) with its hub, state and
    MCP connections.

``%quantlab traceback``
    The full chain of the last error, through quantlab's own modules (a quantlab error
    prints a short traceback: the user's frames, the error and one hint).

Example
-------
In a notebook::

    %load_ext quantlab

    %%strategy SMA cross
    def signals(data, fast=10, slow=50):
        return (data.close.rolling(fast).mean() > data.close.rolling(slow).mean()).astype(float)

    sma_cross.params          # {'fast': 10, 'slow': 50}
"""
from __future__ import annotations

import keyword
import platform
import re
from typing import Any

from IPython.core.error import UsageError
from IPython.core.magic import Magics, cell_magic, line_magic, magics_class
from IPython.core.magic_arguments import argument, magic_arguments, parse_argstring

__all__ = ["QuantlabMagics", "load_ipython_extension", "unload_ipython_extension", "variable_name", "status_text",
           "traceback_text"]

SMOKE_BARS = 500


def variable_name(name: str) -> str:
    """The variable a ``%%strategy NAME`` cell binds: NAME if it is a valid
    identifier, else a lower-case slug of it.

    >>> variable_name("momentum"), variable_name("SMA cross"), variable_name("2-ma / v2")
    ('momentum', 'sma_cross', 's_2_ma_v2')
    """
    if name.isidentifier() and not keyword.iskeyword(name):
        return name
    slug = re.sub(r"\W+", "_", name.strip().lower(), flags=re.ASCII).strip("_") or "strategy"
    if slug[0].isdigit() or keyword.iskeyword(slug):
        slug = "s_" + slug
    return slug


def _active_lab() -> tuple[Any, str | None]:
    try:
        from quantlab.lab.lab import Lab
    except ImportError as exc:
        return None, f"quantlab.lab.lab is not available ({exc})"
    try:
        return Lab.active(), None
    except Exception as exc:  # noqa: BLE001 - status must never fail
        return None, f"Lab.active() failed: {type(exc).__name__}: {exc}"


def _connections_text(conns: Any) -> list[str]:
    """The MCP connections as an aligned table, one server per line."""
    import pandas as pd

    if not conns:
        return ["  (none)"]
    if isinstance(conns, dict):
        rows = [{"server": k, **(v if isinstance(v, dict) else {"status": v})} for k, v in conns.items()]
    else:
        rows = [c if isinstance(c, dict) else {"server": str(c)} for c in conns]
    df = pd.DataFrame(rows)
    if "server" not in df.columns and "name" in df.columns:
        df = df.rename(columns={"name": "server"})
    cols = [c for c in ("server", "status", "transport", "pid", "tools", "calls", "errors", "median_latency_ms",
                        "last_error", "target") if c in df.columns]
    df = df[cols].astype(object).where(df[cols].notna(), "")
    return ["  " + line for line in df.to_string(index=False).splitlines()]


def traceback_text(exc: BaseException | None = None) -> str:
    """What ``%quantlab traceback`` prints: the full chain of ``exc`` (default: the last error of
    this IPython session, ``sys.last_value``), through quantlab's own modules.

    >>> try:
    ...     1 / 0
    ... except ZeroDivisionError as exc:
    ...     text = traceback_text(exc)
    >>> text.splitlines()[0], text.splitlines()[-1]
    ('Traceback (most recent call last):', 'ZeroDivisionError: division by zero')
    """
    import sys
    import traceback

    if exc is None:
        exc = getattr(sys, "last_exc", None) or getattr(sys, "last_value", None)
    if exc is None:
        return "no error yet in this session: %quantlab traceback shows the last error's full chain once there is one."
    full = getattr(exc, "full_traceback", None)
    if callable(full):
        return full().rstrip("\n")
    return "".join(traceback.format_exception(type(exc), exc, exc.__traceback__)).rstrip("\n")


def status_text() -> str:
    """The text ``%quantlab status`` prints: version, active Lab, its state and MCP connections.

    >>> status_text().splitlines()[0].startswith("quantlab ")
    True
    """
    import quantlab

    lines = [f"quantlab {getattr(quantlab, '__version__', '?')} (Python {platform.python_version()})"]
    lab, why = _active_lab()
    if lab is None:
        lines.append("active lab: none" + (f" — {why}" if why else "") + " (start one with `lab = quantlab.Lab.start()`)")
        return "\n".join(lines)
    lines.append(f"active lab: hub {lab.hub.path}")
    lines.append(f"policy: {lab.policy!r}")
    try:
        state = dict(lab.state())
    except Exception as exc:  # noqa: BLE001 - status must never fail
        lines.append(f"state: unavailable ({type(exc).__name__}: {exc})")
        return "\n".join(lines)
    conns = state.pop("mcp_connections", None)
    triggered = state.pop("deployments_triggered", None)
    for key in ("created_at", "last_activity", "invocation_count"):
        if key in state:
            lines.append(f"{key.replace('_', ' ')}: {state.pop(key)}")
    if triggered is not None:
        lines.append(f"deployments triggered: {len(triggered)}")
    for key, value in state.items():
        lines.append(f"{key.replace('_', ' ')}: {value}")
    lines.append("MCP connections:")
    lines.extend(_connections_text(conns))
    return "\n".join(lines)


@magics_class
class QuantlabMagics(Magics):
    """``%%strategy`` and ``%quantlab`` (see :mod:`quantlab.magics`)."""

    @magic_arguments()
    @argument("-v", "--var", default=None, help="variable to bind the Strategy to (default: NAME or its slug)")
    @argument("--no-run", action="store_true", help="only load the code; skip the run on synthetic bars")
    @argument("name", nargs="*", help="the strategy's name (quotes or spaces allowed)")
    @cell_magic
    def strategy(self, line: str, cell: str) -> None:
        """Turn the cell into a checked ``Strategy`` bound to a variable.

        Usage: ``%%strategy NAME [-v VAR] [--no-run]``
        """
        from quantlab.engine.strategy import Strategy, StrategyError

        try:
            args = parse_argstring(self.strategy, line)
        except UsageError:
            raise
        except SystemExit:  # argparse on bad options
            raise UsageError("usage: %%strategy NAME [-v VAR] [--no-run]") from None
        name = " ".join(args.name).strip()
        if len(name) >= 2 and name[0] == name[-1] and name[0] in "\"'":
            name = name[1:-1].strip()
        if not name:
            raise UsageError("%%strategy needs a name: `%%strategy NAME [-v VAR]`, e.g. `%%strategy SMA cross`.")
        var = args.var or variable_name(name)
        if not var.isidentifier() or keyword.iskeyword(var):
            raise UsageError(f"%%strategy -v {var!r}: not a valid Python variable name.")
        try:
            strat = Strategy.from_code(cell, name=name)
        except StrategyError as exc:
            raise UsageError(str(exc)) from None
        if not args.no_run:
            self._smoke_run(strat)
        self.shell.user_ns[var] = strat
        params = ", ".join(f"{k}={v!r}" for k, v in strat.params.items()) or "none"
        print(f"✔ strategy {name!r} checked -> variable `{var}` (params: {params})")

    @staticmethod
    def _smoke_run(strat: Any) -> None:
        from quantlab.engine.backtest import backtest
        from quantlab.engine.data import synthetic

        try:
            # the check run goes through the strategy sandbox (docs/sandbox.md), like every run
            # quantlab makes on your behalf: a cell that reaches for files or the network says so here
            backtest(synthetic(SMOKE_BARS, seed=0), strat, sandbox=True)
        except Exception as exc:  # noqa: BLE001 - any user error, reported in one line
            raise UsageError(
                f"strategy {strat.name!r} loads but fails on {SMOKE_BARS} synthetic bars: "
                f"{type(exc).__name__}: {exc} (use `%%strategy NAME --no-run` to skip this check)."
            ) from None

    @line_magic
    def quantlab(self, line: str) -> None:
        """``%quantlab status``: version, active Lab and its MCP connections. ``%quantlab traceback``:
        the full chain of the last error. ``%quantlab help``: usage."""
        cmd = (line.strip().split() or ["status"])[0]
        if cmd == "status":
            print(status_text())
        elif cmd in {"traceback", "tb"}:
            print(traceback_text())
        elif cmd in {"help", "-h", "--help"}:
            print(__doc__)
        else:
            raise UsageError(f"%quantlab {cmd}: unknown command; use `%quantlab status`, `%quantlab traceback` "
                             f"or `%quantlab help`.")


def load_ipython_extension(ipython: Any) -> None:
    """Register ``%%strategy`` and ``%quantlab`` (called by ``%load_ext quantlab``).

    >>> from IPython.core.interactiveshell import InteractiveShell    # doctest: +SKIP
    >>> load_ipython_extension(InteractiveShell.instance())  # doctest: +SKIP
    """
    ipython.register_magics(QuantlabMagics)
    from .generate import GenerateMagics  # %%generate (the code agent), kept in its own module

    ipython.register_magics(GenerateMagics)


def unload_ipython_extension(ipython: Any) -> None:
    """Nothing to undo beyond what IPython does (kept for ``%unload_ext``)."""
