"""The broker over real MCP transports: stdio and token-protected HTTP, SIGKILL + restart, two clients, the CLI."""
from __future__ import annotations

import contextlib

import json
import subprocess
import sys

import httpx2
import pytest

from quantlab.servers.broker.book import Broker

from .conftest import ROOT, ToolFailed, call, run, stdio_params

MT5_TOOLS = {
    "initialize", "login", "shutdown", "get_account_info", "get_terminal_info", "get_version", "get_last_error",
    "get_symbols", "get_symbols_by_group", "get_symbol_info", "get_symbol_info_tick", "symbol_select",
    "copy_rates_from_pos", "copy_rates_from_date", "copy_rates_range", "copy_ticks_from_pos", "copy_ticks_from_date",
    "copy_ticks_range", "order_send", "order_check", "positions_get", "positions_get_by_ticket", "orders_get",
    "orders_get_by_ticket", "history_orders_get", "history_deals_get",
}
OUR_TOOLS = {"advance", "get_clock"}  # deployments live in the runner (tests/runner)


def _epoch(iso: str) -> int:
    from datetime import datetime

    return int(datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp())


def test_stdio_mt5_dialect_and_errors(tmp_path):
    from mcp import Client

    async def main():
        async with Client(stdio_params(tmp_path / "s.db", "--symbols", "EURUSD,XAUUSD")) as c:
            tools = {t.name: t for t in (await c.list_tools()).tools}
            assert MT5_TOOLS | OUR_TOOLS == set(tools)
            assert tools["order_send"].description.startswith("Send an order")
            assert tools["order_send"].input_schema["required"] == ["request"]
            uris = {str(r.uri) for r in (await c.list_resources()).resources}
            assert {"mt5://timeframes", "mt5://order_types", "mt5://order_filling_types", "mt5://trade_actions"} <= uris
            acts = json.loads((await c.read_resource("mt5://trade_actions")).contents[0].text)["values"]
            assert acts["TRADE_ACTION_DEAL"] == 1 and acts["TRADE_ACTION_SLTP"] == 6
            assert await call(c, "initialize", {"path": "C:/paper/terminal64.exe"}) is True
            login = (await call(c, "get_account_info"))["login"]
            assert await call(c, "login", {"login": login, "password": "x", "server": "quantlab-paper"}) is True
            assert await call(c, "login", {"login": login + 1, "password": "x", "server": "quantlab-paper"}) is False
            assert (await call(c, "get_last_error"))["code"] == -6
            assert await call(c, "get_symbols") == ["EURUSD", "XAUUSD"]
            assert await call(c, "get_symbols_by_group", {"group": "XAU*"}) == ["XAUUSD"]
            assert await call(c, "get_symbols_by_group", {"group": "NOPE*"}) == []
            assert await call(c, "symbol_select", {"symbol": "XAUUSD"}) is True
            assert await call(c, "symbol_select", {"symbol": "NOPE"}) is False
            info = await call(c, "get_symbol_info", {"symbol": "XAUUSD"})
            assert (info["digits"], info["contract_size"], info["volume_step"]) == (2, 100.0, 0.01)
            assert "trade_contract_size" not in info and "currency_base" not in info  # only the real model's fields
            tick = await call(c, "get_symbol_info_tick", {"symbol": "EURUSD"})
            r = await call(c, "order_send", {"request": {"action": 1, "symbol": "EURUSD", "volume": 0.1, "type": 0,
                                                         "price": tick["ask"], "deviation": 10}})
            assert r["retcode"] == 10009 and r["price"] == tick["ask"]
            chk = await call(c, "order_check", {"request": {"action": 1, "symbol": "EURUSD", "volume": 0.1, "type": 1,
                                                            "price": tick["bid"]}})
            assert chk["retcode"] == 0
            pos = await call(c, "positions_get")
            assert len(pos) == 1 and pos[0]["ticket"] == r["order"] and "margin" not in pos[0]
            assert await call(c, "positions_get", {"symbol": "XAUUSD"}) == []
            assert (await call(c, "positions_get_by_ticket", {"ticket": r["order"]}))["volume"] == 0.1
            assert await call(c, "positions_get_by_ticket", {"ticket": 999}) is None
            assert await call(c, "orders_get_by_ticket", {"ticket": 999}) is None
            assert len(await call(c, "history_deals_get", {"symbol": "EURUSD"})) == 1
            assert await call(c, "history_deals_get", {"ticket": 1}) == []
            # rates: ISO-8601 Z times, bar 0 is the forming bar (flat at the current price on M1), never the future
            bars = await call(c, "copy_rates_from_pos", {"symbol": "EURUSD", "timeframe": 1, "start_pos": 0, "count": 5})
            assert set(bars[0]) == {"time", "open", "high", "low", "close", "tick_volume", "spread", "real_volume"}
            assert all(b["time"].endswith("Z") for b in bars)
            forming = bars[-1]
            assert _epoch(forming["time"]) == tick["time"] + 60 and forming["close"] == tick["bid"]
            assert _epoch(bars[-2]["time"]) == tick["time"]  # the last completed bar
            done = await call(c, "copy_rates_from_pos", {"symbol": "EURUSD", "timeframe": 1, "start_pos": 1, "count": 4})
            assert done == bars[:-1]
            h1 = await call(c, "copy_rates_from_pos", {"symbol": "EURUSD", "timeframe": 60, "start_pos": 0, "count": 4})
            assert [_epoch(b["time"]) % 3600 for b in h1] == [0, 0, 0, 0] and h1[-1]["close"] == tick["bid"]
            assert _epoch(h1[-1]["time"]) <= tick["time"] < _epoch(h1[-1]["time"]) + 3600  # the hour now forming
            frm_iso = lambda t: __import__("datetime").datetime.fromtimestamp(t, __import__("datetime").timezone.utc).isoformat()
            rng = await call(c, "copy_rates_range", {"symbol": "EURUSD", "timeframe": 1, "date_from": frm_iso(tick["time"] - 600),
                                                     "date_to": frm_iso(tick["time"] + 86_400)})
            assert len(rng) == 12 and rng[-1] == forming
            frm = await call(c, "copy_rates_from_date", {"symbol": "EURUSD", "timeframe": 1,
                                                         "date_from": "2024-01-01T00:09:30", "count": 3})
            assert [_epoch(b["time"]) for b in frm] == [1704067200 + 60 * k for k in (7, 8, 9)]
            ticks = await call(c, "copy_ticks_from_pos", {"symbol": "EURUSD", "start_time": "2024-01-01T00:00:00Z", "count": 3})
            assert [t["time"] for t in ticks] == ["2024-01-01T00:00:00Z", "2024-01-01T00:01:00Z", "2024-01-01T00:02:00Z"]
            assert ticks[0]["time_msc"] == "2024-01-01T00:00:00.000Z" and ticks[0]["ask"] > ticks[0]["bid"]
            # bad input -> tool errors (parameter errors name the field; trade rejections carry 'retcode': N)
            deal = {"action": 1, "symbol": "EURUSD", "volume": 0.1, "type": 0, "price": tick["ask"]}
            bad = [
                ("order_send", {"request": {**deal, "symbol": "NOPE"}}, "'retcode': 10013"),
                ("order_send", {"request": {**deal, "volume": -0.1}}, "volume must be > 0"),
                ("order_send", {"request": {**deal, "volume": 0.123}}, "'retcode': 10014"),
                ("order_send", {"request": {"action": 1, "symbol": "EURUSD", "volume": 0.1, "type": 0}}, "require: price"),
                ("order_send", {"request": {"action": 5, "symbol": "EURUSD", "volume": 0.1, "type": 2, "price": 9.0}}, "10015"),
                ("order_send", {"request": {"action": 6, "position": 123, "sl": 1.0}}, "10036"),
                ("order_send", {"request": {**deal, "magic": 2**70}}, "request.magic"),
                ("order_send", {"request": {**deal, "position": -(2**64)}}, "request.position"),
                ("order_send", {"request": {**deal, "comment": "a\x00b"}}, "NUL"),
                ("order_send", {"request": "buy please"}, "request"),
                ("order_send", {}, "request"),
                ("order_send", {"request": deal, "symbol": "EURUSD"}, "unexpected argument(s) ['symbol']"),
                ("copy_rates_from_pos", {"symbol": "EURUSD", "timeframe": 1, "start_pos": 0, "count": 10**7}, "cap"),
                ("copy_rates_from_pos", {"symbol": "EURUSD", "timeframe": 16385, "start_pos": 0, "count": 5}, "Unsupported timeframe"),
                ("get_symbol_info", {"symbol": "NOPE"}, "unknown symbol"),
                ("advance", {"bars": -5}, "bars"),
            ]
            for name, args, words in bad:
                with pytest.raises(ToolFailed) as e:
                    await call(c, name, args)
                assert words in str(e.value), (name, str(e.value))
            assert len(await call(c, "positions_get")) == 1
            assert len(await call(c, "history_orders_get")) == 1
            assert (await call(c, "get_account_info"))["margin"] > 0
            # shutdown closes the terminal for this session until initialize
            assert await call(c, "shutdown") is True
            with pytest.raises(ToolFailed, match="No IPC connection"):
                await call(c, "positions_get")
            assert await call(c, "initialize", {"path": "x"}) is True
            assert len(await call(c, "positions_get")) == 1

    run(main())


