"""The strategy contract.

A strategy is plain Python source that defines one function::

    def signals(data: pd.DataFrame, **params) -> pd.Series

returning the *target position* for every bar, a number in ``[-1, 1]``
(``1`` = fully long, ``-1`` = fully short, ``0`` = flat). Keyword parameters
with defaults are the strategy's tunable parameters.

``signals`` must be causal (bar t's target may use only bars up to t): the paper
broker evaluates it on a sliding window as new bars arrive. A strategy may also
define ``signals_many(data, params: list[dict]) -> 2-D array`` (one column per
parameter set) to speed up :func:`quantlab.sweep`; it is optional.

Example
-------
>>> code = '''
... import pandas as pd
... def signals(data, fast=10, slow=50):
...     f = data.close.rolling(fast).mean()
...     s = data.close.rolling(slow).mean()
...     return (f > s).astype(float)
... '''
>>> s = Strategy.from_code(code, name="SMA cross")
>>> s.params
{'fast': 10, 'slow': 50}
"""
from __future__ import annotations

from quantlab._util.errors import QuantlabErrorMixin

import ast
import hashlib
import html
import inspect
import os
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, Callable, Mapping

__all__ = ["Strategy", "StrategyError", "default_params"]


class StrategyError(QuantlabErrorMixin, ValueError):
    """Strategy source that cannot be used: it does not parse, has no
    ``signals`` function, or its signature does not accept the parameters."""


def _check_source(code: str, name: str) -> None:
    if not isinstance(code, str) or not code.strip():
        raise StrategyError(f"strategy {name!r}: the code is empty; define `def signals(data, **params)`.")
    if "\x00" in code:
        raise StrategyError(f"strategy {name!r}: the code contains a NUL byte.")
    try:
        tree = ast.parse(code, filename=f"<strategy {name}>")
    except SyntaxError as exc:
        raise StrategyError(
            f"strategy {name!r}: syntax error on line {exc.lineno}: {exc.msg}"
            + (f"\n    {exc.text.rstrip()}" if exc.text else "")
        ) from None
    defs = [n for n in tree.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)) and n.name == "signals"]
    if not defs:
        raise StrategyError(
            f"strategy {name!r}: no top-level `signals` function; "
            "define `def signals(data, **params) -> pd.Series` returning target positions in [-1, 1]."
        )
    if isinstance(defs[-1], ast.AsyncFunctionDef):
        raise StrategyError(f"strategy {name!r}: `signals` must be a plain function, not `async def`.")


def _load_function(code: str, name: str) -> Callable[..., Any]:
    namespace: dict[str, Any] = {"__name__": f"quantlab_strategy_{abs(hash(name)) % 10**8}"}
    try:
        exec(compile(code, f"<strategy {name}>", "exec"), namespace)
    except Exception as exc:  # noqa: BLE001 - user code can raise anything at import time
        raise StrategyError(f"strategy {name!r}: the code raised while loading: {type(exc).__name__}: {exc}") from exc
    fn = namespace.get("signals")
    if not callable(fn):
        raise StrategyError(f"strategy {name!r}: `signals` is not callable after running the code.")
    return fn


def default_params(fn: Callable[..., Any], name: str) -> dict[str, Any]:
    """The default parameters of a ``signals(data, **params)`` function (what ``Strategy.params`` holds).

    >>> def signals(data, fast=10, *, slow=50): ...
    >>> default_params(signals, "sma")
    {'fast': 10, 'slow': 50}
    """
    sig = inspect.signature(fn)
    params = list(sig.parameters.values())
    if not params or params[0].kind not in (params[0].POSITIONAL_ONLY, params[0].POSITIONAL_OR_KEYWORD):
        raise StrategyError(f"strategy {name!r}: `signals` must take the data frame as its first argument.")
    return {
        p.name: p.default
        for p in params[1:]
        if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and p.default is not p.empty
    }


