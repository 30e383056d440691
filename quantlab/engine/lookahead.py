"""Empirical look-ahead check: does ``signals()`` at bar *t* depend on bars after *t*?

A causal strategy's target at bar *t* is a function of bars ``0..t`` only, so running
``signals()`` on a truncated prefix ``data.iloc[:cut]`` must give, for every bar before the
cut, exactly the targets of the run on the full data. :func:`check_lookahead` runs the
full data once and a few prefixes, and compares the *targets* (the numbers the backtest
trades: NaN counts as flat, as in :func:`~quantlab.engine.backtest.backtest`). Any bar
before a cut whose target differs is look-ahead: the report names the first such bar, the
cut that exposed it and the two values.

What it catches: ``shift(-k)``, centred rolling windows, full-sample statistics
(``(x - x.mean()) / x.std()``), resampling that fills a bar with its period's final value,
anything else that reads the future of any prefix tested. What it cannot catch: a
dependence on the future that is identical for every prefix tested (e.g. code that looks
only at bars after the last cut), or look-ahead hidden in the *data* (a column computed
from future prices before it reached the strategy). A strategy that is not deterministic
(unseeded randomness) differs from itself; the report says so (``reason="nondeterministic"``).

Cost: one full run plus ten prefixes (2 % .. 45 % of the bars, :data:`DEFAULT_CUTS`) whose
lengths add up to 1.88x the data, i.e. 2.88x one evaluation of ``signals()`` and no
simulation or metrics: under 3x one backtest on the same data
(``benchmarks/bench_validation.py``). Many short cuts rather than a few long ones, because a
one-bar look-ahead in a 0/1 signal shows at a given cut only when the future bar would have
changed the target (about half the time): ten cuts miss it about once in a thousand.

Example
-------
>>> from quantlab.engine import data
>>> rep = check_lookahead("def signals(data):\\n    return (data.close.shift(-1) > data.close) * 1.0",
...                       data.synthetic(1000, seed=1))
>>> rep.causal, rep.first_bar, rep.cut
(False, 19, 20)
>>> check_lookahead("def signals(data, n=20):\\n    return (data.close > data.close.rolling(n).mean()) * 1.0",
...                 data.synthetic(1000, seed=1)).causal
True
"""
from __future__ import annotations

import html
import math
import time
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd

from quantlab._util import html as qh

from .backtest import SignalError, check_data
from .signals import to_targets
from .strategy import Strategy

__all__ = ["check_lookahead", "LookaheadReport", "DEFAULT_CUTS"]

#: Prefix lengths tried by default, as fractions of the number of bars.
DEFAULT_CUTS = (0.02, 0.04, 0.07, 0.1, 0.14, 0.18, 0.23, 0.29, 0.36, 0.45)
RTOL = 1e-9
ATOL = 1e-12


