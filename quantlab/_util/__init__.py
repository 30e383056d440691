"""Small stdlib-only helpers every layer may use: the bottom of the house.

``quantlab._util`` imports nothing from quantlab and nothing outside the standard
library, so ``engine``, ``servers``, ``hub``, ``client`` and everything above can use it
without breaking the layering. Each idea lives here once:

- :mod:`.files` — atomic file writes (:func:`atomic_path`, :func:`atomic_write_text`,
  :func:`atomic_write_bytes`).
- :mod:`.jsonsafe` — JSON for numbers JSON has not got: non-finite floats travel as
  ``"nan"``, ``"inf"``, ``"-inf"`` (:func:`to_jsonable`, :func:`encode_float`,
  :func:`decode_number`, :func:`json_default`).
- :mod:`.procs` — is a process alive, stop a process or its group (:func:`pid_alive`,
  :func:`kill_process`).
- :mod:`.home` — ``$QUANTLAB_HOME`` (:func:`quantlab_home`).
- :mod:`.errors` — :class:`QuantlabErrorMixin`: short IPython tracebacks for quantlab's
  exception base classes (user frames + one hint), the full chain on demand.
- :mod:`.colours` — black or white text by a background's luminance (:func:`text_colour_on`).
- :mod:`.dask` — a Dask scheduler address given by a user (:func:`is_dask_address`,
  :func:`dask_address`).

Example
-------
>>> from quantlab._util import to_jsonable, decode_number
>>> to_jsonable({"profit_factor": float("inf")})
{'profit_factor': 'inf'}
>>> decode_number("-inf")
-inf
"""
from __future__ import annotations

from .dask import DASK_SCHEMES, dask_address, is_dask_address
from .files import atomic_path, atomic_write_bytes, atomic_write_text
from .home import quantlab_home
from .jsonsafe import decode_number, encode_float, json_default, to_jsonable
from .procs import kill_process, pid_alive

__all__ = [
    "atomic_path", "atomic_write_bytes", "atomic_write_text",
    "to_jsonable", "encode_float", "decode_number", "json_default",
    "pid_alive", "kill_process", "quantlab_home",
    "DASK_SCHEMES", "is_dask_address", "dask_address",
]
