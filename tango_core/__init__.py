"""tango: Target Aware No-code neural network Generation and Operation, Jupyter-native.

The public API is a handful of names; they are imported lazily so ``import tango_core`` is cheap.
Exporting and deploying live in their subpackages: ``from tango_core.export import export`` and
``from tango_core.deploy import deploy`` (a package attribute cannot be both a function and the
subpackage of the same name).
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_LAZY = {
    "Project": "tango_core.project",
    "EventBus": "tango_core.events",
    "get_target": "tango_core.targets",
    "list_targets": "tango_core.targets",
    "register_target": "tango_core.targets",
    "recommend": "tango_core.selection",
    "create_model": "tango_core.models",
    "list_models": "tango_core.models",
    "model_info": "tango_core.models",
    "train": "tango_core.engine",
    "predict": "tango_core.engine",
    "tune": "tango_core.autonn",
    "search": "tango_core.autonn",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'tango_core' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


__all__ = sorted(_LAZY)
