"""The broker core without MCP: fills, account arithmetic, netting/hedging, pending orders, SL/TP, bad input."""
from __future__ import annotations

import pytest

from quantlab.servers.broker import constants as C
from quantlab.servers.broker.book import Broker, BrokerConfig, TradeError
from quantlab.servers.broker.feed import Feed

BUY, SELL = C.ORDER_TYPE_BUY, C.ORDER_TYPE_SELL


def deal(b: Broker, side: int, volume: float, symbol: str = "EURUSD", **kw):
    return b.order_send({"action": C.TRADE_ACTION_DEAL, "symbol": symbol, "volume": volume, "type": side, **kw})


def counts(b: Broker) -> tuple:
    s = b.store
    return tuple(s.scalar(f"SELECT count(*) FROM {t}") for t in ("orders", "deals", "positions")) + (
        s.scalar("SELECT balance FROM account"),)


def test_constants_are_metatrader5_values():
    assert (C.ORDER_TYPE_BUY, C.ORDER_TYPE_SELL, C.ORDER_TYPE_BUY_LIMIT, C.ORDER_TYPE_SELL_LIMIT,
            C.ORDER_TYPE_BUY_STOP, C.ORDER_TYPE_SELL_STOP) == (0, 1, 2, 3, 4, 5)
    assert (C.TRADE_ACTION_DEAL, C.TRADE_ACTION_PENDING, C.TRADE_ACTION_SLTP, C.TRADE_ACTION_MODIFY,
            C.TRADE_ACTION_REMOVE, C.TRADE_ACTION_CLOSE_BY) == (1, 5, 6, 7, 8, 10)
    assert (C.TRADE_RETCODE_DONE, C.TRADE_RETCODE_INVALID, C.TRADE_RETCODE_INVALID_VOLUME, C.TRADE_RETCODE_INVALID_PRICE,
            C.TRADE_RETCODE_INVALID_STOPS, C.TRADE_RETCODE_MARKET_CLOSED, C.TRADE_RETCODE_NO_MONEY,
            C.TRADE_RETCODE_POSITION_CLOSED) == (10009, 10013, 10014, 10015, 10016, 10018, 10019, 10036)
    assert C.TIMEFRAMES["H1"] == 16385 and C.TIMEFRAMES["D1"] == 16408 and C.parse_timeframe(240) == "H4"


def test_market_orders_fill_at_ask_and_bid(broker):
    q = broker.quote("EURUSD")
    assert q["ask"] == pytest.approx(q["bid"] + 10 * 1e-5)
    r = deal(broker, BUY, 0.1)
    assert r["retcode"] == 10009 and r["price"] == q["ask"] and (r["bid"], r["ask"]) == (q["bid"], q["ask"])
    assert r["deal"] > 0 and r["order"] > 0 and r["volume"] == 0.1 and r["request"]["symbol"] == "EURUSD"
    r = deal(broker, SELL, 0.1)
    assert r["price"] == q["bid"]
    d = broker.history_deals()
    assert [x["entry"] for x in d] == [C.DEAL_ENTRY_IN, C.DEAL_ENTRY_OUT]
    # round trip costs exactly the spread: (bid - ask) * 0.1 * 100000
    assert d[1]["profit"] == pytest.approx(round((q["bid"] - q["ask"]) * 0.1 * 100_000, 2))
    assert broker.account_info()["balance"] == pytest.approx(100_000 + d[1]["profit"])


def test_slippage_and_requote(tmp_path):
    b = Broker.open(str(tmp_path / "s.db"), symbols=["EURUSD"], config=BrokerConfig(slippage=3))
    q = b.quote("EURUSD")
    assert deal(b, BUY, 0.01)["price"] == pytest.approx(q["ask"] + 3e-5)
    assert deal(b, SELL, 0.01)["price"] == pytest.approx(q["bid"] - 3e-5)
    with pytest.raises(TradeError) as e:
        deal(b, BUY, 0.01, price=q["ask"], deviation=2)
    assert e.value.retcode == C.TRADE_RETCODE_REQUOTE
    assert deal(b, BUY, 0.01, price=q["ask"], deviation=5)["retcode"] == 10009


