"""Models: one registry for every family (ResNet-CIFAR, ResNet, YOLOv7, YOLOv9)."""

from ._registry import create_model, list_models, model_info, register_model

__all__ = ["create_model", "list_models", "model_info", "register_model"]
