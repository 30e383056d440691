"""Run quantlab's notebooks headless: the demo, papermill reports, many reports at once.

What ``quantlab demo`` and ``quantlab report`` do, as functions:

- :func:`notebooks_dir` — where the shipped notebooks are (the checkout's ``notebooks/``,
  else the package data ``quantlab/notebooks/``).
- :func:`execute` — run a notebook with papermill (parameters injected) and write the
  HTML export beside it; a failing cell raises :class:`NotebookError` naming the cell
  and the error (the executed notebook and its HTML are still written).
- :func:`run_demo` — the quickstart into a folder, with its own assets hub.
- :func:`run_report` — the ``04_report`` notebook for one strategy.
- :func:`run_many` — several reports in parallel (local processes, a Dask
  ``LocalCluster`` or a ``dask://HOST:PORT`` scheduler) and an ``index.html`` linking them.
- :func:`resolve_strategy`, :func:`load_data` — what the report notebook itself uses to
  turn its parameters into a ``Strategy`` and a data frame, with readable errors.

Example
-------
>>> from quantlab.reports import run_report
>>> out = run_report("notebooks/strategies/sma_cross.py", "sma.ipynb", params={"fast": 10})  # doctest: +SKIP
>>> out.html, out.verdict                                                                  # doctest: +SKIP
('/home/me/sma.html', 'PASS')
"""
from __future__ import annotations

import html as _html
import json
import os
import re
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping

import pandas as pd

__all__ = [
    "NotebookError", "notebooks_dir", "notebook_path", "execute", "export_html",
    "DemoOutcome", "run_demo", "ReportOutcome", "run_report", "load_many", "run_many", "write_index", "reports_table_html",
    "resolve_strategy", "load_data", "POLICY_PARAMETERS",
]

QUICKSTART = "01_quickstart.ipynb"
REPORT = "04_report.ipynb"
#: notebook parameters of ``04_report`` that set the deployment policy
POLICY_PARAMETERS = ("min_sharpe", "max_drawdown", "min_profit_factor", "min_trades")
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
#: the kernel's own log is noise on a terminal (a warning about local TCP); cell errors land in the notebook
KERNEL_ARGUMENTS = ["--IPKernelApp.log_level=ERROR"]


class NotebookError(RuntimeError):
    """A notebook cell failed. ``cell`` (execution count), ``ename``, ``evalue`` say which and
    why; ``notebook`` and ``html`` are the executed copies (written anyway, with the error)."""

    def __init__(self, message: str, *, notebook: Path | None = None, html: Path | None = None,
                 cell: Any = None, ename: str | None = None, evalue: str | None = None) -> None:
        super().__init__(message)
        self.notebook, self.html, self.cell, self.ename, self.evalue = notebook, html, cell, ename, evalue


# --------------------------------------------------------------------------- notebooks
def notebooks_dir() -> Path:
    """The folder holding quantlab's notebooks.

    The checkout's ``notebooks/`` (editable install: ``Path(quantlab.__file__).parents[1]``),
    else the copy shipped as package data (``quantlab/notebooks/``), else
    ``<prefix>/share/quantlab/notebooks``.

    >>> (notebooks_dir() / "01_quickstart.ipynb").is_file()
    True
    """
    import quantlab

    pkg = Path(quantlab.__file__).resolve().parent
    import site

    # installed as data-files (pyproject [tool.setuptools.data-files]) into the prefix or the user base
    shared = [Path(base) / "share" / "quantlab" / "notebooks" for base in (sys.prefix, site.USER_BASE or sys.prefix)]
    for candidate in (pkg.parent / "notebooks", pkg / "notebooks", *shared):
        if (candidate / QUICKSTART).is_file():
            return candidate
    raise FileNotFoundError(
        f"quantlab's notebooks are not installed: none of {pkg.parent / 'notebooks'}, {pkg / 'notebooks'}, "
        f"{shared[0]} holds {QUICKSTART}. Install quantlab from a checkout (`pip install -e .`) or a wheel that ships them."
    )


def notebook_path(name: str) -> Path:
    """The path of a shipped notebook (``"01_quickstart"`` or ``"01_quickstart.ipynb"``).

    >>> notebook_path("04_report").name
    '04_report.ipynb'
    """
    name = name if name.endswith(".ipynb") else name + ".ipynb"
    path = notebooks_dir() / name
    if not path.is_file():
        shipped = sorted(p.name for p in notebooks_dir().glob("*.ipynb"))
        raise FileNotFoundError(f"no notebook {name!r} in {notebooks_dir()}; shipped: {shipped}.")
    return path


