"""A sandbox for strategy code: a static check, then a locked-down child process per run.

Wherever quantlab runs strategy code on someone's behalf (backtest server workers,
sweeps, deployments, the ``%%strategy`` smoke run) it goes through here:

* :func:`check_code` refuses escape hatches (``import os``, ``open``, ``eval`` of
  a built string, ``().__class__.__base__.__subclasses__()`` ...) *before anything
  runs*, naming the line;
* :func:`run_signals` evaluates ``signals(data, **params)`` in a child forked from a
  warm zygote (numpy/pandas already imported) with a scrubbed environment,
  resource limits (:class:`SandboxLimits`), a kernel filter (seccomp; Landlock and
  an empty network namespace where the machine has them) and a Python audit hook,
  and returns the raw signals; the caller turns them into target positions;
* a violation or a limit raises :class:`SandboxError`; the strategy's own exception
  raises :class:`~quantlab.engine.backtest.SignalError` with the strategy's line.

What it promises, and what it does not, is in ``docs/sandbox.md``.

Example
-------
>>> from quantlab.engine import data
>>> df = data.synthetic(500, seed=1)
>>> sig = run_signals("def signals(data, n=5):\\n    return (data.close > data.close.rolling(n).mean()) * 1.0",
...                   df, {"n": 10})
>>> len(sig) == len(df)
True
>>> run_signals("import os\\ndef signals(data):\\n    return data.close * 0", df)
Traceback (most recent call last):
...
quantlab.engine.sandbox._errors.SandboxError: strategy 'strategy', line 1: `import os` is not allowed in strategy code; ...
"""
from __future__ import annotations

import collections
import contextlib
import inspect as _inspect
import threading
from types import MappingProxyType
from typing import Any, Callable, Iterable, Iterator, Mapping, Sequence

from quantlab.engine.strategy import Strategy

from ._config import DEFAULT_ALLOW, NEVER_ALLOW, allowed_modules, configured_allow
from ._errors import SandboxError
from ._limits import SandboxLimits
from ._runner import SharedData, run_frames, shutdown, warm
from ._session import SignalSession
from ._static import check_code

__all__ = [
    "check_code", "run_signals", "iter_signals", "load", "SignalSession", "SandboxedStrategy", "SandboxError", "SignalError",
    "SandboxLimits", "SharedData", "mechanisms", "shutdown", "warm", "allowed_modules", "configured_allow",
    "DEFAULT_ALLOW", "NEVER_ALLOW",
]


def __getattr__(name: str) -> Any:
    if name == "SignalError":  # one class, wherever the engine keeps it
        from quantlab.engine.backtest import SignalError

        return SignalError
    raise AttributeError(f"module 'quantlab.engine.sandbox' has no attribute {name!r}")


_LAST: dict[str, Any] = {}


def mechanisms() -> dict[str, Any]:
    """Which layers took effect in the most recent sandboxed run of this process.

    >>> m = mechanisms()            # doctest: +SKIP
    >>> m["applied"]                # doctest: +SKIP
    {'no_new_privs': True, 'landlock': True, 'seccomp': True}
    """
    if not _LAST:
        from quantlab.engine import data

        run_signals("def signals(data):\n    return data.close * 0", data.synthetic(10, seed=0))
    return dict(_LAST)


def _code_and_name(strategy: Any, name: str | None) -> tuple[str, str]:
    from quantlab.engine.strategy import Strategy, _check_source

    if isinstance(strategy, Strategy):
        return strategy.code, name or strategy.name
    name = (name or "strategy").replace("\x00", "").strip() or "strategy"
    _check_source(strategy, name)  # StrategyError for anything that is not usable source code
    return strategy, name


