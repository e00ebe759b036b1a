"""``FORMATS``: the registry of dataset formats (readers and writers), in auto-detection order.

Add a format by subclassing :class:`Format` and registering an instance::

    FORMATS.add("myformat", MyFormat(), tasks=("detection",), writable=True)
"""

from __future__ import annotations

from ...registry import Registry
from ._base import Format, Issues, Item, Parsed, build
from ._coco import Coco
from ._folders import ImageFolder, Images, Tango
from ._voc import Voc
from ._yolo import Yolo

FORMATS: Registry[Format] = Registry("dataset format")
# order matters: auto-detection tries them in turn, most specific first
for _fmt in (Tango(), Coco(), Yolo(), Voc(), ImageFolder(), Images()):
    FORMATS.add(_fmt.name, _fmt, tasks=_fmt.tasks, writable=_fmt.writable, description=_fmt.description)

__all__ = ["FORMATS", "Format", "Issues", "Item", "Parsed", "build"]
