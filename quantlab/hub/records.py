"""What the assets hub hands back and records: :class:`StoredStrategy`, :class:`CodeDiff`, and the
metadata a store reads from a backtest result.

>>> normalize_source("notebook cell")
{'type': 'notebook cell'}
>>> canonical_json({"slow": 50, "fast": 10})
'{"fast":10,"slow":50}'
"""
from __future__ import annotations

import html
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from quantlab._util import decode_number, to_jsonable
from quantlab._util import html as qh
from quantlab.engine.strategy import Strategy

from .message import format_drawdown, format_number
from .slug import BOTS_DIR

__all__ = ["StoredStrategy", "CodeDiff", "result_fields", "split_result", "normalize_source", "canonical_json"]


@dataclass(frozen=True)
class StoredStrategy:
    """A strategy stored in the hub: its ``name``, ``.py`` ``path`` (absolute, in the
    working tree), the ``commit`` that stored it, the code ``sha256`` and the
    ``metadata`` written next to it.

    >>> stored = hub.store(strategy, result)       # doctest: +SKIP
    >>> stored.commit[:7], stored.file             # doctest: +SKIP
    ('3f2a9c1', 'generated_bots/sma_20261124-214337.py')
    """

    name: str
    path: Path
    commit: str
    sha256: str
    metadata: dict[str, Any] = field(repr=False)

    @property
    def file(self) -> str:
        """The ``.py`` path relative to the hub root (POSIX)."""
        return str(self.metadata.get("file") or f"{BOTS_DIR}/{self.path.name}")

    @property
    def metadata_path(self) -> Path:
        """The sibling ``.json`` metadata file."""
        return self.path.with_suffix(".json")

    @property
    def metrics(self) -> dict[str, Any]:
        """The backtest metrics (``inf``/``nan`` restored as floats)."""
        return {k: decode_number(v) for k, v in (self.metadata.get("metrics") or {}).items()}

    @property
    def params(self) -> dict[str, Any]:
        """The parameters the backtest ran with."""
        return dict(self.metadata.get("params") or {})

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe: ``name, file, commit, sha256, metadata``."""
        return {"name": self.name, "file": self.file, "commit": self.commit, "sha256": self.sha256,
                "metadata": to_jsonable(self.metadata)}

    @property
    def short(self) -> str:
        """The first 12 hex digits of the commit."""
        return self.commit[:12]

    def __repr__(self) -> str:
        m = self.metrics
        return (
            f"StoredStrategy(name={self.name!r}, commit={self.short}, file={self.file!r}, "
            f"sharpe={format_number(m.get('sharpe'))}, max_drawdown={format_drawdown(m.get('max_drawdown'))}%, "
            f"profit_factor={format_number(m.get('profit_factor'))})"
        )

    def _repr_html_(self) -> str:
        m = self.metrics
        rows = [
            ("commit", f"<code>{self.short}</code>"),
            ("file", f"<code>{html.escape(self.file)}</code>"),
            ("Sharpe", format_number(m.get("sharpe"))),
            ("max drawdown", format_drawdown(m.get("max_drawdown")) + "%"),
            ("profit factor", format_number(m.get("profit_factor"))),
            ("params", html.escape(json.dumps(self.params))),
            ("run", html.escape(str(self.metadata.get("run_id")))),
            ("code sha256", f"<code>{self.sha256[:12]}…</code>"),
        ]
        table = qh.kv_table((k, qh.raw(v)) for k, v in rows)
        return f"<div><b>Stored strategy</b> <code>{html.escape(self.name)}</code>{table}</div>"


class CodeDiff(str):
    """A unified diff (a ``str``) that shows coloured in Jupyter.

    >>> print(hub.diff("SMA@v1", "SMA"))   # doctest: +SKIP
    """

    def _repr_html_(self) -> str:
        if not self:
            return "<pre><i>no difference</i></pre>"
        out = []
        for line in self.splitlines():
            color = ""
            if line.startswith(("+++", "---")):
                color = "font-weight:bold"
            elif line.startswith("+"):
                color = f"color:{qh.GREEN};background:{qh.GREEN_BG}"
            elif line.startswith("-"):
                color = f"color:{qh.RED};background:{qh.RED_BG}"
            elif line.startswith("@@"):
                color = f"color:{qh.PURPLE}"
            out.append(f"<span style='{color}'>{html.escape(line)}</span>")
        return "<pre>" + "\n".join(out) + "</pre>"


def result_fields(result: Any) -> dict[str, Any]:
    """Read what the hub needs from a BacktestResult (or a plain dict)."""
    if result is None:
        return {"metrics": {}, "params": None, "run_id": None, "data_ref": None, "costs": None, "name": None,
                "bar_seconds": None}
    if isinstance(result, Mapping):
        get = result.get
        metrics = result.get("metrics", result if "sharpe" in result else {})
    else:
        def get(key: str, default: Any = None) -> Any:
            return getattr(result, key, default)
        metrics = getattr(result, "metrics", {})
    size = None
    equity = get("equity")
    pd = sys.modules.get("pandas")  # no pandas loaded: equity cannot be a Series
    if pd is not None and isinstance(equity, pd.Series):
        from quantlab.engine.data import bar_size

        step = bar_size(equity.index)
        size = step.total_seconds() if step is not None else None
    return {
        "metrics": dict(metrics or {}),
        "params": get("params"),
        "run_id": get("run_id"),
        "data_ref": get("data_ref"),
        "costs": get("costs"),
        "name": get("name"),
        "bar_seconds": size if size is not None else get("bar_seconds"),
    }


def split_result(strategy: Any, result: Any) -> tuple[Any, Any]:
    """``store(result)`` means ``store(result.strategy, result)`` for a BacktestResult."""
    if result is None and not isinstance(strategy, (Strategy, str)) and hasattr(strategy, "metrics"):
        inner = getattr(strategy, "strategy", None)
        if inner is None:
            raise TypeError("this backtest result carries no strategy; call hub.store(strategy, result).")
        return inner, strategy
    return strategy, result


def normalize_source(source: Any) -> dict[str, Any]:
    """``store(..., source=)`` as the metadata's ``source`` dict (``{"type": ...}``)."""
    if source is None:
        return {"type": "hand-written"}
    if isinstance(source, str):
        return {"type": source.strip() or "hand-written"}
    if isinstance(source, Mapping):
        out = dict(source)
        out.setdefault("type", "generator" if ("model" in out or "generator" in out) else "hand-written")
        return to_jsonable(out)
    raise TypeError(
        "source describes who wrote the code: 'hand-written', 'notebook cell', or a dict like "
        f"{{'type': 'generator', 'generator': 'claude-code', 'model': '...'}}; got {source!r}."
    )


def canonical_json(value: Any) -> str:
    """Compact, key-sorted JSON of ``value`` (to compare parameter sets)."""
    return json.dumps(to_jsonable(value), sort_keys=True, separators=(",", ":"))
