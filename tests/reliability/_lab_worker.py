"""A second process using one hub: ``python _lab_worker.py MODE HUB ARGS`` prints one JSON line.

Modes
-----
deploy HUB URL TOKEN N TAG   Lab on HUB with the broker at URL; N store_and_deploys (distinct params)
store HUB N TAG              AssetsHub.store + record_deployment N times (no servers)
hold HUB                     Lab.start(HUB) with embedded servers; print ready; wait for stdin to close
"""
from __future__ import annotations

import json
import sys
import time
import traceback


def _result(i: int, tag: str):
    from quantlab import Strategy, backtest, data

    from conftest import SMA  # noqa: E402 - run as a script from this folder

    strat = Strategy.from_code(SMA, name=f"SMA {tag}")
    return backtest(data.sample(), strat, {"fast": 2 + i % 40, "slow": 45 + i // 40 + (0 if tag == "a" else 100)})


def deploy(hub: str, url: str, token: str, n: int, tag: str) -> dict:
    from quantlab import DeploymentPolicy, Lab

    config = {"mcpServers": {"broker": {"url": url, "headers": {"Authorization": f"Bearer {token}"}}}}
    lenient = DeploymentPolicy(min_sharpe=-100, max_drawdown=1.0, min_profit_factor=0.0, min_trades=0)
    results = [_result(i, tag) for i in range(n)]
    ok, errors, ids, lat = 0, [], [], []
    with Lab.start(hub, config=config, progress=False) as lab:
        for r in results:
            t0 = time.perf_counter()
            try:
                out = lab.store_and_deploy(r, policy=lenient, force=True)
            except Exception as exc:  # noqa: BLE001 - counted, reported
                errors.append(f"{type(exc).__name__}: {exc}")
                continue
            finally:
                lat.append(time.perf_counter() - t0)
            if out.ok:
                ok += 1
                ids.append(out.record.deployment_id)
            else:
                errors.append(str(out.error))
    return {"ok": ok, "errors": errors, "ids": ids, "latency": lat}


def store(hub: str, n: int, tag: str) -> dict:
    from quantlab.hub import AssetsHub

    ok, errors, commits = 0, [], []
    with AssetsHub(hub) as h:
        for i in range(n):
            try:
                r = _result(i, tag)
                stored = h.store(r.strategy, r)
                h.record_deployment({"strategy_name": stored.name, "status": "running", "commit": stored.commit,
                                     "broker": "broker", "broker_deployment_id": f"{tag}-{i}"})
                ok += 1
                commits.append(stored.commit)
            except Exception as exc:  # noqa: BLE001
                errors.append(f"{type(exc).__name__}: {exc}")
    return {"ok": ok, "errors": errors, "commits": commits}


def hold(hub: str) -> None:
    import os

    from quantlab import Lab

    with Lab.start(hub, progress=False):
        print(json.dumps({"ready": True, "pid": os.getpid()}), flush=True)
        sys.stdin.read()


if __name__ == "__main__":
    mode, *args = sys.argv[1:]
    try:
        if mode == "deploy":
            print(json.dumps(deploy(args[0], args[1], args[2], int(args[3]), args[4])))
        elif mode == "store":
            print(json.dumps(store(args[0], int(args[1]), args[2])))
        elif mode == "hold":
            hold(args[0])
    except Exception:
        traceback.print_exc()
        sys.exit(1)
