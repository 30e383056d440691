"""The parent's side: start the zygote, hand it a run, read the frames back.

One zygote per parent process (started lazily, restarted if it dies, replaced
after a ``fork`` of the parent). Every run gets four fresh pipes (task in,
results out, log out, status out) and the data as a read-only ``memfd``;
nothing the strategy produces is unpickled here: frames are JSON headers plus
raw float64 bytes.
"""
from __future__ import annotations

import atexit
import json
import logging
import os
import pickle
import secrets
import selectors
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from typing import Any, Callable, Iterable, Iterator

from quantlab._util.procs import kill_process, pid_alive

from ._errors import SandboxError
from ._limits import SandboxLimits

log = logging.getLogger("quantlab.engine.sandbox")

_ENV_KEEP = ("LANG", "LC_ALL", "LC_CTYPE", "TZ", "PYTHONHASHSEED", "SYSTEMROOT")


class SharedData:
    """A DataFrame placed once in a sealed-by-convention ``memfd`` so that every sandboxed run maps it
    (zero copy, copy-on-write) instead of receiving 50 MB through a pipe.

    Keep one per data set you run many strategies or combinations on (the backtest server keeps one per
    cached data reference); :func:`~quantlab.engine.sandbox.run_signals` makes a temporary one otherwise.

    >>> import pandas as pd
    >>> sd = SharedData(pd.DataFrame({"close": [1.0, 2.0]}, index=pd.date_range("2024", periods=2)))
    >>> sd.bars
    2
    >>> sd.close()
    """

    def __init__(self, data: Any):
        bufs: list[pickle.PickleBuffer] = []
        head = pickle.dumps(data, protocol=5, buffer_callback=bufs.append)
        self.data = data
        self.bars = len(data)
        self.fd = os.memfd_create("quantlab-sandbox-data", os.MFD_CLOEXEC)
        off = 0
        layout = []

        def put(raw: memoryview) -> int:
            nonlocal off
            start = off = (off + 63) & ~63
            mv = raw.cast("B") if raw.format != "B" or raw.ndim != 1 else raw
            pos = 0
            while pos < len(mv):
                pos += os.pwrite(self.fd, mv[pos:], start + pos)
            off = start + len(mv)
            return start

        h = put(memoryview(head))
        for b in bufs:
            raw = b.raw()
            layout.append((put(raw), raw.nbytes))
        self.layout = {"size": max(off, 1), "pickle": (h, len(head)), "buffers": layout}
        if off == 0:
            os.ftruncate(self.fd, 1)

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # noqa: BLE001
            pass

    def __repr__(self) -> str:
        return f"SharedData(bars={self.bars}, bytes={self.layout['size']:,})"


def _scrubbed_env(scratch: str) -> dict[str, str]:
    env = {k: os.environ[k] for k in _ENV_KEEP if k in os.environ}
    env.update({
        "PATH": "/usr/bin:/bin",
        "HOME": scratch,
        "TMPDIR": scratch,
        "PYTHONDONTWRITEBYTECODE": "1",
        "PYTHONNOUSERSITE": "1",
        "OPENBLAS_NUM_THREADS": "1",
        "OMP_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
        "NUMEXPR_MAX_THREADS": "1",
        # the child must import the same quantlab as this process (editable install or PYTHONPATH)
        "PYTHONPATH": os.pathsep.join(p for p in sys.path if p and os.path.isdir(p)),
    })
    return env


