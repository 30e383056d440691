"""What one sandboxed child does (forked from the zygote; never returns to it).

(Size: one ordered lockdown sequence and the audit hook's rules, kept in one file so the order
that makes them safe is read in one place.)

Order matters: everything that needs the host (reading the task pipe, mapping
the data) happens first; then the limits (rlimits), the kernel layers (no_new_privs,
Landlock, seccomp) and the Python audit hook; only then is the strategy's code
executed. Results leave as frames on the result pipe (JSON headers + raw float64
bytes, never pickles: the parent does not unpickle anything a strategy made);
anything the strategy prints goes to the log pipe on fds 1 and 2.
"""
from __future__ import annotations

import builtins
import json
import mmap
import os
import pickle
import resource
import signal
import struct
import sys
from typing import Any

from ._zygote import FRAME_ATTRS, OK_EVENTS, RUNTIME_DENY_IMPORTS, SET_ATTRS, frame

MAX_MESSAGE = 2000
#: read-only probes libraries make on their own (CPU and cgroup limits); harmless, and Landlock refuses them
_PROBES = ("/sys/fs/cgroup/", "/sys/devices/system/cpu/", "/proc/self/cgroup", "/proc/self/mountinfo")


_NOT_YET = object()


class _Refused(BaseException):
    """Raised inside the strategy when it does something forbidden (not an ``Exception``:
    ``except Exception`` in the strategy does not swallow it; the refusal is recorded anyway)."""


class _State:
    __slots__ = ("armed", "trusted", "busy", "violation", "name", "code_file", "roots")

    def __init__(self, name: str, roots: list[str]):
        self.armed = False
        self.trusted = False
        self.busy = False
        self.violation: tuple[str, int | None] | None = None
        self.name = name
        self.code_file = f"<strategy {name}>"
        self.roots = tuple(r.rstrip("/") + "/" for r in roots) + tuple(roots)


def _strategy_line(st: _State) -> int | None:
    f = sys._getframe(1)
    while f is not None:
        if f.f_code.co_filename == st.code_file:
            return f.f_lineno
        f = f.f_back
    return None


_WHAT = (
    (("os.system", "os.exec", "os.posix_spawn", "os.spawn", "os.fork", "os.forkpty", "subprocess.", "pty."),
     "start a process"),
    (("socket.", "http.", "urllib.", "ftplib.", "smtplib.", "telnetlib.", "webbrowser.", "ssl."), "use the network"),
    (("os.kill", "os.killpg", "signal."), "send a signal"),
    (("ctypes.", "cffi"), "load native code (ctypes)"),
    (("os.remove", "os.unlink", "os.rename", "os.rmdir", "os.mkdir", "os.chmod", "os.chown", "os.link",
      "os.symlink", "os.truncate", "os.utime", "shutil.", "tempfile."), "change files"),
    (("os.putenv", "os.unsetenv"), "change the environment"),
    (("gc.", "sys._current_frames", "sys.settrace", "sys.setprofile", "sys.addaudithook", "code.__new__",
      "function.__new__", "marshal.load", "pickle.find_class", "cpython."), "reach the interpreter's internals"),
    (("_thread.", "threading."), "start a thread"),
    (("mmap.", "os.open", "open"), "open a file"),
)


def _policy(st: _State, event: str, args: tuple) -> str | None:
    if event == "import":
        name = str(args[0])
        top = name.split(".")[0]
        from ._config import NEVER_ALLOW_SUB

        if top in RUNTIME_DENY_IMPORTS or any(name == s or name.startswith(s + ".") for s in NEVER_ALLOW_SUB):
            return f"import {name}"
        return None
    if event == "open":
        path, mode = args[0], args[1] if len(args) > 1 else None
        flags = args[2] if len(args) > 2 else 0
        if isinstance(path, bytes):
            path = path.decode("utf-8", "replace")
        if not isinstance(path, str):
            return "open a file descriptor"
        writing = (isinstance(mode, str) and any(c in mode for c in "wax+")) or (
            isinstance(flags, int) and flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND))
        full = os.path.normpath(os.path.join(os.getcwd(), path)) if not os.path.isabs(path) else os.path.normpath(path)
        if not writing and full.startswith(st.roots):
            return None  # the libraries' own files (lazy imports, time zones)
        if not writing and full.startswith(_PROBES):
            return None  # libraries probing CPU counts (pandas reads cgroup limits): Landlock answers "no"
        return f"open the file {path!r}"
    if event in ("os.listdir", "os.scandir"):
        path = args[0] if args else "."
        if isinstance(path, bytes):
            path = path.decode("utf-8", "replace")
        if isinstance(path, str) and os.path.normpath(os.path.abspath(path)).startswith(st.roots):
            return None
        return f"list the directory {path!r}"
    if event == "object.__getattr__":
        return f"read `.{args[1]}`" if (args[1] in FRAME_ATTRS and not st.trusted) else None
    if event in ("object.__setattr__", "object.__delattr__"):
        return f"set `.{args[1]}`" if args[1] in SET_ATTRS else None
    if event in OK_EVENTS:
        return None
    return f"use {event}"