class LookaheadReport:
    """The outcome of :func:`check_lookahead`.

    Attributes
    ----------
    causal : bool
        ``True`` when every prefix run agreed with the full run on every bar before its cut.
    first_bar : int or None
        Position of the first bar whose target differs (``None`` when causal).
    time : pandas.Timestamp or None
        The timestamp of ``first_bar``.
    cut : int or None
        Length of the prefix that exposed it: the prefix run saw bars ``0 .. cut-1``.
    full_value, prefix_value : float or None
        The target at ``first_bar`` in the full run and in the prefix run.
    reason : str or None
        ``"look-ahead"`` or ``"nondeterministic"`` (the prefix run differs from a re-run of itself).
    checks : pandas.DataFrame
        One row per cut: ``cut, compared, differing, first_bar, error``.
    seconds : float
        Wall time of the check.

    ``bool(report)`` is ``report.causal``.
    """

    def __init__(self, *, causal: bool, name: str, params: Mapping[str, Any], bars: int, checks: pd.DataFrame,
                 first_bar: int | None = None, time: Any = None, cut: int | None = None,
                 full_value: float | None = None, prefix_value: float | None = None,
                 reason: str | None = None, seconds: float = 0.0) -> None:
        self.causal = bool(causal)
        self.name = name
        self.params = dict(params)
        self.bars = int(bars)
        self.checks = checks
        self.first_bar = first_bar
        self.time = time
        self.cut = cut
        self.full_value = full_value
        self.prefix_value = prefix_value
        self.reason = reason
        self.seconds = float(seconds)

    def __bool__(self) -> bool:
        return self.causal

    @property
    def message(self) -> str:
        """One sentence a person can act on."""
        if self.causal:
            cuts = ", ".join(str(c) for c in self.checks["cut"][self.checks["error"].isna()])
            return (f"strategy {self.name!r} looks causal: runs on the first {cuts} of {self.bars:,} bars "
                    "gave the same targets as the full run.")
        if self.reason == "nondeterministic":
            return (f"strategy {self.name!r} is not deterministic: two runs on the same first {self.cut:,} bars "
                    f"differ at bar {self.first_bar} ({self.time}); seed any randomness so backtests repeat.")
        return (f"strategy {self.name!r} looks ahead: at bar {self.first_bar} ({self.time}) the target is "
                f"{self.full_value:g} with the full data but {self.prefix_value:g} when only the first "
                f"{self.cut:,} bars exist, so it uses bars after {self.time}. Look for shift(-k), "
                "rolling(..., center=True) or statistics of the whole series.")

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe summary (what a ledger or state file records)."""
        def num(x: Any) -> Any:
            return None if x is None or (isinstance(x, float) and not math.isfinite(x)) else x
        return {"causal": self.causal, "name": self.name, "bars": self.bars, "first_bar": self.first_bar,
                "time": None if self.time is None else str(self.time), "cut": self.cut,
                "full_value": num(self.full_value), "prefix_value": num(self.prefix_value),
                "reason": self.reason, "cuts": [int(c) for c in self.checks["cut"]]}

    def __repr__(self) -> str:
        if self.causal:
            return (f"LookaheadReport(causal=True, name={self.name!r}, bars={self.bars}, "
                    f"cuts={[int(c) for c in self.checks['cut']]})")
        return (f"LookaheadReport(causal=False, name={self.name!r}, reason={self.reason!r}, "
                f"first_bar={self.first_bar} ({self.time}), cut={self.cut}, "
                f"full_value={self.full_value:g}, prefix_value={self.prefix_value:g})")

    def _repr_html_(self) -> str:
        ok = self.causal
        badge = qh.badge(ok, "✔ causal" if ok else "✘ " + (self.reason or "look-ahead"))
        rows = "".join(
            f"<tr><td style='text-align:left'>{int(r.cut):,}</td><td>{int(r.compared):,}</td>"
            f"<td>{int(r.differing):,}</td><td>{'' if pd.isna(r.first_bar) else int(r.first_bar)}</td>"
            f"<td style='text-align:left'>{'' if r.error is None or pd.isna(r.error) else html.escape(str(r.error))}"
            "</td></tr>" for r in self.checks.itertuples())
        return (f"<div><b>Look-ahead check</b> <code>{html.escape(self.name)}</code> {badge} "
                f"<small>{self.bars:,} bars · {self.seconds:.3g} s</small><p>{html.escape(self.message)}</p>"
                "<table><tr><th>cut</th><th>bars compared</th><th>differing</th><th>first bar</th><th>error</th>"
                f"</tr>{rows}</table></div>")


def _cut_points(n: int, cuts: Any) -> list[int]:
    if cuts is None:
        cuts = DEFAULT_CUTS
    if isinstance(cuts, (int, np.integer)):
        k = int(cuts)
        if k < 1:
            raise ValueError(f"cuts must be >= 1, got {k}.")
        cuts = [(i + 1) / (k + 1) for i in range(k)]
    out = set()
    for c in cuts:
        if isinstance(c, float) and 0.0 < c < 1.0:
            c = int(round(c * n))
        c = int(c)
        if 1 <= c < n:
            out.add(c)
    return sorted(out)


def _evaluator(strategy: Strategy, resolved: dict, sandbox: bool, limits: Any):
    if sandbox:
        try:
            from .sandbox import run_signals  # lands with the sandbox work (engine layer)
        except ImportError:  # pragma: no cover - depends on the sandbox being present
            raise RuntimeError("check_lookahead(..., sandbox=True) needs quantlab.engine.sandbox, "
                               "which this quantlab does not have yet.") from None

        def run(frame: pd.DataFrame) -> np.ndarray:
            kw = {} if limits is None else {"limits": limits}
            return to_targets(run_signals(strategy, frame, resolved, **kw), frame, strategy.name)
    else:
        def run(frame: pd.DataFrame) -> np.ndarray:
            return to_targets(strategy.function(frame.copy(deep=False), **resolved), frame, strategy.name)
    return run


def _first_diff(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Positions where two target arrays differ beyond float noise."""
    return np.flatnonzero(np.abs(a - b) > ATOL + RTOL * np.abs(a))


