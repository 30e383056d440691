"""On-disk store of backtest runs and uploaded datasets.

(Size: writing and reading the one on-disk layout, both halves kept together so they cannot drift.)

Layout of a runs directory::

    runs/
      <run_id>/meta.json          what was run (code, params, data, costs), metrics, and
                                  the small parts of ``BacktestResult.to_dict()``
      <run_id>/<table>.parquet    each columnar table of ``to_dict()`` (equity,
                                  returns, positions, trades, ...), one Parquet file each
      uploads/<sha256>.parquet    a DataFrame sent with ``upload_data``
      uploads/<sha256>.json       its rows, columns, start, end

A run folder is written under a temporary name and renamed into place, so a run
is either complete on disk or absent, and never changes once stored. Tables are stored with their exact JSON values (Parquet
int64/float64/string, nulls for ``None``), so ``read_result()`` returns
exactly what ``to_dict()`` produced and ``BacktestResult.from_dict`` rebuilds
the same result.

Example
-------
>>> store = RunStore("/tmp/runs")
>>> store.list_runs(limit=5)            # newest first  # doctest: +SKIP
[{'run_id': '...', 'name': 'sma', ...}]
"""
from __future__ import annotations

import datetime as _dt
import html
import json
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any, Callable, Iterator

from quantlab._util import atomic_path, atomic_write_bytes, encode_float, json_default

__all__ = ["RunStore", "RunNotFound", "UploadNotFound", "check_run_id"]

_RUN_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
_SHA_RE = re.compile(r"^[0-9a-f]{64}$")
_UPLOAD_REF_RE = re.compile(r"^upload:([0-9a-f]{64})$")
_TABLE_KEY = "__table__"
_SERIES_KEY = "__series__"
#: top-level keys of ``BacktestResult.to_dict()`` that hold one value per bar
SERIES_KEYS = ("index", "equity", "returns", "positions")
#: per-bar lists a result may also have (stored in ``series.parquet`` when present)
OPTIONAL_SERIES_KEYS = ("benchmark",)


class UploadNotFound(LookupError):
    """A data reference ``upload:...`` that names no upload of this store (or is malformed)."""


class RunNotFound(KeyError):
    """No run with that id in the runs directory."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else "run not found"


def check_run_id(run_id: str) -> str:
    """Return ``run_id`` if it is a safe file name, else raise ``ValueError``.

    >>> check_run_id("abc123")
    'abc123'
    """
    if not isinstance(run_id, str) or not _RUN_ID_RE.match(run_id) or ".." in run_id:
        raise ValueError(f"invalid run id {run_id!r}: use a run_id returned by run_backtest or list_runs.")
    return run_id


def dumps(obj: Any) -> str:
    """JSON text of ``obj``; non-finite floats are kept (``Infinity``/``NaN``), which Python's json reads back exactly."""
    return json.dumps(obj, default=json_default, allow_nan=True, separators=(",", ":"))


def _is_table(node: Any) -> bool:
    """A dict of equal-length lists of scalars (a columnar table)."""
    if not isinstance(node, dict) or not node:
        return False
    n = None
    for v in node.values():
        if not isinstance(v, list):
            return False
        if n is None:
            n = len(v)
        elif len(v) != n:
            return False
        if v and isinstance(v[0], (dict, list)):
            return False
    return True


def _split(node: Any, path: tuple[str, ...], tables: dict[str, dict]) -> Any:
    """Replace every columnar table in ``node`` by a placeholder, collecting the tables."""
    if path and _is_table(node):
        name = "__".join(path) or "root"
        tables[name] = node
        return {_TABLE_KEY: name, "rows": len(next(iter(node.values()))), "columns": list(node)}
    if isinstance(node, dict):
        return {k: _split(v, path + (str(k),), tables) for k, v in node.items()}
    return node


def _column_to_list(col) -> list:
    import pyarrow as pa

    if col.null_count == 0 and (pa.types.is_integer(col.type) or pa.types.is_floating(col.type) or pa.types.is_boolean(col.type)):
        return col.to_numpy().tolist()
    return col.to_pylist()


