"""``quantlab backtest``: backtest a strategy file and print its metrics.

Examples
--------
$ quantlab backtest sma.py                                  # on the shipped sample data, in-process
$ quantlab backtest sma.py --data bars.csv -p fast 10 -p slow 40 --fees 0.0005
$ quantlab backtest sma.py --data synthetic:seed=7,bars=100000
$ quantlab backtest sma.py --server                         # through the backtest MCP server (stored as a run)
$ quantlab backtest sma.py --json
"""
from __future__ import annotations

import argparse
import json

from quantlab._util import to_jsonable

from ._common import (DATA_HELP, check_param_types, cost_options, lab_options, load_strategy, open_lab, parse_params,
                      run_strategy, stats_block)

__all__ = ["register"]


def cmd_backtest(args: argparse.Namespace) -> int:
    """Run one backtest and print its stats: metrics, costs used and the run id."""
    from quantlab.engine.backtest import backtest
    from quantlab.engine.data import from_reference, is_local_path, load

    strategy = load_strategy(args.strategy)
    params = parse_params(args.param)
    check_param_types(strategy, params)
    costs = dict(cash=args.cash, fees=args.fees, slippage=args.slippage)
    if args.server:
        with open_lab(args) as lab:
            result = run_strategy(strategy, args.strategy, lambda: lab.backtest(strategy, args.data, params, **costs))
    else:
        data = load(args.data) if is_local_path(args.data) else from_reference(args.data)
        result = run_strategy(strategy, args.strategy,
                              lambda: backtest(data, strategy, params, data_ref=args.data, **costs))
    if args.json:
        print(json.dumps({"run_id": result.run_id, "name": result.name, "params": result.params,
                          "costs": result.costs, "metrics": to_jsonable(result.metrics)}))
    else:
        print(stats_block(result))
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("backtest", parents=[lab_options(), cost_options()],
                              help="backtest a strategy file and print its metrics", description=cmd_backtest.__doc__)
    p.add_argument("strategy", help="a .py file defining signals(data, **params)")
    p.add_argument("--data", default="sample", help=DATA_HELP)
    p.add_argument("-p", "--param", nargs=2, action="append", metavar=("NAME", "VALUE"), help="strategy parameter")
    p.add_argument("--server", action="store_true", help="run through the backtest MCP server instead of in-process")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_backtest)