def _install_hook(st: _State) -> None:
    def hook(event: str, args: tuple) -> None:
        if st.busy or not st.armed:
            return
        if event in ("exec", "compile", "sys._getframe", "builtins.id"):
            return
        st.busy = True
        try:
            problem = _policy(st, event, args)
            if problem is None:
                return
            line = _strategy_line(st)
        finally:
            st.busy = False
        what = next((w for prefixes, w in _WHAT if event.startswith(prefixes)), "reach outside the sandbox")
        where = f", line {line}" if line else ""
        msg = (f"strategy {st.name!r}{where}: refused to {problem} (audit event {event!r}); "
               f"strategy code may not {what}.")
        if st.violation is None:
            st.violation = (msg, line)
        raise _Refused(msg)

    sys.addaudithook(hook)


# ---------------------------------------------------------------------------------------------
def _read_all(fd: int) -> bytes:
    chunks = []
    while True:
        b = os.read(fd, 1 << 20)
        if not b:
            break
        chunks.append(b)
    os.close(fd)
    return b"".join(chunks)


#: a task that starts with this is a *session* (``SignalSession``): a length-prefixed task, then the
#: task pipe stays open and carries one data frame per evaluation (``!II`` header/payload lengths)
STREAM_MAGIC = b"QLSTREAM"


class _TaskReader:
    """Reads the task pipe: the whole pipe for a one-shot run, or frames for a session."""

    def __init__(self, fd: int):
        self.fd, self.buf = fd, bytearray()

    def _fill(self, n: int) -> bool:
        while len(self.buf) < n:
            b = os.read(self.fd, 1 << 20)
            if not b:
                return False
            self.buf += b
        return True

    def task(self) -> tuple[bytes, bool]:
        if not self._fill(len(STREAM_MAGIC)) or bytes(self.buf[:len(STREAM_MAGIC)]) != STREAM_MAGIC:
            self.buf += _read_all(self.fd)  # a one-shot run: the pipe holds the task only
            return bytes(self.buf), False
        k = len(STREAM_MAGIC)
        self._fill(k + 8)
        (size,) = struct.unpack_from("!Q", self.buf, k)
        self._fill(k + 8 + size)
        body = bytes(self.buf[k + 8:k + 8 + size])
        del self.buf[:k + 8 + size]
        return body, True

    def frame(self) -> tuple[dict, bytes] | None:
        """The next evaluation request, or None when the parent closed the session."""
        if not self._fill(8):
            return None
        hl, pl = struct.unpack_from("!II", self.buf, 0)
        if not self._fill(8 + hl + pl):
            return None
        head = json.loads(bytes(self.buf[8:8 + hl]))
        body = bytes(self.buf[8 + hl:8 + hl + pl])
        del self.buf[:8 + hl + pl]
        return head, body


def _frame_data(head: dict, body: bytes, np: Any, pd: Any) -> Any:
    """Rebuild the OHLCV frame a session request carries: int64 ns index, then float64 columns."""
    n = int(head["n"])
    cols = list(head["cols"])
    i8 = np.frombuffer(body, dtype=np.int64, count=n)
    vals = np.frombuffer(body, dtype=np.float64, offset=8 * n, count=n * len(cols)).reshape(len(cols), n)
    idx = pd.DatetimeIndex(i8.view("datetime64[ns]"), name=head.get("index_name"))
    if head.get("tz"):
        idx = idx.tz_localize("UTC").tz_convert(head["tz"])
    return pd.DataFrame({c: vals[j].copy() for j, c in enumerate(cols)}, index=idx)


def _load_data(fd: int, layout: dict) -> Any:
    if not layout:
        os.close(fd)
        return None
    mm = mmap.mmap(fd, layout["size"], flags=mmap.MAP_PRIVATE, prot=mmap.PROT_READ | mmap.PROT_WRITE)
    os.close(fd)
    view = memoryview(mm)
    head = bytes(view[layout["pickle"][0]:layout["pickle"][0] + layout["pickle"][1]])
    bufs = [view[o:o + n] for o, n in layout["buffers"]]
    return pickle.loads(head, buffers=bufs)


