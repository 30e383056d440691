"""Embedded defaults: the MCP servers quantlab starts by itself when nothing is configured.

With no configuration quantlab runs its own backtest server and a paper broker
fronted by the runner (:mod:`quantlab.runner`, which owns the broker's connection,
serves its tools and runs the deployments) as subprocesses of the current Python, keeping their files under a *home* folder
(``$QUANTLAB_HOME``, else ``~/.quantlab``; a :class:`quantlab.Lab` uses
``<hub>/.git/quantlab`` so each hub is self-contained).

Example
-------
>>> cfg = embedded_servers("/tmp/qlhome")
>>> sorted(cfg["mcpServers"])
['backtest', 'broker']
"""
from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any, Mapping

from quantlab._util import quantlab_home

__all__ = ["default_home", "embedded_servers", "runner_entry", "paper_broker_entry", "BACKTEST", "BROKER", "RUNNER"]

BACKTEST = "backtest"
BROKER = "broker"
RUNNER = "runner"


def default_home() -> Path:
    """``$QUANTLAB_HOME`` if set, else ``~/.quantlab``."""
    return quantlab_home()


def paper_broker_entry(home: str | os.PathLike[str], *, clock: str = "stepped") -> dict[str, Any]:
    """The ``mcpServers`` entry of the paper broker over stdio, its database in ``home``.

    >>> paper_broker_entry("/tmp/qlhome")["args"][:2]
    ['-m', 'quantlab.servers.broker']
    """
    return {"command": sys.executable,
            "args": ["-m", "quantlab.servers.broker", "--db", str(Path(home) / "broker.db"), "--clock", clock]}


def runner_entry(broker: Mapping[str, Any], home: str | os.PathLike[str], *, hub: str | os.PathLike[str] | None = None,
                 clock: str = "auto") -> dict[str, Any]:
    """The ``mcpServers`` entry of a runner (stdio) connected to the ``broker`` entry, its state in ``home``.

    ``clock``: ``"stepped"`` (deployments act when :meth:`Lab.advance` steps the paper
    broker), ``"live"`` (poll the broker's market) or ``"auto"`` (stepped if the broker
    is a stepped paper broker, else live).

    >>> e = runner_entry({"command": "mt5mcp"}, "/tmp/qlhome")
    >>> e["args"][:2]
    ['-m', 'quantlab.runner']
    >>> runner_entry({"command": "mt5mcp", "on_connect": [{"tool": "login", "arguments": {"password": "${MT5_PASSWORD}"}}]},
    ...              "/tmp/qlhome")["inherit_env"]
    ['MT5_PASSWORD']
    """
    import json

    # the entry goes in a private file, not on the command line (ps shows arguments to everyone);
    # ${VAR} references stay unexpanded until the runner connects
    home = Path(home)
    home.mkdir(parents=True, exist_ok=True)
    path = home / "runner_broker.json"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(dict(broker), f)
    args = ["-m", "quantlab.runner", "--db", str(home / "runner.db"), "--broker", str(path), "--clock", clock]
    if hub is not None:
        args += ["--hub", str(hub)]
    out: dict[str, Any] = {"command": sys.executable, "args": args}
    # the variables the broker entry reads (${MT5_PASSWORD} in on_connect ...) reach the runner's environment,
    # copied from ours when it is spawned ("inherit_env"), so their values are never stored in a config
    import re

    names = sorted(set(re.findall(r"\$\{(\w+)\}", json.dumps(dict(broker)))))
    if names:
        out["inherit_env"] = names
    return out


def embedded_servers(home: str | os.PathLike[str] | None = None, *, clock: str = "stepped",
                     hub: str | os.PathLike[str] | None = None) -> dict[str, Any]:
    """The ``mcpServers`` config of the embedded backtest server and the paper broker behind a runner.

    ``clock`` is the paper market's clock: ``"stepped"`` (bars advance only through
    :meth:`Lab.advance`), ``"realtime"``, or ``"accelerated:N"`` (N bars per second).
    The entry named ``broker`` is the runner: it serves the broker's tools and the
    deployment tools, and it is the only client of the paper broker's database.

    >>> embedded_servers("/tmp/qlhome")["mcpServers"]["broker"]["args"][:2]
    ['-m', 'quantlab.runner']
    """
    home = Path(home) if home is not None else default_home()
    return {
        "mcpServers": {
            BACKTEST: {
                "command": sys.executable,
                "args": ["-m", "quantlab.servers.backtest", "--runs", str(home / "runs")],
            },
            BROKER: runner_entry(paper_broker_entry(home, clock=clock), home, hub=hub,
                                 clock="stepped" if clock == "stepped" else "live"),
        }
    }
