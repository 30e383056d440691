"""Concurrency benchmark (issue 12): several processes on one hub and one broker, nothing lost.

Run::

    python benchmarks/bench_concurrency.py [--labs 2] [--deploys 50] [--clients 4] [--orders 500]

1. ``--labs`` processes, each a :class:`quantlab.Lab` on the same hub, each doing ``--deploys``
   ``store_and_deploy`` calls (distinct parameters, so every call stores and deploys) through one
   paper-broker daemon over HTTP (as two kernels sharing ``quantlab broker start`` do). Only
   ``Lab`` public methods are used, so the figures keep meaning as deployments move servers.
   *lost* = deployments a lab was told succeeded that are missing from the hub's ledger, from the
   hub's commits, from ``lab.state()["deployments_triggered"]`` or from the live ``lab.deployments()``.
2. ``--clients`` processes, each a :class:`quantlab.client.MCPHub` sending ``--orders``
   ``order_send`` calls (0.01 lot EURUSD, alternating buy/sell, its own magic number) to one
   broker daemon. *lost* = orders answered "done" that are missing from ``history_orders_get``.

*spurious errors* = calls that raised or reported failure (every call here is valid). Latency is
per call, over all processes. Goals: lost = 0 and spurious errors = 0; latency is reported with
the load average (2 cores are shared: read the ratio between runs, not the absolute figures).
"""
from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SMA = '''
def signals(data, fast=10, slow=50):
    f = data.close.rolling(fast).mean()
    s = data.close.rolling(slow).mean()
    return (f > s).astype(float)
'''


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _broker_entry(url: str, token: str, initialize: bool = False) -> dict:
    entry = {"url": url, "headers": {"Authorization": f"Bearer {token}"}}
    if initialize:
        entry["on_connect"] = [{"tool": "initialize", "arguments": {"path": "paper"}}]
    return entry


def _lab_config(home: Path, url: str, token: str) -> dict:
    """The embedded servers of this quantlab, with the broker replaced by the shared daemon."""
    from quantlab.lab.defaults import BROKER, embedded_servers

    servers = dict(embedded_servers(home)["mcpServers"])
    servers.pop("backtest", None)  # results are computed in-process here: no backtest server needed
    servers[BROKER] = _broker_entry(url, token)
    return {"mcpServers": servers}


