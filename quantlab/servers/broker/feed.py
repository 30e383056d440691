"""Market data for the paper broker: symbol specifications and a bar feed with a clock.

The feed holds one-minute (or, for replayed files, the files' own step) *base
bars* per symbol on a shared timeline. ``cursor`` counts how many timeline
steps are visible; everything at or before ``now`` is history, everything after
is the future and is never served. Larger timeframes are aggregated from base
bars; only *completed* bars are served.

Two sources:

* ``synthetic`` (default): a seeded random walk per symbol, reproducible from
  ``(seed, symbol)``; generated lazily in chunks.
* a directory of ``<SYMBOL>.csv`` / ``<SYMBOL>.parquet`` files with columns
  ``time, open, high, low, close`` (optional ``tick_volume, spread, real_volume``);
  ``time`` is epoch seconds or anything :func:`pandas.to_datetime` reads.

Example
-------
>>> feed = Feed.synthetic(["EURUSD"], seed=7, history=100)
>>> feed.now == feed.start + 99 * 60
True
>>> rates = feed.rates("EURUSD", "M1", count=3)
>>> list(rates)[:5]
['time', 'open', 'high', 'low', 'close']
"""
from __future__ import annotations

import hashlib
import html
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from . import constants as C

__all__ = ["SymbolSpec", "Feed", "DEFAULT_SYMBOLS", "FeedError"]

RATE_FIELDS = ("time", "open", "high", "low", "close", "tick_volume", "spread", "real_volume")
SYNTH_START = 1_704_067_200  # 2024-01-01 00:00:00 UTC
CHUNK = 65_536


class FeedError(ValueError):
    """A data request the feed cannot serve (unknown symbol, bad range, ...)."""


@dataclass
class SymbolSpec:
    """Contract specification of one symbol, with MT5's field names.

    ``price`` is the synthetic feed's starting price, ``vol`` its per-minute
    volatility (log-return standard deviation).

    >>> SymbolSpec("EURUSD", digits=5, contract_size=100_000).point
    1e-05
    """

    name: str
    digits: int = 5
    contract_size: float = 100_000.0
    volume_min: float = 0.01
    volume_step: float = 0.01
    volume_max: float = 100.0
    spread: int = 10  # points
    description: str = ""
    currency_base: str = ""
    currency_profit: str = "USD"
    currency_margin: str = ""
    calc_mode: int = C.SYMBOL_CALC_MODE_FOREX
    price: float = 1.0
    vol: float = 0.0002
    path: str = ""

    @property
    def point(self) -> float:
        return float(10.0 ** -self.digits)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "SymbolSpec":
        return cls(**{k: v for k, v in d.items() if k in cls.__dataclass_fields__})


def _fx(name: str, digits: int, price: float, vol: float, spread: int, desc: str) -> SymbolSpec:
    return SymbolSpec(
        name, digits=digits, contract_size=100_000.0, spread=spread, description=desc,
        currency_base=name[:3], currency_profit=name[3:], currency_margin=name[:3],
        calc_mode=C.SYMBOL_CALC_MODE_FOREX, price=price, vol=vol, path=f"Forex\\{name}",
    )


DEFAULT_SYMBOLS: dict[str, SymbolSpec] = {
    "EURUSD": _fx("EURUSD", 5, 1.1000, 0.00015, 10, "Euro vs US Dollar"),
    "GBPUSD": _fx("GBPUSD", 5, 1.2700, 0.00018, 12, "Great Britain Pound vs US Dollar"),
    "USDJPY": _fx("USDJPY", 3, 150.00, 0.00015, 12, "US Dollar vs Japanese Yen"),
    "XAUUSD": SymbolSpec(
        "XAUUSD", digits=2, contract_size=100.0, volume_min=0.01, volume_step=0.01, volume_max=50.0,
        spread=30, description="Gold vs US Dollar", currency_base="XAU", currency_profit="USD",
        currency_margin="XAU", calc_mode=C.SYMBOL_CALC_MODE_CFD, price=2000.0, vol=0.0004, path="Metals\\XAUUSD",
    ),
    "BTCUSD": SymbolSpec(
        "BTCUSD", digits=2, contract_size=1.0, volume_min=0.01, volume_step=0.01, volume_max=20.0,
        spread=1500, description="Bitcoin vs US Dollar", currency_base="BTC", currency_profit="USD",
        currency_margin="BTC", calc_mode=C.SYMBOL_CALC_MODE_CFD, price=40000.0, vol=0.0012, path="Crypto\\BTCUSD",
    ),
}


