"""Jupyter widgets for tango: views over ``tango_core`` stores and events.

Every widget displays by itself as the last expression of a cell and carries a static
PNG / HTML form in the same output, so an executed notebook converted to HTML shows what the
live notebook showed.  ``%load_ext tango_widgets`` adds the ``%tango`` magics.

In Google Colab, run once per notebook before showing a widget::

    from google.colab import output
    output.enable_custom_widget_manager()
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "Dashboard": "tango_widgets._dashboard",
    "StudyView": "tango_widgets._study",
    "ModelPicker": "tango_widgets._picker",
    "GraphViewer": "tango_widgets._graph_view",
    "PipelineApp": "tango_widgets._app",
    "Labeler": "tango_widgets.labeler",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'tango_widgets' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


def load_ipython_extension(ipython) -> None:
    """``%load_ext tango_widgets``: registers the ``%tango`` line magic."""
    from ._magics import register

    register(ipython)


def unload_ipython_extension(ipython) -> None:
    from ._magics import unregister

    unregister(ipython)


__all__ = sorted(_LAZY)
