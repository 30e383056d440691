"""Options and helpers shared by the CLI subcommands that open a :class:`quantlab.Lab`."""
from __future__ import annotations

import argparse
import os
from typing import Any

from quantlab.engine.costs import format_costs  # noqa: F401 - stdlib only; part of this module's helpers


def default_hub() -> str:
    """``$QUANTLAB_HUB`` if set, else ``./assets-hub``."""
    return os.environ.get("QUANTLAB_HUB") or "./assets-hub"


def lab_options() -> argparse.ArgumentParser:
    """A parent parser with ``--hub`` and ``--config`` (the servers to use)."""
    p = argparse.ArgumentParser(add_help=False)
    p.add_argument("--hub", default=default_hub(), help="assets hub folder (default $QUANTLAB_HUB or ./assets-hub)")
    p.add_argument("--config", default=None,
                   help="mcpServers JSON/TOML file naming the 'backtest' and 'broker' servers (default: embedded servers)")
    p.add_argument("--debug", action="store_true", help="show tracebacks")
    return p


def open_lab(args: argparse.Namespace, *, backtest: bool = True) -> Any:
    """Start a lab for a CLI command (quiet: no progress bars).

    With no ``--config`` and a running paper (or runner) daemon, the lab uses that daemon:
    deployments made here trade on its clock and outlive the command. ``backtest=False``
    leaves out the backtest server (commands that only deploy, list, stop or advance), with
    the daemon and with embedded servers alike.
    """
    from quantlab.lab import Lab

    config = args.config
    if config is None:
        config = daemon_config(args.hub, backtest=backtest)
    return Lab.start(args.hub, config=config, progress=False, **({} if backtest else {"backtest_server": None}))


def daemon_config(hub: str, *, backtest: bool = True) -> dict[str, Any] | None:
    """The ``mcpServers`` config that talks to the running paper/runner daemon, or ``None`` if none runs."""
    import sys
    from pathlib import Path

    from .paper import running_runner

    st = running_runner()
    if st is None:
        return None
    token = Path(st["token_file"]).read_text().strip()
    servers: dict[str, Any] = {"runner": {"url": st["url"], "headers": {"Authorization": f"Bearer {token}"}}}
    if backtest:
        runs = Path(hub).expanduser() / ".git" / "quantlab" / "runs"
        servers["backtest"] = {"command": sys.executable, "args": ["-m", "quantlab.servers.backtest", "--runs", str(runs)]}
    return {"mcpServers": servers}


def parse_params(pairs: list[list[str]] | None) -> dict[str, Any]:
    """``-p fast 10 -p name x`` → ``{"fast": 10, "name": "x"}`` (values parsed as JSON when they can be).

    >>> parse_params([["fast", "10"], ["kind", "ema"]])
    {'fast': 10, 'kind': 'ema'}
    """
    import json

    out: dict[str, Any] = {}
    for key, value in pairs or []:
        try:
            out[key] = json.loads(value)
        except ValueError:
            out[key] = value
    return out


def print_table(rows: list[dict[str, Any]], columns: list[str]) -> None:
    """Print rows as an aligned text table."""
    cells = [[c.upper() for c in columns]] + [["" if r.get(c) is None else str(r.get(c)) for c in columns] for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(columns))]
    for row in cells:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip())


def print_frame(frame: Any, columns: list[str], *, as_json: bool, empty: str, rows: Any = None) -> None:
    """Print a DataFrame as JSON records (``as_json``), the ``empty`` message, or a text table of
    ``columns`` (``rows``: the records to show, default the frame's own)."""
    if as_json:
        print(frame.to_json(orient="records", date_format="iso", default_handler=str))
    elif frame.empty:
        print(empty)
    else:
        print_table(rows if rows is not None else frame.to_dict("records"), columns)


