"""The zygote: a single-threaded process that has imported numpy and pandas and
forks one sandboxed child per run.

It runs as ``python -c "...; main(FD)"`` with a scrubbed environment, its
working directory in a private scratch directory, stdout on ``/dev/null``, and
(when the machine allows it) in a new, empty network namespace. It never runs
strategy code itself: each request on the control socket carries the run's
pipes and data (file descriptors passed with ``SCM_RIGHTS``); the zygote forks,
and the child locks itself down (:func:`_child`) before it loads the strategy.
Because every run is a fresh fork, nothing a strategy changes (monkeypatched
numpy or pandas, globals, caches) is seen by the next run.

Per run, the zygote writes ``pid N`` and then ``exit STATUS`` to the run's
status pipe, so the parent learns how the child ended without racing on PIDs;
``{"kill": token}`` on the control socket kills a run's child if it is still alive.
"""
from __future__ import annotations

import json
import os
import signal
import socket
import struct
import sys

from quantlab._util.procs import kill_process

CHILD_FDS = ("task", "result", "log", "status", "data")

#: events a strategy may raise at run time (anything else is refused and reported)
OK_EVENTS = frozenset({
    "exec", "compile", "sys._getframe", "object.__getattr__", "object.__setattr__", "object.__delattr__",
    "import", "open", "os.listdir", "os.scandir", "array.__new__", "builtins.id", "time.sleep",
    "random.seed", "locale.setlocale", "sys.intern", "re.compile", "marshal.dumps", "marshal.loads",
})
FRAME_ATTRS = frozenset({"tb_frame", "gi_frame", "cr_frame", "ag_frame"})
SET_ATTRS = frozenset({"__code__", "__globals__", "__builtins__", "__class__", "__bases__", "__dict__"})
RUNTIME_DENY_IMPORTS = frozenset({
    "ctypes", "_ctypes", "cffi", "subprocess", "_posixsubprocess", "socket", "_socket", "ssl", "_ssl",
    "multiprocessing", "_multiprocessing", "pty", "pyarrow", "http", "urllib", "ftplib", "smtplib",
    "telnetlib", "xmlrpc", "webbrowser", "asyncio", "requests", "httpx", "sqlite3", "_sqlite3", "mmap",
    "fcntl", "termios", "resource", "shutil", "tempfile", "pdb", "faulthandler", "readline", "curses",
})


def _lib_roots() -> list[str]:
    """Directories a sandboxed child may read: the interpreter's libraries and quantlab's package."""
    import sysconfig

    roots: list[str] = []
    paths = sysconfig.get_paths()
    for key in ("stdlib", "platstdlib", "purelib", "platlib"):
        if paths.get(key):
            roots.append(paths[key])
    for p in sys.path:
        if p and os.path.isdir(p) and ("site-packages" in p or "dist-packages" in p or p.startswith(sys.base_prefix)):
            roots.append(p)
    import quantlab

    roots.append(os.path.dirname(os.path.abspath(quantlab.__file__)))
    for mod in list(sys.modules.values()):
        f = getattr(mod, "__file__", None)
        if isinstance(f, str) and os.path.isabs(f):
            top = mod.__name__.split(".")[0]
            top_mod = sys.modules.get(top)
            tf = getattr(top_mod, "__file__", None)
            if isinstance(tf, str) and os.path.isabs(tf):
                roots.append(os.path.dirname(tf) if tf.endswith("__init__.py") else tf)
    for extra in ("/usr/lib", "/usr/lib64", "/lib", "/lib64", "/usr/share/zoneinfo", "/etc/ld.so.cache",
                  "/etc/localtime", sys.base_prefix, sys.prefix, os.path.dirname(os.path.realpath(sys.executable))):
        roots.append(extra)
    out: list[str] = []
    for r in roots:
        r = os.path.realpath(r)
        if os.path.exists(r) and r not in out and r != "/":
            out.append(r)
    return out


