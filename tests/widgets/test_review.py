"""quantlab.review on real engine backtests."""
from __future__ import annotations

import ipywidgets as widgets
import pytest
from IPython.core.interactiveshell import InteractiveShell

from quantlab.lab.policy import DeploymentPolicy
from quantlab.widgets import Review, review

from .conftest import FRICTIONLESS, assert_html_ok, inline_pngs, part, parts, png_size


def test_single_result_dashboard(failing):
    rv = review(failing)
    assert isinstance(rv, Review) and isinstance(rv, widgets.VBox)
    table = rv.metrics_table().set_index("metric")
    m = failing.metrics
    assert table.loc["total_return", "value"] == f"{m['total_return']:.2%}"
    assert table.loc["sharpe", "value"] == f"{m['sharpe']:.2f}"
    assert table.loc["trades", "value"] == f"{m['trades']}"
    # default policy: this run fails on sharpe and profit factor, passes the rest
    assert table.loc["sharpe", "passed"] is False
    assert table.loc["profit_factor", "passed"] is False
    assert table.loc["max_drawdown", "passed"] is True
    assert table.loc["trades", "passed"] is True
    assert rv.check.passed is False
    html = rv.to_html()
    assert "Sharpe ratio" in html and "✘ fail" in html and "✔ pass" in html and "FAILED" in html


def test_charts_are_pngs_in_image_widgets(passing):
    rv = review(passing)
    eq, monthly = rv.charts["equity"], rv.charts["monthly"]
    assert png_size(eq) == (800, 460)
    w, h = png_size(monthly)
    assert w == 800 and 100 < h < 400  # one year of months
    equity_view, monthly_view = parts(rv, widgets.Image)
    assert equity_view.value == eq and equity_view.format == "png"
    assert monthly_view.value == monthly


def test_policy_false_shows_no_badges_and_a_custom_policy_is_used(failing):
    assert "✔ pass" not in review(failing, policy=False).to_html()
    lenient = DeploymentPolicy(min_sharpe=0.0, min_profit_factor=1.0)
    rv = review(failing, policy=lenient)
    assert rv.check.passed is True
    assert "PASSED" in rv.to_html()
    with pytest.raises(TypeError, match="DeploymentPolicy"):
        review(failing, policy="strict")


def test_trade_list_sorts_by_the_dropdown(passing):
    rv = review(passing)
    rv.sort_trades("pnl", ascending=False)
    pnl = rv.trades_view["pnl"].tolist()
    assert pnl == sorted(pnl, reverse=True)
    part(rv, widgets.Dropdown, "Sort by").value = "bars_held"  # what choosing in the Dropdown does
    part(rv, widgets.ToggleButtons).value = True
    held = rv.trades_view["bars_held"].tolist()
    assert held == sorted(held)
    first_row = rv.to_html().split("<summary>Trades</summary>")[1].split("<tbody>")[1].split("</tr>")[0]
    assert f">{held[0]}<" in first_row
    with pytest.raises(ValueError, match="columns"):
        rv.sort_trades("nope")


def test_comparison_switches_the_shown_run(sweep):
    rv = review(sweep)
    comp = rv.comparison
    assert list(comp["fast"]) == [5, 10, 20]
    assert comp["sharpe"].tolist() == [r.metrics["sharpe"] for r in sweep]
    assert list(comp["policy"]) == [True, False, False]
    assert rv.selected == 0 and rv.result is sweep[0]
    first_png = rv.charts["equity"]
    chooser = part(rv, widgets.Select, "Show run")
    chooser.value = 2  # choosing a row in the Select
    assert rv.selected == 2 and rv.result is sweep[2]
    assert rv.charts["equity"] != first_png and parts(rv, widgets.Image)[0].value == rv.charts["equity"]
    assert f"{sweep[2].metrics['sharpe']:.2f}" in rv.to_html()
    assert "fast=20" in rv.to_html()
    assert rv.select(1).result is sweep[1] and chooser.value == 1
    with pytest.raises(IndexError, match="3 run"):
        rv.select(7)


def test_comparison_ranks_by_a_metric_and_keeps_the_selection(sweep):
    rv = review(sweep).select(1)
    part(rv, widgets.Dropdown, "Rank by").value = "max_drawdown"  # smaller is better
    dds = [r.metrics["max_drawdown"] for r in sweep]
    chooser = part(rv, widgets.Select, "Show run")
    assert [v for _, v in chooser.options] == sorted(range(3), key=lambda i: dds[i])
    assert rv.selected == 1 and chooser.value == 1