def test_account_arithmetic_by_hand(broker):
    r = deal(broker, BUY, 1.0)
    open_ = r["price"]
    broker.advance(30)
    bid = broker.quote("EURUSD")["bid"]
    acc = broker.account_info()
    profit = round((bid - open_) * 1.0 * 100_000, 2)
    margin = round(1.0 * 100_000 / 100 * open_, 2)
    assert acc["profit"] == pytest.approx(profit)
    assert acc["equity"] == pytest.approx(100_000 + profit)
    assert acc["margin"] == pytest.approx(margin)
    assert acc["margin_free"] == pytest.approx(100_000 + profit - margin)
    assert acc["margin_level"] == pytest.approx((100_000 + profit) / margin * 100, rel=1e-6)
    # USDJPY: profit in JPY converted at the closing price, margin in USD without price
    r = deal(broker, SELL, 0.5, "USDJPY")
    broker.advance(10)
    q = broker.quote("USDJPY")
    pos = broker.positions(symbol="USDJPY")[0]
    assert pos["price_current"] == q["ask"]
    assert pos["profit"] == pytest.approx(round(-(q["ask"] - r["price"]) * 0.5 * 100_000 / q["ask"], 2))
    assert broker.account_info()["margin"] == pytest.approx(margin + 0.5 * 100_000 / 100, abs=0.011)
    # closing realises exactly the floating profit
    before = broker.account_info()
    deal(broker, BUY, 0.5, "USDJPY")
    deal(broker, SELL, 1.0, "EURUSD")
    after = broker.account_info()
    assert after["balance"] == pytest.approx(before["equity"], abs=0.02)
    assert after["margin"] == 0 and after["profit"] == 0 and broker.positions() == []


def test_netting_add_reduce_reverse(broker):
    a = deal(broker, BUY, 0.3)["price"]
    broker.advance(2)
    b = deal(broker, BUY, 0.1)["price"]
    p = broker.positions()
    assert len(p) == 1 and p[0]["volume"] == pytest.approx(0.4)
    assert p[0]["price_open"] == pytest.approx((a * 0.3 + b * 0.1) / 0.4, abs=1e-7)
    avg = p[0]["price_open"]
    broker.advance(2)
    r = deal(broker, SELL, 0.1)
    d = broker.history_deals(ticket=r["deal"])[0]
    assert d["entry"] == C.DEAL_ENTRY_OUT and d["profit"] == pytest.approx(round((r["price"] - avg) * 0.1 * 100_000, 2))
    assert broker.positions()[0]["volume"] == pytest.approx(0.3)
    r = deal(broker, SELL, 0.5)  # reverse: close 0.3, open 0.2 short at the fill price
    d = broker.history_deals(ticket=r["deal"])[0]
    assert d["entry"] == C.DEAL_ENTRY_INOUT
    p = broker.positions()
    assert len(p) == 1 and p[0]["type"] == C.POSITION_TYPE_SELL and p[0]["volume"] == pytest.approx(0.2)
    assert p[0]["price_open"] == r["price"]


def test_hedging_positions_and_close_by(hedging):
    b = hedging
    t1 = deal(b, BUY, 0.2)["order"]
    t2 = deal(b, BUY, 0.1)["order"]
    t3 = deal(b, SELL, 0.1)["order"]
    assert sorted(p["ticket"] for p in b.positions()) == sorted([t1, t2, t3])
    r = deal(b, SELL, 0.1, position=t1)  # partial close of t1
    assert b.positions(ticket=t1)[0]["volume"] == pytest.approx(0.1)
    assert b.history_deals(ticket=r["deal"])[0]["position_id"] == t1
    with pytest.raises(TradeError) as e:
        deal(b, SELL, 0.5, position=t2)
    assert e.value.retcode == C.TRADE_RETCODE_INVALID_CLOSE_VOLUME
    buy_open = b.positions(ticket=t2)[0]["price_open"]
    sell_open = b.positions(ticket=t3)[0]["price_open"]
    bal = b.account_info()["balance"]
    b.order_send({"action": C.TRADE_ACTION_CLOSE_BY, "position": t2, "position_by": t3})
    assert {p["ticket"] for p in b.positions()} == {t1}
    assert b.account_info()["balance"] == pytest.approx(bal + round((sell_open - buy_open) * 0.1 * 100_000, 2))


