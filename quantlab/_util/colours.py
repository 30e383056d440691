"""Readable text on a coloured cell: black or white by the background's luminance."""
from __future__ import annotations

from typing import Sequence

__all__ = ["relative_luminance", "text_colour_on"]


def relative_luminance(rgb: Sequence[float]) -> float:
    """WCAG relative luminance of an RGB(A) colour with channels in [0, 1] (alpha ignored).

    >>> round(relative_luminance((1, 1, 1)), 3), relative_luminance((0, 0, 0))
    (1.0, 0.0)
    """
    def lin(c: float) -> float:
        return c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4
    r, g, b = (lin(float(c)) for c in tuple(rgb)[:3])
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def text_colour_on(rgb: Sequence[float]) -> str:
    """``"black"`` or ``"white"``, whichever contrasts more with the background ``rgb``.

    >>> text_colour_on((1.0, 1.0, 0.6)), text_colour_on((0.27, 0.0, 0.33))
    ('black', 'white')
    """
    lum = relative_luminance(rgb)
    # contrast ratio against black (lum + .05)/.05 vs white 1.05/(lum + .05): equal at lum ≈ 0.179
    return "black" if lum > 0.179 else "white"
