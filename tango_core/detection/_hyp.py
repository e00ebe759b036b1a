"""The published hyper-parameters of each YOLO recipe (``hyp.yaml``) and which recipe a model uses."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any

from .._io import read_yaml
from ..errors import UnknownNameError

HYP_PATH = Path(__file__).with_name("hyp.yaml")


@lru_cache(maxsize=1)
def _recipes() -> dict[str, dict[str, Any]]:
    return read_yaml(HYP_PATH)


def recipe_for(model: str) -> str:
    """``yolov7-tiny`` -> ``yolov7-tiny``; the P6 models -> ``yolov7-p6``; other v7 -> ``yolov7``;
    every YOLOv9 (segmentation included) -> ``yolov9``."""
    if model.startswith("yolov9"):
        return "yolov9"
    if model == "yolov7-tiny":
        return "yolov7-tiny"
    if model in ("yolov7-w6", "yolov7-e6", "yolov7-d6", "yolov7-e6e"):
        return "yolov7-p6"
    if model.startswith("yolov7"):
        return "yolov7"
    raise UnknownNameError("YOLO recipe", model, list(_recipes()))


def default_hyp(model: str, **overrides: Any) -> dict[str, Any]:
    """A copy of the model's recipe with ``overrides`` applied (unknown keys are refused)."""
    hyp = dict(_recipes()[recipe_for(model)])
    unknown = [k for k in overrides if k not in hyp]
    if unknown:
        raise UnknownNameError("hyper-parameter", unknown[0], list(hyp))
    hyp.update(overrides)
    return hyp