def _first_line(text: Any) -> str:
    lines = [ln for ln in str(text or "").strip().splitlines() if ln.strip()]
    return lines[0] if lines else ""


def export_html(notebook: str | os.PathLike[str], output: str | os.PathLike[str] | None = None) -> Path:
    """Write the notebook as a standalone HTML page (``.html`` beside it by default).

    Live widget views are dropped where an output also carries a static rendering, so the
    page shows quantlab's HTML/PNG fallbacks offline instead of empty widget placeholders.

    >>> export_html("report.ipynb")                 # doctest: +SKIP
    PosixPath('report.html')
    """
    import nbformat
    from nbconvert import HTMLExporter

    notebook = Path(notebook)
    output = Path(output) if output is not None else notebook.with_suffix(".html")
    nb = nbformat.read(notebook, as_version=4)
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            data = out.get("data")
            if data and WIDGET_VIEW in data and len(data) > 1:
                del data[WIDGET_VIEW]
    nb.metadata.pop("widgets", None)
    body, _ = HTMLExporter().from_notebook_node(nb, resources={"metadata": {"name": notebook.stem}})
    output.write_text(body, encoding="utf-8")
    return output


def execute(
    notebook: str | os.PathLike[str],
    output: str | os.PathLike[str],
    parameters: Mapping[str, Any] | None = None,
    *,
    cwd: str | os.PathLike[str] | None = None,
    html: bool = True,
    progress: bool = False,
    kernel_name: str | None = None,
    timeout: float | None = 600,
) -> Path:
    """Run ``notebook`` with papermill into ``output`` (parameters injected after the cell
    tagged ``parameters``) and, with ``html=True``, write ``output`` as HTML beside it.

    Raises :class:`NotebookError` when a cell fails: the message's first line names the
    cell and the error (``ename: first line of evalue``); the executed notebook and its
    HTML are still written so the traceback can be read there.

    >>> execute(notebook_path("04_report"), "out.ipynb", {"strategy": "my.py"})   # doctest: +SKIP
    PosixPath('out.ipynb')
    """
    import papermill as pm
    from papermill.exceptions import PapermillExecutionError

    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    html_path = output.with_suffix(".html")
    try:
        pm.execute_notebook(
            str(notebook), str(output), parameters=dict(parameters or {}), cwd=str(cwd) if cwd else None,
            progress_bar=progress, kernel_name=kernel_name, execution_timeout=timeout, log_output=False,
            extra_arguments=KERNEL_ARGUMENTS,
        )
    except PapermillExecutionError as exc:
        written = export_html(output, html_path) if html and output.is_file() else None
        raise NotebookError(
            f"{Path(notebook).name} failed in cell [{exc.exec_count}]: {exc.ename}: {_first_line(exc.evalue)}\n"
            f"(the executed notebook with the full traceback: {output}"
            + (f"; HTML: {written}" if written else "") + ")",
            notebook=output, html=written, cell=exc.exec_count, ename=exc.ename, evalue=str(exc.evalue),
        ) from None
    if html:
        export_html(output, html_path)
    return output


# --------------------------------------------------------------------------- report inputs
def _looks_like_file(ref: str) -> bool:
    return ref.endswith(".py") or "/" in ref or os.sep in ref or ref.startswith(".")


