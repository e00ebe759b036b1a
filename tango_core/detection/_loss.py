"""The loss of a YOLO model, chosen by its head: anchor-based OTA (YOLOv7) or task-aligned (YOLOv9)."""

from __future__ import annotations

from typing import Any

import torch.nn as nn

from ._loss_v7 import V7Loss
from ._loss_v9 import TaskAlignedAssigner, V9Loss


def build_loss(model: nn.Module, hyp: dict[str, Any], imgsz: int = 640) -> V7Loss | V9Loss:
    """``loss(outputs, targets) -> (total, parts)`` for ``model`` (a YoloModel) and a recipe
    (``tango_core.detection._hyp.default_hyp``)."""
    head = model.head  # type: ignore[attr-defined]
    if getattr(head, "anchor_free", True):
        return V9Loss(head, hyp)
    return V7Loss(head, hyp, imgsz)


__all__ = ["build_loss", "V7Loss", "V9Loss", "TaskAlignedAssigner"]