def _set_limits(limits: dict) -> None:
    def lower(res: int, value: int) -> None:
        soft, hard = resource.getrlimit(res)
        if hard != resource.RLIM_INFINITY:
            value = min(value, hard)
        try:
            resource.setrlimit(res, (value, value if res != resource.RLIMIT_CPU else min(value + 1, hard)
                                     if hard != resource.RLIM_INFINITY else value + 1))
        except (ValueError, OSError):
            pass

    cpu = max(1, int(limits["cpu_seconds"] + 0.999))
    soft, hard = resource.getrlimit(resource.RLIMIT_CPU)
    used = resource.getrusage(resource.RUSAGE_SELF)
    cpu += int(used.ru_utime + used.ru_stime)  # the fork's own CPU (inherited counters are per process: ~0)
    lower(resource.RLIMIT_CPU, cpu)
    lower(resource.RLIMIT_AS, int(limits["memory_mb"]) * 1024 * 1024)
    lower(resource.RLIMIT_FSIZE, 0)
    lower(resource.RLIMIT_CORE, 0)
    lower(resource.RLIMIT_NPROC, 0)
    lower(resource.RLIMIT_NOFILE, 64)
    lower(resource.RLIMIT_MEMLOCK, 0)
    lower(resource.RLIMIT_MSGQUEUE, 0)


def _safe_builtins(st: _State, allow: frozenset[str]) -> dict:
    from ._config import NEVER_ALLOW_SUB

    real_import = builtins.__import__

    def checked_import(name, globals=None, locals=None, fromlist=(), level=0):  # noqa: A002
        full = [name] + [f"{name}.{f}" for f in (fromlist or ()) if isinstance(f, str)]
        if level or name.split(".")[0] not in allow or any(
                m == s or m.startswith(s + ".") for m in full for s in NEVER_ALLOW_SUB):
            line = _strategy_line(st)
            msg = (f"strategy {st.name!r}{f', line {line}' if line else ''}: refused to import {name!r}; "
                   f"strategies may import {', '.join(sorted(a for a in allow if a != '__future__'))}.")
            if st.violation is None:
                st.violation = (msg, line)
            raise _Refused(msg)
        return real_import(name, globals, locals, fromlist, level)

    def refused(what: str):
        def stub(*args, **kwargs):
            line = _strategy_line(st)
            arg = f" {args[0]!r}" if args and isinstance(args[0], (str, bytes, int)) else ""
            msg = (f"strategy {st.name!r}{f', line {line}' if line else ''}: refused to {what}{arg}; "
                   "strategy code may not use files, the terminal or the interpreter's internals.")
            if st.violation is None:
                st.violation = (msg, line)
            raise _Refused(msg)
        return stub

    b = dict(builtins.__dict__)
    b["__import__"] = checked_import
    for k, what in (("open", "open the file"), ("breakpoint", "start a debugger"), ("input", "read input"),
                    ("help", "start the help"), ("exit", "exit"), ("quit", "exit")):
        b[k] = refused(what)
    return b


class _Out:
    def __init__(self, fd: int):
        self.fd = fd

    def send(self, header: dict, payload: Any = b"") -> None:
        mv = memoryview(payload).cast("B") if not isinstance(payload, bytes) else memoryview(payload)
        self._write(frame(header, mv) if len(mv) else frame(header))
        if len(mv):
            self._write(mv)

    def _write(self, data) -> None:
        mv = memoryview(data)
        while len(mv):
            n = os.write(self.fd, mv)
            mv = mv[n:]


