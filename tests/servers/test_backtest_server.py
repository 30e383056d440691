"""The backtest MCP server over real stdio (and one HTTP test): tools, errors, persistence."""
from __future__ import annotations

import base64
import math
import subprocess
import sys

import pandas as pd
import pytest

from quantlab.engine import data as qdata
from quantlab.engine.backtest import BacktestResult, backtest
from quantlab.engine.strategy import Strategy

from .conftest import SMA_CODE, MCPSession, free_port, server_params, wait_for_port

pytestmark = pytest.mark.timeout(180)


def enc(v):
    """A metric value as the server sends it (non-finite floats as strings)."""
    if isinstance(v, float) and not math.isfinite(v):
        return "nan" if math.isnan(v) else ("inf" if v > 0 else "-inf")
    return v


def inprocess(ref: str, code: str = SMA_CODE, name: str = "sma", **kw) -> BacktestResult:
    return backtest(qdata.from_reference(ref), Strategy.from_code(code, name=name), data_ref=ref, **kw)


# -- tools ---------------------------------------------------------------------------------------
def test_tools_are_listed_with_descriptions(server):
    tools = {t.name: t for t in server.list_tools().tools}
    assert set(tools) == {"run_backtest", "get_run", "list_runs", "upload_data", "list_datasets", "run_sweep", "walk_forward"}
    for t in tools.values():
        assert t.description and len(t.description) > 40
    props = tools["run_backtest"].input_schema["properties"]
    assert {"code", "name", "params", "data", "cash", "fees", "slippage", "periods_per_year", "timeout"} <= set(props)
    assert tools["run_backtest"].input_schema["required"] == ["code", "name"]
    assert tools["run_backtest"].output_schema is not None


def test_run_backtest_metrics_equal_inprocess(server):
    kw = dict(params={"fast": 5, "slow": 30}, fees=0.0005, slippage=0.0002, cash=50_000)
    out = server.ok("run_backtest", code=SMA_CODE, name="sma", data="sample", **kw)
    ref = inprocess("sample", params=kw["params"], fees=kw["fees"], slippage=kw["slippage"], cash=kw["cash"])
    assert out["metrics"] == {k: enc(v) for k, v in ref.metrics.items()}
    assert out["run_id"] == ref.run_id
    assert out["name"] == "sma"
    assert out["bars"] == len(ref.equity)
    assert out["trades"] == len(ref.trades)
    assert out["elapsed"] > 0
    eq = out["equity"]
    assert set(eq) == {"time", "equity"}
    assert len(eq["time"]) == len(eq["equity"]) == min(2000, len(ref.equity))
    full = pd.Series(ref.equity.to_numpy(), index=ref.equity.index.asi8)
    assert eq["time"][0] == full.index[0] and eq["time"][-1] == full.index[-1]
    assert eq["equity"] == full.loc[eq["time"]].tolist()  # samples of the real curve, exactly


def test_equity_is_downsampled_for_long_runs(server):
    out = server.ok("run_backtest", code=SMA_CODE, name="sma", data="synthetic:seed=3,bars=50000")
    assert out["bars"] == 50_000
    assert len(out["equity"]["time"]) <= 2000
    assert out["equity"]["time"] == sorted(out["equity"]["time"])


def test_get_run_round_trip_equals_inprocess(server):
    ref_str = "synthetic:seed=5,bars=30000"  # > 20,000 rows: structured content only
    out = server.ok("run_backtest", code=SMA_CODE, name="sma", data=ref_str, fees=0.001)
    r = server.call("get_run", run_id=out["run_id"])
    assert not r.is_error
    assert "structuredContent" in r.content[0].text  # a short note, not 30,000 rows twice
    d = r.structured_content
    ref = inprocess(ref_str, fees=0.001)
    expected = ref.to_dict()
    assert {k: v for k, v in d.items() if k != "created_at"} == {k: v for k, v in expected.items() if k != "created_at"}
    back = BacktestResult.from_dict(d)
    assert back.equity.equals(ref.equity)
    assert back.returns.equals(ref.returns)
    assert back.positions.equals(ref.positions)
    assert back.benchmark.equals(ref.benchmark)  # buy-and-hold equity, stored with the run
    pd.testing.assert_frame_equal(back.trades, ref.trades)
    assert back.run_id == ref.run_id


