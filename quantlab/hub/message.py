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
    Quantlab-Params: {"fast": 10, "slow": 100}        (what the numbers mean: the
    Quantlab-Data: sample                            backtest's params, data reference,
    Quantlab-Bar-Size: 1h                            bar size and costs; each line only
    Quantlab-Costs: fees=0.0002 slippage=0 cash=100000   when known)

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

__all__ = ["commit_message", "context_trailers", "format_bar_size", "format_number", "format_drawdown", "one_line"]

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


def format_bar_size(seconds: Any) -> str | None:
    """A bar size in seconds as ``'1min'``, ``'4h'``, ``'1d'`` (``None`` when unknown).

    >>> format_bar_size(60), format_bar_size(14400), format_bar_size(86400), format_bar_size(None)
    ('1min', '4h', '1d', None)
    """
    x = _as_float(seconds)
    if math.isnan(x) or x <= 0:
        return None
    s = int(round(x))
    for size, unit in ((86400, "d"), (3600, "h"), (60, "min")):
        if s % size == 0:
            return f"{s // size}{unit}"
    return f"{s}s"


def context_trailers(params: Any = None, data_ref: Any = None, bar_seconds: Any = None,
                     costs: Mapping[str, Any] | None = None) -> str:
    """The trailers that say what a backtest's numbers mean: params, data, bar size, costs.

    >>> print(context_trailers({"fast": 10}, "sample", 3600, {"fees": 0.0002, "slippage": 0.0, "cash": 100000.0}), end="")
    Quantlab-Params: {"fast": 10}
    Quantlab-Data: sample
    Quantlab-Bar-Size: 1h
    Quantlab-Costs: fees=0.0002 slippage=0 cash=100000
    """
    import json

    lines = []
    if params is not None:
        lines.append(f"Quantlab-Params: {one_line(json.dumps(params, sort_keys=True, default=str))}")
    if data_ref:
        lines.append(f"Quantlab-Data: {one_line(data_ref)}")
    bar = format_bar_size(bar_seconds)
    if bar:
        lines.append(f"Quantlab-Bar-Size: {bar}")
    if costs:
        lines.append("Quantlab-Costs: " + " ".join(
            f"{k}={_as_float(costs[k]):g}" for k in ("fees", "slippage", "cash") if k in costs))
    return "".join(f"{line}\n" for line in lines)


def commit_message(name: str, metrics: Mapping[str, Any], generated: str, run_id: str, code_sha256: str,
                   *, context: str = "") -> str:
    """The commit message for a stored strategy (ends with one newline). See the module doc.

    ``context`` (from :func:`context_trailers`) follows the seed's two trailers."""
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
        f"{context}"
    )