def resolve_strategy(strategy: Any, hub: str | os.PathLike[str] | None = None) -> Any:
    """Turn a report's ``strategy`` parameter into a :class:`quantlab.Strategy`.

    ``strategy`` is a path to a ``.py`` file defining ``signals(data, **params)``, or — with
    ``hub`` — a strategy name or commit stored in that assets hub. A missing file raises
    ``FileNotFoundError`` whose first line says which file is missing and what to pass.

    >>> resolve_strategy("no/such/file.py")    # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    FileNotFoundError: strategy file not found: ... pass strategy= (quantlab report --strategy) the path of a .py file ...
    """
    from quantlab.engine.strategy import Strategy

    if isinstance(strategy, Strategy):
        return strategy
    ref = str(strategy or "").strip()
    if not ref:
        raise ValueError("no strategy given: pass strategy= (quantlab report --strategy) a .py file "
                         "or a hub commit/strategy name together with hub= (--hub).")
    path = Path(ref).expanduser()
    if path.is_file():
        return Strategy.from_file(path)
    if _looks_like_file(ref) or hub is None:
        where = path if path.is_absolute() else Path.cwd() / path
        hint = "" if hub is not None else " or a hub commit/strategy name together with hub= (--hub)"
        raise FileNotFoundError(
            f"strategy file not found: {where} — pass strategy= (quantlab report --strategy) the path of a .py file "
            f"that defines signals(data, **params){hint}."
        )
    from quantlab.hub import AssetsHub

    hub_path = Path(hub).expanduser()
    if not (hub_path / ".git").exists():
        raise FileNotFoundError(f"assets hub not found: {hub_path} (no Git repository there) — pass hub= (--hub) "
                                f"the folder of an existing assets hub, or strategy= a .py file.")
    store = AssetsHub(hub_path, create=False)
    try:
        return store.load(ref)
    finally:
        store.close()


def load_data(data: Any = "sample") -> pd.DataFrame:
    """A report's ``data`` parameter as a validated OHLCV frame: a reference (``"sample"``,
    ``"synthetic:seed=7,bars=5000,freq=1h"``) or a path to a CSV/Parquet file.

    >>> len(load_data("synthetic:seed=1,bars=300,freq=1h"))
    300
    """
    from quantlab.engine import data as qdata

    if isinstance(data, pd.DataFrame):
        return qdata.validate(data)
    ref = str(data).strip()
    path = Path(ref).expanduser()
    if ":" not in ref and ref != "sample":
        if not path.is_file():
            raise FileNotFoundError(f"data file not found: {path} — pass data= (--data) 'sample', "
                                    "'synthetic:seed=7,bars=5000' or the path of an OHLCV CSV/Parquet file.")
        return qdata.load(path)
    if ref.startswith("file:"):
        return qdata.load(Path(ref[5:]).expanduser())
    return qdata.from_reference(ref)


# --------------------------------------------------------------------------- demo
@dataclass
class DemoOutcome:
    """Where ``quantlab demo`` put things: the executed ``notebook``, its ``html``, the ``hub``,
    the stored ``commit`` and the ``deployment`` (id and status from the hub's ledger)."""

    notebook: Path
    html: Path
    hub: Path
    commit: str | None
    strategy: str | None
    deployment_id: str | None
    deployment_status: str | None
    seconds: float

    def _rows(self) -> list[tuple[str, str]]:
        dep = f"{self.deployment_id} ({self.deployment_status})" if self.deployment_id else "none"
        return [("executed notebook", str(self.notebook)), ("HTML report", str(self.html)),
                ("assets hub", f"{self.hub} (strategy {self.strategy!r}, commit {(self.commit or 'none')[:12]})"),
                ("deployment", dep), ("took", f"{self.seconds:.1f} s")]

    def __repr__(self) -> str:
        dep = f"{self.deployment_id} ({self.deployment_status})" if self.deployment_id else None
        return f"DemoOutcome(notebook={str(self.notebook)!r}, hub={str(self.hub)!r}, deployment={dep!r})"

    def _repr_html_(self) -> str:
        return "<table>" + "".join(f"<tr><th style='text-align:left'>{_html.escape(k)}</th>"
                                   f"<td style='text-align:left'><code>{_html.escape(v)}</code></td></tr>"
                                   for k, v in self._rows()) + "</table>"

    def __str__(self) -> str:
        dep = f"{self.deployment_id} ({self.deployment_status})" if self.deployment_id else "none"
        commit = (self.commit or "none")[:12]
        return "\n".join([
            f"executed notebook  {self.notebook}",
            f"HTML report        {self.html}",
            f"assets hub         {self.hub}  (strategy {self.strategy!r}, commit {commit})",
            f"deployment         {dep}  (ledger: {self.hub / 'deployments.jsonl'})",
            f"took               {self.seconds:.1f} s",
        ])


