"""quantlab against the real public MT5 MCP server's own code (mt5mcp 0.1.8 on fastmcp 3.4.2, in its own venv)
running on our simulated MetaTrader5 terminal, over real stdio; and our paper broker answering the same calls
in the same shapes."""
from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

import pytest

from quantlab.client import ArgumentsError, ConnectError, MCPHub, ToolError
from quantlab.testing import mt5 as sim

HERE = Path(__file__).parent


def _iso(t: int) -> str:
    return datetime.fromtimestamp(t, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def test_client_against_real_mt5mcp_initialize_unwrap_and_lists(mt5mcp_entry):
    with MCPHub.from_config({"mt5": mt5mcp_entry(account="netting")}) as hub:
        assert hub.call("mt5", "get_symbols") == ["EURUSD", "USDJPY", "XAUUSD"]  # on_connect initialized it
        assert hub.call("mt5", "get_account_info")["margin_mode"] == 0 and hub.call("mt5", "get_account_info")["login"] == 1001
        assert hub.call("mt5", "positions_get") == []  # a list, not {"result": []}
        assert hub.call("mt5", "positions_get_by_ticket", {"ticket": 42}) is None
        tick = hub.call("mt5", "get_symbol_info_tick", {"symbol": "EURUSD"})
        sent = hub.call("mt5", "order_send", {"request": {"action": 1, "symbol": "EURUSD", "volume": 0.1, "type": 0,
                                                          "price": tick["ask"], "deviation": 10, "magic": 7}})
        assert sent["retcode"] == 10009 and sent["request"]["type_filling"] == 1  # mt5mcp chose IOC
        pos = hub.call("mt5", "positions_get")
        assert isinstance(pos, list) and [(p["magic"], p["volume"]) for p in pos] == [(7, 0.1)]
        assert hub.call("mt5", "initialize", {"path": "/not/a/terminal"}) is False  # failed initialize is falsy
        assert hub.call("mt5", "symbol_select", {"symbol": "NOPE"}) is False
        with pytest.raises(ToolError, match="'retcode': 10004"):  # a requote: the price is too far from the market
            hub.call("mt5", "order_send", {"request": {"action": 1, "symbol": "EURUSD", "volume": 0.1, "type": 0,
                                                       "price": tick["ask"] + 0.01, "deviation": 5}})
        with pytest.raises(ToolError, match="price"):
            hub.call("mt5", "order_send", {"request": {"action": 1, "symbol": "EURUSD", "volume": 0.1, "type": 0}})


def test_mt5mcp_hedging_account_closes_by_position(mt5mcp_entry):
    with MCPHub.from_config({"mt5": mt5mcp_entry(account="hedging")}) as hub:
        assert hub.call("mt5", "get_account_info")["margin_mode"] == 2
        tick = hub.call("mt5", "get_symbol_info_tick", {"symbol": "XAUUSD"})
        buy = {"action": 1, "symbol": "XAUUSD", "volume": 0.1, "type": 0, "price": tick["ask"]}
        a = hub.call("mt5", "order_send", {"request": buy})
        hub.call("mt5", "order_send", {"request": buy})
        assert len(hub.call("mt5", "positions_get", {"symbol": "XAUUSD"})) == 2  # hedging: one position per deal
        hub.call("mt5", "order_send", {"request": {"action": 1, "symbol": "XAUUSD", "volume": 0.1, "type": 1,
                                                   "price": tick["bid"], "position": a["order"]}})
        left = hub.call("mt5", "positions_get")
        assert len(left) == 1 and left[0]["ticket"] != a["order"]
        deals = hub.call("mt5", "history_deals_get", {"position": a["order"]})
        assert [d["entry"] for d in deals] == [0, 1]


def test_on_connect_login_failure_and_secret_never_shown(mt5mcp_entry, monkeypatch):
    entry = mt5mcp_entry(account="netting")
    monkeypatch.setenv("MT5SIM_PASSWORD", "wrong-secret-123")
    with MCPHub.from_config({"mt5": entry}, max_retries=0) as hub:
        with pytest.raises(ConnectError) as info:
            hub.call("mt5", "get_symbols")
        assert "on_connect step 2 of 2 ('login')" in str(info.value) and "answered False" in str(info.value)
        assert "wrong-secret-123" not in str(info.value) + repr(hub) + json.dumps(hub.state()) + repr(hub.config)


def _same_shape(a, b, path="result"):
    """Same JSON types and the same keys all the way down (values may differ: two markets)."""
    if isinstance(a, dict):
        assert isinstance(b, dict) and set(a) == set(b), f"{path}: keys {sorted(set(a) ^ set(b))} differ"
        for k in a:
            _same_shape(a[k], b[k], f"{path}.{k}")
    elif isinstance(a, list):
        assert isinstance(b, list), path
        if a and b:
            _same_shape(a[0], b[0], f"{path}[0]")
    elif isinstance(a, bool) or a is None:
        assert a is b or type(a) is type(b), f"{path}: {a!r} vs {b!r}"
    elif isinstance(a, (int, float)):
        assert isinstance(b, (int, float)) and not isinstance(b, bool), f"{path}: {a!r} vs {b!r}"
    else:
        assert type(a) is type(b), f"{path}: {type(a).__name__} vs {type(b).__name__}"


def test_paper_broker_and_mt5mcp_answer_the_same_calls_in_the_same_shapes(mt5mcp_entry, paper_entry):
    cfg = {"mt5": mt5mcp_entry(account="netting"), "paper": paper_entry("--symbols", "EURUSD,USDJPY,XAUUSD")}
    with MCPHub.from_config(cfg) as hub:
        answers: dict[str, dict] = {"mt5": {}, "paper": {}}
        for server in ("mt5", "paper"):
            def call(tool, args=None):
                key = f"{len(answers[server]):02d} {tool}"
                answers[server][key] = hub.call(server, tool, args or {})
                return answers[server][key]

            assert call("initialize", {"path": sim.TERMINAL_PATH}) is True
            call("get_account_info")
            call("get_symbol_info", {"symbol": "EURUSD"})
            tick = call("get_symbol_info_tick", {"symbol": "EURUSD"})
            call("get_symbols_by_group", {"group": "XAU*"})
            assert call("positions_get") == [] and call("orders_get") == []
            assert call("positions_get_by_ticket", {"ticket": 1}) is None and call("orders_get_by_ticket", {"ticket": 1}) is None
            bars = call("copy_rates_from_pos", {"symbol": "EURUSD", "timeframe": 1, "start_pos": 0, "count": 3})
            assert len(bars) == 3 and bars[-1]["time"].endswith("Z")
            assert bars[-1]["close"] == tick["bid"]  # bar 0 is the forming bar, at the current price
            h1 = call("copy_rates_from_pos", {"symbol": "EURUSD", "timeframe": 60, "start_pos": 1, "count": 2})
            assert len(h1) == 2 and all(b["time"].endswith(":00:00Z") for b in h1)
            call("copy_rates_range", {"symbol": "EURUSD", "timeframe": 1, "date_from": _iso(tick["time"] - 300),
                                      "date_to": _iso(tick["time"])})
            call("copy_ticks_from_pos", {"symbol": "EURUSD", "start_time": _iso(tick["time"] - 300), "count": 3})
            sent = call("order_send", {"request": {"action": 1, "symbol": "EURUSD", "volume": 0.1, "type": 0,
                                                   "price": tick["ask"], "deviation": 20, "magic": 11, "comment": "q"}})
            assert sent["retcode"] == 10009
            call("order_check", {"request": {"action": 1, "symbol": "EURUSD", "volume": 0.1, "type": 1, "price": tick["bid"]}})
            assert len(call("positions_get")) == 1
            call("positions_get_by_ticket", {"ticket": sent["order"]})
            call("history_deals_get", {"symbol": "EURUSD"})
            call("history_orders_get", {"symbol": "EURUSD"})
            call("get_last_error")
            with pytest.raises(ToolError, match="price"):  # the server refuses a deal without price
                hub.call(server, "order_send", {"request": {"action": 1, "symbol": "EURUSD", "volume": 0.1, "type": 0}})
            with pytest.raises(ArgumentsError, match="argument"):  # flat fields: additionalProperties false, request required
                hub.call(server, "order_send", {"action": 1, "symbol": "EURUSD", "volume": 0.1, "type": 0, "price": 1.0})
            with pytest.raises(ToolError, match="'retcode': 10014"):
                hub.call(server, "order_send", {"request": {"action": 1, "symbol": "EURUSD", "volume": 0.015, "type": 0,
                                                            "price": tick["ask"]}})
        assert list(answers["mt5"]) == list(answers["paper"])
        for key in answers["mt5"]:
            if key.endswith(("get_terminal_info", "order_check")):
                continue  # free-form dicts
            _same_shape(answers["mt5"][key], answers["paper"][key], key)


def test_lab_config_for_mt5mcp_connects_backtest_and_broker(mt5mcp_config):
    cfg = mt5mcp_config(account="hedging")
    assert cfg["mcpServers"]["broker"]["on_connect"][1]["arguments"]["password"] == "${MT5SIM_PASSWORD}"
    with MCPHub.from_config(cfg) as hub:
        report = hub.connect_all()
        assert report.failed == [], report
        assert hub.call("broker", "get_account_info")["login"] == sim.SIM_LOGINS["hedging"]


def test_mt5mcp_live_schemas_are_the_reference(mt5mcp_entry):
    """The reference our broker is checked against is what this mt5mcp really lists (tool names and input schemas)."""
    from quantlab.testing.schemas import tool_shape

    reference = json.loads((Path(__file__).parents[1] / "broker" / "mcp_mt5_tools.json").read_text())
    with MCPHub.from_config({"mt5": mt5mcp_entry()}) as hub:
        tools = {t["name"]: t for t in hub.tools("mt5")}
    assert set(tools) == set(reference)
    for name, ref in reference.items():
        assert tool_shape(tools[name]["input_schema"], None)["input"] == tool_shape(ref["input"], None)["input"], name


def test_lab_starts_a_runner_on_mt5mcp_with_the_password_from_the_environment_only(mt5mcp_config, tmp_path):
    """Lab.start(config=...) with mt5mcp as the broker: the embedded runner logs in through on_connect with
    ${MT5SIM_PASSWORD} handed down by inherit_env; the value is in no config, state or repr."""
    from quantlab import Lab

    lab = Lab.start(tmp_path / "hub", config=mt5mcp_config(account="hedging"), progress=False)
    try:
        report = lab.mcp.connect_all()
        assert report.failed == [], report
        entries = lab.mcp.config["mcpServers"]
        shown = json.dumps(lab.mcp.config) + repr(lab.mcp) + json.dumps(lab.mcp.state(), default=str) + repr(lab)
        assert sim.SIM_PASSWORD not in shown
        assert entries["broker"]["inherit_env"] == ["MT5SIM_PASSWORD"] and "env" not in entries["broker"]
    finally:
        lab.close()
