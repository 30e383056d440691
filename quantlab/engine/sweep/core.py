"""The in-process core of a sweep: signals -> target columns -> metrics, no pandas result objects.

:class:`Context` holds what every run of one sweep shares (the data as arrays, the strategy,
the costs) and turns parameter dicts into metric rows with the same arithmetic as
:func:`~quantlab.engine.backtest.backtest`. The executors build one per process (or per
Dask worker) and feed it chunks of combinations.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from .. import stats as _stats
from ..simulate import bar_returns, execution, simulate
from ..signals import to_targets
from ..strategy import Strategy, StrategyError

__all__ = ["BATCH_HOOK", "Context"]

#: Name of the optional batched-signals function a strategy may define.
BATCH_HOOK = "signals_many"
_NAT = np.iinfo(np.int64).min
_BATCH_BYTES = 16 * 2**20  # signal columns asked from ``signals_many`` at once


class _LightColumn:
    __slots__ = ("values",)

    def __init__(self, values: np.ndarray) -> None:
        self.values = values

    def to_numpy(self, dtype: Any = None, copy: bool = False) -> np.ndarray:
        return self.values if dtype is None else self.values.astype(dtype, copy=copy)

    def notna(self) -> "_LightColumn":
        v = self.values
        return _LightColumn(v != _NAT if v.dtype == np.int64 else ~np.isnan(v))

    def __len__(self) -> int:
        return self.values.size


class _LightTrades:
    """The two trade columns ``compute_metrics`` reads (``pnl``, ``exit_time``), without building a
    DataFrame per run (that costs more than the metrics on short data). If ``compute_metrics`` ever
    needs more, the sweep switches to a real DataFrame for good."""

    usable = True
    __slots__ = ("_cols",)

    def __init__(self, pnl: np.ndarray, exit_ns: np.ndarray) -> None:
        self._cols = {"pnl": _LightColumn(pnl), "exit_time": _LightColumn(exit_ns)}

    def __getitem__(self, key: str) -> _LightColumn:
        return self._cols[key]

    def __len__(self) -> int:
        return len(self._cols["pnl"])


class Context:
    """Everything a worker needs, built once: data arrays, strategy, costs."""

    __slots__ = ("data", "strategy", "close", "i8", "cash", "fees", "slippage", "ppy", "fill", "hook", "windows",
                 "sandboxed", "shared")

    def __init__(self, strategy: Strategy, data: pd.DataFrame, costs: Mapping[str, float]) -> None:
        self.data = data
        self.strategy = strategy
        self.close = data["close"].to_numpy(dtype=np.float64)
        idx = data.index if data.index.unit == "ns" else data.index.as_unit("ns")
        self.i8 = idx.asi8
        self.cash = float(costs["cash"])
        self.fees = float(costs["fees"])
        self.slippage = float(costs["slippage"])
        self.ppy = float(costs["periods_per_year"])
        self.fill = costs.get("fill", "close")
        # walk-forward: metrics per bar window [a, b) of one full-data signal run, keys "k:metric"
        self.windows = tuple(tuple(w) for w in costs.get("windows") or ())
        hook = strategy.function.__globals__.get(BATCH_HOOK)
        self.hook = hook if callable(hook) else None
        from ..sandbox import SandboxedStrategy

        # strategy code confined to the sandbox: one sandboxed child evaluates each chunk of combinations
        self.sandboxed = isinstance(strategy, SandboxedStrategy)
        self.shared = None

    def metrics(self, target: np.ndarray) -> dict[str, Any]:
        """Metrics of one validated target column — the same arithmetic as ``backtest()``.

        With ``windows`` (walk-forward), the metrics of each window ``k`` as keys ``"k:name"``:
        a backtest of ``data.iloc[a:b]`` with the targets ``target[a:b]``."""
        if self.windows:
            out: dict[str, Any] = {}
            for k, (a, b) in enumerate(self.windows):
                for name, v in self._metrics(target[a:b], a, b).items():
                    out[f"{k}:{name}"] = v
            return out
        return self._metrics(target, 0, self.close.size)

    def _metrics(self, target: np.ndarray, a: int, b: int) -> dict[str, Any]:
        whole = a == 0 and b == self.close.size
        data = self.data if whole else self.data.iloc[a:b]
        close = self.close if whole else self.close[a:b]
        i8 = self.i8 if whole else self.i8[a:b]
        executed, price = execution(data, target, self.fill)
        out = simulate(close, executed, self.cash, self.fees, self.slippage, price=price)
        equity, units = out["equity"], out["units"]
        rets = bar_returns(equity, self.cash)
        xi = out["exit_idx"]
        closed = xi >= 0
        exit_ns = np.where(closed, i8[np.where(closed, xi, 0)], _NAT)
        if _LightTrades.usable:
            try:
                return _stats.compute_metrics(equity, rets, units, _LightTrades(out["pnl"], exit_ns), self.ppy,
                                              cash=self.cash, close=close)
            except (AttributeError, TypeError, KeyError, IndexError):  # compute_metrics wants more of a frame
                _LightTrades.usable = False
        trades = pd.DataFrame({"pnl": out["pnl"], "exit_time": exit_ns.view("datetime64[ns]")})
        return _stats.compute_metrics(equity, rets, units, trades, self.ppy, cash=self.cash, close=close)

    def _columns(self, combos: list[dict[str, Any]]) -> list[Any] | None:
        """Raw signal columns from the batched hook, or None if there is none or it failed."""
        if self.hook is None or len(combos) < 2:
            return None
        try:
            raw = self.hook(self.data.copy(deep=False), [dict(c) for c in combos])
            if isinstance(raw, pd.DataFrame):
                if not raw.index.equals(self.data.index):
                    return None
                raw = raw.to_numpy()
            if isinstance(raw, np.ndarray):
                if raw.ndim != 2:
                    return None
                raw = np.asfortranarray(raw)  # contiguous columns: validating a strided column is slow
                cols = [raw[:, j] for j in range(raw.shape[1])]
            else:
                cols = list(raw)
        except Exception:  # noqa: BLE001 - fall back to signals() per combination
            return None
        return cols if len(cols) == len(combos) else None

    def run(self, combos: list[dict[str, Any]]) -> list[tuple[dict[str, Any] | None, str | None]]:
        """Metrics (or an error message) for each resolved parameter dict."""
        # batched signals are asked for a few at a time: all columns of a batch live at once, and
        # more than ~16 MB of them makes the allocator hand memory back and fault it in again
        # (measured: 64 columns of 100,000 bars ran 1.4x slower than 20)
        if self.sandboxed:
            return self._run_sandboxed(combos)
        step = max(2, int(_BATCH_BYTES // (8 * max(1, self.close.size))))
        rows: list[tuple[dict[str, Any] | None, str | None]] = []
        for a in range(0, len(combos), step):
            rows.extend(self._run_batch(combos[a:a + step]))
        return rows

    def _run_batch(self, combos: list[dict[str, Any]]) -> list[tuple[dict[str, Any] | None, str | None]]:
        cols = self._columns(combos)
        rows: list[tuple[dict[str, Any] | None, str | None]] = []
        s = self.strategy
        for j, params in enumerate(combos):
            try:
                # a shallow copy (copy-on-write): a strategy that adds columns cannot affect the next run
                sig = cols[j] if cols is not None else s.function(self.data.copy(deep=False), **params)
                target = to_targets(sig, self.data, s.name)
                rows.append((self.metrics(target), None))
            except Exception as exc:  # noqa: BLE001 - a failing combination is reported in its row
                rows.append((None, f"{type(exc).__name__}: {exc}"))
        return rows

    def _run_sandboxed(self, combos: list[dict[str, Any]]) -> list[tuple[dict[str, Any] | None, str | None]]:
        """One sandboxed child computes the signals of all ``combos`` (``signals_many`` in chunks when the
        strategy has it); this process validates them and computes the metrics as they stream in.
        A refusal or a limit fails the combinations that had not returned, with the sandbox's message."""
        from .. import sandbox

        if self.shared is None:
            self.shared = sandbox.SharedData(self.data)
        s = self.strategy
        rows: list[tuple[dict[str, Any] | None, str | None] | None] = [None] * len(combos)
        try:
            for i, sig in sandbox.iter_signals(s.code, self.shared, combos, limits=s.limits, allow=s.function.allow,
                                               name=s.name, batch=True):
                if isinstance(sig, BaseException):  # the strategy's own exception reads as in-process, plus its line
                    rows[i] = (None, getattr(sig, "detail", None) or f"{type(sig).__name__}: {sig}")
                    continue
                try:
                    rows[i] = (self.metrics(to_targets(sig, self.data, s.name)), None)
                except Exception as exc:  # noqa: BLE001 - a failing combination is reported in its row
                    rows[i] = (None, f"{type(exc).__name__}: {exc}")
        except (sandbox.SandboxError, StrategyError) as exc:
            failed = (None, f"{type(exc).__name__}: {exc}")
            rows = [r if r is not None else failed for r in rows]
        return [r if r is not None else (None, "SandboxError: no result for this combination") for r in rows]
