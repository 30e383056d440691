"""The grid of a sweep: which parameter combinations a grid stands for, in sweep order."""
from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from typing import Any, Iterable

import numpy as np
import pandas as pd

__all__ = ["SweepError", "expand_grid"]


class SweepError(ValueError):
    """A sweep that cannot start: an empty or malformed grid, unknown parameters, unusable data or executor."""


# ---------------------------------------------------------------------------------------------
# grid
# ---------------------------------------------------------------------------------------------
def expand_grid(grid: Mapping[str, Any] | Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The list of parameter dicts a grid stands for, in sweep order.

    A dict of lists is the cartesian product over its keys in dict order (the
    last key varies fastest, like :func:`itertools.product`); a scalar value
    counts as a one-element list. A list of dicts is taken as is.

    >>> expand_grid({"fast": [5, 10], "slow": [50, 100]})
    [{'fast': 5, 'slow': 50}, {'fast': 5, 'slow': 100}, {'fast': 10, 'slow': 50}, {'fast': 10, 'slow': 100}]
    >>> expand_grid([{"fast": 3}, {"fast": 4, "slow": 9}])
    [{'fast': 3}, {'fast': 4, 'slow': 9}]
    """
    if isinstance(grid, Mapping):
        if not grid:
            raise SweepError("the grid is empty; give a dict of lists, e.g. {'fast': [5, 10], 'slow': [50, 100]}.")
        keys = [str(k) for k in grid]
        values = []
        for k, v in grid.items():
            if isinstance(v, (str, bytes)) or not isinstance(v, Iterable):
                v = [v]
            v = list(v.tolist() if isinstance(v, (np.ndarray, pd.Index, pd.Series)) else v)
            if not v:
                raise SweepError(f"grid parameter {k!r} has no values; give at least one.")
            values.append(v)
        return [dict(zip(keys, combo)) for combo in itertools.product(*values)]
    if isinstance(grid, (str, bytes)) or not isinstance(grid, Iterable):
        raise SweepError(f"grid must be a dict of lists or a list of dicts, got {type(grid).__name__}.")
    combos = list(grid)
    if not combos:
        raise SweepError("the grid is empty; give at least one parameter dict.")
    bad = [i for i, c in enumerate(combos) if not isinstance(c, Mapping)]
    if bad:
        raise SweepError(f"grid item {bad[0]} is a {type(combos[bad[0]]).__name__}, not a dict; "
                         "a list grid holds parameter dicts like {'fast': 5, 'slow': 50}.")
    return [{str(k): v for k, v in c.items()} for c in combos]

