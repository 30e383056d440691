"""OHLCV data: synthetic series, loading and validating files, the shipped sample, data references.

Every frame the engine uses has a sorted, unique :class:`~pandas.DatetimeIndex`
named ``time`` and float columns ``open, high, low, close, volume`` with
``high >= max(open, close)`` and ``low <= min(open, close)``.

Data crosses the MCP boundary as a *reference* string:

========================================  =====================================================
``sample``                                the shipped demo data set (:func:`sample`)
``synthetic:seed=7,bars=100000[,freq=1min]``  a seeded random walk (:func:`synthetic`)
``file:<relative path>``                  a CSV/Parquet file under the data root (:func:`load`)
``upload:<sha256>``                       a frame uploaded once to a server (:func:`content_hash`)
========================================  =====================================================

Example
-------
>>> from quantlab.engine import data
>>> df = data.synthetic(bars=1000, seed=7)
>>> list(df.columns)
['open', 'high', 'low', 'close', 'volume']
>>> data.from_reference("synthetic:seed=7,bars=1000").equals(df)
True
"""
from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

__all__ = [
    "COLUMNS",
    "bar_size",
    "DataError",
    "synthetic",
    "load",
    "validate",
    "sample",
    "from_reference",
    "content_hash",
    "list_references",
    "SAMPLE_PATH",
]

#: The columns every OHLCV frame has, in this order.
COLUMNS = ("open", "high", "low", "close", "volume")

#: Where the shipped sample lives (a gzip CSV, see :func:`sample`).
SAMPLE_PATH = Path(__file__).with_name("sample") / "QLXUSD_1h.csv.gz"

_SAMPLE_SEED = 20240101
_SAMPLE_BARS = 4000


class DataError(ValueError):
    """OHLCV data that cannot be used: the message names the problem, the source and the fix."""


# ---------------------------------------------------------------------------------------------
# synthetic data
# ---------------------------------------------------------------------------------------------
def _ohlc_from_close(close: np.ndarray, rng: np.random.Generator, vol: np.ndarray | float) -> tuple[np.ndarray, ...]:
    """Open = previous close; high/low = extremes widened by a half-normal intrabar range."""
    open_ = np.empty_like(close)
    open_[0] = close[0]
    open_[1:] = close[:-1]
    spread = np.abs(rng.standard_normal((2, close.size))) * vol * close * 0.5
    high = np.maximum(open_, close) + spread[0]
    low = np.minimum(open_, close) - spread[1]
    return open_, high, low


def synthetic(bars: int, seed: int = 0, freq: str = "1min", start: str = "2024-01-01") -> pd.DataFrame:
    """A seeded OHLCV random walk of ``bars`` bars every ``freq`` from ``start``.

    Closes follow a geometric random walk with 0.1 % volatility per bar starting
    at 100; each bar opens at the previous close and its high/low extend beyond
    ``max/min(open, close)`` by a half-normal amount. Volume is log-normal.
    The same ``(bars, seed, freq, start)`` always gives the same frame.

    Example
    -------
    >>> df = synthetic(bars=5, seed=1)
    >>> df.index.name, len(df), bool((df.high >= df[["open", "close"]].max(axis=1)).all())
    ('time', 5, True)
    """
    bars = int(bars)
    if bars < 1:
        raise DataError(f"synthetic data: bars must be >= 1, got {bars}.")
    rng = np.random.default_rng(int(seed))
    sigma = 0.001
    steps = rng.standard_normal(bars) * sigma
    steps[0] = 0.0
    close = 100.0 * np.exp(np.cumsum(steps))
    open_, high, low = _ohlc_from_close(close, rng, sigma)
    volume = np.round(rng.lognormal(mean=7.0, sigma=0.5, size=bars))
    try:
        index = pd.date_range(start=start, periods=bars, freq=freq, name="time", unit="ns")
    except ValueError as exc:
        raise DataError(f"synthetic data: bad freq {freq!r} or start {start!r}: {exc}") from None
    return pd.DataFrame(
        {"open": open_, "high": high, "low": low, "close": close, "volume": volume.astype(float)}, index=index
    )


