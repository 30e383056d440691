"""The run store on its own: exact round trip of to_dict() through Parquet + JSON."""
from __future__ import annotations

import pytest

from quantlab.engine import data as qdata
from quantlab.engine.backtest import BacktestResult, backtest
from quantlab.servers.backtest.store import RunNotFound, RunStore, check_run_id

FLAT = "def signals(data):\n    return data.close * 0\n"
FLIP = "def signals(data):\n    import numpy as np\n    return data.close * 0 + np.where(np.arange(len(data)) % 7 < 3, 1.0, -1.0)\n"


def _save(store, result, name="s"):
    store.write_run(result, {"code": result.strategy.code, "data": "x", "params": {}}, {"name": name, "bars": len(result.equity), "trades": len(result.trades), "metrics": result.metrics})


@pytest.mark.parametrize("code", [FLAT, FLIP])
def test_round_trip_is_exact(tmp_path, code):
    r = backtest(qdata.synthetic(3_000, seed=2), code, fees=0.001)
    store = RunStore(tmp_path)
    _save(store, r)
    assert store.read_result(r.run_id) == r.to_dict()
    back = BacktestResult.from_dict(store.read_result(r.run_id))
    assert back.equity.equals(r.equity) and back.positions.equals(r.positions)
    assert len(back.trades) == len(r.trades)


def test_unknown_per_bar_list_falls_back_to_generic_storage(tmp_path):
    class WithDrawdown(BacktestResult):
        def to_dict(self):
            d = super().to_dict()
            d["drawdown"] = self.drawdown.tolist()
            return d

    r = backtest(qdata.synthetic(2_000, seed=3), FLIP)
    ext = WithDrawdown(metrics=r.metrics, equity=r.equity, returns=r.returns, positions=r.positions, trades=r.trades,
                       strategy=r.strategy, name=r.name, params=r.params, costs=r.costs,
                       periods_per_year=r.periods_per_year, run_id=r.run_id, created_at=r.created_at)
    store = RunStore(tmp_path)
    _save(store, ext)
    assert store.read_result(r.run_id) == ext.to_dict()


def test_a_stored_run_never_changes(tmp_path):
    # issue 12: a run is written once, as a whole; saving the same run id again changes nothing
    r = backtest(qdata.synthetic(1_000, seed=4), FLIP)
    store = RunStore(tmp_path)
    _save(store, r, name="first")
    folder = tmp_path / r.run_id
    before = {p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in folder.iterdir()}
    _save(store, r, name="renamed")
    assert {p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in folder.iterdir()} == before
    assert store.read_meta(r.run_id)["name"] == "first"
    assert [p.name for p in tmp_path.iterdir()] == [r.run_id]  # no temporary folder left behind


def test_ids_and_missing_runs(tmp_path):
    store = RunStore(tmp_path)
    with pytest.raises(RunNotFound, match="list_runs"):
        store.read_meta("0123456789abcdef")
    for bad in ("../x", "a/b", "", ".hidden", "x" * 200):
        with pytest.raises(ValueError, match="invalid run id"):
            check_run_id(bad)
    assert "RunStore" in repr(store) and "<table>" in store._repr_html_()
