"""The outcome of a backtest: :class:`BacktestResult` (metrics, equity, returns, positions, trades, what
was run) with an exact, columnar JSON round trip (``to_dict``/``from_dict``), and the paged transport
of that dict for results over :data:`PAGE_BARS` bars (:func:`join_pages`, :func:`fetch_all_pages`).

>>> sorted(join_pages([{"index": [1], "equity": [1.0], "returns": [0.0], "positions": [0.0], "page": {}},
...                    {"index": [2], "equity": [2.0], "returns": [1.0], "positions": [0.0], "page": {}}])["index"])
[1, 2]
"""
from __future__ import annotations

import datetime as _dt
import hashlib
import html
import json
import math
from typing import Any, Mapping

import numpy as np
import pandas as pd

from quantlab._util import decode_number, encode_float, to_jsonable

from . import stats as _stats
from .costs import default_costs
from .strategy import Strategy

__all__ = ["BacktestResult", "trades_frame", "TRADE_COLUMNS", "PAGE_BARS", "PER_BAR_KEYS", "join_pages",
           "fetch_all_pages", "afetch_all_pages"]

TRADE_COLUMNS = ("entry_time", "exit_time", "side", "size", "entry_price", "exit_price", "pnl", "return", "bars_held")


def _enc_floats(a: np.ndarray) -> list:
    a = np.asarray(a, dtype=np.float64)
    if np.isfinite(a).all():
        return a.tolist()
    return [encode_float(x) for x in a.tolist()]


def _dec_floats(values: list) -> np.ndarray:
    return np.array([decode_number(x) for x in values], dtype=np.float64) if any(isinstance(x, str) for x in values) \
        else np.array(values, dtype=np.float64)


def _enc_params(params: Mapping[str, Any]) -> dict:
    """JSON-safe parameters (NaN/inf as strings, arrays as lists, other objects as their repr)."""
    return to_jsonable(dict(params), fallback=repr)


def _hash_default(o: Any) -> Any:
    if isinstance(o, (np.ndarray, pd.Series)):
        a = np.ascontiguousarray(np.asarray(o))
        return f"ndarray:{a.dtype}:{a.shape}:{hashlib.sha256(a.tobytes()).hexdigest()}"
    return repr(o)