def _table_to_arrow(table: dict[str, list]):
    import pyarrow as pa

    arrays = {}
    for k, v in table.items():
        try:
            arrays[k] = pa.array(v)
        except (pa.ArrowInvalid, pa.ArrowTypeError):
            # mixed types: keep them exactly as JSON text
            arrays["__json__" + k] = pa.array([json.dumps(x, allow_nan=True) for x in v], type=pa.string())
    return pa.table(arrays)


def _arrow_to_table(t, offset: int = 0, limit: int | None = None) -> dict[str, list]:
    if offset or limit is not None:
        t = t.slice(offset, limit if limit is not None else max(0, t.num_rows - offset))
    out = {}
    for name in t.column_names:
        col = t.column(name)
        if name.startswith("__json__"):
            out[name[len("__json__"):]] = [json.loads(x) for x in col.to_pylist()]
        else:
            out[name] = _column_to_list(col)
    return out


#: rows per Parquet row group of the per-bar series (also the unit between pauses)
ROW_GROUP = 262_144


def _write_parquet(table: Any, path: Path, pause: Callable[[], None] | None = None) -> None:
    """Write ``table`` atomically; ``pause()`` is called before each row group."""
    import pyarrow.parquet as pq

    # float series barely compress and never dictionary-encode: plain pages
    # without statistics cost a third of the default's CPU
    with atomic_path(path) as tmp, pq.ParquetWriter(
        tmp, table.schema, compression="none", use_dictionary=False, write_statistics=False
    ) as w:
        for start in range(0, max(table.num_rows, 1), ROW_GROUP):
            if pause is not None:
                pause()
            w.write_table(table.slice(start, ROW_GROUP), row_group_size=ROW_GROUP)


def _encode_column(col: Any) -> list:
    """A series column as ``to_dict()`` writes it: ints as ints, floats as numbers, NaN/inf as strings."""
    import numpy as np
    import pyarrow as pa

    if col.null_count:
        return col.to_pylist()
    a = col.to_numpy()
    if pa.types.is_floating(col.type) and not np.isfinite(a).all():
        return [encode_float(x) for x in a.tolist()]
    return a.tolist()


def _skeleton(result: Any) -> tuple[dict[str, Any], dict[str, dict], Any]:
    """``result.to_dict()`` with per-bar series and tables replaced by placeholders.

    Returns (skeleton, tables, series arrow table). The per-bar series are taken
    from the result's numpy arrays (building 1M-element Python lists only to
    store them would triple the cost); if ``to_dict`` grows a per-bar list this
    function does not know, it falls back to the plain (slower) path.
    """
    import copy

    import numpy as np
    import pyarrow as pa

    bars = len(result.equity)
    light = copy.copy(result)
    light.equity = result.equity.iloc[:0]
    light.returns = result.returns.iloc[:0]
    light.positions = result.positions.iloc[:0]
    if result.benchmark is not None:
        light.benchmark = result.benchmark.iloc[:0]
    d = light.to_dict()
    unknown = [k for k, v in d.items() if isinstance(v, list) and k not in SERIES_KEYS + OPTIONAL_SERIES_KEYS]
    if bars and (unknown or not all(k in d for k in SERIES_KEYS)):
        d = result.to_dict()  # unknown layout: store it generically
        tables: dict[str, dict] = {}
        big = {k: v for k, v in d.items() if isinstance(v, list) and len(v) == bars}
        if big:
            tables["series_extra"] = big
            d = {k: ({_TABLE_KEY: "series_extra", "rows": bars, "columns": [k], "column": k} if k in big else v) for k, v in d.items()}
        return _split(d, (), tables), tables, None
    series = pa.table(
        {
            "index": pa.array(np.asarray(result.equity.index.asi8, dtype="int64")),
            "equity": pa.array(result.equity.to_numpy(dtype="float64")),
            "returns": pa.array(result.returns.to_numpy(dtype="float64")),
            "positions": pa.array(result.positions.to_numpy(dtype="float64")),
            **({"benchmark": pa.array(result.benchmark.to_numpy(dtype="float64"))} if "benchmark" in d else {}),
        }
    )
    for k in SERIES_KEYS + OPTIONAL_SERIES_KEYS:
        if k in d:
            d[k] = {_SERIES_KEY: k}
    tables = {}
    return _split(d, (), tables), tables, series