# ---------------------------------------------------------------------------------------------
# validation and loading
# ---------------------------------------------------------------------------------------------
def validate(df: Any, source: str = "data") -> pd.DataFrame:
    """Check an OHLCV frame and return it normalised (float columns in order, index named ``time``).

    Raises :class:`DataError` naming the problem, ``source`` and the fix for:
    not a DataFrame, missing columns, an index that is not datetimes (a ``time``
    / ``date`` / ``timestamp`` column is used as the index if present), unsorted
    or duplicated timestamps, NaN or infinite values, non-positive prices and
    ``high``/``low`` that do not bracket ``open``/``close``.

    Example
    -------
    >>> validate(synthetic(bars=3, seed=0), source="demo").shape
    (3, 5)
    >>> validate(synthetic(bars=3, seed=0).drop(columns="volume"), source="demo")
    Traceback (most recent call last):
    ...
    quantlab.engine.data.DataError: demo: missing column(s) 'volume'; ...
    """
    if not isinstance(df, pd.DataFrame):
        raise DataError(f"{source}: expected a pandas DataFrame with columns {', '.join(COLUMNS)}, got {type(df).__name__}.")
    frame = df.copy()
    frame.columns = [str(c).strip().lower() for c in frame.columns]
    if not isinstance(frame.index, pd.DatetimeIndex):
        for cand in ("time", "date", "datetime", "timestamp"):
            if cand in frame.columns:
                try:
                    frame = frame.set_index(pd.DatetimeIndex(pd.to_datetime(frame.pop(cand))))
                except (ValueError, TypeError) as exc:
                    raise DataError(f"{source}: column {cand!r} is not parseable as datetimes ({exc}); "
                                    "write ISO timestamps such as 2024-01-01 09:30:00.") from None
                break
        else:
            raise DataError(
                f"{source}: the index is not a DatetimeIndex and there is no 'time' column; "
                "add a 'time' column of timestamps (or set a DatetimeIndex)."
            )
    missing = [c for c in COLUMNS if c not in frame.columns]
    if missing:
        raise DataError(
            f"{source}: missing column(s) {', '.join(map(repr, missing))}; "
            f"found {list(frame.columns)}. Provide columns {', '.join(COLUMNS)} (case-insensitive)."
        )
    frame = frame.loc[:, list(COLUMNS)]
    try:
        frame = frame.astype("float64")
    except (ValueError, TypeError) as exc:
        raise DataError(f"{source}: OHLCV columns must be numeric ({exc}); remove text values.") from None
    if len(frame) == 0:
        raise DataError(f"{source}: no rows; provide at least one bar.")
    idx = frame.index
    if idx.tz is not None:
        idx = idx.tz_convert("UTC").tz_localize(None)
    idx = pd.DatetimeIndex(idx.as_unit("ns") if hasattr(idx, "as_unit") else idx, name="time")
    frame.index = idx
    if idx.hasnans:
        pos = int(np.flatnonzero(idx.isna())[0])
        raise DataError(f"{source}: timestamp at row {pos} is missing (NaT); remove that row or fill the timestamp.")
    if idx.has_duplicates:
        dup = idx[idx.duplicated()][0]
        n = int(idx.duplicated().sum())
        raise DataError(
            f"{source}: {n} duplicated timestamp(s), first {dup}; keep one row per timestamp "
            "(e.g. df[~df.index.duplicated(keep='last')])."
        )
    if not idx.is_monotonic_increasing:
        pos = int(np.flatnonzero(np.diff(idx.asi8) < 0)[0]) + 1
        raise DataError(
            f"{source}: timestamps are not sorted (row {pos}, {idx[pos]}, comes before {idx[pos - 1]}); "
            "sort them with df.sort_index()."
        )
    values = frame.to_numpy()
    bad = ~np.isfinite(values)
    if bad.any():
        counts = {c: int(n) for c, n in zip(COLUMNS, bad.sum(axis=0)) if n}
        row = int(np.flatnonzero(bad.any(axis=1))[0])
        raise DataError(
            f"{source}: NaN or infinite values {counts} (first at {idx[row]}); "
            "drop those rows (df.dropna()) or fill them (df.ffill())."
        )
    o, h, lo, c, v = values.T
    if (values[:, :4] <= 0).any():
        row = int(np.flatnonzero((values[:, :4] <= 0).any(axis=1))[0])
        raise DataError(f"{source}: non-positive price at {idx[row]}; prices must be > 0.")
    eps = 1e-12 * np.abs(c)
    wrong = (h < np.maximum(o, c) - eps) | (lo > np.minimum(o, c) + eps) | (h < lo)
    if wrong.any():
        row = int(np.flatnonzero(wrong)[0])
        raise DataError(
            f"{source}: high/low do not bracket open/close at {idx[row]} (row {row}: "
            f"open={o[row]}, high={h[row]}, low={lo[row]}, close={c[row]}); "
            "check the column order or fix the bar."
        )
    if (v < 0).any():
        row = int(np.flatnonzero(v < 0)[0])
        raise DataError(f"{source}: negative volume at {idx[row]}; volume must be >= 0.")
    return frame


