"""In-process sweeps: grid forms and order, equality with backtest(), error rows, batched signals,
SweepResult picking, heat map, serialisation and display."""
from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure

from quantlab.engine import BacktestResult, backtest, data, stats
from quantlab.engine.sweep import SweepError, SweepResult, expand_grid, sweep


COSTS = {"cash": 50_000.0, "fees": 0.001, "slippage": 0.0005}


def _same(a, b) -> bool:
    if isinstance(a, float) and math.isnan(a):
        return isinstance(b, float) and math.isnan(b)
    return a == b or abs(a - b) <= 1e-12 * abs(a)


def test_dict_grid_is_the_cartesian_product_in_key_order(df, sma):
    res = sweep(sma, df, {"slow": [40, 30], "fast": [3, 5, 4]}, progress=False)
    assert list(res.frame.columns[:2]) == ["slow", "fast"]
    assert res.frame[["slow", "fast"]].values.tolist() == [[40, 3], [40, 5], [40, 4], [30, 3], [30, 5], [30, 4]]
    assert list(res.frame.columns[2:]) == [*stats.METRICS, "error"]
    assert res.frame["error"].isna().all()
    assert res.frame["trades"].dtype == np.int64


def test_list_grid_keeps_order_and_fills_defaults(df, sma):
    res = sweep(sma, df, [{"fast": 9}, {"slow": 20, "fast": 4}, {"fast": 2, "slow": 70}], progress=False)
    assert res.frame[["fast", "slow"]].values.tolist() == [[9, 50], [4, 20], [2, 70]]
    assert res.params(0) == {"fast": 9, "slow": 50}
    assert res.param_names == ["fast", "slow"]


def test_scalar_grid_values_and_numpy_ranges(df, sma):
    assert expand_grid({"fast": np.arange(2, 4), "slow": 30}) == [{"fast": 2, "slow": 30}, {"fast": 3, "slow": 30}]
    assert len(sweep(sma, df, {"fast": range(2, 6)}, progress=False)) == 4


@pytest.mark.parametrize("grid, match", [
    ({}, "empty"), ([], "empty"), ({"fast": []}, "no values"), ("fast", "dict of lists"),
    ([{"fast": 2}, 3], "not a dict"), ({"fsat": [1, 2]}, "fsat"),
])
def test_bad_grids_are_refused_before_running(df, sma, grid, match):
    with pytest.raises(SweepError, match=match):
        sweep(sma, df, grid, progress=False)


def test_bad_executor_and_costs_are_refused(df, sma):
    with pytest.raises(SweepError, match="unknown executor"):
        sweep(sma, df, {"fast": [2]}, executor="threads", progress=False)
    with pytest.raises(TypeError, match="fee"):
        sweep(sma, df, {"fast": [2]}, progress=False, fee=0.1)
    with pytest.raises(ValueError, match="fees and slippage"):
        sweep(sma, df, {"fast": [2]}, progress=False, fees=1.5)


def test_every_row_equals_backtest(df, sma):
    grid = {"fast": [3, 8, 13], "slow": [20, 45]}
    res = sweep(sma, df, grid, progress=False, **COSTS)
    assert len(res) == 6
    for i, params in enumerate(expand_grid(grid)):
        ref = backtest(df, sma, params, **COSTS)
        row = res.frame.iloc[i]
        assert ref.metrics["trades"] > 3
        for k, v in ref.metrics.items():
            assert _same(v, row[k]), (i, k, v, row[k])
        r = res.result(i)
        assert r.params == params and r.metrics == ref.metrics
        assert r.equity.equals(ref.equity) and r.trades.equals(ref.trades)
        assert r.costs == {"cash": 50_000.0, "fees": 0.001, "slippage": 0.0005}
    assert res.result(2) is res.result(2)  # cached


def test_periods_per_year_and_data_reference(sma):
    res = sweep(sma, "synthetic:seed=3,bars=800", {"fast": [3, 4]}, progress=False, periods_per_year=252)
    assert res.data_ref == "synthetic:seed=3,bars=800" and res.costs["periods_per_year"] == 252
    ref = backtest(data.synthetic(800, seed=3), sma, {"fast": 4}, periods_per_year=252)
    assert res.result(1).metrics == ref.metrics
    assert res.frame.loc[1, "sharpe"] == pytest.approx(ref.metrics["sharpe"], rel=1e-12)


