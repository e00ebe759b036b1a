"""The model registry: ``register_model`` / ``list_models`` / ``create_model`` / ``model_info``.

Metadata is data beside each builder (task, family, size, default input size, parameter count
and FLOPs at the default input, strides, the published source), so pickers and the selection
table read it instead of hard-coding text.  ``params`` in the metadata is what a test compares
with the built model at the default class count (``num_classes`` in the metadata).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch.nn as nn

from ..registry import Registry

_MODELS: Registry[Callable[..., nn.Module]] = Registry("model")

#: fields every registered model declares
REQUIRED_META = ("task", "family", "size", "input_size", "num_classes", "params", "flops", "source")


def register_model(name: str, **meta: Any) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Decorator: ``@register_model("resnet-cifar20", task="classification", ...)`` on a builder
    ``fn(num_classes=..., in_channels=..., **kw) -> nn.Module``."""
    missing = [k for k in REQUIRED_META if k not in meta]
    if missing:
        raise ValueError(f"model {name!r} is missing metadata {missing}")

    def deco(builder: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        _MODELS.add(name, builder, **meta)
        return builder

    return deco


def _ensure_loaded() -> None:
    # importing the family modules registers their models
    # architectures chosen by NAS, saved as configs in project folders (tango_core/autonn/_archs.py)
    from ..autonn._archs import register_saved
    from . import families  # noqa: F401

    register_saved()


def list_models(pattern: str = "*", **filters: Any) -> list[str]:
    """Registered names matching a glob pattern and metadata filters, e.g. ``task="detection"``."""
    _ensure_loaded()
    return _MODELS.names(pattern, **filters)


def model_info(name: str) -> dict[str, Any]:
    _ensure_loaded()
    return dict(_MODELS.meta(name), name=name)


def create_model(name: str, num_classes: int | None = None, in_channels: int = 3, weights: str | None = None,
                 **kwargs: Any) -> nn.Module:
    """Build a registered model; ``weights`` is a file the user provides (loaded with ``weights_only=True``)."""
    _ensure_loaded()
    builder = _MODELS.get(name)
    meta = _MODELS.meta(name)
    model = builder(num_classes=num_classes or meta["num_classes"], in_channels=in_channels, **kwargs)
    model.tango_name = name  # type: ignore[attr-defined]
    if weights is not None:
        from .weights import load_weights

        load_weights(model, weights)
    return model
