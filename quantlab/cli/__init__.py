"""The ``quantlab`` command line.

Each subcommand lives in its own module here and exposes
``register(subparsers) -> None``, which adds its parser and sets
``func=<callable(args) -> int>`` as the parser default.

Example
-------
$ quantlab --help
$ quantlab servers --help
"""
from __future__ import annotations

import argparse
import importlib
import sys

# Order is the order shown in ``quantlab --help``.
COMMANDS = ["demo", "servers", "backtest", "generate", "broker", "paper", "hub", "deploy", "report"]


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser with every available subcommand registered."""
    from quantlab import __version__

    parser = argparse.ArgumentParser(
        prog="quantlab",
        description="quantlab: write a strategy, backtest it over MCP, store it in a Git assets hub, paper-trade it.",
    )
    parser.add_argument("--version", action="version", version=f"quantlab {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:  # a subcommand that fails to import raises here: it never vanishes from --help
        importlib.import_module(f"quantlab.cli.{name}").register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``quantlab`` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - the CLI turns errors into one readable line
        if getattr(args, "debug", False):
            raise
        print(f"quantlab {args.command}: error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
