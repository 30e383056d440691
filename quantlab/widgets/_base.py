"""What every quantlab widget shares: a text repr, a static ``text/html``
fallback next to the live widget view, and rendering after ``close()``."""
from __future__ import annotations

from typing import Any

import ipywidgets as widgets

__all__ = ["StaticFallback"]


class StaticFallback:
    """Mixin for an ``ipywidgets`` container that can render itself as static HTML.

    ``_repr_mimebundle_`` returns the live widget view (when the widget is open)
    **and** ``text/html`` (from :meth:`to_html`, charts as inline PNG) and
    ``text/plain`` (``repr``). A front end with a widget manager shows the live
    view; papermill/nbconvert/exported HTML without widget state show the HTML.
    """

    def to_html(self) -> str:  # pragma: no cover - every widget defines it
        raise NotImplementedError

    def _repr_mimebundle_(self, **kwargs: Any) -> dict[str, Any]:
        data: dict[str, Any] = {}
        if getattr(self, "comm", None) is not None:
            data.update(widgets.Widget._repr_mimebundle_(self, **kwargs) or {})  # type: ignore[arg-type]
        data["text/plain"] = repr(self)
        data["text/html"] = self.to_html()
        return data

    def _repr_html_(self) -> str:
        return self.to_html()

    def close(self) -> None:
        """Close the widget (its front-end views disappear); it still renders as static HTML."""
        super().close()  # type: ignore[misc]
        # ipywidgets sets the instance attribute _repr_mimebundle_ = None on close; keep ours
        self.__dict__.pop("_repr_mimebundle_", None)