# ---------------------------------------------------------------------------------------------
# the zygote
# ---------------------------------------------------------------------------------------------
def main(ctl_fd: int, allow_json: str = "[]") -> None:
    """Serve fork requests on ``ctl_fd`` until it closes; then kill what is left and exit."""
    sock = socket.socket(fileno=ctl_fd)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    sys.dont_write_bytecode = True
    import numpy  # noqa: F401
    import pandas  # noqa: F401

    import quantlab.engine.backtest  # noqa: F401
    import quantlab.engine.strategy  # noqa: F401
    from quantlab.engine.sandbox import _child  # noqa: F401
    from quantlab.engine.sandbox._config import allowed_modules
    from quantlab.engine.sandbox._kernel import Kernel

    for name in sorted(allowed_modules(json.loads(allow_json))):  # pre-import: children need no file access
        try:
            __import__(name)
        except Exception:  # noqa: BLE001 - an allowed module that is not installed is refused later
            pass
    try:  # warm what the first runs would otherwise import lazily
        pandas.Series([1.0, 2.0]).rolling(2).mean().ewm(span=2).mean().diff().shift(1).fillna(0).clip(-1, 1)
        pandas.DataFrame({"a": [1.0]}).copy(deep=False)
        repr(pandas.DataFrame({"a": [1.0]}))
    except Exception:  # noqa: BLE001
        pass
    import gc

    # glibc's mmap threshold adapts to the largest block freed: move it up once, here, so each child
    # serves its ~8 MB arrays from the heap instead of mmap + page faults + munmap per array
    block = numpy.empty(31 * 2**20 // 8)
    block[::512] = 0.0
    del block
    roots = _lib_roots()
    kernel = Kernel(roots)
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        kernel.enter_netns()
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_w, False)
    os.set_blocking(wake_r, False)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGCHLD, lambda *a: None)
    children: dict[int, tuple[str, int]] = {}  # pid -> (token, status fd)
    by_token: dict[str, int] = {}
    info = {"pid": os.getpid(), "roots": roots, **kernel.describe()}
    # every object so far is permanent: a child's garbage collections do not touch (and so copy) them
    gc.collect()
    gc.freeze()
    sock.send(json.dumps({"ready": info}).encode())
    import select

    spare: list = []  # [pid, socket]: a child forked ahead of time, waiting for its run

    def reap() -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            if spare and spare[0] == pid:  # the waiting child died: fork another one later
                spare[1].close()
                spare.clear()
                continue
            entry = children.pop(pid, None)
            if entry is None:
                continue
            token, sfd = entry
            by_token.pop(token, None)
            try:
                os.write(sfd, f"exit {status}\n".encode())
            except OSError:
                pass
            os.close(sfd)

    def close_inherited(extra: list[int]) -> None:
        sock.close()
        os.close(wake_r)
        os.close(wake_w)
        for _token, sfd in children.values():
            os.close(sfd)
        if spare:
            spare[1].close()
        for fd in extra:
            os.close(fd)

    def child_main(named: dict, req: dict) -> None:
        code = 70
        try:
            code = _child.run(named, kernel, req)
        except BaseException:  # noqa: BLE001 - the child reports through its pipe; exit code otherwise
            code = 71
        finally:
            os._exit(code)

    def fork_spare() -> None:
        """Fork the next run's child now, off the caller's path: it pre-faults the heap the run's arrays
        will use, then waits for its run's descriptors (one message, then its socket is closed)."""
        mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        pid = os.fork()
        if pid == 0:
            try:
                close_inherited([])
                mine.close()
                kernel.set_pdeathsig(signal.SIGKILL)
                _child.prefault()
                msg, fds, _f, _a = socket.recv_fds(theirs, 65536, 8)
                theirs.close()
                if not msg:
                    os._exit(0)
                req = json.loads(msg)
                named = dict(zip(CHILD_FDS, fds))
                os.close(named["status"])
            except BaseException:  # noqa: BLE001
                os._exit(72)
            child_main(named, req)
        theirs.close()
        spare[:] = [pid, mine]

    while True:
        if not spare:
            try:
                fork_spare()
            except OSError:
                spare.clear()
        try:
            ready, _, _ = select.select([sock, wake_r], [], [])
        except InterruptedError:
            continue
        if wake_r in ready:
            try:
                os.read(wake_r, 4096)
            except BlockingIOError:
                pass
            reap()
        if sock not in ready:
            continue
        try:
            msg, fds, _flags, _addr = socket.recv_fds(sock, 65536, 8)
        except OSError:
            msg, fds = b"", []
        if not msg:
            break
        req = json.loads(msg)
        if "kill" in req:
            pid = by_token.get(req["kill"])
            if pid is not None:
                kill_process(pid, grace=0)
            for fd in fds:
                os.close(fd)
            continue
        named = dict(zip(CHILD_FDS, fds))
        pid = None
        if spare:
            try:  # hand the run to the waiting child
                socket.send_fds(spare[1], [msg], fds)
                pid = spare[0]
            except OSError:
                pid = None
            spare[1].close()
            spare.clear()
        if pid is None:
            pid = os.fork()
            if pid == 0:  # the child: never returns
                try:
                    close_inherited([named["status"]])
                except BaseException:  # noqa: BLE001
                    os._exit(72)
                child_main(named, req)
        children[pid] = (req["token"], named["status"])
        by_token[req["token"]] = pid
        try:
            os.write(named["status"], f"pid {pid}\n".encode())
        except OSError:
            pass
        for k, fd in named.items():
            if k != "status":
                os.close(fd)
        reap()
    if spare:
        children[spare[0]] = ("", os.open(os.devnull, os.O_WRONLY))
    # the parent is gone or closed us: nothing may outlive the zygote
    for pid in list(children):
        kill_process(pid, grace=0)
    for pid in list(children):
        try:
            os.waitpid(pid, 0)
        except ChildProcessError:
            pass
    os._exit(0)


def frame(header: dict, payload: bytes | memoryview = b"") -> bytes:
    """One result frame: ``!II`` (header length, payload length), JSON header, payload."""
    h = json.dumps(header, allow_nan=True).encode()
    return struct.pack("!II", len(h), len(payload)) + h
