"""Loggers are event subscribers: ``create_logger(name, run_dir)`` returns ``fn(event)`` with ``close()``.

Built in: ``csv`` (results.csv, one row per epoch), ``tensorboard`` (event files via
torch.utils.tensorboard; needs the ``notebook`` extra) and ``console`` (tqdm.auto progress bars).
Register another with ``@register_logger("name")`` on a class ``cls(run_dir)``.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

from ...registry import Registry

LOGGERS: Registry[Any] = Registry("logger")
_BUILT_IN = {"csv": "csv_logger", "tensorboard": "tensorboard", "console": "console"}


def register_logger(name: str, **meta: Any):
    return LOGGERS.register(name, **meta)


def create_logger(name: str, run_dir: str | Path):
    if name not in LOGGERS and name in _BUILT_IN:
        importlib.import_module(f"{__package__}.{_BUILT_IN[name]}")
    return LOGGERS.get(name)(Path(run_dir))


__all__ = ["LOGGERS", "create_logger", "register_logger"]
