"""Parameter sweeps (being split into parts; see result.py)."""
from .result import *  # noqa: F401,F403
from .result import __doc__, BATCH_HOOK, SweepError, SweepResult, expand_grid, sweep  # noqa: F401