def check_param_types(strategy: Any, params: dict[str, Any]) -> None:
    """Refuse a ``-p NAME VALUE`` whose type does not fit the strategy's default for ``NAME``.

    A default that is a number wants a number (an ``int`` default a whole number): ``-p fast abc`` is refused here, naming the
    parameter, instead of failing later inside pandas. Unknown names are left to the engine.

    >>> from quantlab.engine.strategy import Strategy
    >>> s = Strategy.from_code("def signals(data, fast=10):\\n    return data.close * 0", name="sma")
    >>> check_param_types(s, {"fast": "abc"})
    Traceback (most recent call last):
    ...
    ValueError: bad parameter -p fast abc: strategy 'sma' expects a whole number for 'fast' (default 10), got the text 'abc'.
    """
    defaults = strategy.params
    for key, value in params.items():
        if key not in defaults:
            continue
        default = defaults[key]
        if isinstance(default, bool):
            ok, kind = isinstance(value, bool), "true or false"
        elif isinstance(default, int):
            ok, kind = isinstance(value, int) and not isinstance(value, bool), "a whole number"
        elif isinstance(default, float):
            ok, kind = isinstance(value, (int, float)) and not isinstance(value, bool), "a number"
        else:
            continue
        if not ok:
            got = f"the text {value!r}" if isinstance(value, str) else f"{value!r}"
            raise ValueError(f"bad parameter -p {key} {value}: strategy {strategy.name!r} expects {kind} for "
                             f"{key!r} (default {default!r}), got {got}.")


def strategy_error(exc: BaseException, strategy: Any, path: str) -> str | None:
    """One line naming the strategy, the exception type and the strategy's own line, or ``None``
    if ``exc`` was not raised by the strategy's code.

    Works for the in-process engine (the strategy's code is compiled as ``<strategy NAME>``) and
    for the sandbox's :class:`~quantlab.engine.signals.SignalError` (``.line``, ``.exc_type``).
    """
    import traceback
    from pathlib import Path

    name = strategy.name
    line = getattr(exc, "line", None)
    exc_type = getattr(exc, "exc_type", None)
    message = None
    if exc_type is None:
        import re

        frames = [f for f in traceback.extract_tb(exc.__traceback__) if f.filename == f"<strategy {name}>"]
        # through the backtest server the sandbox's report arrives as text: "strategy 'x' raised T: msg\n  line N, ..."
        remote = re.search(rf"strategy {re.escape(repr(name))} raised (\w+): (.*?)(?:\n\s*line (\d+),|$)", str(exc), re.S)
        if frames:
            line, exc_type, message = frames[-1].lineno, type(exc).__name__, str(exc)
        elif remote:
            exc_type, message, line = remote.group(1), remote.group(2).strip(), remote.group(3)
        else:
            return None
    else:
        detail = getattr(exc, "detail", "") or ""
        message = detail.split("\n", 1)[0].split(": ", 1)[-1]
    src = ""
    if line:
        try:
            text = Path(path).read_text().splitlines()[int(line) - 1].strip()
        except (OSError, IndexError, ValueError):
            text = ""
        src = f" ({Path(path).name} line {line}" + (f": {text[:60]}{'...' if len(text) > 60 else ''}" if text else "") + ")"
    return f"strategy {name!r} raised {exc_type}: {message}{src}"


_PCT = {"total_return", "cagr", "volatility", "max_drawdown", "win_rate", "exposure", "benchmark_return", "psr"}
_LABELS = {
    "total_return": "Return [%]", "cagr": "Return (Ann.) [%]", "volatility": "Volatility (Ann.) [%]",
    "sharpe": "Sharpe Ratio", "sortino": "Sortino Ratio", "calmar": "Calmar Ratio", "max_drawdown": "Max. Drawdown [%]",
    "max_drawdown_duration": "Max. Drawdown Duration [bars]", "win_rate": "Win Rate [%]", "profit_factor": "Profit Factor",
    "expectancy": "Expectancy [cash]", "trades": "# Trades", "open_trades": "# Open Trades", "exposure": "Exposure Time [%]",
    "benchmark_return": "Buy & Hold Return [%]", "psr": "Prob. Sharpe Ratio [%]",
}


