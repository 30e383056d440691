"""The static check: refuse escape hatches before any strategy code runs.

It walks the syntax tree once and refuses, naming the line:

* imports outside the allowlist (``import os``, ``from subprocess import run``),
  relative imports, and refused sub-modules (``numpy.ctypeslib``);
* the builtins that reach outside the strategy: ``__import__``, ``open``,
  ``eval``/``exec``/``compile`` (unless given a constant string that itself
  passes this check), ``globals``, ``locals``, ``vars``, ``breakpoint``,
  ``input``, ``help``, ``exit``/``quit`` and the ``__builtins__`` name;
* dunder and private attributes (``().__class__.__base__.__subclasses__()``,
  ``fn.__globals__``, ``df._mgr``) except a harmless few, frame and code
  attributes (``tb_frame``, ``f_globals``, ``gi_frame``, ``co_code`` ...) and
  attributes that name a system module (``pd.io.common.os``);
* ``getattr``/``setattr``/``delattr``/``hasattr`` with a non-constant name,
  dunder names hidden in string literals and ``str.format`` fields that walk
  attributes of the forbidden kind.

The check is the first of several layers (see ``docs/sandbox.md``): the
sandboxed process enforces the same promises at run time.
"""
from __future__ import annotations

import ast
import re
import string
from typing import Iterable

from ._config import NEVER_ALLOW_SUB, allowed_modules
from ._errors import SandboxError

__all__ = ["check_code"]

REFUSED_BUILTINS = {
    "__import__": "imports a module by name at run time",
    "open": "opens files",
    "globals": "exposes the interpreter's namespaces",
    "locals": "exposes the interpreter's namespaces",
    "vars": "exposes the interpreter's namespaces",
    "breakpoint": "starts a debugger",
    "input": "reads from the terminal",
    "help": "starts the interactive help",
    "exit": "stops the interpreter",
    "quit": "stops the interpreter",
    "__builtins__": "exposes the interpreter's builtins",
    "__loader__": "exposes the module loader",
    "__spec__": "exposes the module loader",
    "memoryview": "reads raw memory",
}
DYNAMIC_CODE = {"eval", "exec", "compile"}
ATTR_FUNCS = {"getattr", "setattr", "delattr", "hasattr"}
SAFE_DUNDERS = {"__init__", "__name__", "__doc__", "__qualname__", "__len__"}
REFUSED_ATTRS = {
    # frames, code and function internals
    "f_globals", "f_locals", "f_builtins", "f_back", "f_code", "f_trace", "tb_frame", "tb_next",
    "gi_frame", "gi_code", "gi_yieldfrom", "cr_frame", "cr_code", "cr_await", "ag_frame", "ag_code",
    "co_code", "co_consts", "func_globals", "func_code", "mro",
    # modules reachable through allowed packages
    "os", "sys", "subprocess", "builtins", "ctypes", "ctypeslib", "importlib", "socket", "shutil",
    "pathlib", "posix", "signal", "pickle", "marshal", "io", "system", "popen", "fork", "execv",
    "execve", "spawnv", "load_library", "dlopen", "f2py", "distutils", "testing",
}
_DUNDER_IN_STR = re.compile(r"__[A-Za-z_][A-Za-z0-9_]*__")


def _attr_problem(attr: str, *, owner: ast.AST | None = None) -> str | None:
    if attr.startswith("__") and attr.endswith("__"):
        if attr in SAFE_DUNDERS:
            return None
        return f"the dunder attribute `.{attr}` (reaches the interpreter's internals)"
    if attr in REFUSED_ATTRS:
        return f"the attribute `.{attr}` (reaches system modules, frames or code objects)"
    if attr.startswith("_") and not (isinstance(owner, ast.Name) and owner.id in {"self", "cls"}):
        return f"the private attribute `.{attr}` (use the public API)"
    return None