class RunStore:
    """Runs and uploads kept under one directory (see the module docstring for the layout).

    Example
    -------
    >>> store = RunStore("/tmp/qlruns")
    >>> store.root.name
    'qlruns'
    """

    def __init__(self, root: str | os.PathLike[str], cache_tables: int = 2):
        self.root = Path(root).expanduser()
        self._tables: dict[tuple, Any] = {}
        self._cache_tables = cache_tables

    def _read_table(self, path: Path, columns: list[str] | None = None):
        """A Parquet file as an Arrow table; the last few are kept so paging a run reads it once."""
        import pyarrow.parquet as pq

        st = path.stat()
        key = (str(path), st.st_mtime_ns, st.st_size)
        t = self._tables.pop(key, None)
        if t is None:
            t = pq.read_table(path)
        self._tables[key] = t  # most recent last
        while len(self._tables) > self._cache_tables:
            self._tables.pop(next(iter(self._tables)))
        return t.select(columns) if columns is not None else t

    def __repr__(self) -> str:
        return f"RunStore({str(self.root)!r})"

    def _repr_html_(self) -> str:
        runs = self.list_runs(limit=20)
        rows = "".join(
            f"<tr><td><code>{html.escape(r['run_id'])}</code></td><td>{html.escape(str(r.get('name')))}</td>"
            f"<td>{html.escape(str(r.get('data')))}</td><td>{html.escape(str(r.get('created')))}</td></tr>"
            for r in runs
        )
        return (
            f"<div><b>RunStore</b> <code>{html.escape(str(self.root))}</code>"
            f"<table><tr><th>run_id</th><th>name</th><th>data</th><th>created</th></tr>{rows}</table></div>"
        )

    # -- runs --------------------------------------------------------------------
    def run_dir(self, run_id: str) -> Path:
        return self.root / check_run_id(run_id)

    def exists(self, run_id: str) -> bool:
        return (self.run_dir(run_id) / "meta.json").is_file()

    def write_run(
        self, result: Any, task: dict[str, Any], summary: dict[str, Any], pause: Callable[[], None] | None = None
    ) -> Path:
        """Save a ``BacktestResult`` with what produced it, once; returns the run folder.

        The per-bar series (``index, equity, returns, positions``) go to
        ``series.parquet`` straight from their numpy arrays, the trades to
        ``trades.parquet``, everything else of ``to_dict()`` to ``meta.json``.
        The whole folder is written under a temporary name and renamed into place
        in one step, so a run is complete on disk or absent, and a stored run never
        changes: a run id is deterministic (code, params, data, costs), and saving
        the same id again (this process or another) leaves the stored run as it is.
        ``pause()`` is called between steps (a worker passes one that waits while it
        runs the next backtest, so saving never competes with a caller).
        """
        import shutil

        if pause is not None:
            pause()
        run_id = check_run_id(str(result.run_id))
        folder = self.run_dir(run_id)
        if self.exists(run_id):
            return folder
        self.root.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=self.root, prefix=f".{run_id}.", suffix=".tmp"))
        try:
            skeleton, tables, series = _skeleton(result)
            if series is not None:
                _write_parquet(series, tmp / "series.parquet", pause)
            for name, table in tables.items():
                _write_parquet(_table_to_arrow(table), tmp / f"{name}.parquet", pause)
            meta = {
                "run_id": run_id,
                "name": summary.get("name"),
                "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="microseconds"),
                "data": task.get("data") or "sample",
                "params": skeleton.get("params", task.get("params") or {}),
                "cash": task.get("cash"),
                "fees": task.get("fees"),
                "slippage": task.get("slippage"),
                "periods_per_year": skeleton.get("periods_per_year", task.get("periods_per_year")),
                "fill": skeleton.get("fill", task.get("fill")),
                "bars": summary.get("bars"),
                "trades": summary.get("trades"),
                "elapsed": summary.get("elapsed"),
                "metrics": skeleton.get("metrics", summary.get("metrics")),
                "code": task.get("code"),
                "result": skeleton,
            }
            atomic_write_bytes(tmp / "meta.json", dumps(meta).encode("utf-8"))
            os.chmod(tmp, 0o755)  # mkdtemp makes it 0700
            for attempt in range(2):
                try:
                    os.rename(tmp, folder)  # atomic; fails if the folder exists
                    return folder
                except OSError:
                    if self.exists(run_id):  # someone stored it first: theirs stays
                        return folder
                    if attempt:
                        raise
                    # a folder without meta.json: an incomplete save of an older version; replace it
                    stale = Path(tempfile.mkdtemp(dir=self.root, prefix=f".{run_id}.", suffix=".stale"))
                    os.rename(folder, stale / "old")
                    shutil.rmtree(stale, ignore_errors=True)
            return folder
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)

    def read_meta(self, run_id: str) -> dict[str, Any]:
        """The run's ``meta.json`` (raises :class:`RunNotFound`)."""
        path = self.run_dir(run_id) / "meta.json"
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise RunNotFound(
                f"no run {run_id!r} in {self.root}: list_runs shows the runs this server knows."
            ) from None
        except ValueError as exc:  # damaged on disk (a crash of an old version, a hand edit)
            raise RunNotFound(
                f"run {run_id!r} in {self.root} is damaged: its meta.json is not JSON ({exc}); "
                "run the backtest again to store it anew."
            ) from None

    def _fill(self, run_id: str, node: Any, offset: int = 0, limit: int | None = None, tables: list | None = None) -> Any:

        if isinstance(node, dict) and _SERIES_KEY in node:
            t = self._read_table(self.run_dir(run_id) / "series.parquet", [node[_SERIES_KEY]])
            if tables is not None:
                tables.append(t.num_rows)
            if offset or limit is not None:
                t = t.slice(offset, limit if limit is not None else max(0, t.num_rows - offset))
            return _encode_column(t.column(0))
        if isinstance(node, dict) and _TABLE_KEY in node:
            t = self._read_table(self.run_dir(run_id) / f"{node[_TABLE_KEY]}.parquet")
            if tables is not None:
                tables.append(t.num_rows)
            if "column" in node:
                return _arrow_to_table(t.select([node["column"]]), offset, limit)[node["column"]]
            return _arrow_to_table(t, offset, limit)
        if isinstance(node, dict):
            return {k: self._fill(run_id, v, offset, limit, tables) for k, v in node.items()}
        return node

    def bars(self, run_id: str) -> int:
        """Number of bars of a stored run."""
        meta = self.read_meta(run_id)
        return int(meta.get("bars") or 0)

    def read_result(self, run_id: str, offset: int = 0, limit: int | None = None) -> dict[str, Any]:
        """Exactly ``BacktestResult.to_dict()`` of the stored run.

        With ``limit``, one page: the per-bar lists (``index, equity, returns,
        positions``, ``benchmark``) hold rows ``[offset, offset+limit)``, everything else is only
        in the first page (``offset == 0``), and ``"page"`` says
        ``{"offset", "limit", "total", "next_offset"}``. Concatenate the per-bar
        lists of all pages (drop ``"page"``) to get ``to_dict()``.
        """
        skeleton = self.read_meta(run_id)["result"]
        if limit is None and not offset:
            return self._fill(run_id, skeleton)
        totals: list[int] = []
        out: dict[str, Any] = {}
        for k, v in skeleton.items():
            per_bar = isinstance(v, dict) and _SERIES_KEY in v
            if per_bar:
                out[k] = self._fill(run_id, v, offset, limit, totals)
            elif offset == 0:
                out[k] = self._fill(run_id, v)
        total = totals[0] if totals else 0
        end = min(total, offset + limit) if limit is not None else total
        out["page"] = {"offset": offset, "limit": limit, "total": total, "next_offset": end if end < total else None}
        return out

    def parts(self, run_id: str) -> list[str]:
        """Names of the top-level parts of the stored result."""
        return list(self.read_meta(run_id)["result"])

    def read_part(self, run_id: str, part: str, offset: int = 0, limit: int | None = None) -> dict[str, Any]:
        """One top-level part of ``to_dict()`` with its tables sliced to ``[offset, offset+limit)``.

        Returns ``{"data": ..., "total": rows, "offset", "limit", "next_offset"}``.
        """
        skeleton = self.read_meta(run_id)["result"]
        if part not in skeleton:
            raise KeyError(f"run {run_id!r} has no part {part!r}; it has {sorted(skeleton)}.")
        totals: list[int] = []
        data = self._fill(run_id, skeleton[part], offset, limit, totals)
        total = max(totals) if totals else None
        end = None if total is None else (total if limit is None else min(total, offset + limit))
        return {
            "data": data,
            "total": total,
            "offset": offset,
            "limit": limit,
            "next_offset": end if end is not None and end < total else None,
        }

    def read_series(self, run_id: str, column: str, offset: int = 0, limit: int | None = None) -> dict[str, Any]:
        """Rows ``[offset, offset+limit)`` of one per-bar series as ``{"time": [int ns], column: [...]}`` plus paging info."""
        skeleton = self.read_meta(run_id)["result"]
        totals: list[int] = []
        times = self._fill(run_id, skeleton["index"], offset, limit, totals)
        values = self._fill(run_id, skeleton[column], offset, limit)
        total = totals[0] if totals else len(times)
        end = offset + len(times)
        return {"data": {"time": times, column: values}, "total": total, "offset": offset, "limit": limit,
                "next_offset": end if end < total else None}

    def iter_meta(self) -> Iterator[dict[str, Any]]:
        if not self.root.is_dir():
            return
        for p in self.root.iterdir():
            m = p / "meta.json"
            if p.is_dir() and not p.name.startswith(".") and m.is_file():  # .<id>.*.tmp: being written
                try:
                    yield json.loads(m.read_text(encoding="utf-8"))
                except (OSError, ValueError):
                    continue

    def list_runs(self, limit: int = 50) -> list[dict[str, Any]]:
        """The newest ``limit`` runs: id, name, data, params, costs, bars, trades, metrics, created."""
        keep = ("run_id", "name", "created", "data", "params", "cash", "fees", "slippage", "bars", "trades", "metrics")
        metas = sorted(self.iter_meta(), key=lambda m: m.get("created") or "", reverse=True)
        return [{k: m.get(k) for k in keep} for m in metas[: max(0, limit)]]

    # -- uploads ---------------------------------------------------------------------
    @property
    def uploads_dir(self) -> Path:
        return self.root / "uploads"

    def upload_path(self, sha: str) -> Path:
        if not _SHA_RE.match(sha):
            raise ValueError(f"invalid upload id {sha!r}: expected 64 hex digits.")
        return self.uploads_dir / f"{sha}.parquet"

    def has_upload(self, sha: str) -> bool:
        return self.upload_path(sha).is_file() and (self.uploads_dir / f"{sha}.json").is_file()

    def save_upload(self, df: Any, sha: str, info: dict[str, Any]) -> None:
        """Store an uploaded frame under its content hash (a no-op if it is already there)."""
        if self.has_upload(sha):
            return
        import io

        buf = io.BytesIO()
        df.to_parquet(buf)
        atomic_write_bytes(self.upload_path(sha), buf.getvalue())
        atomic_write_bytes(self.uploads_dir / f"{sha}.json", dumps(info).encode("utf-8"))

    def load_data(self, ref: str, data_root: str | os.PathLike[str] | None = None) -> Any:
        """The OHLCV frame ``ref`` stands for: an upload of this store (``upload:<sha256>``) or any
        reference :func:`quantlab.engine.data.from_reference` reads (``file:`` under ``data_root``).

        An unknown or malformed upload raises :class:`UploadNotFound` saying what to send.

        >>> RunStore("/tmp/runs").load_data("upload:" + "0" * 64)   # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        quantlab.servers.backtest.store.UploadNotFound: unknown upload 'upload:000...': send the DataFrame with upload_data first (list_datasets shows known uploads).
        """
        m = _UPLOAD_REF_RE.match(ref)
        if m:
            path = self.upload_path(m.group(1))
            if not path.is_file():
                raise UploadNotFound(f"unknown upload {ref!r}: send the DataFrame with upload_data first "
                                  "(list_datasets shows known uploads).")
            import pandas as pd

            return pd.read_parquet(path)
        if ref.startswith("upload:"):
            raise UploadNotFound(f"bad upload reference {ref!r}: expected 'upload:<64 hex digits>' as returned by upload_data.")
        from quantlab.engine import data as qdata

        return qdata.from_reference(ref, data_root=data_root)

    def list_uploads(self) -> list[dict[str, Any]]:
        if not self.uploads_dir.is_dir():
            return []
        out = []
        for p in sorted(self.uploads_dir.glob("*.json")):
            try:
                out.append(json.loads(p.read_text(encoding="utf-8")))
            except (OSError, ValueError):
                continue
        return out