def test_big_runs_are_fetched_in_pages(server):
    from quantlab.engine.backtest import fetch_all_pages
    from quantlab.servers.backtest.server import MAX_UNPAGED_BARS, PAGE_BARS

    ref_str = f"synthetic:seed=6,bars={MAX_UNPAGED_BARS + 50_000}"
    out = server.ok("run_backtest", code=SMA_CODE, name="sma", data=ref_str)
    msg = server.error("get_run", run_id=out["run_id"])
    assert "pages" in msg and f"limit={PAGE_BARS}" in msg
    first = server.ok("get_run", run_id=out["run_id"], part="all", offset=0, limit=PAGE_BARS)
    assert first["page"] == {"offset": 0, "limit": PAGE_BARS, "total": out["bars"], "next_offset": PAGE_BARS}
    assert len(first["equity"]) == PAGE_BARS and "trades" in first
    second = server.ok("get_run", run_id=out["run_id"], part="all", offset=PAGE_BARS, limit=PAGE_BARS)
    assert "trades" not in second and len(second["index"]) == min(PAGE_BARS, out["bars"] - PAGE_BARS)
    d = fetch_all_pages(first, lambda off: server.ok("get_run", run_id=out["run_id"], part="all", offset=off, limit=PAGE_BARS))
    expected = inprocess(ref_str).to_dict()
    assert {k: v for k, v in d.items() if k != "created_at"} == {k: v for k, v in expected.items() if k != "created_at"}


def test_get_run_small_result_also_as_json_text(server):
    import json

    out = server.ok("run_backtest", code=SMA_CODE, name="sma", data="sample")
    r = server.call("get_run", run_id=out["run_id"])
    assert json.loads(r.content[0].text) == r.structured_content


def test_get_run_parts_are_paged_columns(server):
    out = server.ok("run_backtest", code=SMA_CODE, name="sma", data="sample", params={"fast": 3, "slow": 12})
    rid = out["run_id"]
    full = server.ok("get_run", run_id=rid)
    pages, offset = [], 0
    while offset is not None:
        page = server.ok("get_run", run_id=rid, part="equity", offset=offset, limit=1500)
        assert page["total"] == len(full["index"])
        pages.append(page["data"])
        offset = page["next_offset"]
    assert len(pages) == math.ceil(len(full["index"]) / 1500)
    assert sum((p["time"] for p in pages), []) == full["index"]
    assert sum((p["equity"] for p in pages), []) == full["equity"]
    pos = server.ok("get_run", run_id=rid, part="positions", offset=10, limit=5)
    assert pos["data"]["positions"] == full["positions"][10:15]
    trades = server.ok("get_run", run_id=rid, part="trades", limit=3)
    assert trades["total"] == len(full["trades"]["pnl"])
    assert trades["data"] == {k: v[:3] for k, v in full["trades"].items()}
    summary = server.ok("get_run", run_id=rid, part="summary")
    assert summary["code"] == SMA_CODE and summary["params"] == {"fast": 3, "slow": 12}
    assert summary["metrics"] == out["metrics"]
    assert "result" not in summary


def test_get_run_unknown_or_invalid_id(server):
    assert "list_runs" in server.error("get_run", run_id="0123456789abcdef")
    assert "invalid run id" in server.error("get_run", run_id="../../etc")


def test_list_runs_newest_first(server):
    a = server.ok("run_backtest", code=SMA_CODE, name="first", data="sample", params={"fast": 4})
    b = server.ok("run_backtest", code=SMA_CODE, name="second", data="sample", params={"fast": 6})
    runs = server.ok("list_runs", limit=500)["runs"]
    ids = [r["run_id"] for r in runs]
    assert a["run_id"] in ids and b["run_id"] in ids
    by_id = {r["run_id"]: r for r in runs}
    assert by_id[b["run_id"]]["name"] == "second"
    assert by_id[b["run_id"]]["params"] == {"fast": 6, "slow": 50}
    assert by_id[b["run_id"]]["metrics"] == b["metrics"]
    assert ids.index(b["run_id"]) < ids.index(a["run_id"])  # newest first
    assert len(server.ok("list_runs", limit=1)["runs"]) == 1


