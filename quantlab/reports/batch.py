"""``quantlab report --many``: several reports in parallel (processes or Dask) and an ``index.html`` linking them."""
from __future__ import annotations

import os
import re
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any, Iterable, Mapping

import pandas as pd

from quantlab._util import dask_address, is_dask_address

from .index import write_index
from .inputs import looks_like_file
from .report import ReportOutcome, run_report

__all__ = ["load_many", "run_many"]


def _run_spec(spec: Mapping[str, Any]) -> dict[str, Any]:
    """Run one report spec (a plain dict, so it pickles to Dask workers and processes)."""
    spec = dict(spec)
    out = spec.pop("output")
    try:
        return run_report(spec.pop("strategy"), out, raise_on_error=False, **spec).to_dict()
    except Exception as exc:  # noqa: BLE001 - a bad spec is one failed row, not a failed batch
        return ReportOutcome(spec.get("name") or "?", str(out), None, False, error=f"{type(exc).__name__}: {exc}").to_dict()


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-.") or "report"


def load_many(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Read a ``--many`` YAML file: a list of reports, or ``{"defaults": {...}, "reports": [...]}``.

    Each report has ``strategy`` (a ``.py`` path relative to the YAML file, or a hub
    commit/name) and optionally ``name``, ``params``, ``data``, ``hub``, ``policy``
    (thresholds) and ``extra`` (other notebook parameters such as ``fees``). A string item is a
    strategy with no options. Names are made unique; they name the output files.

    Example file::

        defaults: {data: sample, policy: {min_sharpe: 0.5}}
        reports:
          - {name: sma-fast, strategy: strategies/sma_cross.py, params: {fast: 5, slow: 30}}
          - strategies/momentum.py

    >>> load_many("reports.yaml")[0]["name"]      # doctest: +SKIP
    'sma-fast'
    """
    import yaml

    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"reports file not found: {path} — pass --many the path of a YAML list of reports.")
    doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    defaults: dict[str, Any] = {}
    if isinstance(doc, Mapping):
        defaults = dict(doc.get("defaults") or {})
        doc = doc.get("reports")
    if not isinstance(doc, list) or not doc:
        raise ValueError(f"{path}: expected a non-empty list of reports (or a mapping with 'reports:'), "
                         "each with at least `strategy: path/to/file.py`.")
    allowed = {"name", "strategy", "params", "data", "hub", "policy", "extra"}
    specs, seen = [], set()
    for i, item in enumerate(doc, 1):
        item = {"strategy": item} if isinstance(item, str) else dict(item or {})
        spec = {**defaults, **item}
        for key in ("params", "policy", "extra"):
            spec[key] = {**dict(defaults.get(key) or {}), **dict(item.get(key) or {})}
        bad = set(spec) - allowed
        if bad:
            raise ValueError(f"{path}: report #{i} has unknown key(s) {sorted(bad)}; allowed: {sorted(allowed)}.")
        if not spec.get("strategy"):
            raise ValueError(f"{path}: report #{i} has no `strategy:` (a .py path or a hub commit/name).")
        strategy = str(spec["strategy"])
        candidate = (path.parent / strategy).expanduser()
        if not Path(strategy).is_absolute() and (candidate.exists() or looks_like_file(strategy)):
            spec["strategy"] = str(candidate.absolute())
        if spec.get("hub"):
            spec["hub"] = str((path.parent / str(spec["hub"])).expanduser().absolute())
        name = _slug(str(spec.get("name") or Path(strategy).stem))
        base, n = name, 2
        while name in seen:
            name, n = f"{base}-{n}", n + 1
        seen.add(name)
        spec["name"] = name
        specs.append(spec)
    return specs


def _executor(executor: Any) -> tuple[Any, Any]:
    """(submit-capable pool, closer) for ``executor`` (see :func:`run_many`)."""
    if executor is None or executor == "processes":
        pool = ProcessPoolExecutor(max_workers=max(1, min(4, os.cpu_count() or 1)))
        return pool, pool.shutdown
    if executor == "local" or is_dask_address(executor):
        try:
            from dask.distributed import Client, LocalCluster
        except ImportError as exc:  # pragma: no cover - depends on the install
            raise ImportError("--executor dask://… or local needs dask.distributed: pip install 'quantlab[dask]'.") from exc
        if executor == "local":
            cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None)
            client = Client(cluster)

            def close() -> None:
                client.close()
                cluster.close()

            return client, close
        client = Client(dask_address(executor), timeout="10s")
        return client, client.close
    if hasattr(executor, "submit"):
        return executor, lambda: None
    raise ValueError(f"unknown executor {executor!r}: use 'processes', 'local' (a Dask LocalCluster) or 'dask://HOST:PORT'.")


def run_many(
    specs: Iterable[Mapping[str, Any]] | str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    executor: Any = "processes",
    *,
    progress: bool = True,
) -> pd.DataFrame:
    """Run several reports in parallel and write ``out_dir/index.html`` linking them.

    ``specs`` is a list of report dicts or a YAML file (:func:`load_many`). ``executor``:
    ``"processes"`` (local processes, default), ``"local"`` (a Dask ``LocalCluster`` with 2
    workers), ``"dask://HOST:PORT"`` (an existing Dask scheduler; the workers must see the
    same file system), or any object with ``submit`` (a ``dask.distributed.Client``, a
    ``concurrent.futures`` executor). A failing report is one row with its error; the others
    finish. Returns one row per report (name, ok, verdict, metrics, error, paths, seconds).

    >>> run_many("reports.yaml", "out", executor="dask://127.0.0.1:8786")   # doctest: +SKIP
    """
    from concurrent.futures import as_completed as cf_completed

    from tqdm.auto import tqdm

    if isinstance(specs, (str, os.PathLike)):
        specs = load_many(specs)
    out_dir = Path(out_dir).expanduser().absolute()
    out_dir.mkdir(parents=True, exist_ok=True)
    jobs = []
    for spec in specs:
        spec = dict(spec)
        spec.setdefault("name", _slug(Path(str(spec["strategy"])).stem))
        spec["output"] = str(out_dir / f"{spec['name']}.ipynb")
        jobs.append(spec)
    pool, close = _executor(executor)
    rows: dict[str, dict[str, Any]] = {}
    try:
        futures = [pool.submit(_run_spec, job, **({"pure": False} if _is_dask(pool) else {})) for job in jobs]
        if _is_dask(pool):
            from dask.distributed import as_completed
        else:
            as_completed = cf_completed  # type: ignore[assignment]
        bar = tqdm(total=len(futures), desc="reports", unit="report", disable=not progress)
        for fut in as_completed(futures):
            row = fut.result()
            rows[row["name"]] = row
            bar.update(1)
            bar.set_postfix_str(f"{row['name']}: {row['verdict'] if row['ok'] else 'error'}")
        bar.close()
    finally:
        close()
    frame = pd.DataFrame([rows[j["name"]] for j in jobs])
    write_index(frame, out_dir / "index.html", executor=str(executor if isinstance(executor, str) else type(executor).__name__))
    return frame


def _is_dask(pool: Any) -> bool:
    return type(pool).__module__.startswith("distributed")