def test_a_failing_combination_is_reported_in_its_row(df, failing):
    res = sweep(failing, df, {"fast": [6, 7, 8, 9], "slow": [30]}, progress=False)
    err = res.frame["error"]
    assert err[0] is None and err[3] is None
    assert err[1] == "ZeroDivisionError: fast=7 is unlucky"
    assert err[2].startswith("SignalError:") and "outside [-1, 1]" in err[2]
    assert res.frame.loc[[1, 2], "sharpe"].isna().all()
    assert res.frame["trades"].dtype == "Int64" and res.frame["trades"].isna().tolist() == [False, True, True, False]
    assert res.errors.index.tolist() == [1, 2]
    assert res.best("sharpe").name in (0, 3)
    assert len(res.results) == 2 and res.results[1].params == {"fast": 9, "slow": 30}
    with pytest.raises(ZeroDivisionError):
        res.result(1)
    assert res.frame.loc[3, "sharpe"] == backtest(df, failing, {"fast": 9, "slow": 30}).metrics["sharpe"]
    assert "errors=2" in repr(res)


def test_all_rows_failing_gives_a_clear_best_error(df, failing):
    res = sweep(failing, df, {"fast": [7]}, progress=False)
    with pytest.raises(ValueError, match="no run has a value for 'sharpe'"):
        res.best()


def test_batched_signals_are_used_in_chunks_and_equal_the_plain_path(df, batched):
    grid = {"fast": [3, 5, 8], "slow": [21, 34], "side": [0.0, 0.5]}
    res = sweep(batched, df, grid, progress=False, chunk=5, **COSTS)
    calls = batched.function.__globals__["CALLS"]
    assert calls == [5, 5, 2]
    for i, params in enumerate(expand_grid(grid)):
        ref = backtest(df, batched, params, **COSTS)
        for k, v in ref.metrics.items():
            assert _same(v, res.frame.iloc[i][k]), (i, k)


def test_a_failing_batch_falls_back_to_signals_per_combination(df, batched):
    # side=2 makes signals_many's columns fine but signals() out of range for that row only;
    # fast=0 makes _sma fail inside signals_many -> fallback to signals() row by row
    res = sweep(batched, df, [{"fast": 3, "slow": 20}, {"fast": 0, "slow": 20}, {"fast": 4, "slow": 20, "side": 2.0}],
                progress=False)
    assert res.frame["error"][0] is None
    assert res.frame["error"][1] is not None
    assert res.frame["error"][2].startswith("SignalError")
    assert res.frame.loc[0, "sharpe"] == backtest(df, batched, {"fast": 3, "slow": 20}).metrics["sharpe"]


def test_best_and_top(df, sma):
    res = sweep(sma, df, {"fast": [2, 4, 6, 8], "slow": [25, 50]}, progress=False)
    best = res.best("total_return")
    assert best["total_return"] == res.frame["total_return"].max()
    low = res.best("max_drawdown", ascending=True)
    assert low["max_drawdown"] == res.frame["max_drawdown"].min() and low.name in res.frame.index
    top = res.top(3, "sharpe")
    assert len(top) == 3 and top.frame["sharpe"].is_monotonic_decreasing
    assert top.frame.iloc[0]["sharpe"] == res.frame["sharpe"].max()
    assert top.result(0).metrics["sharpe"] == pytest.approx(top.frame.iloc[0]["sharpe"], rel=1e-12)
    with pytest.raises(KeyError, match="unknown metric 'sharp'"):
        res.best("sharp")
    with pytest.raises(IndexError):
        res.result(8)


def test_results_are_lazy_and_work_with_the_review_comparison(df, sma):
    from quantlab.widgets.review import as_results
    res = sweep(sma, df, {"fast": [2, 4, 6]}, progress=False)
    seq = res.results
    assert len(seq) == 3 and res._cache == {}
    items = as_results(res)
    assert [r.params["fast"] for r in items] == [2, 4, 6]
    assert all(isinstance(r, BacktestResult) for r in items)
    assert seq[-1] is items[-1]