def test_list_datasets(server):
    refs = {d["ref"]: d for d in server.ok("list_datasets")["datasets"]}
    assert "sample" in refs
    assert any(r.startswith("synthetic:") for r in refs)
    assert refs["file:prices.csv"]["kind"] == "file"
    assert all(d["description"] for d in refs.values())


# -- data ----------------------------------------------------------------------------------------
def test_upload_then_backtest_the_upload(server, runs_dir):
    df = qdata.synthetic(2_500, seed=21, freq="15min")
    payload = base64.b64encode(df.to_parquet()).decode()
    info = server.ok("upload_data", data=payload)
    sha = qdata.content_hash(df)
    assert info["data"] == f"upload:{sha}"
    assert info["rows"] == 2_500 and info["columns"] == ["open", "high", "low", "close", "volume"]
    assert pd.Timestamp(info["start"]) == df.index[0] and pd.Timestamp(info["end"]) == df.index[-1]
    stored = runs_dir / "uploads" / f"{sha}.parquet"
    mtime = stored.stat().st_mtime_ns
    # the same frame again (also as columns) is the same reference and a no-op on disk
    cols = {"time": df.index.asi8.tolist(), **{c: df[c].tolist() for c in df.columns}}
    assert server.ok("upload_data", data=cols, format="columnar")["data"] == info["data"]
    assert server.ok("upload_data", data=payload)["data"] == info["data"]
    assert stored.stat().st_mtime_ns == mtime
    out = server.ok("run_backtest", code=SMA_CODE, name="sma", data=info["data"], params={"fast": 8, "slow": 40})
    ref = backtest(df, Strategy.from_code(SMA_CODE, name="sma"), params={"fast": 8, "slow": 40})
    assert out["metrics"] == {k: enc(v) for k, v in ref.metrics.items()}
    assert out["run_id"] == ref.run_id  # the id hashes the data's content, not its name
    assert info["data"] in {d["ref"] for d in server.ok("list_datasets")["datasets"]}


def test_upload_rejects_bad_frames(server):
    df = qdata.synthetic(100, seed=1)
    bad = df.drop(columns=["close"])
    msg = server.error("upload_data", data=base64.b64encode(bad.to_parquet()).decode())
    assert "close" in msg
    assert "base64" in server.error("upload_data", data="this is not base64!!")
    assert "time" in server.error("upload_data", data={"close": [1.0, 2.0]}, format="columnar")
    assert "unknown upload" in server.error("run_backtest", code=SMA_CODE, name="x", data="upload:" + "0" * 64)


def test_file_under_data_root_and_escapes(server, data_root):
    out = server.ok("run_backtest", code=SMA_CODE, name="sma", data="file:prices.csv")
    ref = backtest(qdata.load(data_root / "prices.csv"), Strategy.from_code(SMA_CODE, name="sma"))
    assert out["metrics"] == {k: enc(v) for k, v in ref.metrics.items()}
    for escape in ("file:../secret.csv", f"file:{data_root.parent / 'secret.csv'}", "file:sub/../../secret.csv"):
        msg = server.error("run_backtest", code=SMA_CODE, name="sma", data=escape)
        assert "[data]" in msg and ("escapes the data root" in msg or "relative to the data root" in msg), msg
    assert "unknown data reference" in server.error("run_backtest", code=SMA_CODE, name="sma", data="ftp://x")


# -- bad strategies: a tool error that says so, and the server keeps serving ----------------------
def _still_serves(server):
    out = server.ok("run_backtest", code=SMA_CODE, name="sma", data="sample")
    assert out["bars"] > 0


def test_runaway_loop_times_out_and_server_keeps_serving(server):
    code = "def signals(data):\n    while True:\n        pass\n"
    msg = server.error("run_backtest", code=code, name="forever", timeout=1.5)
    assert "[timeout]" in msg and "did not finish within 1.5 s" in msg and "forever" in msg
    _still_serves(server)


def test_other_runs_proceed_while_one_is_stuck(server):
    import time

    stuck = server.call_soon("run_backtest", code="def signals(data):\n    while True:\n        pass\n", name="stuck", timeout=5)
    t0 = time.monotonic()
    _still_serves(server)  # served by the second worker meanwhile
    assert time.monotonic() - t0 < 4
    r = stuck.result(60)
    assert r.is_error and "[timeout]" in r.content[0].text
    _still_serves(server)