def decode_signals(header: dict, body: bytes, data: Any, name: str, limits: SandboxLimits) -> Any:
    """A frame from the child -> signals (Series/array/None) or the exception to raise."""
    import numpy as np
    import pandas as pd

    from quantlab.engine.backtest import SignalError
    from quantlab.engine.strategy import StrategyError

    t = header.get("t")
    if t == "signals":
        shape = tuple(int(x) for x in header.get("shape") or (len(body) // 8,))
        values = np.frombuffer(body, dtype=np.float64)
        idx = header.get("index")
        if isinstance(idx, dict) and len(shape) == 1 and values.size == 2 * shape[0]:
            i8 = values[shape[0]:].view(np.int64)
            dt = pd.DatetimeIndex(i8.view("datetime64[ns]"), name=data.index.name)
            if idx.get("dt"):
                dt = dt.tz_localize("UTC").tz_convert(idx["dt"])
            return pd.Series(values[:shape[0]], index=dt, copy=False)
        if values.size != int(np.prod(shape)):
            return SandboxError(f"strategy {name!r}: a malformed result frame.", kind="internal")
        values = values.reshape(shape)
        if idx is None:
            return values
        if idx == "data" and values.ndim == 1 and values.shape[0] == len(data):
            return pd.Series(values, index=data.index, copy=False)
        if isinstance(idx, list) and len(idx) == 3 and values.ndim == 1:
            rng = pd.RangeIndex(int(idx[0]), int(idx[1]), int(idx[2]))
            if len(rng) == values.shape[0]:
                return pd.Series(values, index=rng, copy=False)
        # an index that is not the data's: keeps the engine's "index does not match" message
        return pd.Series(values.reshape(-1), index=pd.RangeIndex(1, values.size + 1), copy=False)
    if t == "none":
        return None
    if t == "invalid":
        return SignalError(f"strategy {name!r}: {header.get('message')}")
    if t in ("raised", "load"):
        frames = header.get("frames") or []
        where = ("\n" + "\n".join(frames)) if frames else " (inside a library it called)"
        if t == "load":
            exc = StrategyError(f"strategy {name!r}: the code raised while loading: "
                                f"{header.get('type')}: {header.get('message')}{where}")
        else:
            hint = ""
            if header.get("type") in ("PermissionError", "SystemError", "OSError", "FileNotFoundError"):
                hint = " (the sandbox denies files, the network and processes to strategy code)"
            exc = SignalError(f"strategy {name!r} raised {header.get('type')}: {header.get('message')}{hint}{where}")
        exc.line = header.get("line")  # type: ignore[attr-defined]
        exc.exc_type = header.get("type")  # type: ignore[attr-defined]
        # the exception as the strategy raised it ("ZeroDivisionError: ..."), with its own lines
        exc.detail = f"{header.get('type')}: {header.get('message')}" + (  # type: ignore[attr-defined]
            ("\n" + "\n".join(frames)) if frames else "")
        return exc
    if t == "strategy":
        return StrategyError(str(header.get("message")))
    if t == "memory":
        return SandboxError(f"strategy {name!r} exceeded the sandbox memory limit of {limits.memory_mb} MB "
                            "(MemoryError); use less memory "
                            "(work on columns, avoid copies of the whole frame) or raise SandboxLimits.memory_mb.",
                            kind="memory")
    if t == "forbidden":
        return SandboxError(str(header.get("message")), kind="forbidden", line=header.get("line"))
    return SandboxError(f"strategy {name!r}: unexpected frame {t!r} from the sandbox.", kind="internal")


def prepare_strategy(strategy: Any, name: str | None, allow: Iterable[str] | None):
    """``(code, name, allowed modules)`` of a strategy or its code, after the static check (used by
    :func:`load`, :func:`iter_signals` and :class:`SignalSession`)."""
    code, name = _code_and_name(strategy, name)
    mods = allowed_modules(allow)
    check_code(code, allow=mods, name=name)
    return code, name, mods


@contextlib.contextmanager
def _shared(data: Any) -> Iterator[SharedData]:
    if isinstance(data, SharedData):
        yield data
        return
    sd = SharedData(data)
    try:
        yield sd
    finally:
        sd.close()


def iter_signals(strategy: Any, data: Any, combos: Sequence[Mapping[str, Any]], *,
                 limits: SandboxLimits | Mapping[str, Any] | None = None, allow: Iterable[str] | None = None,
                 name: str | None = None, batch: bool = True,
                 on_log: Callable[[str], None] | None = None) -> Iterator[tuple[int, Any]]:
    """Evaluate ``signals`` for many parameter dicts in **one** sandboxed child; yield ``(i, signals)``.

    ``signals`` is what :func:`run_signals` would return, or the exception instance for that
    combination (a ``SignalError``/``StrategyError`` the caller reports in its row). A violation
    or a limit ends the whole run with :class:`SandboxError`. With ``batch=True`` a strategy's
    ``signals_many`` is used for chunks of combinations, as :func:`quantlab.sweep` does.

    >>> from quantlab.engine import data
    >>> code = "def signals(data, n=5):\\n    return (data.close > data.close.rolling(n).mean()) * 1.0"
    >>> [i for i, s in iter_signals(code, data.synthetic(300, seed=2), [{"n": 5}, {"n": 9}])]
    [0, 1]
    """
    code, name, mods = prepare_strategy(strategy, name, allow)
    lim = SandboxLimits.coerce(limits)
    extra = tuple(sorted(mods - DEFAULT_ALLOW))
    with _shared(data) as sd:
        frame = sd.data
        task = {"code": code, "name": name, "combos": [dict(c) for c in combos], "allow": sorted(mods),
                "batch": bool(batch)}
        with contextlib.closing(run_frames(task, sd, lim, on_log=on_log, allow=extra)) as frames:
            for header, body in frames:
                t = header.get("t")
                if t == "hello":
                    _LAST.update(applied=header.get("mechanisms"))
                    continue
                if t == "inspect":
                    _INSPECT.put((code, name, extra), header)
                    continue
                if t == "done":
                    continue
                value = decode_signals(header, body, frame, name, lim)
                if "i" not in header:  # load errors and violations end the run
                    if isinstance(value, BaseException):
                        raise value
                    continue
                if isinstance(value, SandboxError):
                    raise value
                yield int(header["i"]), value
    _LAST.setdefault("zygote", None)


def run_signals(strategy: Any, data: Any, params: Mapping[str, Any] | None = None, *,
                limits: SandboxLimits | Mapping[str, Any] | None = None, allow: Iterable[str] | None = None,
                name: str | None = None, on_log: Callable[[str], None] | None = None) -> Any:
    """Evaluate ``signals(data, **params)`` in a sandboxed child process and return the raw signals.

    ``strategy`` is a :class:`~quantlab.engine.strategy.Strategy` or its source code (the code is
    never executed in this process). ``data`` is the OHLCV frame (or a :class:`SharedData` of it).
    The result is what the strategy returned, rebuilt from numbers only: a ``pd.Series`` (indexed
    like ``data`` when it was), a float array, or ``None``; turn it into targets as the engine does.
    ``on_log`` receives what the strategy printed (default: the ``quantlab.engine.sandbox`` logger).

    Raises :class:`SandboxError` when the code is refused (statically or at run time) or hits a limit,
    :class:`~quantlab.engine.backtest.SignalError` for the strategy's own exception (``.line`` is its
    line), :class:`~quantlab.engine.strategy.StrategyError` when the code cannot be loaded.

    >>> from quantlab.engine import data
    >>> s = run_signals("def signals(data):\\n    return data.close * 0 + 1", data.synthetic(50, seed=1))
    >>> float(s.sum())
    50.0
    """
    got: list[Any] = []
    # read to the end (not just the first frame): the child's log and exit status come after its result
    for _, value in iter_signals(strategy, data, [dict(params or {})], limits=limits, allow=allow, name=name,
                                 batch=False, on_log=on_log):
        got.append(value)
    if not got:
        raise SandboxError("the sandboxed run ended without a result.", kind="internal")
    if isinstance(got[0], BaseException):
        raise got[0]
    return got[0]


# ---------------------------------------------------------------------------------------------
# a Strategy whose code runs only in the sandbox
# ---------------------------------------------------------------------------------------------
class _InspectCache:
    def __init__(self, size: int = 256):
        self.items: collections.OrderedDict = collections.OrderedDict()
        self.size = size
        self.lock = threading.Lock()

    def get(self, key):
        with self.lock:
            v = self.items.get(key)
            if v is not None:
                self.items.move_to_end(key)
            return v

    def put(self, key, value) -> None:
        with self.lock:
            self.items[key] = value
            self.items.move_to_end(key)
            while len(self.items) > self.size:
                self.items.popitem(last=False)


_INSPECT = _InspectCache()


def _ptr(a: Any) -> int:
    import numpy as np

    arr = np.asarray(a)
    return arr.__array_interface__["data"][0] if arr.size else -1


def _same_buffers(a: Any, b: Any) -> bool:
    """``a`` is ``b`` or a shallow copy of it (same index and column buffers): then the shared copy is current."""
    if a is b:
        return True
    try:
        if len(a) != len(b) or list(a.columns) != list(b.columns):
            return False
        if _ptr(a.index.asi8) != _ptr(b.index.asi8):
            return False
        return all(_ptr(a[c].to_numpy()) == _ptr(b[c].to_numpy()) for c in a.columns)
    except Exception:  # noqa: BLE001 - not a frame we can compare: send it
        return False


class _SandboxedFunction:
    """Stands in for ``signals``: calling it evaluates the real one in the sandbox."""

    def __init__(self, code: str, name: str, signature: _inspect.Signature, limits: SandboxLimits,
                 allow: frozenset[str], batch: bool):
        self.code, self.name, self.limits, self.allow = code, name, limits, allow
        self.__signature__ = signature
        self.__name__ = "signals"
        self.__qualname__ = "signals"
        self.__doc__ = f"signals() of strategy {name!r}, evaluated in the sandbox"
        self.__globals__: dict[str, Any] = {}  # no batch hook here: sweeps batch inside the child
        self.batch = batch
        self.shared: SharedData | None = None

    def _data(self, data: Any) -> Any:
        sd = self.shared
        if sd is not None and _same_buffers(data, sd.data):
            return sd
        return data

    def __call__(self, data: Any, **params: Any) -> Any:
        return run_signals(self.code, self._data(data), params, limits=self.limits, allow=self.allow, name=self.name)

    def __repr__(self) -> str:
        return f"<sandboxed signals of {self.name!r}>"


def _inspect_strategy(code: str, name: str, mods: frozenset[str], limits: SandboxLimits) -> dict:
    extra = tuple(sorted(mods - DEFAULT_ALLOW))
    got = _INSPECT.get((code, name, extra))
    if got is not None:
        return got
    for _ in iter_signals(code, _empty_frame(), [], limits=limits, allow=mods, name=name):
        pass
    got = _INSPECT.get((code, name, extra))
    if got is None:
        raise SandboxError(f"strategy {name!r}: the sandbox did not report the strategy's parameters.",
                           kind="internal")
    return got


def _empty_frame():
    import pandas as pd

    return pd.DataFrame({c: pd.Series(dtype="float64") for c in ("open", "high", "low", "close", "volume")},
                        index=pd.DatetimeIndex([], name="time"))


class SandboxedStrategy(Strategy):
    """A :class:`~quantlab.engine.strategy.Strategy` whose code never runs in this process:
    its parameters were read in the sandbox and ``signals`` is evaluated there on every call.
    Build one with :func:`load`; use it wherever a ``Strategy`` goes (``backtest``, ``sweep``).

    >>> s = load("def signals(data, n=3):\\n    return data.close * 0", name="flat")
    >>> s.params, type(s).__name__
    ({'n': 3}, 'SandboxedStrategy')
    """

    def __reduce__(self):
        fn = self._fn
        return (load, (self.code, self.name), {"limits": fn.limits.to_dict(), "allow": sorted(fn.allow)})

    def __setstate__(self, state):  # limits travel with the pickle
        fn = self._fn
        object.__setattr__(fn, "limits", SandboxLimits.coerce(state.get("limits")))
        object.__setattr__(fn, "allow", frozenset(state.get("allow") or ()))

    @property
    def limits(self) -> SandboxLimits:
        return self._fn.limits

    def share(self, shared: SharedData | None) -> None:
        """Calls that get ``shared``'s very frame (or a shallow copy of it) read it from the shared
        memory instead of sending it; a worker caching its data sets this once per run (``None``: send)."""
        self._fn.shared = shared

    def __repr__(self) -> str:
        return f"SandboxedStrategy(name={self.name!r}, params={self.params!r}, sha256={self.sha256[:12]}…)"



def load(code: Any, name: str | None = None, *, limits: SandboxLimits | Mapping[str, Any] | None = None,
         allow: Iterable[str] | None = None, shared: SharedData | None = None) -> Any:
    """A :class:`SandboxedStrategy` for ``code``: checked statically, its parameters read in the sandbox.

    ``code`` may also be a ``Strategy`` (its code is re-loaded in the sandbox). ``shared`` is a
    :class:`SharedData` its calls use when they get that very frame (or a shallow copy of it).

    >>> load("def signals(data, fast=10, slow=50):\\n    return data.close * 0", name="sma").params
    {'fast': 10, 'slow': 50}
    """
    code, name, mods = prepare_strategy(code, name, allow)
    lim = SandboxLimits.coerce(limits)
    info = _inspect_strategy(code, name, mods, lim)
    params = []
    for pname, kind in info["params"]:
        params.append(_inspect.Parameter(pname, _inspect._ParameterKind(int(kind))))
    try:
        sig = _inspect.Signature(params)
    except ValueError:
        sig = _inspect.Signature([_inspect.Parameter("data", _inspect.Parameter.POSITIONAL_OR_KEYWORD),
                                  _inspect.Parameter("params", _inspect.Parameter.VAR_KEYWORD)])
    defaults = {k: v for k, v in (info.get("defaults") or {}).items()
                if not (isinstance(v, dict) and set(v) == {"__repr__"})}
    fn = _SandboxedFunction(code, name, sig, lim, mods, bool(info.get("batch")))
    fn.shared = shared
    return SandboxedStrategy(name=name, code=code, _fn=fn, _params=MappingProxyType(defaults))