# ------------------------------------------------------------------------------------------ children
def child_lab(hub: str, url: str, token: str, n: int, tag: str) -> dict:
    from quantlab import DeploymentPolicy, Lab, Strategy, backtest, data

    strat = Strategy.from_code(SMA, name=f"bench {tag}")
    frame = data.sample()
    results = [backtest(frame, strat, {"fast": 2 + i % 45, "slow": 50 + i // 45 + 1000 * (ord(tag) - 96)}) for i in range(n)]
    lenient = DeploymentPolicy(min_sharpe=-1e9, max_drawdown=1.0, min_profit_factor=0.0, min_trades=0)
    home = Path(tempfile.mkdtemp(prefix=f"bench-lab-{tag}-"))
    ok, errors, ids, commits, lat = 0, [], [], [], []
    with Lab.start(hub, config=_lab_config(home, url, token), progress=False) as lab:
        began = time.time()
        for r in results:
            t0 = time.perf_counter()
            try:
                out = lab.store_and_deploy(r, policy=lenient, force=True)
            except Exception as exc:  # noqa: BLE001 - counted as a spurious error
                errors.append(f"{type(exc).__name__}: {exc}"[:300])
                continue
            finally:
                lat.append(time.perf_counter() - t0)
            if out.ok:
                ok += 1
                ids.append(str(out.record.deployment_id))
                commits.append(out.stored.commit)
            else:
                errors.append(str(out.error)[:300])
        ended = time.time()
    return {"ok": ok, "errors": errors, "ids": ids, "commits": commits, "latency": lat, "span": [began, ended]}


def child_orders(url: str, token: str, n: int, magic: int) -> dict:
    from quantlab.client import MCPHub

    ok, errors, lat = 0, [], []
    with MCPHub.from_config({"mcpServers": {"broker": _broker_entry(url, token, initialize=True)}}) as hub:
        hub.connect("broker")
        tick = hub.call("broker", "get_symbol_info_tick", {"symbol": "EURUSD"})  # a stepped clock: prices hold still
        began = time.time()
        for i in range(n):
            req = {"action": 1, "symbol": "EURUSD", "volume": 0.01, "type": i % 2, "magic": magic,
                   "price": tick["ask"] if i % 2 == 0 else tick["bid"], "deviation": 100, "comment": f"b{magic}-{i}"}
            t0 = time.perf_counter()
            try:
                res = hub.call("broker", "order_send", {"request": req})
            except Exception as exc:  # noqa: BLE001
                errors.append(f"{type(exc).__name__}: {exc}"[:300])
                continue
            finally:
                lat.append(time.perf_counter() - t0)
            if res.get("retcode") == 10009:
                ok += 1
            else:
                errors.append(f"retcode {res.get('retcode')}")
        ended = time.time()
    return {"ok": ok, "errors": errors, "latency": lat, "span": [began, ended]}


# ------------------------------------------------------------------------------------------ parent
def _spawn(*args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, __file__, "--child", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=dict(os.environ))


def _collect(procs: list[subprocess.Popen]) -> list[dict]:
    out = []
    for p in procs:
        stdout, stderr = p.communicate(timeout=1800)
        if p.returncode != 0:
            raise SystemExit(f"a child failed:\n{stderr[-3000:]}")
        out.append(json.loads(stdout.strip().splitlines()[-1]))
    return out


def _start_broker(folder: Path) -> tuple[subprocess.Popen, str, str]:
    port = _free_port()
    token_file = folder / "broker.token"
    proc = subprocess.Popen([sys.executable, "-m", "quantlab.servers.broker", "--db", str(folder / "broker.db"),
                             "--http", str(port), "--token-file", str(token_file)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"broker exited: {proc.stderr.read()}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0 and token_file.is_file():
                return proc, f"http://127.0.0.1:{port}/mcp", token_file.read_text().strip()
        time.sleep(0.1)
    proc.kill()
    raise SystemExit("broker did not start")


def _pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q * (len(values) - 1))))]


def _wall(results: list[dict]) -> float:
    """From the first call of any process to the last (process start-up and connecting excluded)."""
    return max(r["span"][1] for r in results) - min(r["span"][0] for r in results)


def _row(what: str, done: int, lost: int, errors: int, lat: list[float], wall: float) -> str:
    return (f"{what:<44} {done:>6} {lost:>5} {errors:>8} {1000 * _pct(lat, 0.5):>9.1f} {1000 * _pct(lat, 0.99):>9.1f} "
            f"{done / wall:>8.1f}")


def bench_labs(root: Path, labs: int, deploys: int) -> tuple[str, list[str]]:
    from quantlab import Lab

    proc, url, token = _start_broker(root)
    hub = root / "hub"
    try:
        results = _collect([_spawn("lab", str(hub), url, token, str(deploys), chr(97 + i)) for i in range(labs)])
        wall = _wall(results)
        told = {d for r in results for d in r["ids"]}
        commits = {c for r in results for c in r["commits"]}
        with Lab.start(hub, config=_lab_config(root / "check", url, token), progress=False) as lab:
            ledger = lab.hub.deployment_status()
            in_ledger = set(ledger.loc[ledger["status"] == "running", "broker_deployment_id"].astype(str))
            in_state = {str(d["deployment_id"]) for d in lab.state()["deployments_triggered"]}
            stored = set(lab.hub.strategies()["commit"])
            live = {str(d["deployment_id"]) for d in lab.deployments().to_dict("records") if d["status"] == "running"}
            dirty = lab.hub.repo.git.status("--porcelain")
        lost = len(told - in_ledger) + len(told - in_state) + len(told - live) + len(commits - stored)
        errors = [e for r in results for e in r["errors"]]
        notes = [f"  missing: ledger {len(told - in_ledger)}, state {len(told - in_state)}, "
                 f"lab.deployments() (live) {len(told - live)}, hub commits {len(commits - stored)}; "
                 f"uncommitted files: {len(dirty.splitlines())}"]
        notes += [f"  error: {e}" for e in errors[:5]]
        lat = [x for r in results for x in r["latency"]]
        return _row(f"{labs} labs x {deploys} store_and_deploy, one hub", sum(r["ok"] for r in results), lost,
                    len(errors), lat, wall), notes
    finally:
        proc.terminate()
        proc.wait(15)


def bench_orders(root: Path, clients: int, orders: int) -> tuple[str, list[str]]:
    from quantlab.client import MCPHub

    folder = root / "orders"
    folder.mkdir()
    proc, url, token = _start_broker(folder)
    try:
        results = _collect([_spawn("orders", url, token, str(orders), str(1000 + i)) for i in range(clients)])
        wall = _wall(results)
        with MCPHub.from_config({"mcpServers": {"broker": _broker_entry(url, token, initialize=True)}}) as mcp:
            history = mcp.call("broker", "history_orders_get", {})
        per_magic = {}
        for o in history or []:
            per_magic[o.get("magic")] = per_magic.get(o.get("magic"), 0) + 1
        lost = sum(max(0, r["ok"] - per_magic.get(1000 + i, 0)) for i, r in enumerate(results))
        errors = [e for r in results for e in r["errors"]]
        lat = [x for r in results for x in r["latency"]]
        notes = [f"  orders in history per client: {[per_magic.get(1000 + i, 0) for i in range(clients)]}"]
        notes += [f"  error: {e}" for e in errors[:5]]
        return _row(f"{clients} clients x {orders} order_send, one broker", sum(r["ok"] for r in results), lost,
                    len(errors), lat, wall), notes
    finally:
        proc.terminate()
        proc.wait(15)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--labs", type=int, default=2)
    p.add_argument("--deploys", type=int, default=50)
    p.add_argument("--clients", type=int, default=4)
    p.add_argument("--orders", type=int, default=500)
    args = p.parse_args(argv)
    import quantlab

    print(f"quantlab {quantlab.__version__} from {Path(quantlab.__file__).parent}; load average before: "
          f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    header = f"{'':<44} {'done':>6} {'lost':>5} {'spurious':>8} {'p50 ms':>9} {'p99 ms':>9} {'ops/s':>8}"
    with tempfile.TemporaryDirectory(prefix="bench-concurrency-") as tmp:
        root = Path(tmp)
        rows = [bench_labs(root, args.labs, args.deploys), bench_orders(root, args.clients, args.orders)]
    print(header)
    for row, notes in rows:
        print(row)
        for n in notes:
            print(n)
    print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())} (1, 5, 15 min; {os.cpu_count()} cores)")
    print("goals: lost = 0, spurious = 0")
    return 0


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == "--child":
        kind, *rest = sys.argv[2:]
        if kind == "lab":
            out = child_lab(rest[0], rest[1], rest[2], int(rest[3]), rest[4])
        else:
            out = child_orders(rest[0], rest[1], int(rest[2]), int(rest[3]))
        print(json.dumps(out))
        sys.exit(0)
    sys.exit(main())
