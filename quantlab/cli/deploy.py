"""``quantlab deploy``, ``quantlab deployments``, ``quantlab stop``: paper deployments from the shell.

Examples
--------
$ quantlab deploy sma.py --symbol EURUSD --volume 0.1          # backtest, store, deploy (policy-gated)
$ quantlab deploy 3f2a9c1 --force                              # a strategy already in the hub, by commit or name
$ quantlab deployments                                         # ledger + the broker's live status
$ quantlab stop 4
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from quantlab._util import to_jsonable

from ._common import (DATA_HELP, check_param_types, cost_options, format_costs, lab_options, open_lab, parse_params,
                      print_table, run_strategy)

__all__ = ["register"]


def cmd_deploy(args: argparse.Namespace) -> int:
    """Deploy a strategy file (backtested and stored first) or a stored strategy (commit or name)."""
    from quantlab.engine.strategy import Strategy

    target = args.strategy
    is_file = target.endswith(".py") or Path(target).is_file()
    with open_lab(args, backtest=is_file) as lab:  # a stored strategy needs no backtest server
        if is_file:
            strategy = Strategy.from_file(target)
            params = parse_params(args.param)
            check_param_types(strategy, params)
            result = run_strategy(strategy, target, lambda: lab.backtest(strategy, args.data, params, cash=args.cash,
                                                                         fees=args.fees, slippage=args.slippage))
            print(f"costs    {format_costs(result.costs)}")
            outcome = lab.store_and_deploy(result, symbol=args.symbol, timeframe=args.timeframe, volume=args.volume,
                                           force=args.force, source="command line")
            check = outcome.check
            print(repr(check))
            if outcome.stored is not None:
                print(f"stored   {outcome.stored.file} @ {outcome.stored.commit[:12]}")
            if not outcome.ok:
                print(f"error    {outcome.error}")
                return 1
            record = outcome.record
        else:
            record = lab.deploy(target, symbol=args.symbol, timeframe=args.timeframe, volume=args.volume, force=args.force)
        note = " (already running)" if record.existing else ""
        print(f"deployed {record.strategy_name!r} on {record.symbol}: deployment {record.deployment_id}, "
              f"status {record.status}{note}")
    return 0


def cmd_deployments(args: argparse.Namespace) -> int:
    """List deployments with their live status."""
    with open_lab(args, backtest=False) as lab:
        rows = lab.deployment_rows()  # dicts: no pandas to load for a table of a few lines
        if args.json:
            print(json.dumps(to_jsonable(rows)))
        elif not rows:
            print(f"no deployments recorded in {lab.hub.path}")
        else:
            print_table([{**r, "commit": str(r["commit"])[:12]} for r in rows],
                        ["deployment_id", "strategy_name", "symbol", "status", "position", "pnl", "trades", "commit"])
    return 0


def cmd_stop(args: argparse.Namespace) -> int:
    """Stop one deployment (its positions are closed) and record it."""
    with open_lab(args, backtest=False) as lab:
        record = lab.stop(args.deployment_id)
        print(json.dumps(record.to_dict()) if args.json else f"deployment {record.deployment_id}: {record.status}")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    common = lab_options()
    p = subparsers.add_parser("deploy", parents=[common, cost_options()], help="backtest, store and deploy a strategy to paper trading",
                              description=cmd_deploy.__doc__)
    p.add_argument("strategy", help="a .py file defining signals(data, **params), or a hub commit / strategy name")
    p.add_argument("--symbol", default=None, help="broker symbol (default: the broker's first)")
    p.add_argument("--timeframe", type=int, default=None, help="bar size in minutes (default: the backtest's bars, e.g. 60 for hourly data)")
    p.add_argument("--volume", type=float, default=0.1, help="lots at target position 1 (default 0.1)")
    p.add_argument("--data", default="sample", help=DATA_HELP)
    p.add_argument("-p", "--param", nargs=2, action="append", metavar=("NAME", "VALUE"), help="strategy parameter")
    p.add_argument("--force", action="store_true", help="deploy although the policy fails (recorded in the ledger)")
    p.set_defaults(func=cmd_deploy)

    p = subparsers.add_parser("deployments", parents=[common], help="list deployments and their live status",
                              description=cmd_deployments.__doc__)
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_deployments)

    p = subparsers.add_parser("stop", parents=[common], help="stop a deployment", description=cmd_stop.__doc__)
    p.add_argument("deployment_id", help="the broker's deployment id (see `quantlab deployments`)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_stop)
