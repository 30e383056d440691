"""check_lookahead: look-ahead strategies are caught at the right bar, causal ones pass."""
from __future__ import annotations

import doctest
import json

import numpy as np
import pandas as pd
import pytest

import quantlab
from quantlab.engine import SignalError, Strategy, lookahead
from quantlab.engine.lookahead import DEFAULT_CUTS, check_lookahead


def test_shift_minus_one_is_caught_at_the_bar_before_the_cut(bars):
    # continuous target, so every bar before a cut that reads the next bar differs
    code = "def signals(data):\n    return (data.close.shift(-1) / data.close - 1).clip(-1, 1) * 100 % 1\n"
    rep = check_lookahead(code, bars)
    first_cut = int(round(DEFAULT_CUTS[0] * len(bars)))
    assert rep.causal is False and not rep
    assert rep.reason == "look-ahead"
    assert rep.cut == first_cut
    assert rep.first_bar == first_cut - 1
    assert rep.time == bars.index[first_cut - 1]
    full = Strategy.from_code(code).function(bars)
    assert rep.full_value == pytest.approx(float(full.iloc[first_cut - 1]))
    assert rep.prefix_value == 0.0            # NaN in the prefix run = flat
    # every cut exposes it exactly at cut - 1
    assert (rep.checks["first_bar"] == rep.checks["cut"] - 1).all()


def test_binary_one_bar_lookahead_is_caught_on_many_datasets():
    code = "def signals(data):\n    return (data.close.shift(-1) > data.close) * 1.0\n"
    for seed in range(10):
        rep = check_lookahead(code, quantlab.data.synthetic(1000, seed=seed))
        assert not rep.causal
        assert rep.first_bar == rep.cut - 1


def test_centred_rolling_window_is_caught_half_a_window_before_the_cut(bars):
    code = "def signals(data, n=21):\n    return (data.close.rolling(n, center=True).mean().pct_change() * 500).clip(-1, 1)\n"
    rep = check_lookahead(code, bars, cuts=[700, 1500])
    assert not rep.causal
    # the centred mean at bar t needs bars up to t + 10: the prefix run has NaN from cut - 10
    assert (rep.cut, rep.first_bar) == (700, 690)
    assert list(rep.checks["first_bar"]) == [690, 1490]


def test_full_sample_normalisation_is_caught_at_bar_zero(bars):
    code = ("def signals(data):\n    z = (data.close - data.close.mean()) / data.close.std()\n"
            "    return (z / 3).clip(-1, 1)\n")
    rep = check_lookahead(code, bars)
    assert not rep.causal and rep.first_bar == 0
    assert rep.full_value != rep.prefix_value
    assert "looks ahead" in rep.message and "bar 0" in rep.message


@pytest.mark.parametrize("code", [
    "def signals(data, fast=10, slow=50):\n    c = data.close\n    return (c.rolling(fast).mean() > c.rolling(slow).mean()) * 1.0\n",
    "def signals(data, n=50):\n    z = (data.close - data.close.rolling(n).mean()) / data.close.rolling(n).std()\n    return (-z / 3).clip(-1, 1)\n",
    "def signals(data):\n    return (data.close.ewm(span=30).mean() < data.close) * 2.0 - 1.0\n",
    "def signals(data):\n    return (data.close.expanding().mean() < data.close).astype(float)\n",
])
def test_causal_strategies_pass(bars, code):
    rep = check_lookahead(code, bars)
    assert rep.causal and rep
    assert rep.first_bar is None and rep.cut is None
    assert (rep.checks["differing"] == 0).all() and rep.checks["error"].isna().all()
    assert "looks causal" in rep.message


def test_unseeded_randomness_is_reported_as_nondeterministic(bars):
    rep = check_lookahead("import numpy as np\ndef signals(data):\n    return np.random.rand(len(data))\n", bars)
    assert not rep.causal and rep.reason == "nondeterministic"
    seeded = "import numpy as np\ndef signals(data):\n    return np.random.default_rng(1).random(len(data))\n"
    assert check_lookahead(seeded, bars).causal


def test_params_are_used_and_prefix_errors_are_recorded(bars):
    # needs 300 bars: the short prefixes fail, the longer ones are compared
    code = ("def signals(data, n=5):\n    if len(data) < 300:\n        raise ValueError('need 300 bars')\n"
            "    return data.close.shift(-n).notna() * 1.0\n")
    rep = check_lookahead(code, bars, params={"n": 3})
    assert not rep.causal and rep.first_bar == rep.cut - 3
    assert rep.checks["error"].notna().sum() == int((rep.checks["cut"] < 300).sum()) > 0
    with pytest.raises(SignalError, match="every prefix"):
        check_lookahead(code, bars, cuts=[100, 200])


def test_cuts_and_report_surfaces(bars):
    rep = check_lookahead("def signals(data):\n    return data.close * 0 + 1\n", bars, cuts=3)
    assert list(rep.checks["cut"]) == [500, 1000, 1500]
    assert "causal=True" in repr(rep) and "✔ causal" in rep._repr_html_()
    bad = check_lookahead("def signals(data):\n    return data.close.shift(-2).notna() * 1.0\n", bars)
    d = json.loads(json.dumps(bad.to_dict(), allow_nan=False))
    assert d["causal"] is False and d["first_bar"] == bad.first_bar and d["cut"] == bad.cut
    assert "first_bar=" in repr(bad) and "look-ahead" in bad._repr_html_()
    with pytest.raises(TypeError, match="DatetimeIndex"):
        check_lookahead("def signals(data):\n    return data.close * 0\n", bars.reset_index())


def test_cost_is_under_three_signal_runs():
    # the prefixes' lengths add up to under 2x the data: full + prefixes < 3 evaluations of signals()
    assert 1 + sum(DEFAULT_CUTS) < 3


def test_public_names_and_doctests():
    assert quantlab.check_lookahead is check_lookahead
    assert quantlab.LookaheadReport is lookahead.LookaheadReport
    res = doctest.testmod(lookahead, optionflags=doctest.ELLIPSIS)
    assert res.attempted >= 3 and res.failed == 0


def test_sandboxed_check_finds_the_same_bar(bars):
    pytest.importorskip("quantlab.engine.sandbox")
    code = "def signals(data):\n    return (data.close.shift(-3) / data.close - 1).clip(-1, 1) * 100 % 1\n"
    plain = check_lookahead(code, bars, cuts=[500, 1200])
    boxed = check_lookahead(code, bars, cuts=[500, 1200], sandbox=True)
    assert not boxed.causal and (boxed.first_bar, boxed.cut) == (plain.first_bar, plain.cut) == (497, 500)
    assert check_lookahead(SMA_CAUSAL, bars, cuts=[500, 1200], sandbox=True).causal


SMA_CAUSAL = "def signals(data, n=20):\n    return (data.close > data.close.rolling(n).mean()) * 1.0\n"