def _encode(sig: Any, data: Any, np: Any, pd: Any) -> tuple[dict, Any]:
    """A safe header + float64 payload for one signals value (or an error header)."""
    n = len(data)
    head: dict[str, Any] = {"t": "signals"}
    if isinstance(sig, pd.DataFrame):
        if sig.shape[1] != 1:
            return {"t": "invalid", "message": f"signals returned a DataFrame with {sig.shape[1]} columns; "
                                              "return one pd.Series of target positions."}, b""
        sig = sig.iloc[:, 0]
    if isinstance(sig, pd.Series):
        index = sig.index
        if index is data.index or (len(index) == n and index.equals(data.index)):
            head["index"] = "data"
        elif isinstance(index, pd.RangeIndex):
            head["index"] = [index.start, index.stop, index.step]
        elif isinstance(index, pd.DatetimeIndex):  # a subset or shifted index: sent so the caller can align
            head["index"] = {"dt": str(index.tz) if index.tz is not None else None}
            head["_i8"] = np.ascontiguousarray(index.as_unit("ns").asi8, dtype=np.int64)
        else:
            head["index"] = "other"
        values = sig.to_numpy()
    elif sig is None:
        return {"t": "none"}, b""
    else:
        values = np.asarray(sig)
        head["index"] = None
    if values.dtype.kind in "USTaMm" or (values.dtype.kind == "O" and values.size and any(
            isinstance(x, (str, bytes)) for x in values.reshape(-1)[:1000])):
        return {"t": "invalid", "message": f"signals are not numeric (dtype {values.dtype}); "
                                          "return numbers in [-1, 1]."}, b""
    try:
        values = np.ascontiguousarray(values, dtype=np.float64)
    except (TypeError, ValueError):
        return {"t": "invalid", "message": f"signals are not numeric (dtype {values.dtype}); "
                                          "return numbers in [-1, 1]."}, b""
    head["shape"] = list(values.shape)
    i8 = head.pop("_i8", None)
    if i8 is not None:
        if values.ndim != 1 or len(i8) != values.shape[0]:
            head["index"] = "other"
        else:
            return head, np.concatenate([values, i8.view(np.float64)])
    return head, values


def _exc_header(st: _State, exc: BaseException, code_lines: list[str]) -> dict:
    tname = type(exc).__name__
    try:
        msg = str(exc)
    except BaseException:  # noqa: BLE001
        msg = "<the exception's message could not be printed>"
    if len(msg) > MAX_MESSAGE:
        msg = msg[:MAX_MESSAGE] + "…"
    frames = []
    st.trusted = True
    try:
        tb = exc.__traceback__
        while tb is not None:
            f = tb.tb_frame
            if f.f_code.co_filename == st.code_file:
                frames.append((tb.tb_lineno, f.f_code.co_name))
            tb = tb.tb_next
    except BaseException:  # noqa: BLE001
        pass
    finally:
        st.trusted = False
    lines = []
    for lineno, fn in frames[-3:]:
        src = code_lines[lineno - 1].strip() if 0 < lineno <= len(code_lines) else ""
        lines.append(f"  line {lineno}, in {fn}: {src[:200]}")
    return {"t": "raised", "type": tname[:100], "message": msg, "frames": lines,
            "line": frames[-1][0] if frames else None}


