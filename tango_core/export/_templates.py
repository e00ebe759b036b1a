"""Scripts written beside exports for tools that do not run here (TensorRT, Edge TPU, RKNN).

The scripts are files under ``templates/`` named ``<script>.tmpl`` (read them as they are; the
suffix keeps linters and import scanners off them); ``$name`` placeholders are filled with
:class:`string.Template`, so a literal dollar sign is written ``$$``.
"""

from __future__ import annotations

import string
from pathlib import Path
from typing import Any

TEMPLATES = Path(__file__).with_name("templates")


def render(name: str, **values: Any) -> str:
    path = TEMPLATES / f"{name}.tmpl"
    if not path.is_file():
        from ..errors import UnknownNameError

        raise UnknownNameError("export template", name, sorted(p.stem for p in TEMPLATES.glob("*.tmpl")))
    return string.Template(path.read_text(encoding="utf-8")).substitute(**{k: str(v) for k, v in values.items()})
