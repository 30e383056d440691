"""``quantlab backtest``: backtest a strategy file and print its metrics.

Examples
--------
$ quantlab backtest sma.py                                  # on the shipped sample data, in-process
$ quantlab backtest sma.py --data synthetic:seed=7,bars=100000 -p fast 10 -p slow 40 --fees 0.0005
$ quantlab backtest sma.py --server                         # through the backtest MCP server (stored as a run)
$ quantlab backtest sma.py --json
"""
from __future__ import annotations

import argparse
import json

from quantlab._util import to_jsonable

from ._common import lab_options, open_lab, parse_params

__all__ = ["register"]


def cmd_backtest(args: argparse.Namespace) -> int:
    """Run one backtest and print the metrics (and the run id)."""
    from quantlab.engine.backtest import backtest
    from quantlab.engine.data import from_reference
    from quantlab.engine.strategy import Strategy

    strategy = Strategy.from_file(args.strategy)
    params = parse_params(args.param)
    costs = dict(cash=args.cash, fees=args.fees, slippage=args.slippage)
    if args.server:
        with open_lab(args) as lab:
            result = lab.backtest(strategy, args.data, params, **costs)
    else:
        result = backtest(from_reference(args.data), strategy, params, data_ref=args.data, **costs)
    if args.json:
        print(json.dumps({"run_id": result.run_id, "name": result.name, "params": result.params,
                          "metrics": to_jsonable(result.metrics)}))
    else:
        print(repr(result))
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("backtest", parents=[lab_options()], help="backtest a strategy file and print its metrics",
                              description=cmd_backtest.__doc__)
    p.add_argument("strategy", help="a .py file defining signals(data, **params)")
    p.add_argument("--data", default="sample", help="'sample', 'synthetic:seed=7,bars=100000' or 'file:PATH'")
    p.add_argument("-p", "--param", nargs=2, action="append", metavar=("NAME", "VALUE"), help="strategy parameter")
    p.add_argument("--cash", type=float, default=100_000.0)
    p.add_argument("--fees", type=float, default=0.0, help="fees as a fraction of traded notional")
    p.add_argument("--slippage", type=float, default=0.0, help="slippage as a fraction of the price")
    p.add_argument("--server", action="store_true", help="run through the backtest MCP server instead of in-process")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_backtest)