def test_pending_orders_trigger_on_later_bars(broker):
    q = broker.quote("EURUSD")
    feed = broker.feed
    # find future prices to aim at: the lowest bid and highest bid of the next 200 bars
    base = feed.base("EURUSD", feed.cursor + 200)
    lo_i = feed.cursor + int(base.low[feed.cursor:feed.cursor + 200].argmin())
    limit_px = round(float(base.low[lo_i]) + 10e-5 + 2e-5, 5)  # the ask low reaches it at bar lo_i (or earlier)
    assert limit_px < q["ask"]
    r = broker.order_send({"action": 5, "symbol": "EURUSD", "volume": 0.2, "type": C.ORDER_TYPE_BUY_LIMIT, "price": limit_px})
    assert r["retcode"] == 10009 and r["deal"] == 0
    assert [o["ticket"] for o in broker.orders()] == [r["order"]]
    broker.advance(200)
    assert broker.orders() == []
    ho = broker.history_orders(ticket=r["order"])[0]
    assert ho["state"] == C.ORDER_STATE_FILLED
    d = broker.history_deals(position=r["order"])[0]
    assert d["price"] <= limit_px and d["volume"] == 0.2
    # the fill bar is the first whose ask low reached the limit
    fill_bar = (d["time"] - feed.start) // 60
    sp = 10e-5
    assert base.low[fill_bar] + sp <= limit_px + 1e-9
    assert all(base.low[i] + sp > limit_px for i in range(feed.cursor - 200, fill_bar))


def test_pending_wrong_side_modify_remove(broker):
    q = broker.quote("EURUSD")
    for otype, price in [(C.ORDER_TYPE_BUY_LIMIT, q["ask"] + 0.001), (C.ORDER_TYPE_SELL_LIMIT, q["bid"] - 0.001),
                         (C.ORDER_TYPE_BUY_STOP, q["ask"] - 0.001), (C.ORDER_TYPE_SELL_STOP, q["bid"] + 0.001)]:
        with pytest.raises(TradeError) as e:
            broker.order_send({"action": 5, "symbol": "EURUSD", "volume": 0.1, "type": otype, "price": price})
        assert e.value.retcode == C.TRADE_RETCODE_INVALID_PRICE and "wrong side" in e.value.message
    r = broker.order_send({"action": 5, "symbol": "EURUSD", "volume": 0.1, "type": C.ORDER_TYPE_SELL_STOP,
                           "price": round(q["bid"] - 0.01, 5)})
    broker.order_send({"action": 7, "order": r["order"], "price": round(q["bid"] - 0.02, 5), "sl": round(q["bid"] - 0.01, 5)})
    o = broker.orders()[0]
    assert o["price_open"] == round(q["bid"] - 0.02, 5) and o["sl"] == round(q["bid"] - 0.01, 5)
    broker.order_send({"action": 8, "order": r["order"]})
    assert broker.orders() == [] and broker.history_orders(ticket=r["order"])[0]["state"] == C.ORDER_STATE_CANCELED
    with pytest.raises(TradeError):
        broker.order_send({"action": 8, "order": r["order"]})


def test_take_profit_and_stop_loss_trigger(broker):
    feed = broker.feed
    q = broker.quote("EURUSD")
    r = deal(broker, BUY, 0.1, tp=round(q["bid"] + 0.0005, 5), sl=round(q["bid"] - 0.0005, 5))
    assert broker.positions()[0]["tp"] == round(q["bid"] + 0.0005, 5)
    for _ in range(100):
        broker.advance(20)
        if not broker.positions():
            break
    assert broker.positions() == []
    d = broker.history_deals(position=r["order"])
    assert d[-1]["reason"] in (C.DEAL_REASON_TP, C.DEAL_REASON_SL)
    i = (d[-1]["time"] - feed.start) // 60
    t, o, h, l, c = feed.bar("EURUSD", i)
    if d[-1]["reason"] == C.DEAL_REASON_TP:
        assert h >= q["bid"] + 0.0005 - 1e-9 and d[-1]["price"] == max(round(q["bid"] + 0.0005, 5), o)
    else:
        assert l <= q["bid"] - 0.0005 + 1e-9 and d[-1]["price"] == min(round(q["bid"] - 0.0005, 5), o)
    assert d[-1]["profit"] == pytest.approx(round((d[-1]["price"] - r["price"]) * 0.1 * 100_000, 2))


def test_sltp_modification_and_bad_stops(broker):
    q = broker.quote("EURUSD")
    with pytest.raises(TradeError) as e:
        deal(broker, BUY, 0.1, sl=q["bid"] + 0.001)
    assert e.value.retcode == C.TRADE_RETCODE_INVALID_STOPS
    r = deal(broker, SELL, 0.1)
    with pytest.raises(TradeError) as e:
        broker.order_send({"action": 6, "position": r["order"], "tp": q["ask"] + 0.001})
    assert e.value.retcode == C.TRADE_RETCODE_INVALID_STOPS
    broker.order_send({"action": 6, "position": r["order"], "sl": round(q["ask"] + 0.002, 5)})
    assert broker.positions()[0]["sl"] == round(q["ask"] + 0.002, 5)