def test_cancelled_call_stops_its_worker(server):
    import time

    loop = "def signals(data):\n    while True:\n        pass\n"
    stuck = [server.call_soon("run_backtest", code=loop, name=f"stuck{i}", timeout=120) for i in range(2)]
    time.sleep(1.5)  # both workers are now looping
    for f in stuck:
        f.cancel()  # the client cancels the requests
    t0 = time.monotonic()
    _still_serves(server)  # a stopped and replaced worker serves at once, not after 120 s
    assert time.monotonic() - t0 < 20


def test_memory_eater_hits_the_limit(server):
    code = (
        "import numpy as np\n"
        "def signals(data):\n"
        "    keep = []\n"
        "    while True:\n"
        "        keep.append(np.ones(20_000_000))\n"
    )
    msg = server.error("run_backtest", code=code, name="eater", timeout=60)
    assert "[memory]" in msg or "[crashed]" in msg, msg
    assert "1024 MB" in msg
    _still_serves(server)


def test_raising_strategy_names_the_exception_and_line(server):
    code = "def signals(data):\n    x = 0\n    return 1 / x\n"
    msg = server.error("run_backtest", code=code, name="boom")
    assert "[raised]" in msg and "ZeroDivisionError" in msg and "line 3" in msg
    _still_serves(server)


def test_strategy_that_exits_is_reported(server):
    # os._exit is refused by the sandbox before it runs; SystemExit is the strategy's own exception
    msg = server.error("run_backtest", code="import os\ndef signals(data):\n    os._exit(7)\n", name="quitter")
    assert "[sandbox]" in msg and "line 1" in msg and "import os" in msg
    msg = server.error("run_backtest", code="def signals(data):\n    raise SystemExit(7)\n", name="quitter")
    assert "[raised]" in msg and "SystemExit" in msg and "line 2" in msg
    _still_serves(server)


@pytest.mark.parametrize(
    "body, words",
    [
        ("return data.close.iloc[:10] * 0", ["[signals]"]),
        ("return 'long'", ["[signals]"]),
        ("return data.close * 0 + 2.0", ["[signals]"]),
        ("return None", ["[signals]"]),
    ],
)
def test_wrong_shaped_signals(server, body, words):
    msg = server.error("run_backtest", code=f"def signals(data):\n    {body}\n", name="shape")
    for w in words:
        assert w in msg, msg
    assert "shape" in msg  # names the strategy


def test_bad_code_and_bad_arguments(server):
    assert "syntax error on line 1" in server.error("run_backtest", code="def signals(data) return 1", name="s")
    assert "no top-level `signals`" in server.error("run_backtest", code="x = 1", name="s")
    assert "unknown parameter" in server.error("run_backtest", code=SMA_CODE, name="s", params={"nope": 1})
    assert "fees" in server.error("run_backtest", code=SMA_CODE, name="s", fees=2)
    assert "timeout" in server.error("run_backtest", code=SMA_CODE, name="s", timeout=-1)
    _still_serves(server)


def test_strategy_that_mutates_its_data_does_not_poison_the_cache(server):
    ref = "synthetic:seed=8,bars=4000"
    clean = server.ok("run_backtest", code=SMA_CODE, name="sma", data=ref)
    vandal = (
        "def signals(data):\n"
        "    data['close'] *= 0.5\n"
        "    data.loc[data.index[::3], 'close'] *= 1.01\n"
        "    data['extra'] = 1.0\n"
        "    return data.close * 0 + 1\n"
    )
    for _ in range(2):  # both workers
        server.ok("run_backtest", code=vandal, name="vandal", data=ref)
    for _ in range(2):
        again = server.ok("run_backtest", code=SMA_CODE, name="sma", data=ref)
        assert again["metrics"] == clean["metrics"] == {k: enc(v) for k, v in inprocess(ref).metrics.items()}


def test_print_in_strategy_does_not_corrupt_stdio(server):
    code = "def signals(data):\n    print('hello from the strategy')\n    return data.close * 0 + 1\n"
    assert server.ok("run_backtest", code=code, name="chatty")["bars"] > 0
    _still_serves(server)


