"""The real public MT5 MCP server (``mcp-metatrader5-server`` 0.1.8, console script ``mt5mcp``) on
Linux, against our simulated ``MetaTrader5`` terminal (:mod:`quantlab.testing.mt5sim`, a ``MetaTrader5`` package).

``mt5mcp`` needs ``fastmcp==3.4.2``, which needs ``mcp<2``: it cannot share an environment with
quantlab (``mcp`` 2.x), so it lives in its own virtual environment, built once by
:func:`ensure_mt5mcp` (or ``.ci/run``) the way the issue prescribes: the wheel is downloaded with
``--python-version 3.12 --only-binary=:all: --no-deps`` (it declares Python >= 3.12) and installed
with ``--ignore-requires-python --no-deps`` next to ``fastmcp==3.4.2`` and ``pandas``. The
``MetaTrader5`` wheel (Windows only) is never installed; the simulated module is put first on
the server's ``PYTHONPATH`` instead.

Example
-------
>>> entry = mt5mcp_entry("/venv/bin/mt5mcp", account="hedging")
>>> entry["env"]["MT5SIM_ACCOUNT"], [c["tool"] for c in entry["on_connect"]]
('hedging', ['initialize', 'login'])
>>> entry["on_connect"][1]["arguments"]["password"]
'${MT5SIM_PASSWORD}'
"""
from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any, Iterator

__all__ = ["MT5MCP_VERSION", "FASTMCP_VERSION", "SIM_DIR", "SIM_PASSWORD", "SIM_LOGINS", "default_venv",
           "mt5mcp_path", "ensure_mt5mcp", "mt5mcp_entry", "lab_config", "TERMINAL_PATH"]

MT5MCP_VERSION = "0.1.8"
FASTMCP_VERSION = "3.4.2"
#: the folder holding the simulated ``MetaTrader5`` package (first on the server's PYTHONPATH)
SIM_DIR = Path(__file__).with_name("mt5sim")
#: the simulated accounts' password (not a secret; it reaches the server through ``${MT5SIM_PASSWORD}``)
SIM_PASSWORD = "sim-password"
SIM_LOGINS = {"netting": 1001, "hedging": 1002}
SIM_SERVER = "SimBroker-Demo"
TERMINAL_PATH = "C:/Program Files/MetaTrader 5/terminal64.exe"


def default_venv() -> Path:
    """``$QUANTLAB_MT5MCP_VENV``, else ``~/.cache/quantlab/mt5mcp-0.1.8``."""
    env = os.environ.get("QUANTLAB_MT5MCP_VENV")
    return Path(env) if env else Path.home() / ".cache" / "quantlab" / f"mt5mcp-{MT5MCP_VERSION}"


def mt5mcp_path(venv: str | os.PathLike[str] | None = None) -> Path:
    """Where the ``mt5mcp`` console script of ``venv`` is (it may not exist yet)."""
    v = Path(venv) if venv is not None else default_venv()
    return v / ("Scripts/mt5mcp.exe" if os.name == "nt" else "bin/mt5mcp")


@contextlib.contextmanager
def _lock(path: Path) -> Iterator[None]:
    import fcntl

    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def ensure_mt5mcp(venv: str | os.PathLike[str] | None = None, *, python: str | None = None) -> Path:
    """Build (once; later calls return at once) the venv running ``mt5mcp``; return its console script.

    Raises ``RuntimeError`` with pip's last lines when the package index cannot be reached.
    """
    v = Path(venv) if venv is not None else default_venv()
    exe = mt5mcp_path(v)
    if exe.exists():
        return exe
    with _lock(v.parent / f".{v.name}.lock"):
        if exe.exists():
            return exe
        py = v / ("Scripts/python.exe" if os.name == "nt" else "bin/python")

        def run(*cmd: str) -> None:
            out = subprocess.run(cmd, capture_output=True, text=True)
            if out.returncode:
                raise RuntimeError(f"building the mt5mcp environment failed: {' '.join(cmd)}\n{out.stderr[-2000:]}")

        run(python or sys.executable, "-m", "venv", str(v))
        with tempfile.TemporaryDirectory() as d:
            run(str(py), "-m", "pip", "download", "-q", "--python-version", "3.12", "--only-binary=:all:", "--no-deps",
                "-d", d, f"mcp-metatrader5-server=={MT5MCP_VERSION}")
            wheel = next(Path(d).glob("mcp_metatrader5_server-*.whl"))
            run(str(py), "-m", "pip", "install", "-q", f"fastmcp=={FASTMCP_VERSION}", "pandas", "numpy")
            run(str(py), "-m", "pip", "install", "-q", "--ignore-requires-python", "--no-deps", str(wheel))
        if not exe.exists():  # pragma: no cover - the wheel always declares the console script
            raise RuntimeError(f"mt5mcp was installed but {exe} is missing")
        return exe


def mt5mcp_entry(command: str | os.PathLike[str] | None = None, *, account: str = "netting", speed: float = 0.0,
                 now: int | None = None, login: bool = True, terminal: str = TERMINAL_PATH) -> dict[str, Any]:
    """An ``mcpServers`` entry running ``mt5mcp`` over stdio on the simulated terminal.

    ``account``: ``"netting"`` (login 1001) or ``"hedging"`` (1002); ``speed``: simulated minutes
    per wall-clock second (0 = a frozen market); ``now``: the simulated epoch time. Its
    ``on_connect`` calls ``initialize`` and (``login=True``) ``login`` with
    ``password: "${MT5SIM_PASSWORD}"``, read from the environment when connecting; set it to
    :data:`SIM_PASSWORD` (the fixtures do).
    """
    env = {"PYTHONPATH": str(SIM_DIR), "MT5SIM_ACCOUNT": account, "MT5SIM_SPEED": str(speed),
           "PYTHONUNBUFFERED": "1"}
    if now is not None:
        env["MT5SIM_NOW"] = str(int(now))
    calls: list[dict[str, Any]] = [{"tool": "initialize", "arguments": {"path": terminal}}]
    if login:
        calls.append({"tool": "login", "arguments": {"login": SIM_LOGINS[account], "password": "${MT5SIM_PASSWORD}",
                                                     "server": SIM_SERVER}})
    return {"command": str(command or mt5mcp_path()), "args": [], "env": env, "on_connect": calls}


def lab_config(runs_dir: str | os.PathLike[str], broker: dict[str, Any]) -> dict[str, Any]:
    """A ``Lab.start(config=...)`` config: quantlab's own backtest server plus ``broker`` (any MT5-dialect entry).

    >>> cfg = lab_config("/tmp/runs", mt5mcp_entry("/venv/bin/mt5mcp"))
    >>> sorted(cfg["mcpServers"])
    ['backtest', 'broker']
    """
    backtest = {"command": sys.executable, "args": ["-m", "quantlab.servers.backtest", "--runs", str(runs_dir)]}
    return {"mcpServers": {"backtest": backtest, "broker": broker}}
