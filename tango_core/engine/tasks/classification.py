"""Image classification: cached uint8 tensors, batch augmentation, cross-entropy, top-1 fitness."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from ...errors import DataError
from ..metrics import ClassificationMeter
from . import register_task
from ._base import Batch, Task, ValResult
from ._cls_data import MEAN, STD, BatchAugment, load_dataset_splits, tensor_splits

SAMPLES_IN_PLOTS = 16


def mix_seed(*parts: int) -> int:
    """One 63-bit seed from several integers (seed, epoch, batch), stable across runs and platforms."""
    h = 0x9E3779B97F4A7C15
    for p in parts:
        h = ((h ^ (int(p) & 0xFFFFFFFFFFFFFFFF)) * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return h & 0x7FFFFFFFFFFFFFFF


@register_task("classification", fitness="top1")
class ClassificationTask(Task):
    name = "classification"
    fitness_name = "top1"

    def __init__(self, data: Any, *, imgsz: int, hyp: dict[str, Any], seed: int = 0, channels: int | None = None,
                 val_fraction: float = 0.2) -> None:
        self.hyp, self.seed = hyp, seed
        if isinstance(data, dict):
            self.classes, self.in_channels, self.train, self.val = tensor_splits(data, imgsz)
            self.imgsz = int(self.train.images.shape[-1])
        else:
            ds = data if hasattr(data, "records") else _open_dataset(data)
            self.imgsz = imgsz
            self.classes, self.in_channels, self.train, self.val = load_dataset_splits(
                ds, imgsz, channels, seed, val_fraction)
        self.augment = BatchAugment(self.in_channels, self.imgsz, hyp)

    # --- data -------------------------------------------------------------------------------------
    def dataset_summaries(self) -> list[dict[str, Any]]:
        return [self.train.summary, self.val.summary]

    def num_train(self) -> int:
        return len(self.train.labels)

    def train_batches(self, epoch: int, batch_size: int) -> Iterator[Batch]:
        order = torch.randperm(self.num_train(), generator=torch.Generator().manual_seed(mix_seed(self.seed, epoch)))
        for i, batch, mine in self.shard_batches(order, batch_size):
            idx = batch[mine]
            g = torch.Generator().manual_seed(mix_seed(self.seed, epoch, i + 1))
            # under DDP the random draws are those of the whole batch, so the processes' parts
            # together are exactly the single-process batch
            yield self.augment(self.train.images[idx], g, total=len(batch), part=mine), self.train.labels[idx]

    def example_batch(self, batch_size: int) -> Batch:
        g = torch.Generator().manual_seed(batch_size)
        x = torch.randint(0, 256, (batch_size, self.in_channels, self.imgsz, self.imgsz), dtype=torch.uint8, generator=g)
        return self.augment.normalise(x), torch.randint(0, len(self.classes), (batch_size,), generator=g)

    # --- loss and validation -----------------------------------------------------------------------
    def loss(self, output: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, dict[str, Any]]:
        loss = F.cross_entropy(output.float(), targets, label_smoothing=self.hyp["label_smoothing"])
        return loss, {"cls": loss.detach()}

    @torch.inference_mode()
    def validate(self, model: nn.Module, batch_size: int, device: torch.device, dtype: torch.dtype | None,
                 channels_last: bool) -> ValResult:
        was_training = model.training
        model.eval()
        meter = ClassificationMeter(len(self.classes))
        preds, scores = [], []
        images, labels = self.val.images, self.val.labels
        for i in range(0, len(labels), batch_size):
            x, y = self.to_device((self.augment.normalise(images[i:i + batch_size]), labels[i:i + batch_size]),
                                  device, channels_last)
            with torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
                logits = model(x).float()
            meter.update(logits, y, F.cross_entropy(logits, y, reduction="sum").item())
            conf, pred = logits.softmax(1).max(1)
            preds.append(pred.cpu())
            scores.append(conf.cpu())
        model.train(was_training)
        res = meter.result()
        metrics = {"top1": res["top1"], "top5": res["top5"], "val_loss": res["loss"],
                   "precision": res["precision"], "recall": res["recall"]}
        details = dict(res, classes=list(self.classes), pred=torch.cat(preds).tolist(),
                       score=torch.cat(scores).tolist())
        return ValResult(metrics, res["top1"], details)

    def plots(self, result: ValResult) -> dict[str, Any]:
        d = result.details
        out: dict[str, Any] = {"confusion_matrix": d["confusion_matrix"],
                               "per_class": {"precision": d["per_class_precision"], "recall": d["per_class_recall"],
                                             "support": d["support"]}}
        if self.val.files:  # mistakes first: they are what a person wants to look at
            root = self.val.summary.get("source", "")
            order = sorted(range(len(d["pred"])), key=lambda i: (d["pred"][i] == int(self.val.labels[i]), -d["score"][i]))
            out["samples"] = [{"file": str(Path(root) / self.val.files[i]), "label": int(self.val.labels[i]),
                               "pred": d["pred"][i], "score": round(d["score"][i], 4)}
                              for i in order[:SAMPLES_IN_PLOTS]]
        return out

    def weights_meta(self) -> dict[str, Any]:
        return dict(super().weights_meta(), preprocess={
            "resize": "squash", "interpolation": "bilinear", "color": "L" if self.in_channels == 1 else "RGB",
            "layout": "NCHW", "scale": 1 / 255, "mean": list(MEAN[self.in_channels]), "std": list(STD[self.in_channels])})


def _open_dataset(path: Any):
    root = Path(path)
    if root.is_file():
        root = root.parent
    if not (root / "dataset.json").is_file():
        raise DataError(root, "is not a tango dataset (no dataset.json)",
                        "import the images first: tango data import <folder> <dataset>, or Dataset.create()")
    from ...data import load_dataset

    return load_dataset(root)
