"""A Dask scheduler address as users write it: ``dask://HOST:PORT``, ``tcp://HOST:PORT`` or ``tls://HOST:PORT``.

>>> dask_address("dask://127.0.0.1:8786")
'tcp://127.0.0.1:8786'
>>> is_dask_address("processes"), is_dask_address("tls://sched:8786")
(False, True)
"""
from __future__ import annotations

from typing import Any

__all__ = ["DASK_SCHEMES", "is_dask_address", "dask_address"]

#: the schemes a scheduler address may start with (``dask://`` means plain TCP)
DASK_SCHEMES = ("dask://", "tcp://", "tls://")


def is_dask_address(spec: Any) -> bool:
    """Whether ``spec`` is meant as a Dask scheduler address (a string with one of :data:`DASK_SCHEMES`)."""
    return isinstance(spec, str) and spec.strip().lower().startswith(DASK_SCHEMES)


def dask_address(spec: str) -> str:
    """The address to pass to ``dask.distributed.Client`` for ``spec``.

    ``dask://HOST:PORT`` becomes ``tcp://HOST:PORT``; ``tcp://`` and ``tls://`` are kept.
    Anything else raises ``ValueError`` saying what is expected.

    >>> dask_address("tcp://10.0.0.5:8786")
    'tcp://10.0.0.5:8786'
    >>> dask_address("dask://nohost")
    Traceback (most recent call last):
    ...
    ValueError: Dask scheduler address 'dask://nohost' has no port: write dask://HOST:PORT, tcp://HOST:PORT or tls://HOST:PORT (e.g. dask://127.0.0.1:8786).
    """
    text = spec.strip() if isinstance(spec, str) else spec
    hint = "write dask://HOST:PORT, tcp://HOST:PORT or tls://HOST:PORT (e.g. dask://127.0.0.1:8786)"
    if not is_dask_address(text):
        raise ValueError(f"{spec!r} is not a Dask scheduler address: {hint}.")
    scheme, rest = text.split("://", 1)
    host, sep, port = rest.rstrip("/").rpartition(":")
    if not sep or not host or not port.isdigit():
        raise ValueError(f"Dask scheduler address {spec!r} has no port: {hint}.")
    scheme = scheme.lower()
    return f"{'tcp' if scheme == 'dask' else scheme}://{host}:{port}"
