"""A report notebook's inputs: its ``strategy`` and ``data`` parameters turned into objects, with readable errors."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pandas as pd

__all__ = ["resolve_strategy", "load_data", "looks_like_file"]


def looks_like_file(ref: str) -> bool:
    """Whether a strategy reference is meant as a file path (rather than a hub commit or name)."""
    return ref.endswith(".py") or "/" in ref or os.sep in ref or ref.startswith(".")


def resolve_strategy(strategy: Any, hub: str | os.PathLike[str] | None = None) -> Any:
    """Turn a report's ``strategy`` parameter into a :class:`quantlab.Strategy`.

    ``strategy`` is a path to a ``.py`` file defining ``signals(data, **params)``, or — with
    ``hub`` — a strategy name or commit stored in that assets hub. A missing file raises
    ``FileNotFoundError`` whose first line says which file is missing and what to pass.

    >>> resolve_strategy("no/such/file.py")    # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    FileNotFoundError: strategy file not found: ... pass strategy= (quantlab report --strategy) the path of a .py file ...
    """
    from quantlab.engine.strategy import Strategy

    if isinstance(strategy, Strategy):
        return strategy
    ref = str(strategy or "").strip()
    if not ref:
        raise ValueError("no strategy given: pass strategy= (quantlab report --strategy) a .py file "
                         "or a hub commit/strategy name together with hub= (--hub).")
    path = Path(ref).expanduser()
    if path.is_file():
        return Strategy.from_file(path)
    if looks_like_file(ref) or hub is None:
        where = path if path.is_absolute() else Path.cwd() / path
        hint = "" if hub is not None else " or a hub commit/strategy name together with hub= (--hub)"
        raise FileNotFoundError(
            f"strategy file not found: {where} — pass strategy= (quantlab report --strategy) the path of a .py file "
            f"that defines signals(data, **params){hint}."
        )
    from quantlab.hub import AssetsHub

    hub_path = Path(hub).expanduser()
    if not (hub_path / ".git").exists():
        raise FileNotFoundError(f"assets hub not found: {hub_path} (no Git repository there) — pass hub= (--hub) "
                                f"the folder of an existing assets hub, or strategy= a .py file.")
    store = AssetsHub(hub_path, create=False)
    try:
        return store.load(ref)
    finally:
        store.close()


def load_data(data: Any = "sample") -> pd.DataFrame:
    """A report's ``data`` parameter as a validated OHLCV frame: a reference (``"sample"``,
    ``"synthetic:seed=7,bars=5000,freq=1h"``) or a path to a CSV/Parquet file.

    >>> len(load_data("synthetic:seed=1,bars=300,freq=1h"))
    300
    """
    from quantlab.engine import data as qdata

    if isinstance(data, pd.DataFrame):
        return qdata.validate(data)
    ref = str(data).strip()
    path = Path(ref).expanduser()
    if ":" not in ref and ref != "sample":
        if not path.is_file():
            raise FileNotFoundError(f"data file not found: {path} — pass data= (--data) 'sample', "
                                    "'synthetic:seed=7,bars=5000' or the path of an OHLCV CSV/Parquet file.")
        return qdata.load(path)
    if ref.startswith("file:"):
        return qdata.load(Path(ref[5:]).expanduser())
    return qdata.from_reference(ref)

