"""The static form every widget carries, so an executed notebook converted to HTML shows it.

Live front-ends (JupyterLab, Notebook 7, Colab) render the widget view, which outranks
``image/png``; nbconvert renders the PNG once the widget state is stripped
(``jupyter nbconvert --to html --ClearMetadataPreprocessor.enabled=True``).  A widget that
changes after it was shown (a dashboard during training) calls :meth:`StaticForm.refresh` at
checkpoints: that re-publishes the same output with a fresh PNG, which also re-syncs plotly
figures for front-ends that connect later.
"""

from __future__ import annotations

import base64
import html
import io
from typing import Any

WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"


class StaticForm:
    """Mixin for a DOMWidget: adds ``image/png`` and / or ``text/html`` to its bundle.

    Subclasses implement :meth:`to_png` or :meth:`to_html` (or both: nbconvert prefers the
    HTML, so an HTML form that wants the picture embeds it with :func:`png_img`).  The mixin
    must come before the widget class in the bases so its ``_repr_mimebundle_`` wins.
    """

    _display_handle: Any = None

    def to_png(self) -> bytes | None:
        return None

    def to_html(self) -> str | None:
        return None

    def _resync(self) -> None:
        """Push state that lives only in messages (plotly data) into widget state before display."""

    def _repr_mimebundle_(self, include=None, exclude=None, **kwargs):
        self._resync()
        bundle = super()._repr_mimebundle_(include=include, exclude=exclude, **kwargs)  # type: ignore[misc]
        data = bundle[0] if isinstance(bundle, tuple) else bundle
        data = dict(data or {})
        png = self.to_png()
        if png:
            data["image/png"] = base64.b64encode(png).decode("ascii")
        page = self.to_html()
        if page:
            data["text/html"] = page
        return data

    def _ipython_display_(self):
        # keep a handle so refresh() can update this very output instead of adding one
        from IPython.display import display

        self._display_handle = display(self._repr_mimebundle_(), raw=True, display_id=True)

    def refresh(self) -> None:
        """Re-publish the displayed output with a fresh static image (no-op if never shown)."""
        if self._display_handle is not None:
            self._display_handle.update(self._repr_mimebundle_(), raw=True)


def new_figure(width: float, height: float, **kw):
    """A matplotlib figure made with the Agg canvas: no GUI backend, safe in threads and kernels."""
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), **kw)


def figure_png(fig, dpi: int = 80) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
    return buf.getvalue()


def pil_png(image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()


def png_img(png: bytes, alt: str = "", css: str = "max-width:100%") -> str:
    """An ``<img>`` with the PNG inlined, for HTML forms that must stand alone offline."""
    b64 = base64.b64encode(png).decode("ascii")
    return f'<img alt="{escape(alt)}" style="{css}" src="data:image/png;base64,{b64}"/>'


def escape(value: Any) -> str:
    return html.escape(str(value), quote=True)


def human(n: float | int | None, unit: str = "") -> str:
    """1234567 -> '1.23M'; None -> '?'."""
    if n is None:
        return "?"
    n = float(n)
    for div, suffix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(n) >= div:
            return f"{n / div:.3g}{suffix}{unit}"
    return f"{n:.3g}{unit}"