def stats_block(result: Any) -> str:
    """The metrics of a backtest as an aligned block for people (like backtesting.py's stats)."""
    import math

    eq = result.equity
    rows: list[tuple[str, str]] = [("Strategy", str(result.name)),
                                   ("Params", ", ".join(f"{k}={v}" for k, v in result.params.items()) or "-")]
    if len(eq):
        rows += [("Start", str(eq.index[0])), ("End", str(eq.index[-1])), ("Bars", f"{len(eq):,}")]
    rows.append(("Data", str(result.data_ref)))
    rows.append(("Costs", format_costs(result.costs)))
    for key, value in result.metrics.items():
        label = _LABELS.get(key, key.replace("_", " ").capitalize())
        if isinstance(value, float) and not math.isfinite(value):
            text = "n/a"
        elif key in _PCT and isinstance(value, (int, float)):
            text = f"{100 * value:.2f}"
        elif isinstance(value, float):
            text = f"{value:,.3f}"
        else:
            text = f"{value:,}" if isinstance(value, int) else str(value)
        rows.append((label, text))
    rows.append(("Run id", str(result.run_id or "-")))
    width = max(len(label) for label, _ in rows)
    return "\n".join(f"{label:<{width}}  {text}" for label, text in rows)


DATA_HELP = ("bars to backtest on: a local bars.csv / bars.parquet file, 'sample' (default), "
             "'synthetic:seed=7,bars=100000' or 'file:PATH' (under the server's data root)")


def _fraction(name: str):
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{name} must be a number such as 0.0002 (a fraction: 0.0002 = 0.02%), "
                                             f"got {text!r}") from None
        if not 0.0 <= value < 1.0:
            raise argparse.ArgumentTypeError(f"{name} must be ≥ 0 and < 1 (a fraction of traded notional: "
                                             f"0.0002 = 0.02%), got {text}")
        return value
    return parse


def _cash(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"cash must be a number such as 100000, got {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"cash must be > 0, got {text}")
    return value


def cost_options(*, default: bool = True) -> argparse.ArgumentParser:
    """A parent parser with ``--cash``, ``--fees`` and ``--slippage`` (checked here, in the user's words).

    ``default=False`` leaves them ``None`` when not given (the command picks its own)."""
    from quantlab.engine.costs import DEFAULT_CASH, DEFAULT_FEES, DEFAULT_SLIPPAGE

    p = argparse.ArgumentParser(add_help=False)
    p.add_argument("--cash", type=_cash, default=DEFAULT_CASH if default else None,
                   help=f"starting cash (default {DEFAULT_CASH:,.0f})")
    p.add_argument("--fees", type=_fraction("fees"), default=DEFAULT_FEES if default else None,
                   help=f"fees as a fraction of traded notional, 0.0002 = 0.02%% (default {DEFAULT_FEES:g})")
    p.add_argument("--slippage", type=_fraction("slippage"), default=DEFAULT_SLIPPAGE if default else None,
                   help=f"slippage as a fraction of the price (default {DEFAULT_SLIPPAGE:g})")
    return p


def load_strategy(path: str) -> Any:
    """The strategy in the file at ``path``."""
    from quantlab.engine.strategy import Strategy

    return Strategy.from_file(path)


def run_strategy(strategy: Any, path: str, run: Any) -> Any:
    """``run()``, with an exception raised by the strategy's own code turned into one readable
    line (:func:`strategy_error`); other errors pass through unchanged."""
    try:
        return run()
    except Exception as exc:  # noqa: BLE001 - re-raised unless it is the strategy's own
        line = strategy_error(exc, strategy, path)
        if line is None:
            raise
        raise StrategyRaised(line) from exc


class StrategyRaised(RuntimeError):
    """The strategy's own code raised (the message names its type and line)."""