def load(path: str | os.PathLike[str]) -> pd.DataFrame:
    """Load OHLCV bars from a CSV (optionally ``.gz``) or Parquet file and :func:`validate` them.

    CSV files need a ``time`` (or ``date``/``timestamp``) column plus
    ``open, high, low, close, volume``; Parquet files may instead store the
    timestamps as the index.

    Example
    -------
    >>> df = load("bars.csv")  # doctest: +SKIP
    """
    p = Path(path)
    if not p.is_file():
        raise DataError(f"{p}: file not found; give the path of a .csv, .csv.gz or .parquet file.")
    name = p.name.lower()
    try:
        if name.endswith((".parquet", ".pq")):
            raw = pd.read_parquet(p)
        elif name.endswith((".csv", ".csv.gz", ".txt", ".csv.bz2", ".csv.zip")):
            raw = pd.read_csv(p)
        else:
            raise DataError(f"{p}: unknown file type; use .csv, .csv.gz or .parquet.")
    except DataError:
        raise
    except Exception as exc:  # noqa: BLE001 - parser errors of many kinds
        raise DataError(f"{p}: could not read the file ({type(exc).__name__}: {exc}); check it is valid CSV/Parquet.") from None
    return validate(raw, source=str(p))


# ---------------------------------------------------------------------------------------------
# the shipped sample
# ---------------------------------------------------------------------------------------------
def _generate_sample(seed: int = _SAMPLE_SEED, bars: int = _SAMPLE_BARS) -> pd.DataFrame:
    """Regenerate the shipped sample (see :func:`sample` for the process)."""
    rng = np.random.default_rng(seed)
    # weekday hours only, like an FX feed that closes over the weekend
    hours = pd.date_range("2023-01-02", periods=int(bars * 1.6), freq="1h", name="time", unit="ns")
    hours = hours[hours.day_of_week < 5][:bars]
    n = len(hours)
    # two-state Markov regime: calm (0) / volatile (1)
    p_stay = np.array([0.995, 0.97])
    regime = np.empty(n, dtype=np.int64)
    u = rng.random(n)
    state = 0
    for i in range(n):  # generation only; not on any hot path
        regime[i] = state
        if u[i] > p_stay[state]:
            state = 1 - state
    hour = hours.hour.to_numpy()
    session = 0.7 + 0.6 * np.exp(-0.5 * ((hour - 14) / 3.0) ** 2)  # London/New York overlap is busier
    vol = np.where(regime == 0, 0.0008, 0.0022) * session
    drift = np.where(regime == 0, 0.00001, -0.00003)
    r = drift + vol * rng.standard_t(df=5, size=n) / np.sqrt(5 / 3)
    r[0] = 0.0
    close = 1.0850 * np.exp(np.cumsum(r))
    open_, high, low = _ohlc_from_close(close, rng, vol)
    volume = np.round(rng.lognormal(mean=6.0, sigma=0.4, size=n) * session * (1 + regime))
    frame = pd.DataFrame({"open": open_, "high": high, "low": low, "close": close, "volume": volume}, index=hours)
    frame[["open", "high", "low", "close"]] = frame[["open", "high", "low", "close"]].round(5)
    frame["high"] = frame[["open", "high", "close"]].max(axis=1)
    frame["low"] = frame[["open", "low", "close"]].min(axis=1)
    return frame


