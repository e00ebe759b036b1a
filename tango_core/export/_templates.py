"""Scripts written beside exports for tools that do not run here (TensorRT, Edge TPU, RKNN).

The scripts are files under ``templates/`` (read them as they are); ``$name`` placeholders are
filled with :class:`string.Template`, so a literal dollar sign is written ``$$``.
"""

from __future__ import annotations

import string
from pathlib import Path
from typing import Any

TEMPLATES = Path(__file__).with_name("templates")


def render(name: str, **values: Any) -> str:
    path = TEMPLATES / name
    if not path.is_file():
        from ..errors import UnknownNameError

        raise UnknownNameError("export template", name, sorted(p.name for p in TEMPLATES.iterdir()))
    return string.Template(path.read_text(encoding="utf-8")).substitute(**{k: str(v) for k, v in values.items()})