class _Zygote:
    def __init__(self, allow: tuple[str, ...] = ()):
        self.owner = os.getpid()
        self.scratch = tempfile.mkdtemp(prefix="quantlab-sandbox-")
        os.chmod(self.scratch, 0o700)
        self.sock, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self.lock = threading.Lock()
        cmd = [sys.executable, "-s", "-c",
               "import sys; from quantlab.engine.sandbox._zygote import main; main(int(sys.argv[1]), sys.argv[2])",
               str(theirs.fileno()), json.dumps(list(allow))]
        self.proc = subprocess.Popen(
            cmd, pass_fds=(theirs.fileno(),), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            env=_scrubbed_env(self.scratch), cwd=self.scratch, start_new_session=True, close_fds=True,
        )
        theirs.close()
        self.sock.settimeout(120)
        try:
            msg = self.sock.recv(1 << 20)
        except OSError as exc:
            self.close()
            raise SandboxError(f"the sandbox process did not start: {exc}", kind="internal") from None
        finally:
            self.sock.settimeout(None)
        if not msg:
            code = self.proc.wait(10)
            self.close()
            raise SandboxError(
                f"the sandbox process exited while starting (code {code}); see stderr "
                "(is quantlab importable from the same sys.path?)", kind="internal")
        self.info = json.loads(msg)["ready"]

    def alive(self) -> bool:
        if self.sock.fileno() < 0:
            return False
        if self.owner == os.getpid():
            return self.proc.poll() is None
        return pid_alive(self.proc.pid)  # a forked child of the owner (a sweep's pool worker) shares the zygote

    def send(self, req: dict, fds: list[int]) -> None:
        with self.lock:
            socket.send_fds(self.sock, [json.dumps(req).encode()], fds)

    def kill(self, token: str) -> None:
        try:
            self.send({"kill": token}, [])
        except OSError:
            pass

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass
        try:
            self.proc.wait(5)  # with its socket closed it kills its children and exits
        except subprocess.TimeoutExpired:
            kill_process(self.proc.pid, grace=0)
            self.proc.wait(5)
        shutil.rmtree(self.scratch, ignore_errors=True)


_ZYGOTES: dict[tuple[str, ...], _Zygote] = {}
_ZLOCK = threading.Lock()


def zygote(allow: tuple[str, ...] = ()) -> _Zygote:
    """This process's zygote for the extra ``allow`` list (started on first use)."""
    key = tuple(sorted(allow))
    with _ZLOCK:
        z = _ZYGOTES.get(key)
        if z is not None and z.owner != os.getpid() and z.alive():
            # forked from the owner (e.g. a process-pool worker): share its zygote; requests are single
            # datagrams on a SOCK_SEQPACKET socket, so senders in several processes do not interleave
            z.lock = threading.Lock()
            return z
        if z is not None and (z.owner != os.getpid() or not z.alive()):
            if z.owner == os.getpid():
                z.close()
            z = None
        if z is None:
            z = _ZYGOTES[key] = _Zygote(key)
        return z


def forget(allow: Iterable[str]) -> None:
    """Drop this process's zygote for ``allow`` from the registry (it broke: the next run starts a new one)."""
    with _ZLOCK:
        _ZYGOTES.pop(tuple(sorted(allow)), None)


def warm(allow: Iterable[str] | None = None) -> None:
    """Start this process's zygote now (for the configured ``allow`` list by default), so the first
    sandboxed run does not wait for its imports; a long-lived worker calls it once at start-up.

    >>> warm()   # doctest: +SKIP
    """
    from ._config import DEFAULT_ALLOW, allowed_modules

    zygote(tuple(sorted(allowed_modules(allow) - DEFAULT_ALLOW)))


def shutdown() -> None:
    """Stop this process's sandbox processes (they also stop on their own when it exits)."""
    with _ZLOCK:
        for key, z in list(_ZYGOTES.items()):
            if z.owner == os.getpid():
                z.close()
            del _ZYGOTES[key]


def _after_fork_in_child() -> None:
    global _ZLOCK
    _ZLOCK = threading.Lock()


os.register_at_fork(after_in_child=_after_fork_in_child)


atexit.register(shutdown)