def _write_sample(path: Path = SAMPLE_PATH) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    _generate_sample().to_csv(path, float_format="%.5f", compression={"method": "gzip", "mtime": 0})
    return path


def sample() -> pd.DataFrame:
    """The shipped demo data: 4,000 hourly bars of the made-up FX pair ``QLX/USD``.

    It is generated, not recorded (``_generate_sample``, seed 20240101): weekday
    hours from 2023-01-02; a two-state Markov regime (calm: 0.08 %/h volatility,
    stays with probability 0.995; volatile: 0.22 %/h, slight downward drift,
    stays with probability 0.97); Student-t(5) shocks scaled by an intraday
    session curve peaking at 14:00 UTC; price starts at 1.0850 and is quoted to
    5 decimals; volume is log-normal, busier in the volatile regime and the
    session peak. Stored as ``quantlab/engine/sample/QLXUSD_1h.csv.gz``.

    Example
    -------
    >>> df = sample()
    >>> len(df), df.index.name
    (4000, 'time')
    """
    return load(SAMPLE_PATH)


# ---------------------------------------------------------------------------------------------
# references and hashing
# ---------------------------------------------------------------------------------------------
_SYNTH_RE = re.compile(r"^synthetic:(.*)$")


def _parse_synthetic(ref: str) -> dict[str, Any]:
    body = _SYNTH_RE.match(ref).group(1)  # type: ignore[union-attr]
    opts: dict[str, Any] = {}
    for part in filter(None, (p.strip() for p in body.split(","))):
        key, sep, value = part.partition("=")
        key = key.strip()
        if not sep or key not in ("seed", "bars", "freq", "start"):
            raise DataError(
                f"data reference {ref!r}: bad option {part!r}; "
                "use synthetic:seed=7,bars=100000[,freq=1min][,start=2024-01-01]."
            )
        value = value.strip()
        if key in ("seed", "bars"):
            try:
                opts[key] = int(value.replace("_", ""))
            except ValueError:
                raise DataError(f"data reference {ref!r}: {key} must be an integer, got {value!r}.") from None
        else:
            opts[key] = value
    if "bars" not in opts:
        raise DataError(f"data reference {ref!r}: bars is required, e.g. synthetic:seed=7,bars=100000.")
    if not 1 <= opts["bars"] <= 50_000_000:
        raise DataError(f"data reference {ref!r}: bars must be between 1 and 50,000,000.")
    opts.setdefault("seed", 0)
    return opts


def _resolve_file(rel: str, data_root: str | os.PathLike[str] | None) -> Path:
    if data_root is None:
        raise DataError(f"data reference 'file:{rel}': no data root is configured; "
                        "pass data_root= (servers: --data-root DIR).")
    root = Path(data_root).expanduser().resolve()
    if not rel or Path(rel).is_absolute() or rel.startswith("~"):
        raise DataError(f"data reference 'file:{rel}': give a path relative to the data root {root}.")
    target = (root / rel).resolve()
    if target != root and root not in target.parents:
        raise DataError(f"data reference 'file:{rel}': the path escapes the data root {root}; "
                        "only files under the data root can be used.")
    return target


_FILE_SUFFIXES = (".csv", ".csv.gz", ".parquet", ".pq")


def is_local_path(ref: Any) -> bool:
    """Whether ``ref`` names a local bars file (a path object, or text ending in ``.csv``,
    ``.csv.gz`` or ``.parquet``) rather than a data reference such as ``'sample'``.

    >>> is_local_path("bars.csv"), is_local_path("sample"), is_local_path("file:bars.csv")
    (True, False, False)
    """
    if isinstance(ref, os.PathLike):
        return True
    return (isinstance(ref, str) and not ref.strip().startswith(("file:", "upload:", "synthetic:"))
            and ref.strip().lower().endswith(_FILE_SUFFIXES))


