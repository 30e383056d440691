"""Allocator and BLAS tuning while a sweep runs.

A sweep runs the engine thousands of times on arrays of ``8 * bars`` bytes; how glibc's
allocator and the BLAS thread pool are set up decides a good part of its speed (figures in
the docstrings below; ``benchmarks/bench_sweep.py`` measures them). Nothing here changes a
result, and each helper is a no-op where the platform does not have what it tunes.
"""
from __future__ import annotations

import os
from typing import Any

import numpy as np

__all__ = ["one_blas_thread", "prime_allocator", "HeapAllocation"]

_BLAS: list[Any] = []


def one_blas_thread():
    """Limit BLAS to one thread while sweeping: the only BLAS call per run (a dot product in the
    Sortino ratio) otherwise waits for a second BLAS thread on a busy machine (milliseconds per
    run), and the sweep parallelises over runs anyway. A no-op without ``threadpoolctl``."""
    if not _BLAS:
        try:
            from threadpoolctl import ThreadpoolController
            _BLAS.append(ThreadpoolController())  # scanning the loaded libraries takes ~30 ms: once
        except ImportError:  # pragma: no cover - optional
            _BLAS.append(None)
    if _BLAS[0] is None:  # pragma: no cover
        import contextlib
        return contextlib.nullcontext()
    return _BLAS[0].limit(limits=1, user_api="blas")


_PRIMED: list[bool] = []


def prime_allocator() -> None:
    """Once per process: allocate and free one 31 MiB block.

    glibc serves blocks above its *mmap threshold* with a fresh ``mmap`` (page faults on first
    touch, ``munmap`` on free) and raises that threshold, adaptively, to the largest such block
    freed so far (up to 32 MiB); it also returns free heap memory above twice the threshold to the
    OS. The engine allocates a few dozen arrays of ``8 * bars`` bytes per run, so at the start
    threshold (128 KiB, or just above one bar array) most of them page-fault: a sweep spends about
    a third of its time there. Freeing one large block moves the threshold to where a program that
    once held a 31 MiB temporary would have it anyway; nothing else about the allocator changes
    (it stays adaptive). Measured: 20x fewer page faults, 1.5-1.8x faster on 100,000 bars."""
    if not _PRIMED:
        _PRIMED.append(True)
        block = np.empty(31 * 2**20 // 8)
        del block


class HeapAllocation:
    """Let glibc serve the sweep's ~1 MB numpy arrays from the heap while a chunk runs, then restore
    the worker's memory policy and trim.

    Dask's nanny starts workers with ``MALLOC_TRIM_THRESHOLD_=65536`` (so freed memory goes back to
    the OS). Setting it also freezes glibc's mmap threshold at 128 KiB, so every array of more than
    16,000 floats becomes an ``mmap`` + page faults + ``munmap``: a sweep chunk then runs about 3x
    slower than in a plain process (:func:`prime_allocator` cannot help there: the threshold no
    longer adapts). A no-op outside glibc or without that variable, so it never changes the
    malloc policy of a process that did not set one."""

    _M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3

    def __init__(self) -> None:
        self.libc = None
        trim = os.environ.get("MALLOC_TRIM_THRESHOLD_")
        if trim is None or not trim.isdigit():
            return
        try:
            import ctypes
            libc = ctypes.CDLL("libc.so.6")
            libc.mallopt, libc.malloc_trim  # noqa: B018 - glibc only
        except (OSError, AttributeError):
            return
        self.libc, self.trim = libc, int(trim)

    def __enter__(self) -> "HeapAllocation":
        if self.libc is not None:
            self.libc.mallopt(self._M_MMAP_THRESHOLD, 32 * 2**20)
            self.libc.mallopt(self._M_TRIM_THRESHOLD, 256 * 2**20)
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.libc is not None:
            self.libc.mallopt(self._M_MMAP_THRESHOLD, 128 * 2**10)   # glibc's default
            self.libc.mallopt(self._M_TRIM_THRESHOLD, self.trim)
            self.libc.malloc_trim(0)