# -- persistence -------------------------------------------------------------------------------------
def test_restart_keeps_runs_and_uploads(tmp_path):
    runs = tmp_path / "runs"
    df = qdata.synthetic(1_000, seed=4, freq="1h")
    s = MCPSession(server_params(runs, "--workers", "1"))
    try:
        out = s.ok("run_backtest", code=SMA_CODE, name="sma", data="synthetic:seed=9,bars=5000")
        before = s.ok("get_run", run_id=out["run_id"])
        up = s.ok("upload_data", data=base64.b64encode(df.to_parquet()).decode())
    finally:
        s.close()
    s = MCPSession(server_params(runs, "--workers", "1"))  # a new server process on the same runs dir
    try:
        after = s.ok("get_run", run_id=out["run_id"])
        assert after == before
        assert BacktestResult.from_dict(after).equity.equals(inprocess("synthetic:seed=9,bars=5000").equity)
        assert out["run_id"] in [r["run_id"] for r in s.ok("list_runs")["runs"]]
        assert s.ok("run_backtest", code=SMA_CODE, name="sma", data=up["data"])["bars"] == 1_000
    finally:
        s.close()


# -- HTTP ------------------------------------------------------------------------------------------------
def test_http_with_bearer_token(tmp_path):
    import httpx2
    from mcp.client.streamable_http import streamable_http_client

    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "quantlab.servers.backtest", "--runs", str(tmp_path / "runs"), "--http", str(port),
         "--token", "s3cret", "--workers", "1"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    try:
        wait_for_port(port, proc)
        url = f"http://127.0.0.1:{port}/mcp"
        r = httpx2.post(url, json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"})
        assert r.status_code == 401 and r.headers["www-authenticate"].startswith("Bearer")
        def session():
            headers = {"Authorization": "Bearer s3cret"}
            return MCPSession(streamable_http_client(url, http_client=httpx2.AsyncClient(headers=headers)))

        s, other = session(), session()  # two notebooks sharing one server
        try:
            out = s.ok("run_backtest", code=SMA_CODE, name="sma", data="sample")
            assert out["metrics"] == {k: enc(v) for k, v in inprocess("sample").metrics.items()}
            assert other.ok("get_run", run_id=out["run_id"], part="summary")["name"] == "sma"
            mine = other.ok("run_backtest", code=SMA_CODE, name="other", data="sample", params={"fast": 3})
            assert {r["run_id"] for r in s.ok("list_runs")["runs"]} == {out["run_id"], mine["run_id"]}
        finally:
            s.close()
            other.close()
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def test_damaged_run_is_a_tool_error_and_the_server_keeps_serving(server, runs_dir):
    run = server.ok("run_backtest", code=SMA_CODE, name="to damage", data="sample", params={"fast": 7, "slow": 41})
    server.ok("get_run", run_id=run["run_id"], part="summary")  # waits until it is saved
    (runs_dir / run["run_id"] / "meta.json").write_text("{not json")
    err = server.error("get_run", run_id=run["run_id"], part="summary")
    assert "is damaged" in err and "run the backtest again" in err
    listed = [r["run_id"] for r in server.ok("list_runs", limit=10_000)["runs"]]  # still serving; skips it
    assert listed and run["run_id"] not in listed


def test_walk_forward_tool_equals_inprocess(server):
    from quantlab.engine.walkforward import WalkForwardResult, walk_forward

    ref = "synthetic:seed=8,bars=3000"
    grid = {"fast": [5, 10], "slow": [40, 60]}
    out = server.ok("walk_forward", code=SMA_CODE, name="sma", grid=grid, train=1000, test=500, data=ref,
                    fees=0.001, executor="inprocess")
    back = WalkForwardResult.from_dict(out["result"])
    local = walk_forward(Strategy.from_code(SMA_CODE, name="sma"), qdata.from_reference(ref), grid, 1000, 500,
                         progress=False, fees=0.001)
    assert out["folds"] == len(local.folds) == 4
    assert back.folds["params"].tolist() == local.folds["params"].tolist()
    pd.testing.assert_series_equal(back.equity, local.equity, check_exact=False, rtol=1e-12, check_freq=False)
    assert out["metrics"]["sharpe"] == enc(local.metrics["sharpe"])
    assert "[grid]" in server.error("walk_forward", code=SMA_CODE, name="sma", grid=grid, train=2900, test=500,
                                    data=ref, executor="inprocess")  # no fold fits: says so, server keeps serving
    assert "whole bars" in server.error("walk_forward", code=SMA_CODE, name="sma", grid=grid, train=1000.5, test=500,
                                        data=ref)
