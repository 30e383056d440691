"""Which modules strategy code may import, and how a user extends the list.

The default allowlist is :data:`DEFAULT_ALLOW`. A user adds modules (top-level
names) in configuration, never per request:

* ``[tool.quantlab.sandbox] allow = ["scipy", "talib"]`` in ``quantlab.toml``
  or ``pyproject.toml`` (the first of these found in the current directory or
  a parent that has the table);
* ``QUANTLAB_SANDBOX_ALLOW="scipy,talib"`` in the environment.

Some modules can never be allowed (:data:`NEVER_ALLOW`): they are the escape
hatches the sandbox exists to close.

Example
-------
>>> "numpy" in allowed_modules()
True
>>> sorted(allowed_modules(["scipy"]) - allowed_modules())
['scipy']
"""
from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Iterable

__all__ = ["DEFAULT_ALLOW", "NEVER_ALLOW", "allowed_modules", "configured_allow"]

#: imports strategy code may use without configuration
DEFAULT_ALLOW = frozenset({
    "numpy", "pandas", "math", "cmath", "statistics", "numbers", "decimal", "fractions", "random",
    "itertools", "functools", "operator", "collections", "heapq", "bisect", "array", "copy",
    "dataclasses", "enum", "typing", "datetime", "re", "string", "warnings", "__future__",
})

#: never importable from strategy code, whatever the configuration says
NEVER_ALLOW = frozenset({
    "os", "sys", "subprocess", "socket", "ctypes", "_ctypes", "cffi", "importlib", "builtins", "posix",
    "_posixsubprocess", "multiprocessing", "_multiprocessing", "threading", "_thread", "signal", "pty",
    "fcntl", "mmap", "resource", "shutil", "tempfile", "pathlib", "io", "_io", "pickle", "_pickle",
    "marshal", "code", "codeop", "inspect", "gc", "asyncio", "concurrent", "selectors", "select", "ssl",
    "_socket", "http", "urllib", "ftplib", "smtplib", "telnetlib", "xmlrpc", "webbrowser", "runpy",
    "pdb", "faulthandler", "sysconfig", "site", "zipimport", "quantlab", "glob", "fileinput", "shelve",
    "dbm", "sqlite3", "pyarrow", "requests", "httpx",
})

#: sub-modules of allowed packages that stay refused (native code loaders, file/network helpers)
NEVER_ALLOW_SUB = frozenset({
    "numpy.ctypeslib", "numpy.distutils", "numpy.f2py", "numpy.testing", "pandas.io.clipboard",
    "pandas.io.clipboards", "pandas.util._print_versions",
})

_SPLIT = re.compile(r"[\s,;]+")


#: parsed ``allow`` lists by (path, mtime, size): every sandboxed call reads the configuration, and
#: parsing a project's pyproject.toml costs ~1.5 ms; a changed file is read again
_TOML_CACHE: dict[tuple[str, int, int], list[str] | None] = {}


def _toml_allow(path: Path) -> list[str] | None:
    try:
        st = path.stat()
    except OSError:
        return None
    key = (str(path), st.st_mtime_ns, st.st_size)
    if key not in _TOML_CACHE:
        if len(_TOML_CACHE) > 64:
            _TOML_CACHE.clear()
        _TOML_CACHE[key] = _read_toml_allow(path)
    found = _TOML_CACHE[key]
    return None if found is None else list(found)


def _read_toml_allow(path: Path) -> list[str] | None:
    try:
        import tomllib
    except ImportError:  # pragma: no cover - Python < 3.11
        return None
    try:
        doc = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    table = doc.get("tool", {}).get("quantlab", {}).get("sandbox") if isinstance(doc.get("tool"), dict) else None
    if not isinstance(table, dict) or "allow" not in table:
        return None
    allow = table["allow"]
    if isinstance(allow, str):
        allow = [allow]
    return [str(a) for a in allow if isinstance(a, str)]


def configured_allow(start: str | os.PathLike[str] | None = None) -> list[str]:
    """Modules added in configuration (``quantlab.toml``/``pyproject.toml`` and ``QUANTLAB_SANDBOX_ALLOW``).

    >>> os.environ["QUANTLAB_SANDBOX_ALLOW"] = "scipy, talib"
    >>> configured_allow("/")
    ['scipy', 'talib']
    >>> del os.environ["QUANTLAB_SANDBOX_ALLOW"]
    """
    found: list[str] = []
    here = Path(start or os.getcwd()).resolve()
    for d in (here, *here.parents):
        for fname in ("quantlab.toml", "pyproject.toml"):
            p = d / fname
            if p.is_file():
                got = _toml_allow(p)
                if got is not None:
                    found.extend(got)
                    break
        else:
            continue
        break
    found.extend(a for a in _SPLIT.split(os.environ.get("QUANTLAB_SANDBOX_ALLOW", "")) if a)
    out: list[str] = []
    for a in found:
        a = a.strip()
        if a and a not in out:
            out.append(a)
    return out


def allowed_modules(allow: Iterable[str] | None = None) -> frozenset[str]:
    """The full allowlist: defaults, configuration and ``allow``, minus :data:`NEVER_ALLOW`."""
    extra = set(configured_allow()) | set(allow or ())
    tops = {a.split(".")[0] for a in extra if a and a.replace(".", "").replace("_", "").isalnum()}
    return frozenset((DEFAULT_ALLOW | tops) - NEVER_ALLOW)
