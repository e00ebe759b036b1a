"""The training engine: ``train()`` / ``Trainer`` over task adapters, and the predictor."""

from __future__ import annotations

from ._run import train
from .predict import Prediction, Predictor, predict
from .tasks import Task, ValResult, get_task, register_task
from .trainer import Trainer, TrainResult

__all__ = ["Prediction", "Predictor", "Task", "TrainResult", "Trainer", "ValResult", "get_task", "predict",
           "register_task", "train"]