def test_heatmap_is_a_figure_of_the_metric(df, sma):
    res = sweep(sma, df, {"fast": [2, 4, 6], "slow": [25, 50]}, progress=False)
    fig = res.plot_heatmap("fast", "slow", "sharpe")
    assert isinstance(fig, Figure)
    ax = fig.axes[0]
    assert ax.get_xlabel() == "fast" and ax.get_ylabel() == "slow" and "sharpe" in ax.get_title()
    img = ax.images[0].get_array()
    assert img.shape == (2, 3)
    assert img[1, 2] == res.frame.query("fast == 6 and slow == 50")["sharpe"].item()
    # every annotation contrasts with its cell: dark text on the light (yellow) end, light on the dark end
    from quantlab._util.colours import relative_luminance
    im = ax.images[0]
    texts = ax.texts
    assert len(texts) == 6
    colours = set()
    for t in texts:
        c, r = (round(v) for v in t.get_position())
        bg = relative_luminance(im.cmap(im.norm(img[r, c])))
        colours.add(t.get_color())
        assert (t.get_color() == "black") == (bg > 0.179), (t.get_text(), t.get_color(), bg)
    assert colours == {"black", "white"}   # the extremes of viridis need different text colours
    with pytest.raises(KeyError, match="unknown parameter"):
        res.plot_heatmap("fast", "nope")


def test_to_dict_round_trips_through_json(df, failing):
    res = sweep(failing, df, {"fast": [6, 7, 9], "slow": [30, 40]}, progress=False, fees=0.002)
    d = json.loads(json.dumps(res.to_dict()))
    back = SweepResult.from_dict(d)
    pd.testing.assert_frame_equal(back.frame, res.frame, check_exact=True)
    assert back.costs == res.costs and back.strategy == res.strategy
    with pytest.raises(ValueError, match="attach"):
        back.result(0)
    assert back.attach(df).result(5).metrics == res.result(5).metrics
    assert back.params(0) == {"fast": 6, "slow": 30}


def test_repr_and_html_show_the_best_row(df, sma):
    res = sweep(sma, df, {"fast": [2, 4]}, progress=False)
    best = res.best()
    assert f"best sharpe={best['sharpe']:.4g}" in repr(res) and "runs=2" in repr(res)
    h = res._repr_html_()
    assert "<table" in h and "best sharpe" in h and f"{best['sharpe']:.4g}" in h


def test_progress_bar_counts_runs(df, sma, capsys):
    sweep(sma, df, {"fast": [2, 3, 4]}, progress=True)
    err = capsys.readouterr().err
    assert "3/3" in err


def test_progress_can_be_a_callback(df, sma):
    seen = []
    sweep(sma, df, {"fast": [2, 3, 4, 5, 6]}, progress=lambda done, total: seen.append((done, total)), chunk=2)
    assert seen == [(2, 5), (4, 5), (5, 5)]


def test_a_strategy_that_writes_to_its_frame_does_not_affect_other_runs(df):
    code = ("def signals(data, n=3):\n"
            "    if 'seen' in data.columns:\n"
            "        raise RuntimeError('saw a column added by another run')\n"
            "    data['seen'] = 1.0\n"
            "    return (data.close > data.close.rolling(n).mean()) * 1.0\n")
    res = sweep(code, df, {"n": [2, 3, 4]}, progress=False)
    assert res.frame["error"].isna().all() and "seen" not in df.columns


def test_text_and_flag_parameters_round_trip(df):
    code = ("def signals(data, mode='above', n=3, invert=False):\n"
            "    up = data.close > data.close.rolling(n).mean()\n"
            "    s = (up if mode == 'above' else ~up) * 1.0\n"
            "    return 1.0 - s if invert else s\n")
    res = sweep(code, df, {"mode": ["above", "below"], "invert": [False, True], "n": [0.5]}, progress=False)
    assert res.frame["mode"].tolist() == ["above", "above", "below", "below"]
    assert res.frame["error"].notna().all()  # rolling(0.5) is invalid: every row says why
    res = sweep(code, df, {"mode": ["above", "below"], "invert": [False, True]}, progress=False)
    back = SweepResult.from_dict(json.loads(json.dumps(res.to_dict())))
    pd.testing.assert_frame_equal(back.frame, res.frame, check_exact=True)
    assert back.params(3) == {"mode": "below", "n": 3, "invert": True}
    fig = res.plot_heatmap("mode", "invert", "total_return")
    assert fig.axes[0].images[0].get_array().shape == (2, 2)