def from_reference(ref: str, data_root: str | os.PathLike[str] | None = None) -> pd.DataFrame:
    """Resolve a data reference string to a validated OHLCV frame.

    ``sample``, ``synthetic:seed=7,bars=100000[,freq=1min][,start=...]`` or
    ``file:<path relative to data_root>`` (paths that leave the root are refused).
    ``upload:<sha>`` references are resolved by the server holding the upload.

    Example
    -------
    >>> len(from_reference("synthetic:seed=7,bars=500,freq=1h"))
    500
    """
    if not isinstance(ref, str):
        raise DataError(f"data reference must be a string, got {type(ref).__name__}.")
    ref = ref.strip()
    if ref == "sample":
        return sample()
    if ref.startswith("synthetic:"):
        return synthetic(**_parse_synthetic(ref))
    if ref.startswith("file:"):
        return load(_resolve_file(ref[len("file:"):].strip(), data_root))
    if ref.startswith("upload:"):
        raise DataError(f"data reference {ref!r}: uploaded data lives on the server that received it; "
                        "resolve it there (upload_data returns this reference).")
    raise DataError(
        f"unknown data reference {ref!r}; use 'sample', 'synthetic:seed=7,bars=100000', "
        "'file:<path under the data root>' or 'upload:<sha256>'."
    )


def content_hash(df: pd.DataFrame) -> str:
    """Hex SHA-256 of a frame's content (index ns, column names, float64 values).

    Stable across processes and platforms; equal frames hash equal. Servers use it
    for ``upload:<sha>`` references.

    Example
    -------
    >>> df = synthetic(bars=10, seed=1)
    >>> content_hash(df) == content_hash(df.copy())
    True
    """
    h = hashlib.sha256()
    idx = pd.DatetimeIndex(df.index)
    if idx.tz is not None:
        idx = idx.tz_convert("UTC").tz_localize(None)
    h.update(b"quantlab-ohlcv-v1\0")
    h.update(",".join(map(str, df.columns)).encode("utf-8") + b"\0")
    h.update(np.ascontiguousarray(idx.as_unit("ns").asi8, dtype="<i8").tobytes())
    for col in df.columns:
        h.update(np.ascontiguousarray(df[col].to_numpy(dtype="float64"), dtype="<f8").tobytes())
    return h.hexdigest()


def list_references(data_root: str | os.PathLike[str] | None = None) -> list[dict]:
    """The data references available: the sample, example synthetic specs and files under ``data_root``.

    Each entry is ``{"ref", "kind", "description"}`` (files add ``"bytes"``).

    Example
    -------
    >>> [r["ref"] for r in list_references()][:2]
    ['sample', 'synthetic:seed=7,bars=100000']
    """
    out: list[dict] = [
        {"ref": "sample", "kind": "sample",
         "description": "4,000 hourly bars of the made-up FX pair QLX/USD (seeded regime-switching process)"},
        {"ref": "synthetic:seed=7,bars=100000", "kind": "synthetic",
         "description": "seeded 1-minute random walk; change seed, bars and freq (e.g. freq=1h)"},
        {"ref": "synthetic:seed=7,bars=1000000", "kind": "synthetic",
         "description": "1,000,000 one-minute bars (benchmark size)"},
    ]
    if data_root is not None:
        root = Path(data_root).expanduser()
        if root.is_dir():
            root = root.resolve()
            for p in sorted(root.rglob("*")):
                n = p.name.lower()
                if p.is_file() and n.endswith((".csv", ".csv.gz", ".parquet", ".pq")):
                    out.append({"ref": f"file:{p.relative_to(root).as_posix()}", "kind": "file",
                                "description": p.name, "bytes": p.stat().st_size})
    return out


def bar_size(index: Any) -> pd.Timedelta | None:
    """The bar size of a time index: the most common step between consecutive bars
    (gaps such as weekends do not count), ``None`` without a DatetimeIndex or with < 2 bars.

    >>> bar_size(sample().index)
    Timedelta('0 days 01:00:00')
    >>> bar_size(pd.RangeIndex(5)) is None
    True
    """
    if not isinstance(index, pd.DatetimeIndex) or len(index) < 2:
        return None
    steps = np.diff(index[:10_001].to_numpy(dtype="datetime64[ns]")).astype(np.int64)
    steps = steps[steps > 0]
    if not len(steps):
        return None
    values, counts = np.unique(steps, return_counts=True)
    return pd.Timedelta(int(values[np.argmax(counts)]), unit="ns")
