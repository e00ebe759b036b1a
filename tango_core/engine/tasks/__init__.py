"""Task adapters, one registry: ``classification`` here, ``detection`` from the detection engineer."""

from __future__ import annotations

import importlib
from typing import Any

from ...registry import Registry
from ._base import Batch, Task, ValResult

TASKS: Registry[type[Task]] = Registry("task")
_MODULES = ("classification", "detection", "segmentation")


def register_task(name: str, **meta: Any):
    """Class decorator: ``@register_task("detection")`` on a :class:`Task` subclass."""
    return TASKS.register(name, **meta)


def get_task(name: str) -> type[Task]:
    if name not in TASKS and name in _MODULES:
        try:
            importlib.import_module(f"{__package__}.{name}")
        except ModuleNotFoundError as exc:  # a task still being written is simply absent
            if exc.name != f"{__package__}.{name}":
                raise
    return TASKS.get(name)


__all__ = ["Batch", "Task", "ValResult", "TASKS", "get_task", "register_task"]