@pytest.mark.parametrize("request_, retcode, words", [
    ({"action": 1, "symbol": "NOPE", "volume": 0.1, "type": 0}, 10013, "unknown symbol"),
    ({"action": 1, "symbol": "EURUSD", "volume": -1, "type": 0}, 10014, "below volume_min"),
    ({"action": 1, "symbol": "EURUSD", "volume": 0.015, "type": 0}, 10014, "volume_step"),
    ({"action": 1, "symbol": "EURUSD", "volume": 1000, "type": 0}, 10014, "volume_max"),
    ({"action": 1, "symbol": "EURUSD", "volume": "lots", "type": 0}, 10014, "number of lots"),
    ({"action": 1, "symbol": "EURUSD", "volume": 0.1, "type": 7}, 10013, "market order type"),
    ({"action": 3, "symbol": "EURUSD", "volume": 0.1, "type": 0}, 10013, "not a trade action"),
    ({"action": 1, "symbol": "EURUSD", "volume": 0.1, "type": 0, "group": "x"}, 10013, "unknown request field"),
    ({"action": 1, "symbol": "EURUSD", "volume": 95, "type": 0}, 10019, "not enough money"),
    ({"action": 6, "position": 999, "sl": 1.0}, 10036, "does not exist"),
    ({"action": 8, "order": 999}, 10035, "not an active pending order"),
    ({"action": 5, "symbol": "EURUSD", "volume": 0.1, "type": 6, "price": 1.0}, 10035, "stop-limit"),
    ({"action": 10, "position": 1, "position_by": 2}, 10046, "hedging"),
])
def test_bad_requests_are_rejected_without_writes(broker, request_, retcode, words):
    deal(broker, BUY, 0.1)
    before = counts(broker)
    with pytest.raises(TradeError) as e:
        broker.order_send(request_)
    assert e.value.retcode == retcode and words in str(e.value), str(e.value)
    assert counts(broker) == before
    chk = broker.order_check(request_)
    assert chk["retcode"] == retcode and counts(broker) == before


def test_order_check_reports_margin_without_writing(broker):
    before = counts(broker)
    chk = broker.order_check({"action": 1, "symbol": "EURUSD", "volume": 1.0, "type": 0})
    ask = broker.quote("EURUSD")["ask"]
    assert chk["retcode"] == 0 and chk["margin"] == pytest.approx(round(100_000 / 100 * ask, 2))
    assert counts(broker) == before


def test_feed_is_reproducible_and_never_serves_the_future(tmp_path):
    a = Feed.synthetic(["EURUSD", "XAUUSD"], seed=3, history=500)
    b = Feed.synthetic(["EURUSD", "XAUUSD"], seed=3, history=500)
    c = Feed.synthetic(["EURUSD"], seed=4, history=500)
    assert a.rates("EURUSD", "M1", 500) == b.rates("EURUSD", "M1", 500)
    assert a.rates("EURUSD", "M1", 50) != c.rates("EURUSD", "M1", 50)
    r = a.rates("EURUSD", "M1", 10_000)
    assert len(r["time"]) == 500 and r["time"][-1] == a.now
    h = a.rates("XAUUSD", "M15", 3)
    m = a.rates("XAUUSD", "M1", 500)
    t0 = h["time"][-1]
    block = [i for i, t in enumerate(m["time"]) if t0 <= t < t0 + 900]
    assert len(block) == 15
    assert h["high"][-1] == max(m["high"][i] for i in block) and h["close"][-1] == m["close"][block[-1]]
    assert all(t + 900 <= a.now + 60 for t in h["time"])  # only completed bars


def test_replay_feed_from_csv(tmp_path):
    import numpy as np
    import pandas as pd

    n = 300
    t = pd.date_range("2024-03-01", periods=n, freq="5min", tz="UTC")
    px = 1.2 + np.cumsum(np.random.default_rng(0).normal(0, 1e-4, n))
    pd.DataFrame({"time": t, "open": px, "high": px + 2e-4, "low": px - 2e-4, "close": px}).to_csv(tmp_path / "EURUSD.csv", index=False)
    pd.DataFrame({"time": (t - pd.Timestamp(0, tz="UTC")) // pd.Timedelta(seconds=1), "open": px * 100, "high": px * 100 + 1, "low": px * 100 - 1,
                  "close": px * 100}).to_parquet(tmp_path / "DEMO.parquet")
    b = Broker.open(str(tmp_path / "r.db"), feed=str(tmp_path), history=100)
    assert set(b.feed.specs) == {"EURUSD", "DEMO"} and b.feed.step == 300
    assert b.quote("EURUSD")["bid"] == pytest.approx(round(px[99], 5), abs=1e-9)
    out = b.advance(1000)
    assert out["advanced"] == 200 and out["end_of_data"]
    assert b.feed.rates("DEMO", "M5", 5)["close"][-1] == pytest.approx(round(px[-1] * 100, 3))


