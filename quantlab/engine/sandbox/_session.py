"""A long-lived sandboxed child that evaluates ``signals()`` on successive frames (one deployment's).

:func:`~quantlab.engine.sandbox.run_signals` forks a fresh child per evaluation (25-100 ms);
a deployment evaluates one bar at a time, so that fork is most of its cost. A
:class:`SignalSession` keeps **one** child, locked down exactly as a one-shot run's child
(rlimits, no_new_privs, Landlock, seccomp, the audit hook, scrubbed environment), loads the
strategy once and then evaluates each frame sent to it. What changes (docs/sandbox.md):

* module globals of the strategy persist between the evaluations of *this* session only
  (one session = one deployment; no other run shares its interpreter);
* the limits hold **per evaluation**: the parent stops an evaluation after
  ``min(cpu_seconds, wall_seconds)`` of wall-clock time (the child is single-threaded, so
  its CPU time cannot exceed that), kills the child and starts a fresh one on the next call;
  the kernel's ``RLIMIT_CPU`` stays as a backstop over the child's life
  (``SESSION_CPU_FACTOR`` x ``cpu_seconds``) and the child is replaced before it runs low;
  the output limit is per evaluation.
"""
from __future__ import annotations

import json
import os
import pickle
import secrets
import selectors
import struct
import time
from typing import Any, Callable, Iterable, Mapping

from ._child import STREAM_MAGIC
from ._errors import SandboxError
from ._limits import SandboxLimits
from ._runner import forget, status_error, zygote
from ._zygote import frame

#: the child's lifetime CPU backstop, in evaluations' worth of ``cpu_seconds``
SESSION_CPU_FACTOR = 8


