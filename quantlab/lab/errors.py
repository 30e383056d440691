"""The workflow layer's error base: every ``Lab`` step that fails raises a :class:`LabError` (or a subclass)."""
from __future__ import annotations

from quantlab._util.errors import QuantlabErrorMixin

__all__ = ["LabError"]


class LabError(QuantlabErrorMixin, RuntimeError):
    """A workflow step failed; the message says which step and what to do."""
