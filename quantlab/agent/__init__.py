"""The quant code agent: an idea in, a checked strategy out, with any model (workflow layer, beside ``lab``).

``lab.generate(idea)`` asks a model (or the offline building blocks) for a strategy, checks it
cheapest first (parses, defines ``signals``, sandbox, 500 synthetic bars, causal, full backtest
through the backtest server, policy), sends the exact failure back, and stops at the first
candidate that passes, at ``max_attempts`` or before ``budget_usd`` would be exceeded.

Example
-------
>>> from quantlab import Lab                                          # doctest: +SKIP
>>> lab = Lab.start("./assets-hub")                                  # doctest: +SKIP
>>> gen = lab.generate("trend following with a volatility filter", model="offline")   # doctest: +SKIP
>>> gen.best, gen.usage                                               # doctest: +SKIP
>>> lab.store(gen.best)                                               # doctest: +SKIP
"""
from __future__ import annotations

from .generation import CHECKS, Candidate, Check, Generation
from .models import INSTALL_HINT, OFFLINE_LABEL, AgentError, ModelConfig, ModelUnavailable, resolve_model, scrub

__all__ = [
    "Generation", "Candidate", "Check", "CHECKS", "ModelConfig", "resolve_model", "AgentError",
    "ModelUnavailable", "INSTALL_HINT", "OFFLINE_LABEL", "scrub", "run_generation", "load_generation",
]


def __getattr__(name: str):
    if name == "run_generation":
        from .loop import run_generation

        return run_generation
    raise AttributeError(f"module 'quantlab.agent' has no attribute {name!r}")


def load_generation(path: str) -> dict:
    """A saved generation (``Generation.save``) as a dict (replay it with ``model=f"replay:{path}"``)."""
    import json
    from pathlib import Path

    return json.loads(Path(path).read_text(encoding="utf-8"))
