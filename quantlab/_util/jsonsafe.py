"""JSON for values JSON has not got: non-finite floats travel as the strings ``"nan"``, ``"inf"``, ``"-inf"``.

Everything quantlab sends over MCP, writes to a commit trailer's metadata or to a ledger
uses this one rule, and :func:`decode_number` reads it back.

>>> import json
>>> text = json.dumps(to_jsonable({"sharpe": 1.5, "profit_factor": float("inf"), "n": (1, 2)}))
>>> text
'{"sharpe": 1.5, "profit_factor": "inf", "n": [1, 2]}'
>>> {k: decode_number(v) for k, v in json.loads(text).items()}["profit_factor"]
inf
"""
from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import date, datetime
from pathlib import PurePath
from typing import Any, Callable

__all__ = ["encode_float", "decode_number", "to_jsonable", "json_default", "NONFINITE"]

#: the strings non-finite floats become
NONFINITE = ("nan", "inf", "-inf")
_READ = {"nan": math.nan, "inf": math.inf, "+inf": math.inf, "-inf": -math.inf,
         "infinity": math.inf, "+infinity": math.inf, "-infinity": -math.inf}


def encode_float(x: float) -> float | str:
    """``x`` itself when finite, else ``"nan"``, ``"inf"`` or ``"-inf"``.

    >>> encode_float(2.5), encode_float(float("-inf")), encode_float(float("nan"))
    (2.5, '-inf', 'nan')
    """
    x = float(x)
    if math.isfinite(x):
        return x
    return "nan" if math.isnan(x) else ("inf" if x > 0 else "-inf")


def decode_number(value: Any) -> Any:
    """Undo :func:`encode_float`: ``"inf"``/``"-inf"``/``"nan"`` (any case, also ``"infinity"``)
    become floats; everything else is returned unchanged.

    >>> decode_number("inf"), decode_number("NaN"), decode_number(2), decode_number("two")
    (inf, nan, 2, 'two')
    """
    if isinstance(value, str):
        key = value.strip().lower()
        if key in _READ:
            return _READ[key]
    return value


def to_jsonable(value: Any, *, fallback: Callable[[Any], Any] = str) -> Any:
    """``value`` made JSON-safe, recursively.

    Non-finite floats become strings (:func:`encode_float`); numpy scalars and arrays,
    pandas objects (``tolist``/``to_dict``), dates and timestamps (ISO text), paths and sets
    (sorted) become plain JSON; bools and ``None`` stay. Anything else goes through
    ``fallback`` (``str`` by default; ``repr`` keeps a type visible).

    >>> to_jsonable({"pf": float("inf"), "n": (1, 2), "s": {3, 1}})
    {'pf': 'inf', 'n': [1, 2], 's': [1, 3]}
    >>> to_jsonable(object(), fallback=lambda o: "?")
    '?'
    """
    if value is None or isinstance(value, (str, bool)):
        return value
    if isinstance(value, float):
        return encode_float(value)
    if isinstance(value, int):
        return value
    if isinstance(value, Mapping):
        return {str(k): to_jsonable(v, fallback=fallback) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        items = sorted(value, key=repr) if isinstance(value, (set, frozenset)) else value
        return [to_jsonable(v, fallback=fallback) for v in items]
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    if isinstance(value, PurePath):
        return str(value)
    item = getattr(value, "item", None)  # numpy scalars
    if callable(item) and getattr(value, "shape", None) == ():
        return to_jsonable(item(), fallback=fallback)
    tolist = getattr(value, "tolist", None)  # numpy arrays, pandas Series/Index
    if callable(tolist):
        return to_jsonable(tolist(), fallback=fallback)
    isoformat = getattr(value, "isoformat", None)  # pandas Timestamp
    if callable(isoformat):
        return isoformat()
    to_dict = getattr(value, "to_dict", None)
    if callable(to_dict):
        return to_jsonable(to_dict(), fallback=fallback)
    return fallback(value)


def json_default(obj: Any) -> Any:
    """A ``default=`` for :func:`json.dumps` that turns numpy scalars/arrays, dates and paths into
    JSON (floats are kept as numbers, so ``allow_nan`` decides about non-finite ones); raises
    ``TypeError`` for anything else, as :mod:`json` expects.

    >>> import json
    >>> json.dumps({"when": date(2024, 1, 2)}, default=json_default)
    '{"when": "2024-01-02"}'
    """
    if isinstance(obj, (datetime, date)):
        return obj.isoformat()
    if isinstance(obj, PurePath):
        return str(obj)
    item = getattr(obj, "item", None)
    if callable(item) and getattr(obj, "shape", None) == ():
        return item()
    tolist = getattr(obj, "tolist", None)
    if callable(tolist):
        return tolist()
    isoformat = getattr(obj, "isoformat", None)
    if callable(isoformat):
        return isoformat()
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")
