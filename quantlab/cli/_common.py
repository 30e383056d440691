"""Options and helpers shared by the CLI subcommands that open a :class:`quantlab.Lab`."""
from __future__ import annotations

import argparse
import os
from typing import Any


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
    leaves out the backtest server (commands that only deploy, list, stop or advance).
    """
    from quantlab.lab import Lab

    config = args.config
    if config is None:
        config = daemon_config(args.hub, backtest=backtest)
    return Lab.start(args.hub, config=config, progress=False)


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
