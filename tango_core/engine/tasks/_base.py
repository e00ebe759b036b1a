"""The task adapter: everything the trainer must not know about a task (data, loss, metrics, fitness).

The trainer owns the loop: device, precision, accumulation, optimiser, schedule, EMA, checkpoints,
auto-batch, out-of-memory retries, early stopping and events.  A task owns what differs between
classification and detection; docs/training.md describes each method.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn as nn

from .._ddp import part

Batch = tuple[torch.Tensor, Any]  # (images as the model takes them, targets in the task's own form)
MIN_PER_PROCESS = 2  # batch norm needs two samples in every process's part of a batch


@dataclass
class ValResult:
    """One validation: flat scalar ``metrics`` (events, CSV), the ``fitness`` that picks the best
    model (higher is better), and ``details`` (per-class tables, matrices) for plots and reports."""

    metrics: dict[str, float]
    fitness: float
    details: dict[str, Any] = field(default_factory=dict)


class Task:
    """Base class of task adapters; subclasses set ``name`` and register with ``register_task``."""

    name = "task"
    fitness_name = "fitness"
    classes: list[str]
    in_channels: int
    imgsz: int
    rank, world = 0, 1  # this process's place under DDP (set_shard); a world of one by default

    # --- data ---------------------------------------------------------------------------------
    def set_epochs(self, epochs: int) -> None:
        """The run's length, told before training (a task may change its augmentation near the end)."""
        self.epochs = int(epochs)

    def dataset_summaries(self) -> list[dict[str, Any]]:
        """One DATASET_SUMMARY payload per split."""
        raise TypeError(f"{type(self).__name__} must define dataset_summaries()")

    def num_train(self) -> int:
        raise TypeError(f"{type(self).__name__} must define num_train()")

    def set_shard(self, rank: int, world: int) -> None:
        """Under DDP (the trainer calls this): this process is ``rank`` of ``world``, and
        ``train_batches`` yields only this process's part of every batch (see ``shard_batches``)."""
        self.rank, self.world = int(rank), int(world)

    def batch_bounds(self, batch_size: int) -> list[tuple[int, int]]:
        """``(start, stop)`` in the epoch's sample order of every batch of ``batch_size`` (the
        global batch under DDP), the last one shorter.  A lone last image is left out (batch norm
        needs two); under DDP a last batch too short to give every process two images joins the
        batch before it, so the processes' parts together still cover the single-process epoch."""
        n = self.num_train()
        bounds = [(start, min(start + batch_size, n)) for start in range(0, n, batch_size)]
        if len(bounds) > 1 and bounds[-1][1] - bounds[-1][0] == 1:
            bounds.pop()
        if self.world > 1 and len(bounds) > 1 and bounds[-1][1] - bounds[-1][0] < MIN_PER_PROCESS * self.world:
            last = bounds.pop()
            bounds[-1] = (bounds[-1][0], last[1])
        return bounds

    def num_batches(self, batch_size: int) -> int:
        return len(self.batch_bounds(batch_size))

    def shard_batches(self, order: torch.Tensor, batch_size: int) -> Iterator[tuple[int, torch.Tensor, slice]]:
        """For every batch ``i`` of an epoch whose sample ``order`` is given: ``(i, the batch's
        sample indices, the slice of them this process takes)``.  Batch ``i`` is the same on every
        process (the single-process batch); process ``rank`` takes its ``rank``-th contiguous part
        (sizes differ by at most one).  In a world of one the slice is the whole batch."""
        for i, (start, stop) in enumerate(self.batch_bounds(batch_size)):
            yield i, order[start:stop], part(stop - start, self.rank, self.world)

    def train_batches(self, epoch: int, batch_size: int) -> Iterator[Batch]:
        """Augmented batches of one epoch (this process's part of each under DDP); the order and
        augmentation depend only on (seed, epoch), which is what makes a resumed run repeat the
        uninterrupted one exactly."""
        raise TypeError(f"{type(self).__name__} must define train_batches()")

    def example_batch(self, batch_size: int) -> Batch:
        """A batch of the training shape (auto-batch measures memory with it)."""
        raise TypeError(f"{type(self).__name__} must define example_batch()")

    def to_device(self, batch: Batch, device: torch.device, channels_last: bool) -> Batch:
        x, y = batch
        x = x.to(device, non_blocking=True)
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return x, y.to(device, non_blocking=True) if isinstance(y, torch.Tensor) else y

    # --- model ----------------------------------------------------------------------------------
    def build_model(self, name: str) -> nn.Module:
        from ...models import create_model

        return create_model(name, num_classes=len(self.classes), in_channels=self.in_channels)

    def fit_to_data(self, model: nn.Module) -> dict[str, Any] | None:
        """Adapt a freshly initialised model to the training data before the first step (YOLOv7's
        anchors); returns what was done, or None.  Not called for runs that start from weights or resume."""
        return None

    def model_summary(self, model: nn.Module, name: str) -> dict[str, Any]:
        """The MODEL_SUMMARY payload: layers, parameters, gradients, FLOPs at the training size."""
        params = sum(p.numel() for p in model.parameters())
        grads = sum(p.numel() for p in model.parameters() if p.requires_grad)
        layers = sum(1 for m in model.modules() if not list(m.children()))
        device = next(model.parameters()).device
        x = torch.zeros(1, self.in_channels, self.imgsz, self.imgsz, device=device)
        return {"name": name, "layers": layers, "parameters": params, "gradients": grads,
                "flops": count_flops(model, x), "imgsz": self.imgsz, "in_channels": self.in_channels,
                "num_classes": len(self.classes)}

    # --- optimisation and evaluation -------------------------------------------------------------
    def loss(self, output: Any, targets: Any) -> tuple[torch.Tensor, dict[str, float]]:
        """The loss to back-propagate and its named parts (the ``losses`` of TRAIN_BATCH)."""
        raise TypeError(f"{type(self).__name__} must define loss()")

    def validate(self, model: nn.Module, batch_size: int, device: torch.device, dtype: torch.dtype | None,
                 channels_last: bool) -> ValResult:
        raise TypeError(f"{type(self).__name__} must define validate()")

    def plots(self, result: ValResult) -> dict[str, Any]:
        """Extra VAL_PLOTS fields (confusion matrix, PR curve, samples) from a validation."""
        return {}

    def weights_meta(self) -> dict[str, Any]:
        """Plain data stored with the weights so a predictor or an exporter can rebuild the input."""
        return {"task": self.name, "classes": list(self.classes), "imgsz": self.imgsz,
                "in_channels": self.in_channels}


def count_flops(model: nn.Module, x: torch.Tensor) -> int:
    """FLOPs of one forward pass, counting a multiply-add as two, over convolutions and linear layers
    (what torch.utils.flop_counter counts for these models, without its seconds-long import)."""
    total = 0

    def conv_hook(m: nn.Conv2d, inputs: Any, out: torch.Tensor) -> None:
        nonlocal total
        kh, kw = m.kernel_size
        total += 2 * out.numel() * (m.in_channels // m.groups) * kh * kw

    def linear_hook(m: nn.Linear, inputs: Any, out: torch.Tensor) -> None:
        nonlocal total
        total += 2 * out.numel() * m.in_features

    handles = [m.register_forward_hook(conv_hook if isinstance(m, nn.Conv2d) else linear_hook)
               for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(x)
    finally:
        model.train(was_training)
        for h in handles:
            h.remove()
    return total