def status_error(status: int | None, killed_for: str | None, limits: SandboxLimits, name: str) -> SandboxError:
    if killed_for == "timeout":
        return SandboxError(
            f"strategy {name!r} did not finish within {limits.wall_seconds:g} s of wall-clock time and was stopped "
            "(an endless loop? a slow pure-Python loop over the bars?). Vectorise it with pandas/numpy or allow "
            "more time.", kind="timeout")
    if killed_for == "output":
        return SandboxError(
            f"strategy {name!r} printed more than {limits.output_bytes:,} bytes and was stopped; "
            "print less (the output is a log, not a result channel).", kind="output")
    if killed_for == "result":
        return SandboxError(f"strategy {name!r} returned more data than its signals can be; stopped.", kind="output")
    if status is None:
        return SandboxError(f"strategy {name!r}: the sandboxed process ended without a status.", kind="crashed")
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        if sig == signal.SIGXCPU or (sig == signal.SIGKILL and killed_for is None):
            return SandboxError(
                f"strategy {name!r} used more than {limits.cpu_seconds:g} s of CPU time and was stopped "
                "(or was killed by the system for memory).", kind="cpu")
        if sig == signal.SIGSYS:
            return SandboxError(
                f"strategy {name!r} made a forbidden system call (a process, socket, signal to another process, "
                "or a privileged call) and was stopped by the kernel filter.", kind="forbidden")
        if sig in (signal.SIGSEGV, signal.SIGBUS, signal.SIGABRT):
            return SandboxError(
                f"strategy {name!r} crashed the sandboxed process ({signal.Signals(sig).name}); most likely it "
                f"exceeded the memory limit of {limits.memory_mb} MB inside a C extension.", kind="crashed")
        try:
            signame = signal.Signals(sig).name
        except ValueError:
            signame = f"signal {sig}"
        return SandboxError(f"strategy {name!r}: the sandboxed process was killed by {signame}.", kind="crashed")
    code = os.WEXITSTATUS(status) if os.WIFEXITED(status) else status
    return SandboxError(
        f"strategy {name!r} ended the sandboxed process (exit code {code}) before returning its signals; "
        "`signals` must return the positions.", kind="crashed")