class SignalSession:
    """Evaluate ``signals(data, **params)`` for successive frames in one sandboxed child.

    Call it with an OHLCV frame (a ``DatetimeIndex`` and float columns); it returns what
    :func:`~quantlab.engine.sandbox.run_signals` would, and raises the same errors
    (``SandboxError`` for a violation or a limit, ``SignalError`` for the strategy's own
    exception). After a violation or a limit the child is gone; the next call starts a new one.

    >>> from quantlab.engine import data
    >>> code = "def signals(data, n=5):\\n    return (data.close > data.close.rolling(n).mean()) * 1.0"
    >>> with SignalSession(code, {"n": 3}) as s:
    ...     df = data.synthetic(50, seed=1)
    ...     [len(s(df.iloc[:k])) for k in (10, 11)]
    [10, 11]
    """

    def __init__(self, strategy: Any, params: Mapping[str, Any] | None = None, *,
                 limits: SandboxLimits | Mapping[str, Any] | None = None, allow: Iterable[str] | None = None,
                 name: str | None = None, on_log: Callable[[str], None] | None = None):
        from . import DEFAULT_ALLOW, prepare_strategy

        self.code, self.name, mods = prepare_strategy(strategy, name, allow)
        self.params = dict(params or {})
        self.limits = SandboxLimits.coerce(limits)
        self.allow = frozenset(mods)
        self._extra = tuple(sorted(mods - DEFAULT_ALLOW))
        self.on_log = on_log
        self.evaluations = 0
        self.children = 0
        self._child: dict[str, Any] | None = None

    # -- the child ------------------------------------------------------------------------------
    def _start(self) -> None:
        lim = self.limits
        z = zygote(self._extra)
        token = secrets.token_hex(8)
        pipes = [os.pipe() for _ in range(4)]  # task, result, log, status
        (task_r, task_w), (res_r, res_w), (log_r, log_w), (st_r, st_w) = pipes
        null = os.open("/dev/null", os.O_RDONLY | os.O_CLOEXEC)
        try:
            z.send({"token": token}, [task_r, res_w, log_w, st_w, null])
        except OSError as exc:
            for a, b in pipes:
                os.close(a)
                os.close(b)
            forget(self._extra)
            z.close()
            raise SandboxError(f"strategy {self.name!r}: the sandbox process is not available ({exc}).",
                               kind="internal") from None
        finally:
            os.close(null)
        for fd in (task_r, res_w, log_w, st_w):
            os.close(fd)
        budget = dict(lim.to_dict(), cpu_seconds=lim.cpu_seconds * SESSION_CPU_FACTOR)
        task = {"code": self.code, "name": self.name, "combos": [self.params], "allow": sorted(self.allow),
                "batch": False, "roots": z.info.get("roots", []), "limits": budget, "layout": None}
        raw = pickle.dumps(task, protocol=5)
        sel = selectors.DefaultSelector()
        for fd in (task_w, res_r, log_r, st_r):
            os.set_blocking(fd, False)
        sel.register(res_r, selectors.EVENT_READ, "result")
        sel.register(log_r, selectors.EVENT_READ, "log")
        sel.register(st_r, selectors.EVENT_READ, "status")
        self._child = {"z": z, "token": token, "task_w": task_w, "fds": {res_r, log_r, st_r}, "sel": sel,
                       "buf": bytearray(), "log": bytearray(), "cpu": 0.0, "status": None}
        self.children += 1
        self._send(STREAM_MAGIC + struct.pack("!Q", len(raw)) + raw)
        # the child loads the code and reports its parameters (or why it could not load)
        while True:
            header, body = self._next_frame(time.monotonic() + lim.wall_seconds)
            t = header.get("t")
            if t == "inspect":
                return
            if t != "hello":
                self._kill()
                from . import decode_signals

                value = decode_signals(header, body, None, self.name, lim)
                raise value if isinstance(value, BaseException) else SandboxError(
                    f"strategy {self.name!r}: unexpected frame {t!r} from the sandbox.", kind="internal")

    def _send(self, data: bytes) -> None:
        c = self._child
        assert c is not None
        mv = memoryview(data)
        deadline = time.monotonic() + self._eval_seconds()
        while len(mv):
            try:
                n = os.write(c["task_w"], mv)
                mv = mv[n:]
                continue
            except BlockingIOError:
                pass
            except BrokenPipeError:
                return  # the child is gone; its status tells why
            if time.monotonic() > deadline:
                self._fail("timeout")
            self._pump(0.05)
            if c["status"] is not None:
                return

    def _eval_seconds(self) -> float:
        return min(self.limits.cpu_seconds, self.limits.wall_seconds)

    def _pump(self, wait: float) -> None:
        """Read whatever the child wrote (results into the buffer, log lines to ``on_log``, its status)."""
        c = self._child
        assert c is not None
        for key, _ in c["sel"].select(wait):
            try:
                chunk = os.read(key.fd, 1 << 20)
            except BlockingIOError:
                continue
            if not chunk:
                c["sel"].unregister(key.fd)
                os.close(key.fd)
                c["fds"].discard(key.fd)
                if key.data == "status" and c["status"] is None:
                    c["status"] = -1
                continue
            if key.data == "result":
                c["buf"] += chunk
            elif key.data == "log":
                c["logged"] = c.get("logged", 0) + len(chunk)
                if c["logged"] > self.limits.output_bytes:
                    self._fail("output")
                c["log"] += chunk
                self._flush_log()
            else:
                for line in chunk.decode().splitlines():
                    if line.startswith("exit "):
                        c["status"] = int(line[5:])

    def _flush_log(self, final: bool = False) -> None:
        c = self._child
        if c is None or not c["log"]:
            return
        cut = len(c["log"]) if final else c["log"].rfind(b"\n") + 1
        if cut <= 0:
            return
        text = bytes(c["log"][:cut]).decode("utf-8", "replace")
        del c["log"][:cut]
        if self.on_log is not None:
            self.on_log(text)
        else:
            from ._runner import log

            for line in text.splitlines():
                log.info("[strategy %s] %s", self.name, line)

    def _next_frame(self, deadline: float) -> tuple[dict, bytes]:
        c = self._child
        assert c is not None
        while True:
            buf = c["buf"]
            if len(buf) >= 8:
                hl, pl = struct.unpack_from("!II", buf, 0)
                if len(buf) >= 8 + hl + pl:
                    header = json.loads(bytes(buf[8:8 + hl]))
                    body = bytes(buf[8 + hl:8 + hl + pl])
                    del buf[:8 + hl + pl]
                    return header, body
            if c["status"] is not None:
                self._fail(None)
            if time.monotonic() > deadline:
                self._fail("timeout")
            self._pump(max(0.0, min(deadline - time.monotonic(), 1.0)))

    def _fail(self, reason: str | None) -> None:
        """Stop the child (if it still runs) and raise what happened, in the user's words."""
        c = self._child
        status = c["status"] if c is not None else None
        if c is not None and status is None:
            c["z"].kill(c["token"])
            end = time.monotonic() + 10
            while c["status"] is None and time.monotonic() < end and c["fds"]:
                self._pump(0.2)
            status = c["status"]
        self._close_child()
        lim = self.limits
        if reason == "timeout":
            lim = SandboxLimits.coerce(dict(lim.to_dict(), wall_seconds=self._eval_seconds()))
        if reason is None and status == 0:  # it ended on its own (a violation frame came before)
            reason = "crashed"
        raise status_error(status if status not in (None, -1) else None, reason if reason != "crashed" else None,
                               lim, self.name)

    def _kill(self) -> None:
        c = self._child
        if c is not None and c["status"] is None:
            c["z"].kill(c["token"])
        self._close_child()

    def _close_child(self) -> None:
        c, self._child = self._child, None
        if c is None:
            return
        self._child = c
        self._flush_log(final=True)
        self._child = None
        try:
            os.close(c["task_w"])
        except OSError:
            pass
        for fd in list(c["fds"]):
            try:
                c["sel"].unregister(fd)
            except (KeyError, ValueError):
                pass
            os.close(fd)
        c["sel"].close()

    # -- public ---------------------------------------------------------------------------------
    def __call__(self, data: Any) -> Any:
        """``signals(data, **params)`` evaluated in this session's child."""
        import numpy as np

        from . import decode_signals

        if self._child is not None and self._child["cpu"] > self.limits.cpu_seconds * (SESSION_CPU_FACTOR - 2):
            self._kill()  # retire it before its lifetime CPU backstop could stop an evaluation
        if self._child is None:
            self._start()
        c = self._child
        assert c is not None
        idx = data.index
        tz = None
        if getattr(idx, "tz", None) is not None:
            tz = str(idx.tz)
            idx = idx.tz_convert("UTC").tz_localize(None)
        cols = [str(k) for k in data.columns]
        i8 = np.ascontiguousarray(idx.as_unit("ns").asi8 if hasattr(idx, "as_unit") else idx.asi8, dtype=np.int64)
        vals = np.ascontiguousarray(data.to_numpy(dtype=np.float64).T)
        body = i8.tobytes() + vals.tobytes()
        head = {"n": len(data), "cols": cols, "tz": tz, "index_name": data.index.name}
        c["logged"] = 0  # the output limit is per evaluation
        self._send(frame(head, body) + body)
        header, payload = self._next_frame(time.monotonic() + self._eval_seconds())
        self.evaluations += 1
        if "cpu" in header:
            c["cpu"] = float(header["cpu"])
        value = decode_signals(header, payload, data, self.name, self.limits)
        if "i" not in header:  # a violation or a broken child: it is gone
            self._kill()
        if isinstance(value, BaseException):
            raise value
        return value

    def close(self) -> None:
        """End the child (it exits when its task pipe closes)."""
        c = self._child
        if c is None:
            return
        try:
            os.close(c["task_w"])
        except OSError:
            pass
        c["task_w"] = -1
        end = time.monotonic() + 5
        while c["status"] is None and c["fds"] and time.monotonic() < end:
            self._pump(0.1)
        if c["status"] is None:
            c["z"].kill(c["token"])
        self._close_child()

    def __enter__(self) -> "SignalSession":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # noqa: BLE001
            pass

    def __repr__(self) -> str:
        state = "running" if self._child is not None else "idle"
        return (f"SignalSession(name={self.name!r}, params={self.params!r}, {state}, "
                f"evaluations={self.evaluations}, children={self.children})")
