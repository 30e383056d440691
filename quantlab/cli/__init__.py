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
    _plain_help(parser)
    return parser


def for_the_command_line(message: str) -> str:
    """An error message in the command line's words: no MCP plumbing, commands instead of API names.

    >>> for_the_command_line("tool 'stop_deployment' on server 'broker' failed: Error executing tool "
    ...                      "stop_deployment: no deployment 9; list them with list_deployments (`quantlab deployments`)..")
    'no deployment 9; list them with `quantlab deployments`.'
    """
    import re

    message = re.sub(r"tool '\w+' on server '[\w-]+' failed: (?:Error executing tool \w+: )?(?:\[\w+\] )?", "", message)
    message = re.sub(r"(?:list_deployments|lab\.deployments\(\)) \((`quantlab deployments`)\)", r"\1", message)
    return message.replace("..", ".")


def plain_text(text: str | None) -> str | None:
    """Docstring RST as a terminal shows it: ``code`` -> code, :func:`x.y` -> y, :class:`~a.B` -> B.

    >>> plain_text("Run ``quantlab report`` on :func:`quantlab.lab.Lab.backtest` (:class:`~quantlab.Lab`).")
    'Run quantlab report on Lab.backtest (Lab).'
    """
    import re

    if not text:
        return text
    text = re.sub(r":[a-z]+:`([^`]+)`", lambda m: _role_name(m.group(1)), text)
    return re.sub(r"``([^`]+)``", r"\1", text)


def _role_name(target: str) -> str:
    """``~a.b.C`` -> ``C``; ``a.b.C.d`` -> ``C.d`` (the last two parts, as Sphinx shows a method)."""
    if target.startswith("~"):
        return target[1:].split(".")[-1]
    parts = target.split(".")
    return ".".join(parts[-2:]) if len(parts) > 2 else target


def _plain_help(parser: argparse.ArgumentParser) -> None:
    """Strip RST markup from every description, epilog and option help under ``parser``."""
    parser.description = plain_text(parser.description)
    parser.epilog = plain_text(parser.epilog)
    for action in parser._actions:
        if isinstance(action.help, str):
            action.help = plain_text(action.help)
        if isinstance(action, argparse._SubParsersAction):
            for choice in action._choices_actions:
                choice.help = plain_text(choice.help)
            for child in set(action.choices.values()):
                _plain_help(child)


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
        print(f"quantlab {args.command}: error: {for_the_command_line(str(exc))}", file=sys.stderr)
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
