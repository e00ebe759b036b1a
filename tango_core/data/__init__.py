"""The data layer: one annotation store, readers / writers of common formats, analysis, samples.

>>> ds = Dataset.create("data/shapes", task="detection", classes=["circle", "square"])
>>> rec = ds.add_image("photo.png"); ds.add_box(rec.id, Box(0, 4, 4, 20, 20)); ds.save()

The store schema, the formats and the analysis are documented in docs/data.md.
"""

from __future__ import annotations

import importlib
from typing import Any

from ._dataset import Dataset, load_dataset
from ._shapes import Box, ImageRecord, Polygon

_LAZY = {
    "FORMATS": "tango_core.data.formats",
    "import_dataset": "tango_core.data._transfer",
    "export_dataset": "tango_core.data._transfer",
    "convert": "tango_core.data._transfer",
    "detect_format": "tango_core.data._transfer",
    "analyse": "tango_core.data._analysis",
    "Report": "tango_core.data._analysis",
    "Problem": "tango_core.data._analysis",
    "make_sample": "tango_core.data._samples",
    "SAMPLES": "tango_core.data._samples",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'tango_core.data' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


__all__ = ["Dataset", "load_dataset", "Box", "ImageRecord", "Polygon", *_LAZY]
