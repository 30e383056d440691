"""A stored backtest run is written once, as a whole, and never changes (servers/backtest/store.py)."""
from __future__ import annotations

import copy

from quantlab import backtest, data
from quantlab.servers.backtest.store import RunStore


def _save(store, result, name):
    store.write_run(result, {"code": result.strategy.code, "data": "sample", "params": result.params},
                    {"name": name, "bars": len(result.equity), "trades": len(result.trades), "metrics": result.metrics})


def test_a_run_id_is_never_rewritten(tmp_path, strategy):
    first = backtest(data.sample(), strategy, {"fast": 5, "slow": 30})
    store = RunStore(tmp_path)
    _save(store, first, "first")
    stored = store.read_result(first.run_id)
    files = {p.name: p.read_bytes() for p in (tmp_path / first.run_id).iterdir()}
    # a different result under the same id (before: meta.json replaced, series.parquet kept: a chimera)
    other = copy.copy(first)
    other.equity = first.equity * 2
    other.metrics = {**first.metrics, "sharpe": 99.0}
    _save(store, other, "second")
    assert {p.name: p.read_bytes() for p in (tmp_path / first.run_id).iterdir()} == files
    assert store.read_result(first.run_id) == stored
    assert store.read_meta(first.run_id)["name"] == "first"
    assert sorted(p.name for p in tmp_path.iterdir()) == [first.run_id]  # nothing half-written left over

