"""Embedded defaults: the MCP servers quantlab starts by itself when nothing is configured.

With no configuration quantlab runs its own backtest and paper-broker servers as
subprocesses of the current Python, keeping their files under a *home* folder
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
from typing import Any

__all__ = ["default_home", "embedded_servers", "BACKTEST", "BROKER"]

BACKTEST = "backtest"
BROKER = "broker"


def default_home() -> Path:
    """``$QUANTLAB_HOME`` if set, else ``~/.quantlab``."""
    return Path(os.environ.get("QUANTLAB_HOME") or Path.home() / ".quantlab").expanduser()


def embedded_servers(home: str | os.PathLike[str] | None = None, *, clock: str = "stepped") -> dict[str, Any]:
    """The ``mcpServers`` config of the embedded backtest and broker servers.

    ``clock`` is the broker's market clock: ``"stepped"`` (bars advance only
    through the ``advance`` tool), ``"realtime"``, or ``"accelerated:N"``
    (N bars per second).

    >>> embedded_servers("/tmp/qlhome")["mcpServers"]["broker"]["args"][:2]
    ['-m', 'quantlab.servers.broker']
    """
    home = Path(home) if home is not None else default_home()
    return {
        "mcpServers": {
            BACKTEST: {
                "command": sys.executable,
                "args": ["-m", "quantlab.servers.backtest", "--runs", str(home / "runs")],
            },
            BROKER: {
                "command": sys.executable,
                "args": ["-m", "quantlab.servers.broker", "--db", str(home / "broker.db"), "--clock", clock],
            },
        }
    }