def test_http_token_two_clients_sigkill_and_restart(tmp_path, http_broker):
    """Trade over HTTP, a second client sees and closes a position; SIGKILL; restart on the same db: nothing lost."""
    db = tmp_path / "k.db"
    srv = http_broker(db, "--symbols", "EURUSD,USDJPY")

    def deal(symbol: str, side: int, volume: float, price: float, **extra) -> dict:
        return {"request": {"action": 1, "symbol": symbol, "volume": volume, "type": side, "price": price,
                            "deviation": 20, "magic": 7, **extra}}

    async def phase1():
        async with httpx2.AsyncClient() as h:  # no token -> 401, wrong token -> 401
            assert (await h.post(srv.url, json={})).status_code == 401
            assert (await h.post(srv.url, json={}, headers={"Authorization": "Bearer wrong"})).status_code == 401
        async with srv.client() as a, srv.client() as b:
            e = await call(a, "get_symbol_info_tick", {"symbol": "EURUSD"})
            j = await call(a, "get_symbol_info_tick", {"symbol": "USDJPY"})
            await call(a, "order_send", deal("EURUSD", 0, 0.2, e["ask"]))
            await call(a, "order_send", deal("USDJPY", 1, 0.1, j["bid"]))
            seen = await call(b, "positions_get")
            assert {x["symbol"] for x in seen} == {"EURUSD", "USDJPY"}
            await call(b, "advance", {"bars": 100})
            jpy = [x for x in seen if x["symbol"] == "USDJPY"][0]
            j = await call(b, "get_symbol_info_tick", {"symbol": "USDJPY"})
            await call(b, "order_send", deal("USDJPY", 0, 0.1, j["ask"], position=jpy["ticket"]))
            assert [x["symbol"] for x in await call(a, "positions_get")] == ["EURUSD"]
            p = await call(a, "order_send", {"request": {"action": 5, "symbol": "EURUSD", "volume": 0.1, "type": 2,
                                                         "price": 1.0}})
            snap = {
                "account": await call(a, "get_account_info"), "positions": await call(a, "positions_get"),
                "orders": await call(a, "orders_get"), "deals": await call(a, "history_deals_get"),
                "clock": await call(a, "get_clock"),
            }
            return p, snap

    pending, snap = run(phase1())
    srv.kill()  # SIGKILL: no chance to flush anything
    srv2 = http_broker(db, "--symbols", "EURUSD,USDJPY")

    async def phase2():
        async with srv2.client() as c:
            assert await call(c, "get_account_info") == snap["account"]
            assert await call(c, "positions_get") == snap["positions"]
            assert await call(c, "orders_get") == snap["orders"] and snap["orders"][0]["ticket"] == pending["order"]
            assert await call(c, "history_deals_get") == snap["deals"]
            clk = await call(c, "get_clock")
            assert (clk["cursor"], clk["time"]) == (snap["clock"]["cursor"], snap["clock"]["time"])
            await call(c, "advance", {"bars": 60})  # the market resumes where it was
            return await call(c, "positions_get"), await call(c, "history_deals_get")

    positions, deals = run(phase2())
    # the killed-and-restarted run equals an uninterrupted in-process run of the same steps
    ref = Broker.open(str(tmp_path / "ref.db"), symbols=["EURUSD", "USDJPY"])
    ref.order_send(deal("EURUSD", 0, 0.2, ref.quote("EURUSD")["ask"])["request"])
    ref.order_send(deal("USDJPY", 1, 0.1, ref.quote("USDJPY")["bid"])["request"])
    ref.advance(100)
    t = [x for x in ref.positions() if x["symbol"] == "USDJPY"][0]["ticket"]
    ref.order_send(deal("USDJPY", 0, 0.1, ref.quote("USDJPY")["ask"], position=t)["request"])
    ref.order_send({"action": 5, "symbol": "EURUSD", "volume": 0.1, "type": 2, "price": 1.0})
    ref.advance(60)
    key = lambda rows: [(r["ticket"], r["time"], r["type"], r["volume"], r["price"], r["profit"], r["magic"]) for r in rows]  # noqa: E731
    assert key(ref.history_deals()) == key(deals)
    assert [(p["ticket"], p["volume"], p["profit"]) for p in ref.positions()] == [(p["ticket"], p["volume"], p["profit"]) for p in positions]