def run_demo(out: str | os.PathLike[str] = "./quantlab-demo", *, progress: bool = False, timeout: float = 300) -> DemoOutcome:
    """Run ``01_quickstart`` headless into ``out`` (with its assets hub at ``out/assets-hub``).

    >>> print(run_demo("/tmp/demo"))      # doctest: +SKIP
    """
    from quantlab.hub import AssetsHub

    t0 = time.perf_counter()
    out = Path(out).expanduser().resolve()
    out.mkdir(parents=True, exist_ok=True)
    hub = out / "assets-hub"
    nb = execute(notebook_path(QUICKSTART), out / QUICKSTART, {"hub": str(hub), "auto_deploy": True},
                 cwd=out, progress=progress, timeout=timeout)
    store = AssetsHub(hub, create=False)
    try:
        log = store.strategies()
        status = store.deployment_status()
    finally:
        store.close()
    commit = strategy = dep_id = dep_status = None
    if len(log):
        commit, strategy = str(log.iloc[0]["commit"]), str(log.iloc[0]["name"])
    if len(status):
        last = status.iloc[-1]
        dep_id, dep_status = str(last.get("broker_deployment_id")), str(last.get("status"))
    return DemoOutcome(nb, nb.with_suffix(".html"), hub, commit, strategy, dep_id, dep_status, time.perf_counter() - t0)


# --------------------------------------------------------------------------- reports
@dataclass
class ReportOutcome:
    """One report: its ``name``, ``notebook`` and ``html`` paths, whether it ran (``ok``),
    the policy ``verdict`` (``"PASS"``/``"FAIL"``), key ``metrics``, the ``error`` line if a cell
    failed, and the wall time."""

    name: str
    notebook: str
    html: str | None
    ok: bool
    verdict: str | None = None
    metrics: dict[str, Any] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)
    error: str | None = None
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def __repr__(self) -> str:
        state = f"verdict={self.verdict}" if self.ok else f"error={self.error!r}"
        return f"ReportOutcome({self.name!r}, {state}, html={self.html!r}, {self.seconds:.1f}s)"

    def _repr_html_(self) -> str:
        return reports_table_html(pd.DataFrame([self.to_dict()]))


def _report_parameters(strategy: Any, params: Mapping[str, Any] | None, data: Any, hub: Any,
                       policy: Mapping[str, Any] | None, extra: Mapping[str, Any] | None) -> dict[str, Any]:
    ref = str(strategy)
    if Path(ref).expanduser().exists() or _looks_like_file(ref):
        ref = str(Path(ref).expanduser().absolute())
    if isinstance(data, (str, os.PathLike)):
        text = str(data).strip()
        if text.startswith("file:"):
            data = "file:" + str(Path(text[5:]).expanduser().absolute())
        elif ":" not in text and text != "sample":      # a CSV/Parquet path, relative to the caller's folder
            data = str(Path(text).expanduser().absolute())
    parameters: dict[str, Any] = {"strategy": ref, "params": dict(params or {}), "data": data}
    if hub is not None:
        parameters["hub"] = str(Path(hub).expanduser().absolute())
    unknown = set(policy or {}) - set(POLICY_PARAMETERS)
    if unknown:
        raise ValueError(f"unknown policy threshold(s) {sorted(unknown)}; use {list(POLICY_PARAMETERS)}.")
    parameters.update(policy or {})
    parameters.update(extra or {})
    return parameters