@dataclass(frozen=True, eq=False)
class Strategy:
    """A checked strategy: its ``name``, source ``code``, default ``params`` and ``sha256``.

    Build one with :meth:`from_code` or :meth:`from_file`; call it like the
    function it wraps (``strategy(data, **params)``) or use :meth:`signals`.

    Example
    -------
    >>> s = Strategy.from_code("def signals(data, n=3):\\n    return data.close * 0 + 1", name="long")
    >>> s.name, s.params
    ('long', {'n': 3})
    """

    name: str
    code: str
    _fn: Callable[..., Any] = field(repr=False, compare=False)
    _params: Mapping[str, Any] = field(repr=False, compare=False)

    # -- construction -------------------------------------------------------
    @classmethod
    def from_code(cls, code: str, name: str | None = None) -> "Strategy":
        """Check ``code`` and build a strategy named ``name``.

        Raises :class:`StrategyError` with the reason if the code does not parse,
        does not define ``signals``, or raises while loading.

        >>> Strategy.from_code("def signals(data):\\n    return data.close * 0", name="flat").params
        {}
        """
        name = (name or "strategy").replace("\x00", "").strip() or "strategy"
        _check_source(code, name)
        fn = _load_function(code, name)
        return cls(name=name, code=code, _fn=fn, _params=MappingProxyType(default_params(fn, name)))

    @classmethod
    def from_file(cls, path: str | Path, name: str | None = None) -> "Strategy":
        """Load a strategy from a ``.py`` file; the name defaults to the file stem.

        >>> Strategy.from_file("my_strategy.py")  # doctest: +SKIP
        """
        p = Path(path)
        if not p.is_file():
            raise FileNotFoundError(f"strategy file not found: {p} (give the path to a .py file that defines `signals`).")
        return cls.from_code(p.read_text(encoding="utf-8"), name=name or p.stem)

    @classmethod
    def coerce(cls, strategy: "Strategy | str | os.PathLike[str]", name: str | None = None) -> "Strategy":
        """The one way any quantlab entry point turns its ``strategy`` argument into a :class:`Strategy`.

        A :class:`Strategy` is returned as is; a path to a ``.py`` file (a ``str`` ending in
        ``.py`` without a newline, or a ``PathLike``) is loaded with :meth:`from_file`; any other
        ``str`` is source code for :meth:`from_code`. ``name`` names a strategy built here.
        Anything else raises ``TypeError`` saying what to pass.

        >>> Strategy.coerce("def signals(data):\\n    return data.close * 0", name="flat").name
        'flat'
        >>> s = Strategy.coerce("def signals(data):\\n    return data.close * 0")
        >>> Strategy.coerce(s) is s
        True
        >>> Strategy.coerce(42)
        Traceback (most recent call last):
        ...
        TypeError: strategy must be a quantlab Strategy, its source code or the path of a .py file, got int.
        """
        if isinstance(strategy, cls):
            return strategy
        if isinstance(strategy, os.PathLike) or (
                isinstance(strategy, str) and strategy.rstrip().endswith(".py") and "\n" not in strategy):
            return cls.from_file(os.fspath(strategy).strip(), name=name)
        if isinstance(strategy, str):
            return cls.from_code(strategy, name=name)
        raise TypeError("strategy must be a quantlab Strategy, its source code or the path of a .py file, "
                        f"got {type(strategy).__name__}.")

    # -- properties -----------------------------------------------------------
    @property
    def params(self) -> dict[str, Any]:
        """Default parameters, read from the keyword defaults of ``signals``."""
        return dict(self._params)

    @property
    def sha256(self) -> str:
        """Hex SHA-256 of the UTF-8 source code (identifies the code, not the name)."""
        return hashlib.sha256(self.code.encode("utf-8")).hexdigest()

    @property
    def function(self) -> Callable[..., Any]:
        """The ``signals`` function itself."""
        return self._fn

    # -- use ---------------------------------------------------------------------
    def resolve_params(self, params: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Defaults overlaid with ``params``; unknown names raise :class:`StrategyError`.

        >>> s = Strategy.from_code("def signals(data, n=3):\\n    return data.close * 0", name="x")
        >>> s.resolve_params({"n": 5})
        {'n': 5}
        """
        merged = self.params
        if params:
            sig = inspect.signature(self._fn)
            accepts_kwargs = any(p.kind == p.VAR_KEYWORD for p in sig.parameters.values())
            known = set(sig.parameters) - {next(iter(sig.parameters))}
            unknown = [k for k in params if k not in known]
            if unknown and not accepts_kwargs:
                raise StrategyError(
                    f"strategy {self.name!r}: unknown parameter(s) {', '.join(map(repr, unknown))}; "
                    f"`signals` accepts {sorted(known) or 'no parameters'}."
                )
            merged.update(params)
        return merged

    def signals(self, data: Any, **params: Any) -> Any:
        """Call the strategy's ``signals(data, **params)`` with defaults filled in."""
        return self._fn(data, **self.resolve_params(params))

    __call__ = signals

    # -- display -----------------------------------------------------------------
    def __repr__(self) -> str:
        return f"Strategy(name={self.name!r}, params={self.params!r}, sha256={self.sha256[:12]}…)"

    def _repr_html_(self) -> str:
        params = ", ".join(f"{html.escape(k)}={html.escape(repr(v))}" for k, v in self.params.items()) or "—"
        return (
            f"<div><b>Strategy</b> <code>{html.escape(self.name)}</code> "
            f"<small>sha256 {self.sha256[:12]}…</small><br>params: {params}"
            f"<details><summary>code</summary><pre>{html.escape(self.code)}</pre></details></div>"
        )

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Strategy) and (self.name, self.code) == (other.name, other.code)

    def __hash__(self) -> int:
        return hash((self.name, self.code))

    def __reduce__(self):  # picklable for process pools and dask
        return (Strategy.from_code, (self.code, self.name))