def test_accelerated_clock_moves_by_itself(tmp_path):
    from mcp import Client

    async def main():
        import asyncio

        async with Client(stdio_params(tmp_path / "a.db", "--symbols", "EURUSD", "--clock", "accelerated:200")) as c:
            import time

            t0 = time.monotonic()
            c0 = (await call(c, "get_clock"))["cursor"]
            t1 = time.monotonic()
            await asyncio.sleep(1.0)
            t2 = time.monotonic()
            clk = await call(c, "get_clock")
            t3 = time.monotonic()
            moved = clk["cursor"] - c0
            # 200 bars/s by wall time: never ahead of it (plus one 0.1 s tick), at most half behind on a busy machine
            assert clk["mode"] == "accelerated" and 100 * (t2 - t1) - 45 <= moved <= 200 * (t3 - t0) + 45, (moved, t3 - t0)

    run(main())


def test_cli_start_status_stop(tmp_path):
    home = tmp_path / "home"
    q = [sys.executable, "-m", "quantlab", "broker"]
    try:
        out = subprocess.run([*q, "start", "--home", str(home), "--json", "--symbols", "EURUSD"], cwd=ROOT,
                             capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        st = json.loads(out.stdout)
        assert st["running"] and st["url"].startswith("http://127.0.0.1:") and (home / "broker.token").is_file()
        assert oct((home / "broker.token").stat().st_mode & 0o777) == "0o600"
        again = json.loads(subprocess.run([*q, "start", "--home", str(home), "--json"], cwd=ROOT, capture_output=True,
                                          text=True, timeout=60).stdout)
        assert again["already_running"] and again["pid"] == st["pid"]
        s = subprocess.run([*q, "status", "--home", str(home)], cwd=ROOT, capture_output=True, text=True, timeout=30)
        assert s.returncode == 0 and "broker running" in s.stdout and "balance 100,000.00 USD" in s.stdout

        async def use():
            from mcp import Client
            from mcp.client.streamable_http import streamable_http_client

            tok = (home / "broker.token").read_text().strip()
            async with httpx2.AsyncClient(headers={"Authorization": f"Bearer {tok}"}) as h:
                async with Client(streamable_http_client(st["url"], http_client=h)) as c:
                    return await call(c, "get_symbols")

        assert run(use()) == ["EURUSD"]
    finally:
        stop = subprocess.run([*q, "stop", "--home", str(home)], cwd=ROOT, capture_output=True, text=True, timeout=30)
    assert stop.returncode == 0 and "stopped" in stop.stdout
    s = subprocess.run([*q, "status", "--home", str(home)], cwd=ROOT, capture_output=True, text=True, timeout=30)
    assert s.returncode == 3 and "not running" in s.stdout


def test_sigkill_while_the_clock_runs_leaves_consistent_state(tmp_path, http_broker):
    """Kill the server mid-flight (accelerated clock, stops and pending orders filling): the db holds whole transactions only."""
    import time

    db = tmp_path / "busy.db"
    srv = http_broker(db, "--symbols", "EURUSD,XAUUSD", "--clock", "accelerated:3000")

    async def trade():
        async with srv.client() as c:
            for sym in ("EURUSD", "XAUUSD"):
                info = await call(c, "get_symbol_info", {"symbol": sym})
                pt = info["point"]
                for k in range(1, 8):
                    q = await call(c, "get_symbol_info_tick", {"symbol": sym})
                    with contextlib.suppress(ToolFailed):  # the market runs at 3000 bars/s: a stale quote may be refused
                      await call(c, "order_send", {"request": {
                        "action": 1, "symbol": sym, "volume": 0.1, "type": k % 2, "deviation": 10**6, "magic": k,
                        "price": q["ask"] if k % 2 == 0 else q["bid"],
                        "sl": (q["bid"] - 300 * k * pt) if k % 2 == 0 else (q["ask"] + 300 * k * pt),
                        "tp": (q["bid"] + 300 * k * pt) if k % 2 == 0 else (q["ask"] - 300 * k * pt)}})

    run(trade())
    time.sleep(1.5)
    srv.kill()
    b = Broker.open(str(db))
    st = b.store
    deals = b.history_deals(limit=10**6)
    assert len(deals) > 4
    assert st.scalar("SELECT balance FROM account") == pytest.approx(
        100_000 + sum(d["profit"] + d["commission"] for d in deals), abs=0.01 * len(deals))
    for sym in ("EURUSD", "XAUUSD"):
        mine = [d for d in deals if d["symbol"] == sym]
        net = sum(p["volume"] * (1 if p["type"] == 0 else -1) for p in b.positions(symbol=sym))
        assert net == pytest.approx(sum(d["volume"] * (1 if d["type"] == 0 else -1) for d in mine))
    # and it carries on from there
    cursor = b.feed.cursor
    b.advance(30)
    assert b.feed.cursor == cursor + 30


def test_one_broker_per_database(tmp_path, http_broker):
    db = tmp_path / "one.db"
    http_broker(db)
    second = subprocess.run([sys.executable, "-m", "quantlab.servers.broker", "--db", str(db)], cwd=ROOT,
                            stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60)
    assert second.returncode == 2 and "already serving" in second.stderr