def run_report(
    strategy: Any,
    output: str | os.PathLike[str],
    *,
    params: Mapping[str, Any] | None = None,
    data: Any = "sample",
    hub: str | os.PathLike[str] | None = None,
    policy: Mapping[str, Any] | None = None,
    name: str | None = None,
    extra: Mapping[str, Any] | None = None,
    raise_on_error: bool = True,
    timeout: float | None = 600,
) -> ReportOutcome:
    """Run the ``04_report`` notebook for ``strategy`` into ``output`` (``.ipynb``) and HTML beside it.

    ``strategy`` is a ``.py`` file or a hub commit/name (with ``hub``); ``params`` override the
    strategy's defaults; ``policy`` sets thresholds (``min_sharpe``, ``max_drawdown``,
    ``min_profit_factor``, ``min_trades``); ``extra`` sets any other notebook parameter
    (``cash``, ``fees``, ``slippage``). With ``raise_on_error=False`` a failing report returns an
    outcome with ``ok=False`` and the ``error`` line instead of raising :class:`NotebookError`.

    >>> run_report("strategies/sma_cross.py", "out/sma.ipynb", params={"fast": 5}).verdict   # doctest: +SKIP
    'PASS'
    """
    t0 = time.perf_counter()
    output = Path(output).expanduser().absolute()
    if output.suffix != ".ipynb":
        output = output.with_suffix(".ipynb")
    summary = output.with_suffix(".json")
    parameters = _report_parameters(strategy, params, data, hub, policy, extra)
    parameters["summary_path"] = str(summary)
    label = name or Path(str(strategy)).stem or str(strategy)
    summary.unlink(missing_ok=True)
    try:
        execute(notebook_path(REPORT), output, parameters, cwd=notebooks_dir(), timeout=timeout)
    except NotebookError as exc:
        if raise_on_error:
            raise
        return ReportOutcome(label, str(output), str(exc.html) if exc.html else None, False,
                             error=_first_line(exc), seconds=time.perf_counter() - t0)
    info = json.loads(summary.read_text(encoding="utf-8")) if summary.is_file() else {}
    return ReportOutcome(label, str(output), str(output.with_suffix(".html")), True, verdict=info.get("verdict"),
                         metrics=info.get("metrics", {}), failures=info.get("failures", []),
                         seconds=time.perf_counter() - t0)


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
        if not Path(strategy).is_absolute() and (candidate.exists() or _looks_like_file(strategy)):
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
    if isinstance(executor, str) and (executor == "local" or executor.startswith(("dask://", "tcp://"))):
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
        address = "tcp://" + executor.split("://", 1)[1]
        client = Client(address, timeout="10s")
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


def reports_table_html(frame: pd.DataFrame, base: str | os.PathLike[str] | None = None) -> str:
    """The reports as an HTML table: name (linked to its HTML, relative to ``base``), verdict,
    key metrics, time, and the failed rules or the error line.

    >>> reports_table_html(pd.DataFrame([{"name": "x", "ok": False, "error": "boom", "html": None}]))[:7]
    '<table>'
    """
    esc = _html.escape
    keys = ["total_return", "sharpe", "max_drawdown", "profit_factor", "trades"]
    head = "".join(f"<th>{esc(h)}</th>" for h in ["report", "verdict", *keys, "time", "details"])
    body = []
    for row in frame.to_dict("records"):
        target = row.get("html")
        href = os.path.relpath(target, base) if target and base is not None else target
        link = f"<a href='{esc(str(href))}'>{esc(row['name'])}</a>" if target else esc(row["name"])
        if row.get("ok"):
            colour = "#1a7f37" if row.get("verdict") == "PASS" else "#cf222e"
            verdict = f"<b style='color:{colour}'>{esc(str(row.get('verdict')))}</b>"
            details = esc("; ".join(row.get("failures") or []))
        else:
            verdict = "<b style='color:#9a6700'>ERROR</b>"
            details = f"<span style='color:#cf222e'>{esc(str(row.get('error')))}</span>"
        metrics = row.get("metrics") or {}
        cells = "".join(f"<td style='text-align:right'>{esc(_fmt(metrics.get(k)))}</td>" for k in keys)
        seconds = row.get("seconds") or 0.0
        body.append(f"<tr><td>{link}</td><td>{verdict}</td>{cells}<td>{seconds:.1f}s</td><td>{details}</td></tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def write_index(frame: pd.DataFrame, path: str | os.PathLike[str], *, executor: str = "") -> Path:
    """Write the HTML index of a batch of reports (see :func:`reports_table_html`) to ``path``.

    >>> write_index(run_many(specs, "out"), "out/index.html")   # doctest: +SKIP
    """
    path = Path(path)
    ok = int(frame["ok"].sum()) if len(frame) else 0
    passed = int((frame["verdict"] == "PASS").sum()) if len(frame) else 0
    page = (
        "<!doctype html><html><head><meta charset='utf-8'><title>quantlab reports</title>"
        "<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}"
        "td,th{border-bottom:1px solid #ddd;padding:4px 10px}th{text-align:left}</style></head><body>"
        f"<h1>quantlab reports</h1><p>{len(frame)} reports, {ok} ran, {passed} pass the policy"
        + (f" · executor <code>{_html.escape(executor)}</code>" if executor else "")
        + f"</p>{reports_table_html(frame, path.parent)}</body></html>"
    )
    path.write_text(page, encoding="utf-8")
    return path


def _fmt(value: Any) -> str:
    if value is None:
        return ""
    try:
        return f"{float(value):.4g}"
    except (TypeError, ValueError):
        return str(value)
