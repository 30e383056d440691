"""Short tracebacks for quantlab's exceptions in IPython/Jupyter.

A strategy that raises inside ``lab.backtest`` used to print ~60 lines through quantlab's
own modules, asyncio and ``concurrent.futures``. :class:`QuantlabErrorMixin` gives every
quantlab exception base class an IPython ``_render_traceback_()`` that shows only the
error, the user's own frames (notebook cells and strategy files, not quantlab or library
code) and one hint. The full chain stays available:

- ``%quantlab traceback`` (the line magic) prints the last error's full chain;
- ``exc.full_traceback()`` returns it as text (``sys.last_value`` in IPython is the last error);
- ``QUANTLAB_FULL_TRACEBACKS=1`` in the environment, or
  ``quantlab._util.errors.options.full_tracebacks = True``, makes IPython print it in full.

Outside IPython nothing changes: plain Python prints the usual traceback.

>>> class DemoError(QuantlabErrorMixin, ValueError): ...
>>> try:
...     raise DemoError("fees must be >= 0")
... except DemoError as exc:
...     lines = exc._render_traceback_()
>>> lines[-2]
'DemoError: fees must be >= 0'
"""
from __future__ import annotations

import os
import sys
import sysconfig
import traceback
from pathlib import Path
from types import SimpleNamespace

__all__ = ["QuantlabErrorMixin", "options", "full_tracebacks_enabled"]

#: ``options.full_tracebacks = True`` prints quantlab errors in full in IPython.
options = SimpleNamespace(full_tracebacks=False)

_QUANTLAB = str(Path(__file__).resolve().parent.parent) + os.sep
_LIBRARY = tuple({str(Path(p).resolve()) + os.sep for p in
                  (sysconfig.get_paths().get(k) for k in ("stdlib", "platstdlib", "purelib", "platlib")) if p})
HINT = ("(quantlab shortened this; the full traceback: %quantlab traceback, or print(sys.last_value.full_traceback()); "
        "always in full: quantlab.options.full_tracebacks = True or QUANTLAB_FULL_TRACEBACKS=1)")


def full_tracebacks_enabled() -> bool:
    """True when quantlab errors should print their full chain (option or environment)."""
    env = os.environ.get("QUANTLAB_FULL_TRACEBACKS", "").strip().lower()
    return bool(options.full_tracebacks) or env in {"1", "true", "yes", "on"}


def _is_user_frame(filename: str) -> bool:
    if filename.startswith("<frozen"):
        return False
    try:
        resolved = str(Path(filename).resolve())
    except (OSError, ValueError):
        resolved = filename
    return not resolved.startswith(_QUANTLAB) and not resolved.startswith(_LIBRARY) and "site-packages" not in resolved


class QuantlabErrorMixin:
    """Mixed into quantlab's exception base classes: a short IPython traceback (user frames,
    the error, one hint) and :meth:`full_traceback` for the whole chain."""

    def full_traceback(self) -> str:
        """The complete traceback, with every chained cause, as text."""
        return "".join(traceback.format_exception(type(self), self, self.__traceback__))  # type: ignore[arg-type]

    def _user_frames(self) -> list[traceback.FrameSummary]:
        frames: list[traceback.FrameSummary] = []
        exc: BaseException | None = self  # type: ignore[assignment]
        seen: set[int] = set()
        while exc is not None and id(exc) not in seen:
            seen.add(id(exc))
            frames = [f for f in traceback.extract_tb(exc.__traceback__) if _is_user_frame(f.filename)] + frames
            exc = exc.__cause__ or (None if exc.__suppress_context__ else exc.__context__)
        return frames

    def _render_traceback_(self) -> list[str]:
        """IPython's hook: what a notebook cell prints for this error."""
        if full_tracebacks_enabled():
            return self.full_traceback().rstrip("\n").splitlines()
        lines = []
        for frame in self._user_frames()[-3:]:
            where = frame.filename
            lines.append(f'  File "{where}", line {frame.lineno}, in {frame.name}')
            if frame.line:
                lines.append(f"    {frame.line.strip()}")
        lines.append(f"{type(self).__name__}: {self}")
        lines.append(HINT)
        return lines
