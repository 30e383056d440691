"""The paper broker speaks the public MT5 MCP server's dialect: its live tool schemas, read over real stdio,
match ``mcp-metatrader5-server`` 0.1.8's (``/work/shared/mt5-reference/mcp_mt5_tools.json``) tool by tool:
names, argument names and types, required lists, ``additionalProperties``, result fields and wrapping."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from mcp import Client

from .conftest import call, run, stdio_params
from quantlab.testing.schemas import tool_shape

from .conftest import ROOT

# ../shared/mt5-reference beside the clone (as CI has it), else the copy kept with the tests
REFERENCE = next(p for p in (Path(os.environ.get("QUANTLAB_MT5_REFERENCE", ROOT.parent / "shared" / "mt5-reference"))
                             / "mcp_mt5_tools.json", Path(__file__).with_name("mcp_mt5_tools.json")) if p.is_file())
PAPER_ONLY = {"advance", "get_clock"}


def _live_tools(tmp_path) -> dict:
    async def main():
        async with Client(stdio_params(tmp_path / "c.db", "--symbols", "EURUSD")) as c:
            return {t.name: t for t in (await c.list_tools()).tools}

    return run(main())


def test_broker_schemas_match_the_public_mt5_server(tmp_path):
    reference = json.loads(REFERENCE.read_text())
    live = _live_tools(tmp_path)
    missing = sorted(set(reference) - set(live))
    extra = sorted(set(live) - set(reference) - PAPER_ONLY)
    assert not missing and not extra, f"missing MT5 tools {missing}; tools that are neither MT5 nor paper extras {extra}"
    drift = {}
    for name, ref in reference.items():
        want = tool_shape(ref["input"], ref["output"])
        got = tool_shape(live[name].input_schema, live[name].output_schema)
        if got != want:
            drift[name] = {k: {"reference": want[k], "broker": got[k]} for k in want if want[k] != got[k]}
    assert not drift, "schema drift from the public MT5 server:\n" + json.dumps(drift, indent=1)[:6000]


def test_schema_shape_sees_a_drift():
    """The comparison is not vacuous: a renamed argument, a changed type or a lost wrap mark all show."""
    ref = json.loads(REFERENCE.read_text())["copy_rates_from_pos"]
    base = tool_shape(ref["input"], ref["output"])
    renamed = json.loads(json.dumps(ref["input"]).replace('"start_pos"', '"pos"'))
    retyped = json.loads(json.dumps(ref["input"]).replace('"integer"', '"number"'))
    unwrapped = {k: v for k, v in ref["output"].items() if k != "x-fastmcp-wrap-result"}
    assert tool_shape(renamed, ref["output"]) != base
    assert tool_shape(retyped, ref["output"]) != base
    assert tool_shape(ref["input"], unwrapped) != base


def test_unknown_arguments_and_flat_order_fields_are_refused(tmp_path):
    async def main():
        async with Client(stdio_params(tmp_path / "u.db", "--symbols", "EURUSD")) as c:
            flat = await c.call_tool("order_send", {"action": 1, "symbol": "EURUSD", "volume": 0.1, "type": 0, "price": 1.1})
            typo = await c.call_tool("positions_get", {"symbl": "EURUSD"})
            return flat, typo

    flat, typo = run(main())
    assert flat.is_error and 'inside {"request": {...}}' in flat.content[0].text
    assert typo.is_error and "'symbl'" in typo.content[0].text