class _Checker(ast.NodeVisitor):
    def __init__(self, allow: frozenset[str], name: str):
        self.allow = allow
        self.name = name

    def fail(self, node: ast.AST, what: str, hint: str = "") -> None:
        line = getattr(node, "lineno", None)
        where = f"line {line}" if line else "the code"
        raise SandboxError(
            f"strategy {self.name!r}, {where}: {what} is not allowed in strategy code{hint}.",
            kind="static", line=line,
        )

    # -- imports ----------------------------------------------------------------
    def _module(self, node: ast.AST, mod: str) -> None:
        top = mod.split(".")[0]
        if top not in self.allow:
            self.fail(node, f"`import {mod}`",
                      f"; strategies may import {', '.join(sorted(a for a in self.allow if a != '__future__'))} "
                      "(add more with [tool.quantlab.sandbox] allow = [...] in quantlab.toml or QUANTLAB_SANDBOX_ALLOW)")
        for sub in NEVER_ALLOW_SUB:
            if mod == sub or mod.startswith(sub + "."):
                self.fail(node, f"`import {mod}`", " (it loads native code, files or test helpers)")

    def visit_Import(self, node: ast.Import) -> None:
        for a in node.names:
            self._module(node, a.name)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        if node.level:
            self.fail(node, "a relative import")
        mod = node.module or ""
        self._module(node, mod)
        for a in node.names:
            if a.name == "*":
                continue
            self._module(node, f"{mod}.{a.name}")
            problem = _attr_problem(a.name)
            if problem:
                self.fail(node, f"importing {problem[4:]}")

    # -- names, attributes, calls ---------------------------------------------
    def visit_Name(self, node: ast.Name) -> None:
        if node.id in REFUSED_BUILTINS:
            self.fail(node, f"`{node.id}` ({REFUSED_BUILTINS[node.id]})")
        if node.id in DYNAMIC_CODE and not getattr(node, "_ql_checked_call", False):
            self.fail(node, f"`{node.id}` (runs code built at run time)")
        if node.id in ATTR_FUNCS and not getattr(node, "_ql_checked_call", False):
            self.fail(node, f"`{node.id}` used as a value (it reaches attributes by dynamic names)")

    def visit_Attribute(self, node: ast.Attribute) -> None:
        problem = _attr_problem(node.attr, owner=node.value)
        if problem:
            self.fail(node, problem)
        self.generic_visit(node)

    def visit_Call(self, node: ast.Call) -> None:
        f = node.func
        if isinstance(f, ast.Name) and f.id in DYNAMIC_CODE:
            arg = node.args[0] if node.args else None
            if not (isinstance(arg, ast.Constant) and isinstance(arg.value, str)):
                self.fail(node, f"`{f.id}()` on a string built at run time", "; write the code itself instead")
            try:
                inner = ast.parse(arg.value, mode="eval" if f.id == "eval" else "exec")
            except SyntaxError:
                self.fail(node, f"`{f.id}()` of code that does not parse")
            sub = _Checker(self.allow, self.name)
            for n in ast.walk(inner):
                if hasattr(n, "lineno"):
                    n.lineno = node.lineno
            sub.visit(inner)
            f._ql_checked_call = True  # type: ignore[attr-defined]
        if isinstance(f, ast.Name) and f.id in ATTR_FUNCS:
            arg = node.args[1] if len(node.args) > 1 else None
            if not (isinstance(arg, ast.Constant) and isinstance(arg.value, str)):
                self.fail(node, f"`{f.id}()` with an attribute name built at run time",
                          "; write the attribute itself (obj.name)")
            problem = _attr_problem(arg.value, owner=node.args[0])
            if problem:
                self.fail(node, problem)
            f._ql_checked_call = True  # type: ignore[attr-defined]
        if isinstance(f, ast.Attribute) and f.attr in {"format", "format_map"}:
            if isinstance(f.value, ast.Constant) and isinstance(f.value.value, str):
                self._format_fields(node, f.value.value)
            else:
                self.fail(node, f"`.{f.attr}()` on a format string built at run time", "; use an f-string")
        self.generic_visit(node)

    def _format_fields(self, node: ast.AST, fmt: str) -> None:
        try:
            fields = [fld for _, fld, spec, _ in string.Formatter().parse(fmt) if fld]
        except ValueError:
            return
        for fld in fields:
            for attr in re.findall(r"\.([A-Za-z_][A-Za-z0-9_]*)", fld):
                problem = _attr_problem(attr)
                if problem:
                    self.fail(node, f"a format field reaching {problem[4:]}")

    def visit_Constant(self, node: ast.Constant) -> None:
        if isinstance(node.value, (str, bytes)):
            text = node.value if isinstance(node.value, str) else node.value.decode("latin-1")
            m = _DUNDER_IN_STR.search(text)
            if m and m.group(0) not in SAFE_DUNDERS:
                self.fail(node, f"the dunder name {m.group(0)!r} inside a string",
                          " (strings like this are used to reach the interpreter's internals)")

    def visit_MatchClass(self, node: ast.MatchClass) -> None:
        for attr in node.kwd_attrs:
            problem = _attr_problem(attr)
            if problem:
                self.fail(node, f"a match pattern on {problem[4:]}")
        self.generic_visit(node)

    def visit_Global(self, node: ast.Global) -> None:
        for n in node.names:
            if n in REFUSED_BUILTINS:
                self.fail(node, f"`global {n}`")


_CACHE: dict[tuple[str, str, frozenset[str]], None] = {}


def check_code(code: str, *, allow: Iterable[str] | None = None, name: str = "strategy") -> None:
    """Refuse strategy code that reaches outside the sandbox, before anything runs.

    ``allow`` adds importable modules for this check (on top of the defaults and the
    configured ones). Raises :class:`SandboxError` (``kind="static"``) naming the line
    and what to do; returns ``None`` when the code is acceptable. A syntax error is a
    :class:`~quantlab.engine.strategy.StrategyError` as for any strategy.

    Example
    -------
    >>> check_code("import numpy as np\\ndef signals(data):\\n    return np.sign(data.close.diff())")
    >>> check_code("def signals(data):\\n    return ().__class__.__base__.__subclasses__()")
    Traceback (most recent call last):
    ...
    quantlab.engine.sandbox._errors.SandboxError: strategy 'strategy', line 2: the dunder attribute `.__subclasses__` (reaches the interpreter's internals) is not allowed in strategy code.
    """
    mods = allowed_modules(allow)
    key = (code, name, mods)
    if key in _CACHE:
        return
    from quantlab.engine.strategy import StrategyError

    if not isinstance(code, str):
        raise StrategyError(f"strategy {name!r}: the code must be a string, got {type(code).__name__}.")
    try:
        tree = ast.parse(code, filename=f"<strategy {name}>")
    except SyntaxError as exc:
        raise StrategyError(f"strategy {name!r}: syntax error on line {exc.lineno}: {exc.msg}") from None
    # the checker marks call targets it vetted; visit calls before their names (pre-order does that)
    _Checker(mods, name).visit(tree)
    if len(_CACHE) > 512:
        _CACHE.clear()
    _CACHE[key] = None