class BacktestResult:
    """The outcome of :func:`backtest`.

    Attributes: ``metrics`` (dict of plain floats/ints, see :mod:`quantlab.engine.stats`),
    ``equity``, ``returns``, ``positions`` (units held after each bar, ``pd.Series``),
    ``trades`` (DataFrame with ``entry_time, exit_time, side, size, entry_price,
    exit_price, pnl, return, bars_held``; open trades have ``exit_time`` NaT and
    are valued at the last close), ``strategy``, ``name``, ``params``,
    ``data_ref``, ``costs`` (``cash, fees, slippage``), ``periods_per_year``,
    ``run_id``, ``created_at``, ``fill``, ``benchmark`` (buy-and-hold equity from the same
    cash, ``cash × close_t / close_0``; it travels through ``to_dict``/``from_dict``, ``None`` only
    for a result stored before it did);
    property ``drawdown``.

    ``to_dict()`` / ``from_dict()`` round-trip exactly through JSON.

    Example
    -------
    >>> from quantlab.engine import backtest, data
    >>> r = backtest(data.synthetic(500, seed=3), "def signals(data):\\n    return data.close * 0 + 1")
    >>> r.metrics["trades"], r.metrics["open_trades"]
    (0, 1)
    >>> BacktestResult.from_dict(r.to_dict()).equity.equals(r.equity)
    True
    """

    def __init__(self, *, metrics: dict, equity: pd.Series, returns: pd.Series, positions: pd.Series,
                 trades: pd.DataFrame, strategy: Strategy | None = None, name: str = "strategy",
                 params: Mapping[str, Any] | None = None, data_ref: str | None = None,
                 costs: Mapping[str, float] | None = None, periods_per_year: float = 252.0,
                 run_id: str | None = None, created_at: str | None = None, _data_key: Any = None,
                 code_sha256: str | None = None, fill: str = "close", benchmark: pd.Series | None = None) -> None:
        self.metrics = dict(metrics)
        self.fill = fill
        self.benchmark = benchmark
        #: with ``holdout=`` (Lab): metrics of the held-out last bars; ``metrics`` then covers the rest
        self.metrics_oos: dict | None = None
        self.holdout: dict | None = None
        #: the look-ahead report (:class:`~quantlab.engine.lookahead.LookaheadReport`) once ``lab.validate`` ran it
        self.lookahead: Any = None
        #: the code agent's ``Candidate`` that produced this result when a model wrote the strategy
        #: (``lab.store`` then keeps the generation's transcript too); ``None`` otherwise
        self.generated_by: Any = None
        self.equity = equity
        self.returns = returns
        self.positions = positions
        self.trades = trades
        self.strategy = strategy
        self.name = name
        self.params = dict(params or {})
        self.data_ref = data_ref
        self.costs = dict(costs or default_costs())
        self.periods_per_year = float(periods_per_year)
        self.created_at = created_at or _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
        self.code_sha256 = code_sha256 or (strategy.sha256 if strategy is not None else None)
        self._run_id = run_id
        self._data_key = _data_key

    # -- identity ------------------------------------------------------------------------------
    @property
    def run_id(self) -> str:
        """Deterministic id: sha256 of code sha, params, data (reference or content hash), costs, periods/year.

        Computed on first access (hashing 1M bars takes ~30 ms); a server may set its own.
        """
        if self._run_id is None:
            key = self._data_key
            if key is not None and not isinstance(key, str):
                from .data import content_hash
                key = content_hash(key)
            params = {k: (int(v) if isinstance(v, np.integer) else v) for k, v in self.params.items()}
            payload = json.dumps({"code": self.code_sha256, "params": params,
                                  "data": key if key is not None else self.data_ref,
                                  "costs": {k: to_jsonable(v) for k, v in self.costs.items()},
                                  "ppy": to_jsonable(self.periods_per_year), "fill": self.fill},
                                 sort_keys=True, default=_hash_default)
            self._run_id = hashlib.sha256(payload.encode()).hexdigest()[:16]
            self._data_key = None
        return self._run_id

    @run_id.setter
    def run_id(self, value: str) -> None:
        self._run_id = str(value)

    @property
    def drawdown(self) -> pd.Series:
        """Drawdown per bar as a positive fraction ``1 - equity / running peak``."""
        return pd.Series(_stats.drawdown(self.equity.to_numpy()), index=self.equity.index, name="drawdown")

    # -- serialisation -------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """Columnar, JSON-safe dict: index as int64 ns, floats as JSON numbers, NaN/inf as strings.

        >>> from quantlab.engine import backtest, data
        >>> d = backtest(data.synthetic(50, seed=1), "def signals(data):\\n    return data.close*0+1").to_dict()
        >>> sorted(d)[:4]
        ['benchmark', 'code', 'code_sha256', 'costs']
        """
        t = self.trades
        return {
            "version": 1,
            "run_id": self.run_id,
            "name": self.name,
            "params": _enc_params(self.params),
            "code": self.strategy.code if self.strategy is not None else None,
            "code_sha256": self.code_sha256,
            "data_ref": self.data_ref,
            "costs": {k: to_jsonable(v) for k, v in self.costs.items()},
            "periods_per_year": to_jsonable(self.periods_per_year),
            "fill": self.fill,
            **({"metrics_oos": {k: to_jsonable(v) for k, v in self.metrics_oos.items()}, "holdout": self.holdout}
               if self.metrics_oos is not None else {}),
            "created_at": self.created_at,
            "metrics": {k: to_jsonable(v) for k, v in self.metrics.items()},
            "index": self.equity.index.asi8.tolist(),
            "equity": _enc_floats(self.equity.to_numpy()),
            "returns": _enc_floats(self.returns.to_numpy()),
            "positions": _enc_floats(self.positions.to_numpy()),
            **({"benchmark": _enc_floats(self.benchmark.to_numpy())} if self.benchmark is not None else {}),
            "trades": {
                "entry_time": t["entry_time"].to_numpy(dtype="datetime64[ns]").view("int64").tolist(),
                "exit_time": [None if x == np.iinfo(np.int64).min else x
                              for x in t["exit_time"].to_numpy(dtype="datetime64[ns]").view("int64").tolist()],
                **{c: _enc_floats(t[c].to_numpy()) for c in ("size", "entry_price", "exit_price", "pnl", "return")},
                "side": t["side"].astype(str).tolist(),
                "bars_held": t["bars_held"].astype("int64").tolist(),
            },
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "BacktestResult":
        """Rebuild a result from :meth:`to_dict` output (also after ``json.dumps``/``loads``)."""
        index = pd.DatetimeIndex(np.array(d["index"], dtype="int64").view("datetime64[ns]"), name="time")
        td = d["trades"]
        trades = trades_frame(
            pd.DatetimeIndex(np.array(td["entry_time"], dtype="int64").view("datetime64[ns]")),
            pd.DatetimeIndex(np.array([np.iinfo(np.int64).min if x is None else x for x in td["exit_time"]],
                                      dtype="int64").view("datetime64[ns]")),
            np.array(td["side"], dtype=object), *(_dec_floats(td[c]) for c in ("size", "entry_price", "exit_price",
                                                                               "pnl", "return")),
            np.array(td["bars_held"], dtype=np.int64))
        strategy = None
        if d.get("code"):
            try:
                strategy = Strategy.from_code(d["code"], name=d.get("name"))
            except Exception:  # noqa: BLE001 - keep the numbers even if the code no longer loads here
                strategy = None
        metrics = {k: decode_number(v) for k, v in d["metrics"].items()}
        out = cls(
            metrics=metrics,
            equity=pd.Series(_dec_floats(d["equity"]), index=index, name="equity"),
            returns=pd.Series(_dec_floats(d["returns"]), index=index, name="returns"),
            positions=pd.Series(_dec_floats(d["positions"]), index=index, name="position"),
            benchmark=pd.Series(_dec_floats(d["benchmark"]), index=index, name="benchmark") if "benchmark" in d else None,
            trades=trades, strategy=strategy, name=d.get("name", "strategy"),
            params={k: decode_number(v) for k, v in (d.get("params") or {}).items()}, data_ref=d.get("data_ref"),
            costs={k: decode_number(v) for k, v in (d.get("costs") or {}).items()},
            periods_per_year=decode_number(d["periods_per_year"]), run_id=d.get("run_id"),
            created_at=d.get("created_at"), code_sha256=d.get("code_sha256"), fill=d.get("fill", "close"),
        )
        if d.get("metrics_oos") is not None:
            out.metrics_oos = {k: decode_number(v) for k, v in d["metrics_oos"].items()}
            out.holdout = d.get("holdout")
        return out

    # -- display ---------------------------------------------------------------------------------
    def __repr__(self) -> str:
        m = self.metrics
        span = f"{self.equity.index[0]} .. {self.equity.index[-1]}" if len(self.equity) else "empty"
        return (f"BacktestResult(name={self.name!r}, params={self.params!r}, bars={len(self.equity)}, {span}, "
                f"total_return={m.get('total_return', float('nan')):.4g}, sharpe={m.get('sharpe', float('nan')):.4g}, "
                f"max_drawdown={m.get('max_drawdown', float('nan')):.4g}, trades={m.get('trades')})")

    def _repr_html_(self) -> str:
        pct = {"total_return", "cagr", "volatility", "max_drawdown", "win_rate", "exposure", "benchmark_return"}
        rows = []
        for k, v in self.metrics.items():
            if isinstance(v, float) and k in pct and math.isfinite(v):
                s = f"{v:.2%}"
            elif isinstance(v, float):
                s = f"{v:,.4g}"
            else:
                s = f"{v:,}"
            rows.append(f"<tr><td style='text-align:left'>{html.escape(k)}</td><td>{html.escape(s)}</td></tr>")
        params = ", ".join(f"{html.escape(str(k))}={html.escape(repr(v))}" for k, v in self.params.items()) or "—"
        cost = ", ".join(f"{k}={v:g}" for k, v in self.costs.items())
        return (f"<div><b>Backtest</b> <code>{html.escape(self.name)}</code> <small>{params} · "
                f"{len(self.equity):,} bars · {html.escape(cost)} · data {html.escape(str(self.data_ref or '—'))}"
                f"</small><table>{''.join(rows)}</table></div>")

    def plot(self, ax: Any = None):
        """Equity and drawdown chart (matplotlib); returns the Figure. Works without a display."""
        from .plotting import plot_result
        return plot_result(self, ax=ax)


def trades_frame(entry_time, exit_time, side, size, entry_price, exit_price, pnl, ret, bars_held) -> pd.DataFrame:
    """The trades table of a result, columns :data:`TRADE_COLUMNS` in that order."""
    return pd.DataFrame({
        "entry_time": entry_time, "exit_time": exit_time, "side": pd.Series(side, dtype=object).to_numpy(),
        "size": size, "entry_price": entry_price, "exit_price": exit_price, "pnl": pnl,
        "return": ret, "bars_held": np.asarray(bars_held, dtype=np.int64),
    }, columns=list(TRADE_COLUMNS))


# -- paged transport of to_dict() ---------------------------------------------------------------
PER_BAR_KEYS = ("index", "equity", "returns", "positions", "benchmark")
#: bars per page when a result travels in pages (the backtest server's ``get_run`` and its clients)
PAGE_BARS = 100_000


def join_pages(pages: "list[Mapping[str, Any]]") -> dict[str, Any]:
    """Join pages of :meth:`BacktestResult.to_dict` (each with a ``"page"`` field) into one dict.

    A server sends results of many bars in pages: the per-bar lists (:data:`PER_BAR_KEYS`)
    are split, everything else rides on the first page.

    >>> join_pages([{"index": [1], "equity": [1.0], "returns": [0.0], "positions": [0.0], "name": "x",
    ...              "page": {"next_offset": 1}},
    ...             {"index": [2], "equity": [2.0], "returns": [1.0], "positions": [1.0],
    ...              "page": {"next_offset": None}}])["equity"]
    [1.0, 2.0]
    """
    first, *rest = pages
    d = {k: (list(v) if k in PER_BAR_KEYS else v) for k, v in first.items() if k != "page"}
    for page in rest:
        for k in PER_BAR_KEYS:
            if k in d:  # ``benchmark`` is absent from results stored before it travelled
                d[k].extend(page[k])
    return d


def _follow_pages(first: Mapping[str, Any]):
    """The one paging loop: yields each next offset, is sent that page, returns the joined dict."""
    pages = [first]
    nxt = (first.get("page") or {}).get("next_offset")
    while nxt is not None:
        page = yield nxt
        pages.append(page)
        nxt = (page.get("page") or {}).get("next_offset")
    return join_pages(pages)


def fetch_all_pages(first: Mapping[str, Any], fetch: Any) -> dict[str, Any]:
    """Follow ``first["page"]["next_offset"]`` with ``fetch(offset) -> page`` and join the pages.

    :func:`afetch_all_pages` is the same for an ``async`` fetch.

    >>> pages = {0: {"index": [1], "equity": [1.0], "returns": [0.0], "positions": [0.0], "name": "x",
    ...              "page": {"next_offset": 1}},
    ...          1: {"index": [2], "equity": [2.0], "returns": [1.0], "positions": [1.0], "page": {"next_offset": None}}}
    >>> fetch_all_pages(pages[0], pages.__getitem__)["equity"]
    [1.0, 2.0]
    """
    loop = _follow_pages(first)
    try:
        offset = next(loop)
        while True:
            offset = loop.send(fetch(offset))
    except StopIteration as done:
        return done.value


async def afetch_all_pages(first: Mapping[str, Any], fetch: Any) -> dict[str, Any]:
    """:func:`fetch_all_pages` with ``await fetch(offset)`` (e.g. an MCP ``get_run`` call).

    >>> import asyncio
    >>> pages = {0: {"index": [1], "equity": [1.0], "returns": [0.0], "positions": [0.0], "page": {"next_offset": 1}},
    ...          1: {"index": [2], "equity": [2.0], "returns": [1.0], "positions": [1.0], "page": {"next_offset": None}}}
    >>> async def get(offset):
    ...     return pages[offset]
    >>> asyncio.run(afetch_all_pages(pages[0], get))["index"]
    [1, 2]
    """
    loop = _follow_pages(first)
    try:
        offset = next(loop)
        while True:
            offset = loop.send(await fetch(offset))
    except StopIteration as done:
        return done.value
