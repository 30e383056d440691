"""The 04_report notebook under papermill, and `quantlab report` (single and --many on Dask).

Everything runs for real: papermill starts a Python kernel per report; --many runs on a
real dask.distributed LocalCluster (2 worker processes) reached through dask://HOST:PORT.
"""
from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import nbformat
import papermill as pm
import pytest
from papermill.exceptions import PapermillExecutionError

from quantlab.engine.backtest import backtest
from quantlab.engine.data import from_reference
from quantlab.engine.strategy import Strategy
from quantlab.reports import notebook_path, notebooks_dir, run_report

REPORT = notebook_path("04_report")
STRATEGIES = notebooks_dir() / "strategies"
SMA = STRATEGIES / "sma_cross.py"
MOMENTUM = STRATEGIES / "momentum.py"


def _stream_text(nb: nbformat.NotebookNode) -> str:
    return "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])
                   if o.output_type == "stream")


def _errors(nb: nbformat.NotebookNode) -> list:
    return [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []) if o.output_type == "error"]


@pytest.mark.parametrize(
    "parameters, expected",
    [
        # the default policy fails this one on Sharpe and profit factor
        ({"strategy": str(SMA), "params": {"fast": 5, "slow": 30}, "fees": 0.0002}, "FAIL"),
        # another strategy, synthetic data, a relaxed policy
        ({"strategy": str(MOMENTUM), "params": {"lookback": 96}, "data": "synthetic:seed=3,bars=3000,freq=1h",
          "fees": 0.0, "min_sharpe": -10.0, "max_drawdown": 1.0, "min_profit_factor": 0.0, "min_trades": 1}, "PASS"),
    ],
    ids=["sma-default-policy", "momentum-synthetic-relaxed-policy"],
)
def test_report_notebook_with_parameter_sets(tmp_path, parameters, expected):
    out = tmp_path / "report.ipynb"
    summary = tmp_path / "summary.json"
    pm.execute_notebook(str(REPORT), str(out), parameters={**parameters, "summary_path": str(summary)},
                        cwd=str(notebooks_dir()), progress_bar=False)
    nb = nbformat.read(out, as_version=4)
    assert not _errors(nb)
    info = json.loads(summary.read_text())
    assert info["verdict"] == expected
    assert f"VERDICT: {expected}" in _stream_text(nb)
    # the numbers in the report are the engine's numbers for the same inputs
    strat = Strategy.from_file(parameters["strategy"])
    ref = from_reference(parameters.get("data", "sample"))
    direct = backtest(ref, strat, {**strat.params, **parameters["params"]}, fees=parameters["fees"])
    assert info["metrics"]["trades"] == direct.metrics["trades"]
    assert info["metrics"]["sharpe"] == pytest.approx(direct.metrics["sharpe"], rel=1e-12)
    if expected == "FAIL":
        assert any(f.startswith("sharpe") for f in info["failures"])
    # charts are in the executed notebook (static PNG fallback of the review widget)
    html_outputs = [o["data"]["text/html"] for c in nb.cells for o in c.get("outputs", []) if "text/html" in o.get("data", {})]
    assert any("data:image/png;base64," in h for h in html_outputs)


def test_missing_strategy_file_fails_with_a_readable_error(tmp_path):
    out = tmp_path / "bad.ipynb"
    missing = tmp_path / "no_such_strategy.py"
    with pytest.raises(PapermillExecutionError) as info:
        pm.execute_notebook(str(REPORT), str(out), parameters={"strategy": str(missing)},
                            cwd=str(notebooks_dir()), progress_bar=False)
    err = info.value
    assert err.ename == "FileNotFoundError"
    first = err.evalue.splitlines()[0]
    assert first.startswith(f"strategy file not found: {missing}")
    assert "pass strategy= (quantlab report --strategy) the path of a .py file" in first
    # the executed notebook carries the same error in the failing cell's output
    nb = nbformat.read(out, as_version=4)
    [error] = _errors(nb)
    assert error.ename == "FileNotFoundError" and error.evalue.splitlines()[0] == first


