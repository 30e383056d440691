"""Fixtures for the runner: a real assets hub with stored strategies, the runner over real stdio
fronting the real paper broker (its own stdio child)."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from quantlab.client import MCPHub
from quantlab.engine import backtest, data
from quantlab.engine.strategy import Strategy
from quantlab.hub import AssetsHub

SMA = '''
def signals(data, fast=5, slow=20):
    f = data.close.rolling(fast).mean()
    s = data.close.rolling(slow).mean()
    return (f > s).astype(float) * 2 - 1
'''

HALF = '''
def signals(data, n=10):
    up = data.close > data.close.rolling(n).mean()
    return up.astype(float) * 0.5
'''

LOOP = '''
def signals(data):
    while True:
        pass
'''

BOOM = '''
def signals(data):
    if len(data) > 0:
        raise RuntimeError("my custom boom")
    return data.close * 0
'''


def store(hub: AssetsHub, code: str, name: str):
    s = Strategy.from_code(code, name=name)
    if name in ("loop", "boom"):  # never run these here: stored without a backtest
        return hub.store(s)
    return hub.store(s, backtest(data.synthetic(bars=300, seed=3), s))


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    path = tmp_path_factory.mktemp("runner") / "assets-hub"
    h = AssetsHub(path)
    h.stored = {name: store(h, code, name) for name, code in
                (("sma", SMA), ("half", HALF), ("loop", LOOP), ("boom", BOOM))}
    yield h
    h.close()


def broker_entry(db: Path, *extra: str) -> dict:
    return {"command": sys.executable, "args": ["-m", "quantlab.servers.broker", "--db", str(db), *extra]}


def runner_config(tmp: Path, hub: AssetsHub, *broker_args: str, runner_args: tuple = ()) -> dict:
    entry = broker_entry(tmp / "broker.db", *broker_args)
    return {"runner": {"command": sys.executable, "args": [
        "-m", "quantlab.servers.runner", "--db", str(tmp / "runner.db"), "--hub", str(hub.path),
        "--broker", json.dumps(entry), *runner_args]}}


@pytest.fixture
def runner(tmp_path, hub):
    """A connected MCPHub whose server ``runner`` is the runner over stdio (paper broker, netting, stepped)."""
    with MCPHub.from_config(runner_config(tmp_path, hub), connect_timeout=60) as mcp:
        mcp.tmp = tmp_path
        yield mcp


def own_lots(mcp, magic: int, symbol: str = "EURUSD") -> float:
    rows = mcp.call("runner", "positions_get", {"symbol": symbol}) or []
    return round(sum(p["volume"] * (1 if p["type"] == 0 else -1) for p in rows if p["magic"] == magic), 8)


from quantlab.testing.pytest_mt5 import mt5mcp, mt5mcp_config, mt5mcp_entry  # noqa: E402,F401 - fixtures
