"""``python -m quantlab.servers.broker --db PATH``: run the paper broker (stdio by default).

Options: ``--clock stepped|realtime|accelerated:N``, ``--symbols EURUSD,XAUUSD``,
``--feed synthetic|DIR``, ``--seed N``, ``--mode netting|hedging``, ``--balance``,
``--leverage``, ``--spread``, ``--slippage``, ``--commission``,
``--http PORT [--token T | --token-file F]`` (HTTP on 127.0.0.1 with a bearer token: given,
read from the token file or ``$QUANTLAB_BROKER_TOKEN``, else generated into the token file,
default ``<db>.token``, mode 0600). Every file the broker creates is mode 0600.

Example
-------
$ python -m quantlab.servers.broker --db /tmp/b.db --clock accelerated:20
"""
from __future__ import annotations

import argparse
import os
import sys

from quantlab.servers.auth import resolve_token

from .book import Broker, BrokerConfig
from .server import Clock, build_server, parse_clock, run_http
from .store import lock_database


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m quantlab.servers.broker",
                                description="quantlab paper-trading broker: an MCP server in MetaTrader 5's dialect.")
    p.add_argument("--db", required=True, help="SQLite database file holding all broker state (created if missing).")
    p.add_argument("--clock", default="stepped", help="stepped (advance tool), realtime, or accelerated:N (N bars per second).")
    p.add_argument("--symbols", default=None, help="comma-separated symbols (default EURUSD,GBPUSD,USDJPY,XAUUSD,BTCUSD or all files of --feed).")
    p.add_argument("--feed", default="synthetic", help="'synthetic' (seeded random walk) or a folder of <SYMBOL>.csv/.parquet files.")
    p.add_argument("--seed", type=int, default=7, help="seed of the synthetic feed.")
    p.add_argument("--history", type=int, default=1000, help="bars visible when a new database starts.")
    p.add_argument("--mode", choices=["netting", "hedging"], default=None, help="account margin mode (new database only; default netting).")
    p.add_argument("--balance", type=float, default=None, help="initial balance (new database only; default 100000).")
    p.add_argument("--leverage", type=int, default=None, help="account leverage (new database only; default 100).")
    p.add_argument("--spread", type=int, default=None, help="spread in points for every symbol (default: each symbol's own).")
    p.add_argument("--slippage", type=int, default=None, help="slippage in points against the trader on market fills (default 0).")
    p.add_argument("--commission", type=float, default=None, help="commission per lot per deal, account currency (default 0).")
    p.add_argument("--lookback", type=int, default=None, help="default deployment lookback in bars (default 300).")
    p.add_argument("--http", type=int, default=None, metavar="PORT", help="serve streamable HTTP on 127.0.0.1:PORT/mcp instead of stdio.")
    p.add_argument("--token", default=None, help="bearer token for --http.")
    p.add_argument("--token-file", default=None, help="file with the bearer token (generated if missing; default <db>.token).")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    os.umask(0o077)  # the database, its WAL and shm, the lock and token files: readable by this user only
    try:
        _lock = lock_database(args.db)  # noqa: F841 - held until exit
        parse_clock(args.clock)
        given = {k: v for k, v in dict(balance=args.balance, leverage=args.leverage, margin_mode=args.mode,
                                       spread=args.spread, slippage=args.slippage, commission=args.commission,
                                       lookback=args.lookback).items() if v is not None}
        symbols = [s.strip().upper() for s in args.symbols.split(",") if s.strip()] if args.symbols else None
        broker = Broker.open(args.db, symbols=symbols, feed=args.feed, seed=args.seed, history=args.history,
                             config=BrokerConfig(**given), explicit=set(given))
    except Exception as exc:  # noqa: BLE001 - one readable line, not a traceback
        print(f"quantlab broker: {exc}", file=sys.stderr)
        return 2
    for note in broker.notes:
        print(f"quantlab broker: note: {note}", file=sys.stderr)
    token = path = None
    if args.http is not None:
        token, path = resolve_token(args.token, args.token_file, env="QUANTLAB_BROKER_TOKEN", default_file=f"{args.db}.token")
    clock = Clock(broker, args.clock)
    server = build_server(broker, clock, auth_token=token)
    clock.start()
    try:
        if args.http is not None:
            print(f"quantlab broker: http://127.0.0.1:{args.http}/mcp (token {'from ' + str(path) if path else 'given'})",
                  file=sys.stderr, flush=True)
            run_http(server, args.http)
        else:
            # the SDK's own stdio transport: it points fd 0 at /dev/null and fd 1 at stderr while serving,
            # so a stray print() cannot corrupt the protocol
            server.run("stdio")
    except KeyboardInterrupt:
        pass
    finally:
        clock.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