def run_frames(task: dict, shared: SharedData | None, limits: SandboxLimits, *,
               on_log: Callable[[str], None] | None = None, allow: tuple[str, ...] = ()) -> Iterator[tuple[dict, bytes]]:
    """Run ``task`` in a fresh sandboxed child; yield ``(header, payload)`` frames as they arrive.

    Raises :class:`SandboxError` for a limit or a crash (after the frames that did arrive).
    """
    name = task["name"]
    last_exc: BaseException | None = None
    for attempt in range(2):
        z = zygote(allow)
        token = secrets.token_hex(8)
        pipes = [os.pipe() for _ in range(4)]  # task, result, log, status
        (task_r, task_w), (res_r, res_w), (log_r, log_w), (st_r, st_w) = pipes
        if shared is not None and shared.bars > 8192:
            try:  # fewer wake-ups for 8 MB of signals
                import fcntl

                fcntl.fcntl(res_w, 1031, 1 << 20)  # F_SETPIPE_SZ
            except (ImportError, OSError):
                pass
        data_fd = shared.fd if shared is not None else os.open("/dev/null", os.O_RDONLY | os.O_CLOEXEC)
        try:
            z.send({"token": token}, [task_r, res_w, log_w, st_w, data_fd])
        except OSError as exc:
            for a, b in pipes:
                os.close(a)
                os.close(b)
            if shared is None:
                os.close(data_fd)
            last_exc = exc
            forget(allow)
            z.close()
            continue
        for fd in (task_r, res_w, log_w, st_w):
            os.close(fd)
        if shared is None:
            os.close(data_fd)
        break
    else:
        raise SandboxError(f"strategy {name!r}: the sandbox process is not available ({last_exc}).", kind="internal")

    task = dict(task, roots=z.info.get("roots", []), limits=limits.to_dict(),
                layout=shared.layout if shared is not None else None)
    payload = memoryview(pickle.dumps(task, protocol=5))
    sel = selectors.DefaultSelector()
    for fd in (task_w, res_r, log_r, st_r):
        os.set_blocking(fd, False)
    sel.register(task_w, selectors.EVENT_WRITE, "task")
    sel.register(res_r, selectors.EVENT_READ, "result")
    sel.register(log_r, selectors.EVENT_READ, "log")
    sel.register(st_r, selectors.EVENT_READ, "status")
    open_fds = {task_w, res_r, log_r, st_r}
    deadline = time.monotonic() + limits.wall_seconds
    bars = shared.bars if shared is not None else 0
    combos = len(task.get("combos") or ()) or 1
    max_result = (bars * 8 + 8192) * (combos + 2) + (1 << 20)
    buf = bytearray()
    got = 0
    logged = 0
    log_tail = bytearray()
    status: int | None = None
    killed_for: str | None = None
    kill_at: float | None = None

    def close(fd: int) -> None:
        if fd in open_fds:
            try:
                sel.unregister(fd)
            except (KeyError, ValueError):
                pass
            os.close(fd)
            open_fds.discard(fd)

    def kill(reason: str) -> None:
        nonlocal killed_for, kill_at
        if killed_for is None:
            killed_for = reason
            z.kill(token)
            kill_at = time.monotonic()

    def flush_log(final: bool = False) -> None:
        nonlocal log_tail
        if not log_tail:
            return
        if final:
            text, log_tail = bytes(log_tail), bytearray()
        else:
            cut = log_tail.rfind(b"\n")
            if cut < 0:
                return
            text, log_tail = bytes(log_tail[:cut + 1]), log_tail[cut + 1:]
        s = text.decode("utf-8", "replace")
        if on_log is not None:
            on_log(s)
        else:  # the process's stderr: a log, never a protocol channel (servers keep stdout for MCP)
            try:
                sys.stderr.write("".join(f"[strategy {name}] {line}\n" for line in s.splitlines()))
                sys.stderr.flush()
            except (OSError, ValueError, AttributeError):
                log.info("[strategy %s] %s", name, s)

    try:
        while open_fds - {task_w} or status is None:
            now = time.monotonic()
            if killed_for is None and now > deadline:
                kill("timeout")
            if kill_at is not None and now - kill_at > 10:
                break  # the zygote did not report: give up waiting
            wait = max(0.0, min(deadline - now, 1.0)) if killed_for is None else 0.5
            for key, _ in sel.select(wait):
                what, fd = key.data, key.fd
                if what == "task":
                    try:
                        n = os.write(fd, payload)
                    except BrokenPipeError:
                        close(fd)
                        continue
                    payload = payload[n:]
                    if not len(payload):
                        close(fd)
                    continue
                try:
                    chunk = os.read(fd, 1 << 20)
                except BlockingIOError:
                    continue
                if not chunk:
                    close(fd)
                    continue
                if what == "result":
                    if killed_for is not None:
                        continue  # stopped: whatever it still sends is not a result
                    got += len(chunk)
                    if got > max_result:
                        kill("result")
                        close(fd)
                        continue
                    buf += chunk
                    while len(buf) >= 8:
                        hl, pl = struct.unpack_from("!II", buf, 0)
                        if len(buf) < 8 + hl + pl:
                            break
                        header = json.loads(bytes(buf[8:8 + hl]))
                        body = bytes(buf[8 + hl:8 + hl + pl])
                        del buf[:8 + hl + pl]
                        yield header, body
                elif what == "log":
                    logged += len(chunk)
                    if logged > limits.output_bytes:
                        kill("output")  # keep draining (not closing): the child must not see EPIPE first
                        continue
                    log_tail += chunk
                    flush_log()
                else:  # status
                    for line in chunk.decode().splitlines():
                        if line.startswith("exit "):
                            status = int(line[5:])
            if status is not None and task_w in open_fds:
                close(task_w)
    finally:
        if status is None and killed_for is None:
            z.kill(token)  # the caller stopped early (generator closed) or something failed
        for fd in list(open_fds):
            close(fd)
        sel.close()
        flush_log(final=True)
    if killed_for is not None or status is None or status != 0:
        raise status_error(status, killed_for, limits, name)
