"""Predict classes for images, a folder or arrays with weights tango saved (best.pt / last.pt)."""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import DataError
from ..models import create_model
from ..models.weights import load_weights, read_weights
from .tasks._cls_data import IMAGE_SUFFIXES, MEAN, STD, decode_image


@dataclass
class Prediction:
    source: str | None  # the file, or None for an in-memory image
    label: int
    name: str
    confidence: float
    top: list[tuple[str, float]]  # the k most likely classes with their probabilities


class Predictor:
    """``Predictor("runs/train/1/weights/best.pt")(["a.png", "folder/"])`` -> list of :class:`Prediction`."""

    def __init__(self, weights: str | os.PathLike, device: str = "cpu") -> None:
        data = read_weights(weights)
        missing = [k for k in ("model", "classes", "imgsz", "in_channels") if not data.get(k)]
        if missing:
            raise DataError(weights, f"has no {', '.join(missing)} metadata", "predict with weights saved by tango's trainer")
        if data.get("task", "classification") != "classification":
            raise DataError(weights, f"holds a {data['task']} model; this predictor classifies images",
                            "use tango_core.detection.DetectionPredictor for detection weights")
        self.classes: list[str] = list(data["classes"])
        self.imgsz, self.channels = int(data["imgsz"]), int(data["in_channels"])
        self.device = torch.device(device)
        self.model = create_model(data["model"], num_classes=len(self.classes), in_channels=self.channels)
        load_weights(self.model, weights, strict=True)
        self.model.to(self.device).eval()
        pre = data.get("preprocess") or {}
        mean = torch.tensor(pre.get("mean", MEAN[self.channels])).view(1, -1, 1, 1)
        std = torch.tensor(pre.get("std", STD[self.channels])).view(1, -1, 1, 1)
        self.scale, self.shift = 1.0 / (255.0 * std), -mean / std

    def _load(self, item: Any) -> np.ndarray:
        if isinstance(item, (str, os.PathLike)):
            return decode_image(item, self.imgsz)
        from PIL import Image

        if isinstance(item, np.ndarray):
            item = Image.fromarray(item)
        if isinstance(item, Image.Image):
            img = item.convert("L" if self.channels == 1 else "RGB").resize((self.imgsz, self.imgsz), Image.BILINEAR)
            return np.asarray(img, dtype=np.uint8)
        raise DataError(repr(item)[:80], "is not an image path, PIL image or array")

    def _to_tensor(self, arrays: list[np.ndarray]) -> torch.Tensor:
        out = []
        for a in arrays:
            if a.ndim == 2:
                a = np.repeat(a[None], self.channels, 0)
            elif self.channels == 1:
                a = (a[..., 0] * 0.299 + a[..., 1] * 0.587 + a[..., 2] * 0.114).round().astype(np.uint8)[None]
            else:
                a = a.transpose(2, 0, 1)
            out.append(torch.from_numpy(np.ascontiguousarray(a)))
        return torch.addcmul(self.shift, torch.stack(out).float(), self.scale)

    @torch.inference_mode()
    def __call__(self, source: Any, batch_size: int = 32, topk: int = 1) -> list[Prediction]:
        items = list(expand_sources(source))
        results: list[Prediction] = []
        k = min(max(topk, 1), len(self.classes))
        for i in range(0, len(items), batch_size):
            chunk = items[i:i + batch_size]
            x = self._to_tensor([self._load(it) for it in chunk]).to(self.device)
            probs = self.model(x).float().softmax(1).cpu()
            conf, idx = probs.topk(k, dim=1)
            for item, c, j in zip(chunk, conf.tolist(), idx.tolist(), strict=True):
                src = str(item) if isinstance(item, (str, os.PathLike)) else None
                results.append(Prediction(src, j[0], self.classes[j[0]], c[0],
                                          [(self.classes[a], b) for a, b in zip(j, c, strict=True)]))
        return results


def expand_sources(source: Any) -> Iterable[Any]:
    """A file, a folder (its images, recursively, sorted), a list of those, or in-memory images."""
    if isinstance(source, (list, tuple)):
        for s in source:
            yield from expand_sources(s)
        return
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if path.is_dir():
            files = sorted(p for p in path.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
            if not files:
                raise DataError(path, "holds no images", f"image files end with {', '.join(IMAGE_SUFFIXES)}")
            yield from files
            return
        if not path.exists():
            raise DataError(path, "not found", "give an image file or a folder of images")
    yield source


def predict(weights: str | os.PathLike, source: Any, device: str = "cpu", topk: int = 1) -> list[Prediction]:
    return Predictor(weights, device)(source, topk=topk)
