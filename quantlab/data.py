"""Alias of :mod:`quantlab.engine.data` so ``quantlab.data.synthetic(...)`` works.

>>> import quantlab.data
>>> len(quantlab.data.synthetic(10, seed=1))
10
"""
from quantlab.engine.data import *  # noqa: F401,F403
from quantlab.engine.data import __all__  # noqa: F401
