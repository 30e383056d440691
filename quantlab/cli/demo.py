"""``quantlab demo``: run the quickstart notebook headless and show where everything went.

Runs ``notebooks/01_quickstart.ipynb`` with papermill into ``--out`` (default
``./quantlab-demo``): the lab starts its embedded servers, backtests the SMA cross on the
shipped sample data, stores it in an assets hub inside the folder, deploys it to the paper
broker, watches it trade, stops it. Writes the executed notebook and its HTML export.
No network, no keys.

Examples
--------
$ quantlab demo
$ quantlab demo --out /tmp/demo
"""
from __future__ import annotations

import argparse
import sys

__all__ = ["register"]


def cmd_demo(args: argparse.Namespace) -> int:
    """Run the quickstart headless; print where the notebook, HTML, hub and deployment are."""
    from quantlab.reports import NotebookError, run_demo

    print(f"running the quickstart notebook into {args.out} (papermill; usually well under a minute) …", file=sys.stderr)
    try:
        outcome = run_demo(args.out, progress=not args.quiet, timeout=args.timeout)
    except NotebookError as exc:
        print(f"quantlab demo: error: {exc}", file=sys.stderr)
        return 1
    print(outcome)
    print(f"\nopen {outcome.html} in a browser, or the notebook itself: jupyter lab {outcome.notebook}")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("demo", help="run the quickstart notebook headless (backtest, store, deploy, watch, stop)",
                              description=cmd_demo.__doc__)
    p.add_argument("--out", default="./quantlab-demo", help="output folder (default ./quantlab-demo); the hub goes inside")
    p.add_argument("--timeout", type=float, default=300.0, help="seconds allowed per notebook cell (default 300)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.add_argument("--debug", action="store_true", help="show tracebacks")
    p.set_defaults(func=cmd_demo)
