"""walk_forward: purged, non-overlapping folds; IS/OOS numbers are real window backtests; stitched OOS equity."""
from __future__ import annotations

import doctest

import numpy as np
import pandas as pd
import pytest

import quantlab
from quantlab.engine import Strategy, walkforward
from quantlab.engine.walkforward import fold_windows, walk_forward

from .conftest import SMA

GRID = {"fast": [5, 10, 20], "slow": [40, 80]}
TARGET = "def signals(data, t=None):\n    return t\n"


@pytest.fixture(scope="module")
def wf(hourly):
    return walk_forward(SMA, hourly, GRID, train=900, test=400, purge=24, fees=0.0002, progress=False)


def test_folds_are_purged_and_do_not_overlap(wf, hourly):
    idx = hourly.index
    prev_test_end = None
    for (a, b), (c, d) in wf.windows:
        assert b - a == 900 and d - c == 400
        assert c - b == 24                       # the purge gap lies between train and test
        if prev_test_end is not None:
            assert c >= prev_test_end            # test windows never overlap
        prev_test_end = d
    f = wf.folds
    assert (f["train_end"] < f["test_start"]).all()
    assert (f["test_start"].iloc[1:].to_numpy() > f["test_end"].iloc[:-1].to_numpy()).all()
    assert list(f["test_start"]) == [idx[c] for _, (c, _) in wf.windows]
    assert len(f) == len(fold_windows(len(hourly), 900, 400, purge=24)) == (len(hourly) - 900 - 24) // 400


def test_windows_layouts():
    assert fold_windows(10, 4, 2, step=3) == [((0, 4), (4, 6)), ((3, 7), (7, 9))]
    assert fold_windows(10, 4, 2, anchored=True)[-1] == ((0, 8), (8, 10))
    with pytest.raises(ValueError, match="no fold fits"):
        walk_forward(SMA, quantlab.data.synthetic(500, seed=1), GRID, train=400, test=200, progress=False)
    with pytest.raises(ValueError, match="number of bars"):
        walk_forward(SMA, quantlab.data.synthetic(500, seed=1), GRID, train=0, test=200, progress=False)


def _window_metrics(hourly, params, a, b, **costs):
    """An independent window backtest: full-data targets of `params`, sliced to [a, b)."""
    full = Strategy.from_code(SMA).function(hourly, **params).to_numpy(dtype=float)
    ppy = quantlab.engine.infer_periods_per_year(hourly.index)     # one P for every window: the whole data's
    return quantlab.backtest(hourly.iloc[a:b], TARGET, {"t": full[a:b]}, periods_per_year=ppy, **costs)


def test_choice_and_numbers_are_real_window_backtests(wf, hourly):
    combos = wf.combos
    for k, ((a, b), (c, d)) in enumerate(wf.windows[:3]):
        is_sharpes = [_window_metrics(hourly, p, a, b, fees=0.0002).metrics["sharpe"] for p in combos]
        assert wf.is_scores[f"fold {k}"].tolist() == pytest.approx(is_sharpes, rel=1e-9)
        best = combos[int(np.argmax(is_sharpes))]
        assert wf.folds["params"].iloc[k] == best
        oos = _window_metrics(hourly, best, c, d, fees=0.0002)
        assert wf.folds[f"oos_sharpe"].iloc[k] == pytest.approx(oos.metrics["sharpe"], rel=1e-9)
        assert wf.folds["oos_total_return"].iloc[k] == pytest.approx(oos.metrics["total_return"], rel=1e-9)


def test_stitched_equity_compounds_the_test_windows(wf, hourly):
    growth = np.prod(1 + wf.folds["oos_total_return"].to_numpy())
    assert wf.metrics["total_return"] == pytest.approx(growth - 1, rel=1e-9)
    assert wf.equity.iloc[-1] == pytest.approx(100_000 * growth, rel=1e-9)
    assert len(wf.equity) == 400 * len(wf.folds)
    assert wf.equity.index.is_monotonic_increasing and wf.equity.index[0] == wf.folds["test_start"].iloc[0]
    assert wf.metrics["folds"] == len(wf.folds)
    assert wf.metrics["efficiency"] == pytest.approx(wf.folds["oos_sharpe"].mean() / wf.folds["is_sharpe"].mean())
    assert wf.trials == len(wf.combos) * len(wf.folds)


def test_minimised_metric_and_processes_executor(hourly):
    a = walk_forward(SMA, hourly, GRID, train=1500, test=800, metric="max_drawdown", progress=False)
    assert (a.folds["is_max_drawdown"].to_numpy() == a.is_scores.min().to_numpy()).all()
    b = walk_forward(SMA, hourly, GRID, train=1500, test=800, metric="max_drawdown", progress=False, executor=2)
    assert b.executor.startswith("processes")
    pd.testing.assert_frame_equal(a.is_scores, b.is_scores)
    pd.testing.assert_series_equal(a.equity, b.equity)


def test_an_overfit_grid_shows_its_in_sample_optimism():
    # pure noise: the best in-sample Sharpe of many variants is luck, out of sample it vanishes
    noise = quantlab.data.synthetic(6000, seed=21, freq="1h")
    code = ("import numpy as np\ndef signals(data, seed=0):\n"
            "    return np.random.default_rng(seed).choice([-1.0, 0.0, 1.0], len(data))\n")
    # frictionless: a random signal trades every other bar and costs would bury the selection effect measured here
    wf = walk_forward(code, noise, {"seed": list(range(40))}, train=2000, test=1000, progress=False, fees=0.0)
    assert wf.folds["is_sharpe"].mean() > 1.0
    assert wf.folds["oos_sharpe"].mean() < wf.folds["is_sharpe"].mean() - 1.0


def test_surfaces(wf):
    assert quantlab.walk_forward is walk_forward and quantlab.WalkForwardResult is walkforward.WalkForwardResult
    assert "folds=" in repr(wf) and "efficiency" in repr(wf)
    h = wf._repr_html_()
    assert "<svg" in h and "Walk-forward" in h and "oos_sharpe" in h
    res = doctest.testmod(walkforward)
    assert res.attempted >= 4 and res.failed == 0