def test_sweep_result_and_dict_are_accepted_and_lookalikes_are_not(sma, data, sweep):
    from quantlab.engine.sweep import sweep as run_sweep

    res = run_sweep(sma, data, {"fast": [5, 10, 20], "slow": [50]}, progress=False, **FRICTIONLESS)
    assert [r.metrics["sharpe"] for r in review(res).results] == pytest.approx([r.metrics["sharpe"] for r in sweep])

    class Sweep:  # only the shape of a SweepResult
        results = sweep

    with pytest.raises(TypeError, match="SweepResult"):
        review(Sweep())
    assert review({"a": sweep[0], "b": sweep[1]}).results == sweep[:2]
    with pytest.raises(TypeError, match="BacktestResult"):
        review([sweep[0], 42])
    with pytest.raises(ValueError, match="no results"):
        review([])


def test_repr_and_static_fallback(sweep):
    rv = review(sweep)
    text = repr(rv)
    assert text.startswith("Review(3 runs; showing #0 SMA cross (fast=5 slow=50)") and "policy PASSED" in text
    bundle = rv._repr_mimebundle_()
    assert bundle["text/plain"] == text
    assert bundle["application/vnd.jupyter.widget-view+json"]["model_id"] == rv.model_id
    html = bundle["text/html"]
    assert "Comparison of 3 runs" in html and "Sharpe ratio" in html and "✔ pass" in html
    pngs = inline_pngs(html)
    assert len(pngs) == 2 and pngs[0] == rv.charts["equity"] and png_size(pngs[1])[0] == 800
    assert_html_ok(html)
    comparison = html.split("Comparison of 3 runs")[1]
    assert ">pass</span>" in comparison and ">fail</span>" in comparison  # policy badges


def test_ipython_display_formatter_sees_html_and_widget(passing):
    """What a kernel (and so papermill/nbconvert) records for the output of a cell."""
    from IPython.display import display
    from IPython.utils.capture import capture_output

    InteractiveShell.instance()
    with capture_output() as captured:
        display(review(passing))
    [shown] = captured.outputs
    data = shown.data
    assert {"text/plain", "text/html", "application/vnd.jupyter.widget-view+json"} <= set(data)
    assert len(inline_pngs(data["text/html"])) == 2


def test_closed_review_still_renders_static(passing):
    rv = review(passing)
    rv.close()
    bundle = rv._repr_mimebundle_()
    assert "application/vnd.jupyter.widget-view+json" not in bundle
    assert len(inline_pngs(bundle["text/html"])) == 2


def test_sweep_result_is_reviewed_lazily(sma, data, sweep):
    from quantlab.engine.sweep import sweep as run_sweep

    bad = "def signals(data, fast=10, slow=50):\n    assert fast != 7, 'no sevens'\n" + "\n".join(
        "    " + line for line in """f = data.close.rolling(fast).mean()
s = data.close.rolling(slow).mean()
return (f > s).astype(float)""".splitlines())
    res = run_sweep(bad, data, {"fast": [5, 7, 10, 20], "slow": [50]}, progress=False, **FRICTIONLESS)
    rv = review(res)
    assert len(rv.comparison) == 3  # the failed run (fast=7) is left out, and announced
    assert "1 run(s) failed" in rv.children[0].value
    assert list(rv.comparison["fast"]) == [5, 10, 20]
    assert list(rv.comparison["policy"]) == [True, False, False]  # checked from the sweep's table
    assert rv.comparison["sharpe"].tolist() == pytest.approx([r.metrics["sharpe"] for r in sweep])
    assert sorted(res._cache) == [0]  # only the run shown was rebuilt
    rv.select(2)
    assert sorted(res._cache) == [0, 3]
    assert rv.result.params == {"fast": 20, "slow": 50}
    assert rv.result.equity.equals(sweep[2].equity)


def test_a_strategy_that_never_trades_still_reviews(data):
    from quantlab.engine.backtest import backtest

    r = backtest(data, "def signals(data):\n    return data.close * 0", data_ref="sample")
    rv = review(r)
    table = rv.metrics_table().set_index("metric")
    assert table.loc["win_rate", "value"] == "—" and table.loc["profit_factor", "passed"] is False
    assert "No closed trades." in rv.to_html().split("<summary>Trades</summary>")[1]
    assert rv.charts["equity"][:4] == b"\x89PNG"
    assert "policy FAILED" in repr(rv)



def test_closing_a_shown_widget_replaces_its_output_with_the_static_snapshot(passing):
    from IPython.display import display
    from IPython.utils.capture import capture_output

    InteractiveShell.instance()
    rv = review(passing)
    with capture_output() as captured:
        display(rv)
        rv.close()
    shown, update = captured.outputs
    assert "application/vnd.jupyter.widget-view+json" in shown.data
    assert update.update and update.transient["display_id"] == shown.transient["display_id"]
    assert "application/vnd.jupyter.widget-view+json" not in update.data
    assert len(inline_pngs(update.data["text/html"])) == 2 and update.data["text/plain"] == repr(rv)
