"""The signals worker: one child process per deployment that evaluates ``signals()``.

Strategy code is untrusted, so it never runs in the runner's own process. Each
running deployment has one long-lived child (``python -m quantlab.runner.worker``)
that holds the strategy and a sliding window of bars; the runner sends it the
new bars and gets back the targets of those bars. The child runs with resource
limits (address space, CPU seconds, no core files) and the runner kills it when a
call takes longer than the deployment's ``timeout`` (an endless loop fails that
deployment, nothing else). Bars travel as raw float64/int64 bytes and targets as
JSON, so nothing the strategy produces is ever unpickled in the runner.

Wire format (both directions): one JSON header line; for ``bars`` the header is
followed by ``n * 6 * 8`` bytes (time int64, open, high, low, close, volume float64,
column after column).

The strategy itself never runs here either: :mod:`quantlab.engine.sandbox` checks
it statically, reads its parameters and evaluates the ``signals()`` calls in one
long-lived sandboxed child of this deployment (:class:`~quantlab.engine.sandbox.SignalSession`:
no files, network, processes or secrets; limits per evaluation), so this worker is a
trusted harness around it.
"""
from __future__ import annotations

import json
import os
import sys
from typing import Any

FIELDS = ("time", "open", "high", "low", "close", "volume")
#: limits of one sandboxed evaluation of ``signals()`` (the runner's own timeout still applies around it)
SANDBOX_LIMITS = {"cpu_seconds": 60, "wall_seconds": 120, "memory_mb": 4096, "output_bytes": 200_000}


def _limits(memory_mb: int, cpu_seconds: int) -> None:
    """Cap the child's address space and (optionally) CPU seconds; no core files."""
    try:
        import resource
    except ImportError:  # pragma: no cover - not POSIX
        return
    for what, value in ((resource.RLIMIT_AS, memory_mb * 2**20), (resource.RLIMIT_CPU, cpu_seconds),
                        (resource.RLIMIT_CORE, 0)):
        if value < 0 or (value == 0 and what != resource.RLIMIT_CORE):
            continue
        try:
            _soft, hard = resource.getrlimit(what)
            cap = value if hard == resource.RLIM_INFINITY else min(value, hard)
            resource.setrlimit(what, (cap, hard))
        except (ValueError, OSError):
            pass


class _Worker:
    def __init__(self) -> None:
        self.strategy: Any = None
        self.params: dict[str, Any] = {}
        self.lookback = 300
        self.cols: dict[str, Any] = {}
        self.session: Any = None

    def init(self, head: dict[str, Any]) -> dict[str, Any]:
        from quantlab.engine import sandbox

        # the strategy's code never runs in this process: checked, loaded and evaluated in the strategy
        # sandbox (docs/sandbox.md); its parameters are read once here
        self.strategy = sandbox.load(head["code"], name=head.get("name") or "strategy", limits=SANDBOX_LIMITS)
        self.params = self.strategy.resolve_params(head.get("params") or {})
        # one long-lived sandboxed child for this deployment evaluates every bar (docs/sandbox.md,
        # "sessions"): no fork per bar; the per-evaluation limits still hold (the session enforces them)
        if self.session is not None:
            self.session.close()
        self.session = sandbox.SignalSession(head["code"], self.params, name=self.strategy.name,
                                             limits=SANDBOX_LIMITS)
        self.lookback = int(head.get("lookback") or 300)
        return {"ok": True, "params": self.params}

    def bars(self, head: dict[str, Any], payload: bytes) -> dict[str, Any]:
        import numpy as np
        import pandas as pd

        from quantlab.engine.signals import to_targets  # the backtest's own rule: same targets as the backtest

        n = int(head["n"])
        arrays = {}
        for i, f in enumerate(FIELDS):
            chunk = payload[i * n * 8:(i + 1) * n * 8]
            arrays[f] = np.frombuffer(chunk, dtype=np.int64 if f == "time" else np.float64)
        if head.get("reset") or not self.cols:
            self.cols = arrays
        else:
            self.cols = {f: np.concatenate([self.cols[f], arrays[f]]) for f in FIELDS}
        keep = self.lookback + n
        if len(self.cols["time"]) > keep:
            self.cols = {f: v[-keep:] for f, v in self.cols.items()}
        want = int(head.get("want", n))
        if want <= 0:
            return {"ok": True, "targets": []}
        c = self.cols
        idx = pd.DatetimeIndex(pd.to_datetime(c["time"], unit="s", utc=True), name="time")
        data = pd.DataFrame({"open": c["open"], "high": c["high"], "low": c["low"], "close": c["close"],
                             "volume": c["volume"]}, index=idx)
        sig = self.session(data)
        targets = to_targets(sig, data, self.strategy.name)
        return {"ok": True, "targets": targets[-want:].tolist()}


def _frame_error(exc: BaseException, code_name: str) -> dict[str, Any]:
    import traceback

    line = None
    for fr in traceback.extract_tb(exc.__traceback__):
        if fr.filename.startswith("<strategy"):
            line = fr.lineno
    kind = "strategy" if type(exc).__name__ in ("StrategyError", "SignalError", "SandboxError") else "signals"
    where = f" (line {line})" if line else ""
    return {"ok": False, "kind": kind, "error": f"{type(exc).__name__}: {exc}{where}", "line": line}


def main() -> int:
    memory_mb = int(os.environ.get("QUANTLAB_RUNNER_WORKER_MB", "2048"))
    cpu = int(os.environ.get("QUANTLAB_RUNNER_WORKER_CPU", "0"))
    _limits(memory_mb, cpu)
    # the protocol owns the real stdout; a print() in a strategy goes to stderr
    out = os.fdopen(os.dup(1), "wb", buffering=0)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    inp = os.fdopen(os.dup(0), "rb", buffering=0)
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    w = _Worker()
    reader = __import__("io").BufferedReader(inp, buffer_size=1 << 16)
    while True:
        line = reader.readline()
        if not line:
            return 0
        head = json.loads(line)
        payload = b""
        if head.get("op") == "bars":
            size = int(head["n"]) * len(FIELDS) * 8
            payload = reader.read(size)
        try:
            answer = w.init(head) if head.get("op") == "init" else w.bars(head, payload)
        except BaseException as exc:  # noqa: BLE001 - reported to the runner, never raised
            if isinstance(exc, KeyboardInterrupt):
                return 1
            answer = _frame_error(exc, head.get("name", ""))
        out.write((json.dumps(answer, default=str) + "\n").encode())


if __name__ == "__main__":
    sys.exit(main())
