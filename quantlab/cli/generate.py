"""``quantlab generate``: ask a model (or the offline building blocks) for a strategy and check it.

Examples
--------
$ quantlab generate "trend following with a volatility filter" --model offline
$ quantlab generate "mean reversion on calm days" --model openai:gpt-4.1 --attempts 3 --store
$ quantlab generate "breakout" --model offline --json > gen.json      # replay with --model replay:gen.json
"""
from __future__ import annotations

import argparse
import json
import sys

from ._common import cost_options, lab_options, open_lab

__all__ = ["register"]


def cmd_generate(args: argparse.Namespace) -> int:
    """Generate a strategy for IDEA: every attempt is checked (parses, signals, sandbox, 500 bars, causal,
    backtest, policy) and its failure fed back; print the attempts; --store keeps the best in the hub."""
    with open_lab(args) as lab:
        def progress(event: str, cand, gen) -> None:
            if event == "done":  # progress on stderr, so --json output stays clean
                failed = next((c for c in cand.checks if c.status == "fail"), None)
                why = f" ({failed.detail.splitlines()[0][:100]})" if failed else (f" ({cand.error[:100]})" if cand.error else "")
                print(f"  attempt {cand.attempt}: {cand.status}{why}", file=sys.stderr)

        gen = lab.generate(args.idea, args.data, model=args.model, max_attempts=args.attempts,
                           budget_usd=args.budget, on_attempt=progress, cash=args.cash, fees=args.fees,
                           slippage=args.slippage)
        stored = lab.store(gen.best) if args.store and gen.best is not None else None
        if args.save:
            gen.save(args.save)
        if args.json:
            out = gen.to_dict()
            out["stored"] = None if stored is None else {"commit": stored.commit, "file": stored.file}
            print(json.dumps(out, default=str))
        else:
            print(repr(gen))
            best = gen.best
            if best is not None:
                m = best.metrics
                print(f"best: attempt {best.attempt} {best.name!r} params={best.params} "
                      f"sharpe={m.get('sharpe', float('nan')):.2f} trades={m.get('trades')}")
            for note in gen.notes:
                print(note)
            if stored is not None:
                print(f"stored: {stored.file} (commit {stored.commit[:12]})")
            elif args.store:
                print("not stored: no attempt passed every check")
    return 0 if gen.best is not None else 2


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("generate", parents=[lab_options(), cost_options()], help="generate a strategy from an idea with a model",
                              description=cmd_generate.__doc__)
    p.add_argument("idea", help="the idea, in words")
    p.add_argument("--model", "-m", default=None,
                   help="'openai:NAME', 'anthropic:NAME', 'offline' or 'replay:PATH' "
                        "(default: quantlab.toml [llm] / [tool.quantlab.llm] / $QUANTLAB_MODEL, else offline)")
    p.add_argument("--data", default="sample", help="'sample', 'synthetic:seed=7,bars=100000' or 'file:PATH'")
    p.add_argument("--attempts", "-n", type=int, default=5, help="most attempts (default 5)")
    p.add_argument("--budget", type=float, default=None, help="most USD to spend on the model")
    p.add_argument("--store", action="store_true", help="store the best candidate in the hub (with its transcript)")
    p.add_argument("--save", default=None, metavar="PATH", help="write the generation as JSON (replay with --model replay:PATH)")
    p.add_argument("--json", action="store_true", help="machine-readable output (the generation's to_dict)")
    p.set_defaults(func=cmd_generate)
