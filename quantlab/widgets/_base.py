"""What every quantlab widget shares: a text repr, a static ``text/html``
fallback next to the live widget view, and a static snapshot after ``close()``.

A widget shown in a notebook output is displayed with a display id; closing it
replaces that output (live front end and saved notebook alike) with its static
HTML, so a closed monitor or panel leaves what it showed instead of a blank
space or "Error displaying widget: model not found" after reopening."""
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

    def _ipython_display_(self) -> None:
        from IPython.display import display

        handle = display(self._repr_mimebundle_(), raw=True, display_id=True)
        if handle is not None:
            self.__dict__.setdefault("_display_handles", []).append(handle)

    def close(self) -> None:
        """Close the widget; every output that showed it keeps a static HTML snapshot of it."""
        super().close()  # type: ignore[misc]
        # ipywidgets sets the instance attribute _repr_mimebundle_ = None on close; keep ours
        self.__dict__.pop("_repr_mimebundle_", None)
        handles = self.__dict__.pop("_display_handles", [])
        if handles:
            snapshot = {"text/html": self.to_html(), "text/plain": repr(self)}
            for handle in handles:
                try:
                    handle.update(snapshot, raw=True)
                except Exception:  # noqa: BLE001 - no kernel/front end any more: nothing to update
                    pass
