"""``quantlab report``: a strategy report (the ``04_report`` notebook, run by papermill), or many.

One report writes ``OUT.ipynb`` and ``OUT.html`` beside it (metrics, charts, the policy
verdict). ``--many FILE.yaml`` runs several in parallel — in local processes, on a Dask
``LocalCluster`` (``--executor local``) or on a Dask scheduler (``--executor
dask://HOST:PORT``; its workers must see the same files) — and writes ``OUT/index.html``.

Examples
--------
$ quantlab report --strategy notebooks/strategies/sma_cross.py -p fast 10 -p slow 100 -o sma.ipynb
$ quantlab report --strategy "SMA cross" --hub ./assets-hub --data synthetic:seed=7,bars=5000,freq=1h -o sma.ipynb
$ quantlab report --many notebooks/strategies/reports.yaml --executor local -o reports/
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ._common import cost_options, parse_params

__all__ = ["register"]


def _policy(args: argparse.Namespace) -> dict:
    return {k: getattr(args, k) for k in ("min_sharpe", "max_drawdown", "min_profit_factor", "min_trades")
            if getattr(args, k) is not None}


def cmd_report(args: argparse.Namespace) -> int:
    """Run the report notebook for one strategy (``--strategy``) or for each entry of ``--many``."""
    from quantlab.reports import NotebookError, run_many, run_report

    if bool(args.strategy) == bool(args.many):
        print("quantlab report: error: give either --strategy FILE_OR_COMMIT or --many REPORTS.yaml.", file=sys.stderr)
        return 2
    if args.many:
        out = Path(args.output or "reports")
        frame = run_many(args.many, out, executor=args.executor, progress=not args.quiet)
        for row in frame.to_dict("records"):
            state = row["verdict"] if row["ok"] else f"ERROR {row['error']}"
            print(f"{row['name']:<28} {state:<6} {row['html'] or row['notebook']}")
        print(f"index: {out / 'index.html'}")
        return 0 if bool(frame["ok"].all()) else 1
    output = Path(args.output or f"{Path(args.strategy).stem or 'report'}.ipynb")
    extra = {k: getattr(args, k) for k in ("cash", "fees", "slippage") if getattr(args, k) is not None}
    try:
        outcome = run_report(args.strategy, output, params=parse_params(args.param), data=args.data, hub=args.hub,
                             policy=_policy(args), extra=extra, timeout=args.timeout)
    except NotebookError as exc:
        print(f"quantlab report: error: {exc}", file=sys.stderr)
        return 1
    print(f"verdict   {outcome.verdict}" + (f" ({'; '.join(outcome.failures)})" if outcome.failures else ""))
    print(f"notebook  {outcome.notebook}")
    print(f"HTML      {outcome.html}")
    return 3 if args.fail_on_policy and outcome.verdict != "PASS" else 0


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("report", parents=[cost_options(default=False)], help="papermill report of a strategy (metrics, charts, verdict); --many in parallel",
                              description=cmd_report.__doc__)
    p.add_argument("--strategy", help="a .py file defining signals(data, **params), or a hub commit/strategy name (with --hub)")
    p.add_argument("--many", metavar="REPORTS.yaml", help="YAML list of reports to run in parallel (see quantlab.reports.load_many)")
    p.add_argument("-o", "--output", help="output notebook (OUT.html is written beside it); with --many, the output folder")
    p.add_argument("-p", "--param", nargs=2, action="append", metavar=("NAME", "VALUE"),
                   help="strategy parameter (value parsed as JSON when it can be)")
    p.add_argument("--data", default="sample", help="'sample', 'synthetic:seed=7,bars=5000,freq=1h' or a CSV/Parquet path")
    p.add_argument("--hub", default=None, help="assets hub folder, when --strategy is a commit or a stored name")
    p.add_argument("--min-sharpe", type=float, default=None, help="policy threshold (default 0.5)")
    p.add_argument("--max-drawdown", type=float, default=None, help="policy threshold (default 0.25)")
    p.add_argument("--min-profit-factor", type=float, default=None, help="policy threshold (default 1.1)")
    p.add_argument("--min-trades", type=int, default=None, help="policy threshold (default 5)")
    p.add_argument("--fail-on-policy", action="store_true", help="exit with status 3 when the verdict is FAIL")
    p.add_argument("--executor", default="processes",
                   help="with --many: 'processes' (default), 'local' (Dask LocalCluster, 2 workers) or 'dask://HOST:PORT'")
    p.add_argument("--timeout", type=float, default=600.0, help="seconds allowed per notebook cell")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.add_argument("--debug", action="store_true", help="show tracebacks")
    p.set_defaults(func=cmd_report)
