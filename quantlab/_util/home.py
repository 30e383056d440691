"""Where quantlab keeps its state on this machine."""
from __future__ import annotations

import os
from pathlib import Path

__all__ = ["quantlab_home"]


def quantlab_home() -> Path:
    """``$QUANTLAB_HOME`` if set (and not empty), else ``~/.quantlab``; ``~`` expanded.

    >>> quantlab_home().is_absolute()
    True
    """
    return Path(os.environ.get("QUANTLAB_HOME") or Path.home() / ".quantlab").expanduser()