def test_report_of_a_strategy_stored_in_the_hub(tmp_path):
    from quantlab.hub import AssetsHub

    strat = Strategy.from_file(SMA, name="SMA cross")
    stored_result = backtest(from_reference("sample"), strat, {"fast": 10, "slow": 100}, fees=0.0002)
    hub = AssetsHub(tmp_path / "hub")
    try:
        stored = hub.store(strat, stored_result)
    finally:
        hub.close()
    outcome = run_report(stored.commit[:10], tmp_path / "out" / "stored.ipynb", hub=tmp_path / "hub",
                         params={"fast": 10, "slow": 100})
    assert outcome.ok and outcome.verdict == "PASS"
    assert outcome.metrics["sharpe"] == pytest.approx(stored.metrics["sharpe"], rel=1e-12)
    assert Path(outcome.html).is_file() and Path(outcome.notebook).is_file()
    # a name that is not in the hub fails with the hub's message, not a file error
    bad = run_report("no-such-strategy", tmp_path / "out" / "bad.ipynb", hub=tmp_path / "hub", raise_on_error=False)
    assert not bad.ok and "no stored strategy matches 'no-such-strategy'" in bad.error


def _quantlab(*args, cwd=None, timeout=240):
    return subprocess.run([sys.executable, "-m", "quantlab", *args], capture_output=True, text=True,
                          cwd=cwd, timeout=timeout)


def test_cli_report_writes_notebook_and_html(tmp_path):
    proc = _quantlab("report", "--strategy", str(SMA), "-p", "fast", "10", "-p", "slow", "100",
                     "--min-sharpe", "1.5", "--fail-on-policy", "-o", str(tmp_path / "sma.ipynb"))
    # Sharpe is about 1.2 after the default fees (observed bars per year): the stricter threshold fails it
    assert proc.returncode == 3, proc.stderr
    assert re.search(r"verdict   FAIL \(sharpe: 1\.\d+ < 1\.5", proc.stdout), proc.stdout
    page = (tmp_path / "sma.html").read_text()
    assert "VERDICT: FAIL" in page
    assert page.count("data:image/png;base64,") >= 2            # equity/drawdown + monthly heat map
    assert "application/vnd.jupyter.widget-view+json" not in page   # static fallbacks, not empty widget views
    nb = nbformat.read(tmp_path / "sma.ipynb", as_version=4)
    injected = next(c for c in nb.cells if "injected-parameters" in c.metadata.get("tags", []))
    assert "min_sharpe = 1.5" in injected.source


def test_cli_report_missing_file_and_bad_usage(tmp_path):
    proc = _quantlab("report", "--strategy", "nope/missing.py", "-o", str(tmp_path / "bad.ipynb"), cwd=tmp_path)
    assert proc.returncode == 1
    line = proc.stderr.strip().splitlines()[0]
    assert re.search(r"failed in cell \[\d+\]: FileNotFoundError: strategy file not found: .*nope/missing\.py", line), line
    assert (tmp_path / "bad.html").is_file()          # the failed report is still written, with the traceback
    proc = _quantlab("report", "-o", str(tmp_path / "x.ipynb"))
    assert proc.returncode == 2 and "either --strategy" in proc.stderr


