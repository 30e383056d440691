"""The Lab's validation steps: the look-ahead check, trial counts, deflated and out-of-sample Sharpe.

* :func:`lookahead` runs :func:`quantlab.check_lookahead` on a result's strategy and data
  (in the sandbox when :mod:`quantlab.engine.sandbox` is there: the code may not be the user's);
* :func:`store_annotations` computes what a stored commit carries beyond the seed's message:
  ``deflated_sharpe`` against the family's trial count, ``oos_sharpe`` from ``holdout=``, and the
  trailers ``Quantlab-Deflated-Sharpe: 0.41 (trials: 57)`` / ``Quantlab-OOS-Sharpe: 0.73``.
"""
from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, Mapping

if TYPE_CHECKING:  # numpy, pandas and the engine load when a check runs (deploying a stored strategy may need none)
    import pandas as pd

__all__ = ["sandbox_available", "local_frame", "lookahead", "store_annotations"]


def sandbox_available() -> bool:
    """Whether :mod:`quantlab.engine.sandbox` exists in this quantlab."""
    try:
        from quantlab.engine import sandbox  # type: ignore[attr-defined]  # noqa: F401
    except ImportError:
        return False
    return True


def local_frame(ref: str | None, frames: Mapping[str, pd.DataFrame]) -> pd.DataFrame | None:
    """The frame behind a data reference when this process can have it: one it uploaded, or
    ``sample`` / ``synthetic:...`` (``file:`` lives under the server's data root)."""
    if ref is None:
        return None
    if ref in frames:
        return frames[ref]
    if not ref.startswith(("sample", "synthetic:")):
        return None
    from quantlab.engine.data import from_reference

    try:
        return from_reference(ref)
    except Exception:  # noqa: BLE001 - not resolvable here: the caller says the check could not run
        return None


def lookahead(strategy: Any, data: pd.DataFrame, params: Mapping[str, Any] | None = None):
    """:func:`quantlab.check_lookahead`, sandboxed when the sandbox exists."""
    from quantlab.engine.lookahead import check_lookahead

    return check_lookahead(strategy, data, params, sandbox=sandbox_available())


def _fmt(x: float) -> str:
    return "nan" if not math.isfinite(x) else f"{x:.2f}"


def store_annotations(result: Any, trials: int) -> tuple[dict[str, Any], dict[str, str]]:
    """Metrics to add to a stored result and its commit trailers, given the family's trial count.

    >>> from quantlab.engine import backtest, data
    >>> r = backtest(data.synthetic(2000, seed=3), "def signals(data):\\n    return (data.close.diff() > 0) * 1.0")
    >>> extra, trailers = store_annotations(r, 57)
    >>> extra["trials"], sorted(trailers)
    (57, ['Quantlab-Deflated-Sharpe'])
    """
    import numpy as np

    from quantlab.engine import stats as _stats

    trials = max(1, int(trials))
    extra: dict[str, Any] = {"trials": trials}
    returns = getattr(result, "returns", None)
    metrics = getattr(result, "metrics", {}) or {}
    if returns is not None and len(returns):
        r = returns.to_numpy(dtype=np.float64)
        holdout = getattr(result, "holdout", None)
        if holdout and getattr(result, "metrics_oos", None) is not None:
            r = r[: len(r) - int(holdout.get("bars", 0))]       # deflate what was selected on: the in-sample part
        extra["deflated_sharpe"] = _stats.deflated_sharpe(r, trials)
    trailers = {}
    if "deflated_sharpe" in extra:
        trailers["Quantlab-Deflated-Sharpe"] = f"{_fmt(extra['deflated_sharpe'])} (trials: {trials})"
    oos = getattr(result, "metrics_oos", None)
    if oos is not None and "sharpe" in oos:
        extra["oos_sharpe"] = float(oos["sharpe"])
        trailers["Quantlab-OOS-Sharpe"] = _fmt(extra["oos_sharpe"])
    if "causal" in metrics:
        trailers["Quantlab-Causal"] = "yes" if metrics["causal"] else "no"
    return extra, trailers