def test_stop_out_closes_the_worst_position(tmp_path):
    b = Broker.open(str(tmp_path / "so.db"), symbols=["BTCUSD"], config=BrokerConfig(balance=1_000, leverage=500))
    deal(b, BUY, 2.0, "BTCUSD")
    for _ in range(200):
        b.advance(250)
        if not b.positions():
            break
    assert b.positions() == []
    d = b.history_deals()[-1]
    assert d["reason"] == C.DEAL_REASON_SO and d["comment"].startswith("[so ")
    level = float(d["comment"][4:-2])
    assert level < 30
    acc = b.account_info()
    assert acc["balance"] == pytest.approx(1_000 + d["profit"]) and acc["margin"] == 0 and acc["balance"] < 300


def test_pending_orders_expire(broker):
    q = broker.quote("EURUSD")
    far = round(q["bid"] / 2, 5)
    a = broker.order_send({"action": 5, "symbol": "EURUSD", "volume": 0.1, "type": C.ORDER_TYPE_BUY_LIMIT, "price": far,
                           "type_time": C.ORDER_TIME_SPECIFIED, "expiration": broker.now() + 600})
    d = broker.order_send({"action": 5, "symbol": "EURUSD", "volume": 0.1, "type": C.ORDER_TYPE_BUY_LIMIT, "price": far,
                           "type_time": C.ORDER_TIME_DAY})
    with pytest.raises(TradeError) as e:
        broker.order_send({"action": 5, "symbol": "EURUSD", "volume": 0.1, "type": C.ORDER_TYPE_BUY_LIMIT, "price": far,
                           "type_time": C.ORDER_TIME_SPECIFIED, "expiration": broker.now()})
    assert e.value.retcode == C.TRADE_RETCODE_INVALID_EXPIRATION
    broker.advance(9)
    assert len(broker.orders()) == 2
    broker.advance(2)
    assert [o["ticket"] for o in broker.orders()] == [d["order"]]
    assert broker.history_orders(ticket=a["order"])[0]["state"] == C.ORDER_STATE_EXPIRED
    broker.advance(24 * 60)
    assert broker.orders() == [] and broker.history_orders(ticket=d["order"])[0]["state"] == C.ORDER_STATE_EXPIRED


def test_a_database_from_before_the_runner_still_opens(tmp_path):
    """Deployments, their journal and alerts left the broker for the runner; a file that still has
    those tables (and rows in them) opens, trades and keeps them untouched."""
    import sqlite3

    db = tmp_path / "old.db"
    b = Broker.open(db, symbols=["EURUSD"])
    deal(b, BUY, 0.1, price=b.quote("EURUSD")["ask"])
    b.store.close()
    con = sqlite3.connect(db)
    con.executescript("""
        CREATE TABLE deployments (id INTEGER PRIMARY KEY AUTOINCREMENT, name TEXT, code TEXT, status TEXT);
        CREATE TABLE journal (id INTEGER PRIMARY KEY AUTOINCREMENT, deployment_id INTEGER, kind TEXT, message TEXT);
        CREATE TABLE alerts (id INTEGER PRIMARY KEY AUTOINCREMENT, kind TEXT, threshold REAL, status TEXT);
        INSERT INTO deployments (name, code, status) VALUES ('sma', 'def signals(data): ...', 'running');
        INSERT INTO journal (deployment_id, kind, message) VALUES (1, 'status', 'deployed');
    """)
    con.commit()
    con.close()
    again = Broker.open(db, symbols=["EURUSD"])
    assert [p["volume"] for p in again.positions(symbol="EURUSD")] == [0.1]
    deal(again, SELL, 0.1, price=again.quote("EURUSD")["bid"])
    assert again.positions(symbol="EURUSD") == []
    assert again.store.scalar("SELECT count(*) FROM deployments") == 1  # left as it was
    again.store.close()
    fresh = Broker.open(tmp_path / "new.db", symbols=["EURUSD"])
    tables = {r["name"] for r in fresh.store.q("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert not tables & {"deployments", "journal", "alerts"}
    fresh.store.close()
