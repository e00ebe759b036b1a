"""Imports every model family so that its models register themselves."""

import importlib

for _module in ("resnet", "yolo"):
    try:
        importlib.import_module(f"{__package__}.{_module}")
    except ModuleNotFoundError as exc:  # a family still being written is simply absent
        if exc.name != f"{__package__}.{_module}":
            raise