def prefault(mb: int = 48) -> None:
    """Touch heap memory once and give it back to malloc (not to the kernel): a run's first arrays then
    reuse pages that are already mapped instead of faulting them in on the caller's time. Runs in the
    zygote's waiting child, before it has a run."""
    try:
        import numpy as np

        blocks = [np.ones(2**20) for _ in range(max(1, mb // 8))]  # 8 MB each: below the mmap threshold
        del blocks
    except MemoryError:
        pass


def run(fds: dict[str, int], kernel: Any, req: dict) -> int:
    """The child's whole life; returns its exit code."""
    kernel.set_pdeathsig(signal.SIGKILL)
    signal.set_wakeup_fd(-1)
    for s in (signal.SIGCHLD, signal.SIGINT, signal.SIGTERM):
        signal.signal(s, signal.SIG_DFL)
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    log = fds["log"]
    os.dup2(log, 1)
    os.dup2(log, 2)
    os.close(log)
    null = os.open("/dev/null", os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)
    reader = _TaskReader(fds["task"])
    raw, stream = reader.task()
    task = pickle.loads(raw)  # from the parent (trusted), before any strategy code
    data = _load_data(fds["data"], task.get("layout") or {})
    out = _Out(fds["result"])
    import numpy as np
    import pandas as pd

    from quantlab.engine import strategy as _strategy

    name = task["name"]
    code = task["code"]
    allow = frozenset(task.get("allow") or ())
    st = _State(name, task.get("roots") or [])
    _set_limits(task["limits"])
    applied = kernel.apply()
    sys.modules.pop("ctypes", None)
    _install_hook(st)
    out.send({"t": "hello", "mechanisms": applied, "pid": os.getpid()})
    code_lines = code.splitlines()
    namespace: dict[str, Any] = {"__name__": "quantlab_strategy", "__builtins__": _safe_builtins(st, allow)}

    def violation() -> bool:
        if st.violation is not None:
            out.send({"t": "forbidden", "message": st.violation[0][:MAX_MESSAGE], "line": st.violation[1]})
            return True
        return False

    st.armed = True
    try:
        exec(compile(code, st.code_file, "exec"), namespace)
    except BaseException as exc:  # noqa: BLE001 - user code may raise anything while loading
        if violation():
            return 0
        h = _exc_header(st, exc, code_lines)
        h["t"] = "load"
        out.send(h)
        return 0
    if violation():
        return 0
    fn = namespace.get("signals")
    if not callable(fn):
        out.send({"t": "strategy", "message": f"strategy {name!r}: `signals` is not callable after running the code."})
        return 0
    try:
        defaults = _strategy.default_params(fn, name)
        import inspect

        sig = inspect.signature(fn)
        params = [[p.name, int(p.kind)] for p in list(sig.parameters.values())]
    except _strategy.StrategyError as exc:
        out.send({"t": "strategy", "message": str(exc)})
        return 0
    except BaseException as exc:  # noqa: BLE001
        if violation():
            return 0
        out.send({"t": "strategy", "message": f"strategy {name!r}: cannot read the signature of `signals`: {exc}"})
        return 0
    if violation():
        return 0
    safe_defaults = {}
    for k, v in defaults.items():
        try:
            json.dumps(v, allow_nan=True)
            safe_defaults[k] = v
        except (TypeError, ValueError):
            safe_defaults[k] = {"__repr__": repr(v)[:200]}
    hook = namespace.get("signals_many")
    out.send({"t": "inspect", "params": params, "defaults": safe_defaults, "batch": callable(hook)})
    combos = [] if stream else (task.get("combos") or [])
    strat = _strategy.Strategy(name=name, code=code, _fn=fn, _params=defaults)

    def evaluate(frame_data: Any, params: dict, sig: Any) -> tuple[dict, Any] | None:
        """signals(frame_data, **params) (or the batch's ``sig``) as a frame; None after a violation."""
        try:
            if sig is _NOT_YET:
                sig = strat.function(frame_data.copy(deep=False), **strat.resolve_params(params))
            if violation():
                return None
            head, payload = _encode(sig, frame_data, np, pd)
        except _strategy.StrategyError as exc:
            head, payload = {"t": "strategy", "message": str(exc)}, b""
        except BaseException as exc:  # noqa: BLE001
            if violation():
                return None
            if isinstance(exc, MemoryError):
                head, payload = {"t": "memory", "message": str(exc)[:200]}, b""
            else:
                head, payload = _exc_header(st, exc, code_lines), b""
        if violation():
            return None
        return head, payload

    i = 0
    batch = task.get("batch") and callable(hook) and len(combos) > 1
    step = max(2, int(16 * 2**20 // (8 * max(1, len(data) if data is not None else 1))))
    while i < len(combos):
        chunk = combos[i:i + step] if batch else combos[i:i + 1]
        cols = None
        if batch and len(chunk) > 1:
            try:
                resolved = [strat.resolve_params(c) for c in chunk]
                raw = hook(data.copy(deep=False), resolved)
                if isinstance(raw, pd.DataFrame):
                    raw = raw.to_numpy() if raw.index.equals(data.index) else None
                if isinstance(raw, np.ndarray):
                    raw = [raw[:, j] for j in range(raw.shape[1])] if raw.ndim == 2 else None
                elif raw is not None:
                    raw = list(raw)
                cols = raw if raw is not None and len(raw) == len(chunk) else None
            except _Refused:
                violation()
                return 0
            except Exception:  # noqa: BLE001 - fall back to signals() one by one
                cols = None
            if violation():
                return 0
        for j, params in enumerate(chunk):
            got = evaluate(data, params, cols[j] if cols is not None else _NOT_YET)
            if got is None:
                return 0
            head, payload = got
            head["i"] = i + j
            out.send(head, payload)
        i += len(chunk)
    if stream:  # a session: one evaluation per request until the parent closes the pipe
        params = (task.get("combos") or [{}])[0]
        seq = 0
        while True:
            req = reader.frame()
            if req is None:
                break
            frame_data = _frame_data(req[0], req[1], np, pd)
            req = None
            got = evaluate(frame_data, params, _NOT_YET)
            if got is None:
                return 0
            head, payload = got
            usage = resource.getrusage(resource.RUSAGE_SELF)
            head["i"], head["cpu"] = seq, usage.ru_utime + usage.ru_stime
            try:
                sys.stdout.flush()
                sys.stderr.flush()
            except BaseException:  # noqa: BLE001
                pass
            out.send(head, payload)
            seq += 1
            frame_data = None
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except BaseException:  # noqa: BLE001
        pass
    if violation():
        return 0
    out.send({"t": "done"})
    return 0