def test_cli_report_many_on_a_dask_local_cluster(tmp_path):
    from dask.distributed import LocalCluster

    spec = tmp_path / "reports.yaml"
    spec.write_text(
        "defaults: {data: sample, extra: {fees: 0.0002}}\n"
        "reports:\n"
        f"  - {{name: sma-10-100, strategy: {SMA}, params: {{fast: 10, slow: 100}}}}\n"
        f"  - {{name: momentum-48-ls, strategy: {MOMENTUM}, params: {{lookback: 48, allow_short: true}}}}\n"
        "  - {name: missing, strategy: missing.py}\n"
    )
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                      dashboard_address=None) as cluster:
        address = cluster.scheduler_address.replace("tcp://", "dask://")
        proc = _quantlab("report", "--many", str(spec), "--executor", address, "-o", str(tmp_path / "out"), "-q")
        prefixes = list(cluster.scheduler.task_prefixes)
    assert "run_spec" in prefixes, prefixes   # the reports were tasks of this cluster's scheduler
    assert proc.returncode == 1, proc.stderr      # one report failed → non-zero, the others finished
    lines = {ln.split()[0]: ln for ln in proc.stdout.splitlines() if ln.strip() and not ln.startswith("index")}
    assert "PASS" in lines["sma-10-100"] and "FAIL" in lines["momentum-48-ls"]
    assert "ERROR" in lines["missing"] and "strategy file not found" in lines["missing"]
    index = (tmp_path / "out" / "index.html").read_text()
    for name in ("sma-10-100", "momentum-48-ls"):
        assert f"href='{name}.html'" in index and (tmp_path / "out" / f"{name}.html").is_file()
    assert "3 reports, 2 ran, 1 pass the policy" in index
    assert "strategy file not found" in index
    assert re.search(r"<td style='text-align:right'>-\d+\.\d\d%</td>", index)   # drawdowns as in the single reports


def test_many_index_formats_numbers_as_the_single_reports_do():
    import pandas as pd

    from quantlab.engine.formatting import fmt_metric
    from quantlab.reports import reports_table_html

    metrics = {"total_return": 0.123456, "sharpe": 1.176381, "max_drawdown": -0.0812, "profit_factor": "inf",
               "trades": 42.0}
    page = reports_table_html(pd.DataFrame([{"name": "x", "ok": True, "verdict": "PASS", "metrics": metrics,
                                             "html": None, "seconds": 1.0}]))
    for cell in ("12.35%", "1.18", "-8.12%", "∞", "42"):
        assert f">{cell}</td>" in page, page
    assert fmt_metric("total_return", 0.123456) == "12.35%"


def test_report_html_is_for_a_reader_title_and_verdict_first(tmp_path):
    """The HTML page has no code input cells, the strategy's name as title, no parameter
    cells, and the formatted verdict/summary before anything else."""
    from html.parser import HTMLParser

    outcome = run_report(str(SMA), tmp_path / "sma.ipynb", params={"fast": 5, "slow": 30})
    page = Path(outcome.html).read_text(encoding="utf-8")

    class Cells(HTMLParser):
        def __init__(self):
            super().__init__()
            self.inputs, self.code_cells, self.title, self._in_title, self.text = 0, 0, "", False, []

        def handle_starttag(self, tag, attrs):
            cls = dict(attrs).get("class") or ""
            classes = cls.split()
            code_cell_with_input = "jp-CodeCell" in classes and "jp-mod-noInput" not in classes
            if code_cell_with_input or "jp-CodeMirrorEditor" in classes or "jp-InputPrompt" in classes:
                self.inputs += 1
            self.code_cells += "jp-CodeCell" in classes
            self._in_title = tag == "title"

        def handle_endtag(self, tag):
            self._in_title = False

        def handle_data(self, data):
            if self._in_title:
                self.title += data
            elif data.strip():
                self.text.append(data.strip())

    parsed = Cells()
    parsed.feed(page)
    assert parsed.code_cells > 3 and parsed.inputs == 0, "code input cells leaked into the report"
    assert parsed.title.startswith("sma_cross")
    assert "injected-parameters" not in page and "fast = 5" not in page and "min_sharpe = 0.5" not in page
    body = [t for t in parsed.text if not t.startswith(("<", "{", "/*", "@", ".", ":", "window", "(", "var", "require"))]
    first = body.index("sma_cross") if "sma_cross" in body else -1
    verdict = next(i for i, t in enumerate(body) if t.startswith("Verdict:"))
    assert 0 <= first < verdict < body.index("Metrics")
    assert f"Verdict: {outcome.verdict}" in page
    # formatted percentages in the summary, e.g. "Max drawdown" 12.34%
    assert re.search(r"Max drawdown</th><td[^>]*>-?\d+\.\d\d%", page)