def check_lookahead(strategy: Strategy | str, data: pd.DataFrame, params: Mapping[str, Any] | None = None, *,
                    cuts: int | Sequence[float | int] | None = None, sandbox: bool = False,
                    limits: Any = None) -> LookaheadReport:
    """Check that ``signals()`` is causal by re-running it on truncated prefixes of ``data``.

    Parameters
    ----------
    strategy : Strategy or str
        The strategy or its source code.
    data : pandas.DataFrame
        OHLCV bars with a DatetimeIndex (as for :func:`~quantlab.engine.backtest.backtest`).
    params : mapping, optional
        Parameters overriding the strategy's defaults.
    cuts : int or sequence, optional
        Prefix lengths to test: bar counts, fractions in (0, 1) of the bars, or a number of
        evenly spaced cuts. Default :data:`DEFAULT_CUTS` (ten prefixes, 2 % .. 45 % of the bars).
    sandbox : bool
        Run ``signals()`` in the sandboxed child of :mod:`quantlab.engine.sandbox` (for code
        you did not write) instead of in this process.
    limits : SandboxLimits, optional
        Limits for the sandboxed runs.

    Returns
    -------
    LookaheadReport
        ``.causal``, and when not causal ``.first_bar``, ``.time``, ``.cut``, ``.full_value``,
        ``.prefix_value``.

    Raises
    ------
    SignalError
        If ``signals()`` fails on the full data, or on every prefix.

    Example
    -------
    >>> from quantlab.engine import data
    >>> rep = check_lookahead("def signals(data):\\n    z = data.close - data.close.mean()\\n    return (z > 0) * 1.0",
    ...                       data.synthetic(500, seed=2))
    >>> rep.causal, rep.reason
    (False, 'look-ahead')
    """
    t0 = time.perf_counter()
    strategy = Strategy.coerce(strategy)
    check_data(data)
    n = len(data)
    if n < 2:
        raise ValueError(f"the look-ahead check needs at least 2 bars, the data has {n}.")
    resolved = strategy.resolve_params(params)
    run = _evaluator(strategy, resolved, sandbox, limits)
    full = run(data)
    rows = []
    best: tuple[int, int, float, float] | None = None       # first_bar, cut, full, prefix
    best_prefix: np.ndarray | None = None
    for cut in _cut_points(n, cuts):
        try:
            pre = run(data.iloc[:cut])
        except Exception as exc:  # noqa: BLE001 - a strategy that needs more bars than the prefix has
            rows.append((cut, 0, 0, None, f"{type(exc).__name__}: {exc}"))
            continue
        diff = _first_diff(full[:cut], pre)
        first = int(diff[0]) if diff.size else None
        rows.append((cut, cut, int(diff.size), first, None))
        if first is not None and (best is None or first < best[0]):
            best = (first, cut, float(full[first]), float(pre[first]))
            best_prefix = pre
    checks = pd.DataFrame(rows, columns=["cut", "compared", "differing", "first_bar", "error"])
    checks["first_bar"] = checks["first_bar"].astype("Int64")
    if rows and all(r[4] is not None for r in rows):
        raise SignalError(f"strategy {strategy.name!r}: signals() failed on every prefix tested "
                          f"({', '.join(str(r[0]) for r in rows)} bars), so look-ahead could not be checked; "
                          f"first error: {rows[0][4]}")
    common = dict(name=strategy.name, params=resolved, bars=n, checks=checks)
    if best is None:
        return LookaheadReport(causal=True, seconds=time.perf_counter() - t0, **common)
    first, cut, fv, pv = best
    reason = "look-ahead"
    again = run(data.iloc[:cut])            # only when something differed: is it randomness?
    if _first_diff(best_prefix, again).size:  # type: ignore[arg-type]
        reason = "nondeterministic"
    return LookaheadReport(causal=False, first_bar=first, time=data.index[first], cut=cut, full_value=fv,
                           prefix_value=pv, reason=reason, seconds=time.perf_counter() - t0, **common)