def _seed_for(seed: int, symbol: str, chunk: int) -> np.random.Generator:
    h = int.from_bytes(hashlib.sha256(f"{seed}:{symbol}:{chunk}".encode()).digest()[:8], "little")
    return np.random.default_rng(h)


@dataclass
class _Series:
    """Base bars of one symbol as numpy arrays (int64 time, float64 prices)."""

    time: np.ndarray
    open: np.ndarray
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    tick_volume: np.ndarray
    spread: np.ndarray
    real_volume: np.ndarray

    def __len__(self) -> int:
        return len(self.time)


@dataclass
class Feed:
    """Bars for a set of symbols on one timeline, revealed by a cursor.

    ``cursor`` = number of visible base bars (synthetic) or visible timeline
    steps (replay); ``advance(n)`` reveals ``n`` more. Build it with
    :meth:`synthetic` or :meth:`replay`.

    >>> f = Feed.synthetic(["EURUSD", "XAUUSD"], seed=1, history=10)
    >>> f.advance(5), f.cursor
    (5, 15)
    """

    specs: dict[str, SymbolSpec]
    kind: str = "synthetic"
    seed: int = 7
    step: int = 60
    cursor: int = 0
    source: str = "synthetic"
    _series: dict[str, _Series] = field(default_factory=dict, repr=False)
    _timeline: np.ndarray | None = field(default=None, repr=False)  # replay only
    _end: dict[str, np.ndarray] = field(default_factory=dict, repr=False)  # replay: bars visible per cursor

    # -- construction --------------------------------------------------------------
    @classmethod
    def synthetic(cls, symbols: list[str] | None = None, *, seed: int = 7, history: int = 1000) -> "Feed":
        """A reproducible random-walk feed; ``history`` bars are visible at the start.

        Unknown names get a generic FX-like spec (5 digits, price 1.0).
        """
        names = [s.upper() for s in (symbols or list(DEFAULT_SYMBOLS))]
        specs = {n: DEFAULT_SYMBOLS.get(n) or SymbolSpec(n, description=f"synthetic {n}", path=f"Synthetic\\{n}") for n in names}
        return cls(specs=specs, kind="synthetic", seed=int(seed), step=60, cursor=max(1, int(history)))

    @classmethod
    def replay(cls, directory: str | Path, symbols: list[str] | None = None, *, history: int = 1000) -> "Feed":
        """Replay bars from ``<SYMBOL>.csv`` / ``<SYMBOL>.parquet`` files in ``directory``."""
        d = Path(directory).expanduser()
        if not d.is_dir():
            raise FeedError(f"feed directory {d} does not exist; give a folder of <SYMBOL>.csv or <SYMBOL>.parquet files.")
        files = {p.stem.upper(): p for p in sorted(d.iterdir()) if p.suffix.lower() in (".csv", ".parquet")}
        if symbols:
            missing = [s for s in symbols if s.upper() not in files]
            if missing:
                raise FeedError(f"no file for {missing} in {d}; found {sorted(files)}.")
            files = {s.upper(): files[s.upper()] for s in symbols}
        if not files:
            raise FeedError(f"no .csv or .parquet files in {d}.")
        import pandas as pd  # only for replayed files: the synthetic feed is numpy

        series: dict[str, _Series] = {}
        specs: dict[str, SymbolSpec] = {}
        for name, path in files.items():
            df = pd.read_parquet(path) if path.suffix.lower() == ".parquet" else pd.read_csv(path)
            df.columns = [str(c).lower() for c in df.columns]
            if "time" not in df.columns:
                for alt in ("timestamp", "date", "datetime"):
                    if alt in df.columns:
                        df = df.rename(columns={alt: "time"})
                        break
            missing = [c for c in ("time", "open", "high", "low", "close") if c not in df.columns]
            if missing:
                raise FeedError(f"{path.name}: missing column(s) {missing}; need time, open, high, low, close.")
            t = df["time"]
            if pd.api.types.is_numeric_dtype(t):
                secs = t.astype("int64").to_numpy()
            else:
                secs = ((pd.to_datetime(t, utc=True) - pd.Timestamp(0, tz="UTC")) // pd.Timedelta(seconds=1)).to_numpy(dtype=np.int64)
            order = np.argsort(secs, kind="stable")
            spec = DEFAULT_SYMBOLS.get(name)
            spec = SymbolSpec(**asdict(spec)) if spec else SymbolSpec(name, description=f"replayed from {path.name}", path=f"Replay\\{name}")
            px = float(df["close"].iloc[-1])
            if name not in DEFAULT_SYMBOLS:  # guess digits from the prices
                spec.digits = 2 if px > 500 else (3 if px > 50 else 5)
                spec.currency_base, spec.currency_profit = (name[:3], name[3:]) if len(name) == 6 else (name, "USD")
            n = len(df)
            def col(c: str, default: float, dtype: Any) -> np.ndarray:
                return (df[c].to_numpy(dtype=dtype) if c in df.columns else np.full(n, default, dtype=dtype))[order]
            nd = spec.digits  # prices live on the symbol's tick grid, as on MT5
            series[name] = _Series(
                time=secs[order].astype(np.int64), open=np.round(col("open", 0, np.float64), nd),
                high=np.round(col("high", 0, np.float64), nd), low=np.round(col("low", 0, np.float64), nd),
                close=np.round(col("close", 0, np.float64), nd),
                tick_volume=col("tick_volume", 1, np.int64), spread=col("spread", spec.spread, np.int64),
                real_volume=col("real_volume", 0, np.int64),
            )
            specs[name] = spec
        timeline = np.unique(np.concatenate([s.time for s in series.values()]))
        steps = np.diff(timeline)
        step = int(np.median(steps)) if len(steps) else 60
        feed = cls(specs=specs, kind="replay", step=max(step, 1), cursor=max(1, min(int(history), len(timeline))),
                   source=str(d), _series=series, _timeline=timeline)
        for name, s in series.items():  # visible bars of `name` when cursor = k: searchsorted(time, timeline[k-1], right)
            feed._end[name] = np.searchsorted(s.time, timeline, side="right")
        return feed

    # -- clock -----------------------------------------------------------------------
    @property
    def start(self) -> int:
        return SYNTH_START if self.kind == "synthetic" else int(self._timeline[0])

    @property
    def length(self) -> int | None:
        """Number of timeline steps (``None`` for the endless synthetic feed)."""
        return None if self.kind == "synthetic" else len(self._timeline)

    @property
    def now(self) -> int:
        """Open time (epoch seconds) of the latest visible base bar."""
        if self.kind == "synthetic":
            return SYNTH_START + (self.cursor - 1) * self.step
        return int(self._timeline[self.cursor - 1])

    def time_at(self, cursor: int) -> int:
        """Timeline time of step ``cursor`` (1-based count of visible steps)."""
        if self.kind == "synthetic":
            return SYNTH_START + (cursor - 1) * self.step
        return int(self._timeline[min(cursor, len(self._timeline)) - 1])

    def advance(self, bars: int) -> int:
        """Reveal up to ``bars`` more steps; returns how many were revealed (a replay can end)."""
        bars = int(bars)
        if bars < 0:
            raise FeedError("bars must be >= 0.")
        if self.kind == "replay":
            bars = min(bars, len(self._timeline) - self.cursor)
        self.cursor += bars
        return bars

    # -- data -----------------------------------------------------------------------
    def spec(self, symbol: str) -> SymbolSpec:
        s = self.specs.get(str(symbol).upper()) if isinstance(symbol, str) else None
        if s is None:
            raise FeedError(f"unknown symbol {symbol!r}; available: {', '.join(self.specs)}.")
        return s

    def _ensure(self, symbol: str, n: int) -> _Series:
        """Synthetic: make sure at least ``n`` base bars exist (chunked, deterministic)."""
        s = self._series.get(symbol)
        have = 0 if s is None else len(s)
        if self.kind != "synthetic" or have >= n:
            return s
        spec = self.specs[symbol]
        parts = [] if s is None else [s]
        last = spec.price if s is None else float(s.close[-1])
        k = have // CHUNK
        while have < n:
            rng = _seed_for(self.seed, symbol, k)
            r = rng.standard_t(5, CHUNK) * spec.vol * 0.77
            close = last * np.exp(np.cumsum(r))
            open_ = np.concatenate([[last], close[:-1]])
            wick = np.abs(rng.normal(0, spec.vol * 0.6, (2, CHUNK)))
            high = np.maximum(open_, close) * (1 + wick[0])
            low = np.minimum(open_, close) * (1 - wick[1])
            nd = spec.digits
            times = SYNTH_START + (np.arange(have, have + CHUNK, dtype=np.int64)) * self.step
            parts.append(_Series(
                time=times, open=np.round(open_, nd), high=np.round(high, nd), low=np.round(low, nd),
                close=np.round(close, nd), tick_volume=rng.integers(20, 400, CHUNK).astype(np.int64),
                spread=np.full(CHUNK, spec.spread, dtype=np.int64), real_volume=np.zeros(CHUNK, dtype=np.int64),
            ))
            # keep OHLC consistent after rounding
            p = parts[-1]
            p.high = np.maximum.reduce([p.high, p.open, p.close])
            p.low = np.minimum.reduce([p.low, p.open, p.close])
            last = float(close[-1])
            have += CHUNK
            k += 1
        merged = _Series(*[np.concatenate([getattr(p, f) for p in parts]) for f in RATE_FIELDS])
        self._series[symbol] = merged
        return merged

    def visible(self, symbol: str, cursor: int | None = None) -> int:
        """Number of base bars of ``symbol`` visible at ``cursor`` (default: now)."""
        cursor = self.cursor if cursor is None else cursor
        if self.kind == "synthetic":
            return cursor
        return int(self._end[symbol][min(cursor, len(self._timeline)) - 1]) if cursor > 0 else 0

    def base(self, symbol: str, stop: int | None = None) -> _Series:
        """Base bars ``[0, stop)`` of ``symbol`` (``stop`` defaults to the visible count)."""
        symbol = self.spec(symbol).name
        stop = self.visible(symbol) if stop is None else stop
        return self._ensure(symbol, stop) if self.kind == "synthetic" else self._series[symbol]

    def bar(self, symbol: str, i: int) -> tuple[int, float, float, float, float]:
        """Base bar ``i`` as ``(time, open, high, low, close)``."""
        s = self._ensure(symbol, i + 1) if self.kind == "synthetic" else self._series[symbol]
        return int(s.time[i]), float(s.open[i]), float(s.high[i]), float(s.low[i]), float(s.close[i])

    def frame(self, symbol: str, timeframe: str = "M1", count: int = 100, end: int | None = None) -> dict[str, np.ndarray]:
        """The last ``count`` completed bars of ``timeframe`` whose base bars end before base index ``end``.

        Returns a dict of numpy arrays with MT5's rate fields, oldest first.

        >>> fr = Feed.synthetic(["EURUSD"], history=60).frame("EURUSD", "M5", 3)
        >>> fr["time"].tolist()[-1] + 300 <= Feed.synthetic(["EURUSD"], history=60).now + 60
        True
        """
        symbol = self.spec(symbol).name
        tf_min = C.TIMEFRAME_MINUTES[timeframe]
        stop = self.visible(symbol) if end is None else end
        s = self.base(symbol, stop)
        if tf_min * 60 <= self.step:
            lo = max(0, stop - count)
            return {f: getattr(s, f)[lo:stop] for f in RATE_FIELDS}
        secs = tf_min * 60
        need = (count + 2) * max(1, secs // self.step)
        lo = max(0, stop - need)
        t = s.time[lo:stop]
        if len(t) == 0:
            return {f: getattr(s, f)[0:0] for f in RATE_FIELDS}
        g = t // secs
        starts = np.flatnonzero(np.r_[True, g[1:] != g[:-1]])
        # drop the last group if it is not complete yet
        last_end = t[-1] + self.step
        if last_end < (g[-1] + 1) * secs:
            keep = starts[:-1]
            cut = starts[-1] if len(starts) else 0
        else:
            keep, cut = starts, len(t)
        if len(keep) == 0:
            return {f: getattr(s, f)[0:0] for f in RATE_FIELDS}
        sl = slice(lo, lo + cut)
        o, h, l, c = s.open[sl], s.high[sl], s.low[sl], s.close[sl]
        ends = np.r_[keep[1:], cut] - 1
        out = {
            "time": g[keep] * secs,
            "open": o[keep],
            "high": np.maximum.reduceat(h, keep),
            "low": np.minimum.reduceat(l, keep),
            "close": c[ends],
            "tick_volume": np.add.reduceat(s.tick_volume[sl], keep),
            "spread": s.spread[sl][keep],
            "real_volume": np.add.reduceat(s.real_volume[sl], keep),
        }
        return {k: v[-count:] for k, v in out.items()}

    def forming(self, symbol: str, timeframe: str = "M1") -> dict[str, np.ndarray]:
        """Bar 0 of ``timeframe``, the bar still forming: the period holding the market time (the
        end of the latest base bar), built from the base bars already in it, or flat at the
        latest close when it has none yet (always so for the base timeframe).

        :meth:`frame` gives the completed bars before it, so MT5's ``copy_rates_from_pos(0, n)``
        is ``frame(n - 1)`` followed by this bar.

        >>> f = Feed.synthetic(["EURUSD"], history=90)
        >>> b = f.forming("EURUSD", "M1"); int(b["time"][0]) == f.now + 60, float(b["close"][0]) == f.quote("EURUSD")["bid"]
        (True, True)
        >>> h = f.forming("EURUSD", "H1"); int(h["time"][0]) % 3600, int(h["tick_volume"][0]) > 0
        (0, True)
        """
        symbol = self.spec(symbol).name
        secs = C.TIMEFRAME_MINUTES[timeframe] * 60
        stop = self.visible(symbol)
        s = self.base(symbol, stop)
        if stop <= 0:
            return {f: getattr(s, f)[0:0] for f in RATE_FIELDS}
        market = int(s.time[stop - 1]) + self.step
        start = market // secs * secs
        lo = int(np.searchsorted(s.time[:stop], start, side="left"))
        last = float(s.close[stop - 1])
        if lo < stop:
            vals = (start, float(s.open[lo]), float(s.high[lo:stop].max()), float(s.low[lo:stop].min()), last,
                    int(s.tick_volume[lo:stop].sum()), int(s.spread[lo]), int(s.real_volume[lo:stop].sum()))
        else:
            vals = (start, last, last, last, last, 0, int(s.spread[stop - 1]), 0)
        return {f: np.asarray([v], dtype=getattr(s, f).dtype) for f, v in zip(RATE_FIELDS, vals)}

    def ticks(self, symbol: str, lo_time: int, hi_time: int | None = None, count: int | None = None,
              spread_points: int | None = None) -> dict[str, np.ndarray]:
        """Visible ticks of ``symbol`` (one per base bar, at its time: bid = close, ask = bid + spread)
        with ``lo_time <= time [<= hi_time]``, the first ``count`` of them, oldest first."""
        spec = self.spec(symbol)
        stop = self.visible(spec.name)
        s = self.base(spec.name, stop)
        t = s.time[:stop]
        a = int(np.searchsorted(t, lo_time, side="left"))
        b = stop if hi_time is None else int(np.searchsorted(t, hi_time, side="right"))
        if count is not None:
            b = min(b, a + count)
        b = max(a, b)
        sp = spec.spread if spread_points is None else spread_points
        bid = s.close[a:b]
        return {"time": t[a:b], "bid": bid, "ask": np.round(bid + sp * spec.point, spec.digits), "last": bid,
                "volume": s.tick_volume[a:b]}

    def rates(self, symbol: str, timeframe: str = "M1", count: int = 100, end: int | None = None) -> dict[str, list]:
        """Like :meth:`frame` but JSON-ready lists (time as int epoch seconds).

        >>> f = Feed.synthetic(["EURUSD"], history=120)
        >>> r = f.rates("EURUSD", "M30", 2); len(r["time"]), r["time"][1] - r["time"][0]
        (2, 1800)
        """
        fr = self.frame(symbol, timeframe, count, end)
        return {k: (v.astype(np.int64).tolist() if k in ("time", "tick_volume", "spread", "real_volume") else v.tolist())
                for k, v in fr.items()}

    def quote(self, symbol: str, i: int | None = None, spread_points: int | None = None) -> dict[str, float]:
        """Bid/ask at base bar ``i`` (default: the latest visible): bid = close, ask = bid + spread.

        >>> q = Feed.synthetic(["XAUUSD"]).quote("XAUUSD"); round(q["ask"] - q["bid"], 2)
        0.3
        """
        spec = self.spec(symbol)
        i = self.visible(spec.name) - 1 if i is None else i
        if i < 0:
            raise FeedError(f"no prices yet for {spec.name}.")
        t, o, h, l, c = self.bar(spec.name, i)
        sp = spec.spread if spread_points is None else spread_points
        return {"time": t, "bid": c, "ask": round(c + sp * spec.point, spec.digits), "last": c, "spread": sp}

    # -- persistence / display ----------------------------------------------------
    def config(self) -> dict[str, Any]:
        """What is needed to rebuild the same feed (stored in the broker's database)."""
        return {"kind": self.kind, "seed": self.seed, "source": self.source,
                "specs": {k: v.to_dict() for k, v in self.specs.items()}}

    def __repr__(self) -> str:
        from datetime import datetime, timezone

        now = datetime.fromtimestamp(self.now, timezone.utc).strftime("%Y-%m-%d %H:%M:%S")
        return f"Feed(kind={self.kind!r}, symbols={list(self.specs)}, cursor={self.cursor}, now={now})"

    def _repr_html_(self) -> str:
        return f"<code>{html.escape(repr(self))}</code>"
