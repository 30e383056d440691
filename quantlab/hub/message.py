"""The commit message of a stored strategy, and JSON-safe values.

The message has exactly this shape (then Git trailers, readable with
``git interpret-trailers --parse`` or ``git log --format=%(trailers)``)::

    Strategy: <name>
    Backtest Results:
      - Sharpe Ratio: <value>
      - Max Drawdown: <value>%
      - Profit Factor: <value>
      - Generated: <ISO timestamp>

    Quantlab-Run: <run id>
    Quantlab-Code-SHA256: <hash>

Formatting of the values:

* numbers are shown with 2 decimals (``1.2345`` -> ``1.23``; ``-0.00`` is shown as ``0.00``);
* ``max_drawdown`` is a positive fraction of equity (``0.1234``) and is shown as
  a percentage (``12.34%``); a negative value (some libraries sign drawdowns) is
  shown by its magnitude;
* ``inf`` / ``-inf`` are shown as ``inf`` / ``-inf`` (a profit factor is ``inf``
  when there is no losing trade); a missing or NaN value is shown as ``nan``;
* the timestamp is ISO 8601 in UTC with seconds (``2026-11-24T21:43:37+00:00``);
* line breaks and other control characters in the name or run id are replaced
  by spaces so the shape cannot be broken; a result without a run id shows
  ``Quantlab-Run: unknown``.

Example
-------
>>> print(commit_message("SMA", {"sharpe": 1.234, "max_drawdown": 0.1, "profit_factor": float("inf")},
...                      "2026-01-02T03:04:05+00:00", "run-1", "ab" * 32), end="")
Strategy: SMA
Backtest Results:
  - Sharpe Ratio: 1.23
  - Max Drawdown: 10.00%
  - Profit Factor: inf
  - Generated: 2026-01-02T03:04:05+00:00
<BLANKLINE>
Quantlab-Run: run-1
Quantlab-Code-SHA256: abababababababababababababababababababababababababababababababab
"""
from __future__ import annotations

import math
import re
from typing import Any, Mapping

from quantlab._util import decode_number
# the JSON rule for non-finite numbers lives in quantlab._util.jsonsafe; these names stay importable from here
from quantlab._util import decode_number as from_jsonable_number  # noqa: F401
from quantlab._util import to_jsonable  # noqa: F401

__all__ = ["commit_message", "format_number", "format_drawdown", "one_line"]

_CONTROL = re.compile(r"[\x00-\x1f\x7f\u2028\u2029]+")


def one_line(text: object) -> str:
    """``text`` as one line: control characters (newlines, tabs, NUL) become single spaces.

    >>> one_line("a\\nb\\tc")
    'a b c'
    """
    return _CONTROL.sub(" ", str(text)).strip()


def _as_float(value: Any) -> float:
    value = decode_number(value)
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def format_number(value: Any, decimals: int = 2) -> str:
    """``1.2345`` -> ``'1.23'``, ``inf`` -> ``'inf'``, ``None``/NaN -> ``'nan'``.

    >>> format_number(float("-inf")), format_number(None), format_number(-0.001)
    ('-inf', 'nan', '0.00')
    """
    x = _as_float(value)
    if math.isnan(x):
        return "nan"
    if math.isinf(x):
        return "inf" if x > 0 else "-inf"
    text = f"{x:.{decimals}f}"
    return text[1:] if text.startswith("-") and float(text) == 0 else text


def format_drawdown(value: Any, decimals: int = 2) -> str:
    """A drawdown fraction as a percentage number (no ``%`` sign): ``0.1234`` -> ``'12.34'``.

    >>> format_drawdown(0.1234), format_drawdown(-0.05)
    ('12.34', '5.00')
    """
    x = _as_float(value)
    return format_number(abs(x) * 100 if not math.isnan(x) else x, decimals)


def commit_message(name: str, metrics: Mapping[str, Any], generated: str, run_id: str, code_sha256: str) -> str:
    """The commit message for a stored strategy (ends with one newline). See the module doc."""
    return (
        f"Strategy: {one_line(name) or 'strategy'}\n"
        "Backtest Results:\n"
        f"  - Sharpe Ratio: {format_number(metrics.get('sharpe'))}\n"
        f"  - Max Drawdown: {format_drawdown(metrics.get('max_drawdown'))}%\n"
        f"  - Profit Factor: {format_number(metrics.get('profit_factor'))}\n"
        f"  - Generated: {one_line(generated)}\n"
        "\n"
        f"Quantlab-Run: {one_line(run_id) or 'unknown'}\n"
        f"Quantlab-Code-SHA256: {code_sha256}\n"
    )
