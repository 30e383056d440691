"""``quantlab hub``: look into a Git assets hub from the shell.

Examples
--------
$ quantlab hub list                       # stored strategies, newest first
$ quantlab hub show "SMA cross"           # metadata and code of the latest version (or a commit / file)
$ quantlab hub log -n 30                  # recent store and deployment commits
$ quantlab hub list --hub ~/trading/assets-hub

The hub path is ``--hub``, else ``$QUANTLAB_HUB``, else ``./assets-hub``.
"""
from __future__ import annotations

import argparse
import json
import sys

__all__ = ["register"]


from ._common import default_hub as _default_hub, print_frame, print_table


def _open(args: argparse.Namespace):
    from quantlab.hub import AssetsHub

    return AssetsHub(args.hub, create=False)


def _fmt(value: object, pct: bool = False) -> str:
    from quantlab.hub.message import format_drawdown, format_number

    return format_drawdown(value) + "%" if pct else format_number(value)


def cmd_list(args: argparse.Namespace) -> int:
    """Print one line per stored strategy."""
    with _open(args) as hub:
        frame = hub.strategies()
        rows = [{"name": str(r.name), "commit": r.commit[:12], "date": r.date.strftime("%Y-%m-%d %H:%M:%S"),
                 "sharpe": _fmt(r.sharpe), "max dd": _fmt(r.max_drawdown, pct=True), "pf": _fmt(r.profit_factor),
                 "file": r.file} for r in frame.itertuples(index=False)]
        print_frame(frame, ["name", "commit", "date", "sharpe", "max dd", "pf", "file"], as_json=args.json,
                    empty=f"no strategies stored in {hub.path} yet", rows=rows)
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    """Print the metadata and code of one stored strategy."""
    with _open(args) as hub:
        stored = hub.get(args.name)
        if args.json:
            print(json.dumps({"commit": stored.commit, **stored.metadata}, indent=2, ensure_ascii=False))
            return 0
        m = stored.metrics
        meta = stored.metadata
        print(f"strategy   {stored.name}")
        print(f"commit     {stored.commit}")
        print(f"file       {stored.file}")
        print(f"created    {meta.get('created_at')}")
        print(f"run        {meta.get('run_id')}")
        print(f"data       {meta.get('data_ref')}")
        print(f"params     {json.dumps(meta.get('params'))}")
        print(f"costs      {json.dumps(meta.get('costs'))}")
        print(f"source     {json.dumps(meta.get('source'))}")
        print(f"sha256     {stored.sha256}")
        print(f"metrics    sharpe {_fmt(m.get('sharpe'))}, max drawdown {_fmt(m.get('max_drawdown'), pct=True)}, "
              f"profit factor {_fmt(m.get('profit_factor'))}")
        for k, v in m.items():
            if k not in ("sharpe", "max_drawdown", "profit_factor"):
                print(f"           {k} = {v}")
        if not args.no_code:
            print("-" * 72)
            print(hub.code(stored).rstrip("\n"))
    return 0


def cmd_log(args: argparse.Namespace) -> int:
    """Print the hub's recent commits."""
    with _open(args) as hub:
        frame = hub.log(max_count=args.n)
        if args.json:
            print(frame.to_json(orient="records", date_format="iso"))
            return 0
        if frame.empty:
            print("no commits yet")
            return 0
        rows = [{"commit": r.commit[:7], "date": r.date.strftime("%Y-%m-%d %H:%M"), "kind": r.kind, "subject": r.subject}
                for r in frame.itertuples(index=False)]
        print_table(rows, ["commit", "date", "kind", "subject"])
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``quantlab hub`` (``list``, ``show NAME``, ``log``) to the top-level parser."""
    parser = subparsers.add_parser(
        "hub",
        help="list, show and log the strategies stored in a Git assets hub",
        description=__doc__.split("Examples")[0].strip(),
        epilog="Examples:\n  quantlab hub list\n  quantlab hub show 'SMA cross'\n  quantlab hub log -n 30",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--hub", default=_default_hub(), metavar="PATH",
                        help="the assets hub folder (default: $QUANTLAB_HUB or ./assets-hub)")
    common.add_argument("--json", action="store_true", help="print JSON instead of a table")
    common.add_argument("--debug", action="store_true", help="show the full traceback on errors")
    sub = parser.add_subparsers(dest="hub_command", metavar="ACTION")

    p = sub.add_parser("list", parents=[common], help="stored strategies, newest first",
                       description="List the stored strategies, newest first, with their key metrics.")
    p.set_defaults(func=cmd_list)

    p = sub.add_parser("show", parents=[common], help="metadata and code of one stored strategy",
                       description="Show one stored strategy: a name (latest version), a commit, or a file.")
    p.add_argument("name", metavar="NAME", help="strategy name, commit sha or file under generated_bots/")
    p.add_argument("--no-code", action="store_true", help="do not print the code")
    p.set_defaults(func=cmd_show)

    p = sub.add_parser("log", parents=[common], help="recent store and deployment commits",
                       description="Show the hub's recent commits (strategies stored, deployment events).")
    p.add_argument("-n", type=int, default=20, metavar="N", help="how many commits (default 20)")
    p.set_defaults(func=cmd_log)

    def _help(args: argparse.Namespace) -> int:
        parser.print_help(sys.stdout)
        return 0

    parser.set_defaults(func=_help)
