"""Interop: the official MCP Inspector CLI (npm @modelcontextprotocol/inspector 2.x) lists and calls the broker's tools.

Needs ``npm ci`` (or ``npm install``) at the repository root. Skipped only when
``node_modules`` is missing AND the ``CI`` environment variable is unset; in CI it must run.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest

from .conftest import ROOT

BIN = ROOT / "node_modules" / ".bin" / "mcp-inspector"

pytestmark = pytest.mark.skipif(
    not BIN.exists() and not os.environ.get("CI"),
    reason="MCP Inspector not installed (run `npm ci` at the repository root); required when CI is set",
)


def inspector(db, *args: str, ok: bool = True) -> dict:
    assert shutil.which("node"), "node is required for the MCP Inspector test"
    assert BIN.exists(), "node_modules/.bin/mcp-inspector missing: run `npm ci` at the repository root"
    cmd = [str(BIN), "--cli", sys.executable, "-m", "quantlab.servers.broker", "--db", str(db), *args]
    out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=90)
    assert (out.returncode == 0) == ok, out.stderr[-2000:] + out.stdout[-2000:]
    return json.loads(out.stdout[out.stdout.index("{"):])


def test_inspector_lists_and_calls_tools(tmp_path):
    db = tmp_path / "insp.db"
    tools = {t["name"]: t for t in inspector(db, "--method", "tools/list")["tools"]}
    assert {"initialize", "get_account_info", "order_send", "copy_rates_from_pos", "advance", "get_clock"} <= set(tools)
    assert tools["order_send"]["inputSchema"]["additionalProperties"] is False
    assert "symbol" in tools["get_symbol_info_tick"]["inputSchema"]["properties"]

    tick = inspector(db, "--method", "tools/call", "--tool-name", "get_symbol_info_tick", "--tool-arg", "symbol=EURUSD")
    assert not tick.get("isError") and tick["structuredContent"]["ask"] > tick["structuredContent"]["bid"]

    sent = inspector(db, "--method", "tools/call", "--tool-name", "order_send",
                     "--tool-arg", 'request={"action": 1, "symbol": "EURUSD", "volume": 0.1, "type": 0, "price": 1.1}')
    assert sent["structuredContent"]["retcode"] == 10009

    bad = inspector(db, "--method", "tools/call", "--tool-name", "order_send",
                    "--tool-arg", 'request={"action": 1, "symbol": "NOPE", "volume": 0.1, "type": 0, "price": 1.1}', ok=False)
    assert bad["isError"] and "10013" in bad["content"][0]["text"]
