"""Classification metrics: top-k accuracy, confusion matrix, per-class precision and recall."""

from __future__ import annotations

from typing import Any

import torch


class ClassificationMeter:
    """Accumulates predictions over batches; ``result()`` gives plain numbers (fractions in 0..1)."""

    def __init__(self, num_classes: int, topk: int = 5) -> None:
        self.num_classes = num_classes
        self.k = min(topk, num_classes)
        self.confusion = torch.zeros(num_classes, num_classes, dtype=torch.int64)  # rows: true, cols: predicted
        self.topk_correct = 0
        self.loss_sum = 0.0
        self.count = 0

    @torch.no_grad()
    def update(self, logits: torch.Tensor, labels: torch.Tensor, loss_sum: float = 0.0) -> None:
        logits, labels = logits.detach().float().cpu(), labels.detach().cpu()
        top = logits.topk(self.k, dim=1).indices
        pred = top[:, 0]
        idx = labels * self.num_classes + pred
        self.confusion += torch.bincount(idx, minlength=self.num_classes**2).view(self.num_classes, self.num_classes)
        self.topk_correct += int((top == labels[:, None]).any(dim=1).sum())
        self.loss_sum += float(loss_sum)
        self.count += int(labels.numel())

    def result(self) -> dict[str, Any]:
        cm = self.confusion.double()
        tp = cm.diag()
        predicted, actual = cm.sum(0), cm.sum(1)
        precision = torch.where(predicted > 0, tp / predicted.clamp(min=1), torch.zeros_like(tp))
        recall = torch.where(actual > 0, tp / actual.clamp(min=1), torch.zeros_like(tp))
        present = actual > 0  # macro averages over the classes that occur in the split
        n = max(self.count, 1)
        return {
            "top1": float(tp.sum() / n),
            "top5": self.topk_correct / n,  # top-k with k = min(5, classes)
            "loss": self.loss_sum / n,
            "precision": float(precision[present].mean()) if present.any() else 0.0,
            "recall": float(recall[present].mean()) if present.any() else 0.0,
            "per_class_precision": precision.tolist(),
            "per_class_recall": recall.tolist(),
            "support": actual.long().tolist(),
            "confusion_matrix": self.confusion.tolist(),
        }
