"""Classification data: decode and resize every image once, keep uint8 tensors in memory, and
augment whole batches with tensor ops (no per-pixel Python, no per-image Python in the loop).

Sources: a tango ``Dataset`` (or the folder of its ``dataset.json``), or in-memory tensors
``{"train": (images, labels), "val": (images, labels), "classes": [...]}`` for tests and tuning.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ...errors import ConfigError, DataError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")
GRAY_MODES = ("1", "L", "LA", "I", "I;16", "F")
#: normalisation (ImageNet statistics; their mean for one channel), recorded with the weights
MEAN = {3: (0.485, 0.456, 0.406), 1: (0.449,)}
STD = {3: (0.229, 0.224, 0.225), 1: (0.226,)}
CACHE_LIMIT_BYTES = 4 * 2**30


@dataclass
class Split:
    name: str
    images: torch.Tensor  # uint8 [N, C, H, W]
    labels: torch.Tensor  # int64 [N]
    files: list[str] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)


def decode_image(path: str | os.PathLike, imgsz: int) -> np.ndarray:
    """Decode, resize (squash to imgsz x imgsz, bilinear) and return uint8 HxW (gray) or HxWx3."""
    from PIL import Image

    try:
        with Image.open(path) as img:
            img.load()
            gray = img.mode in GRAY_MODES
            img = img.convert("L" if gray else "RGB")
            if img.size != (imgsz, imgsz):
                img = img.resize((imgsz, imgsz), Image.BILINEAR)
            return np.asarray(img, dtype=np.uint8)
    except FileNotFoundError:
        raise DataError(path, "image file not found", "the dataset lists it: restore the file or remove the "
                                                       "record (tango data analyse shows every problem)") from None
    except Exception as exc:  # PIL raises OSError, SyntaxError, ValueError... for broken files
        raise DataError(path, f"cannot be decoded as an image ({type(exc).__name__}: {exc})",
                        "the file is corrupt or truncated: replace it or remove it from the dataset") from exc


def _stack(arrays: list[np.ndarray], channels: int) -> torch.Tensor:
    out = np.empty((len(arrays), channels, *arrays[0].shape[:2]), dtype=np.uint8)
    for i, a in enumerate(arrays):
        if a.ndim == 2:
            out[i] = a[None] if channels == 1 else np.broadcast_to(a[None], (channels, *a.shape))
        elif channels == 1:  # colour into a gray model: luminance as PIL computes it
            out[i, 0] = (a[..., 0] * 0.299 + a[..., 1] * 0.587 + a[..., 2] * 0.114).round().astype(np.uint8)
        else:
            out[i] = a.transpose(2, 0, 1)
    return torch.from_numpy(out)


def _auto_split(records: list, val: float, seed: int) -> tuple[list, list]:
    """Stratified, deterministic (seed + record id), in memory: the user's store is not modified."""
    rng = np.random.default_rng(seed)
    train, valid = [], []
    by_class: dict[int, list] = {}
    for rec in sorted(records, key=lambda r: r.id):
        by_class.setdefault(rec.label, []).append(rec)
    for label in sorted(by_class):
        group = by_class[label]
        for j, k in enumerate(rng.permutation(len(group))):
            (valid if (j + 0.5) / len(group) < val else train).append(group[k])
    return train, valid


def load_dataset_splits(ds: Any, imgsz: int, channels: int | None, seed: int, val_fraction: float = 0.2,
                        threads: int | None = None) -> tuple[list[str], int, Split, Split]:
    """Read a tango Dataset into cached train and val splits; returns (classes, channels, train, val)."""
    if ds.task != "classification":
        raise ConfigError(str(ds.store_path), "task", f"is {ds.task!r}, but a classification model was asked for",
                          "pick a model of the dataset's task")
    if not ds.classes:
        raise DataError(ds.store_path, "the dataset has no classes", "add classes and label some images first")
    labelled = [r for r in ds.records if r.label is not None]
    unlabelled = len(ds.records) - len(labelled)
    for rec in labelled:
        if not 0 <= rec.label < len(ds.classes):
            raise DataError(ds.image_path(rec), f"label {rec.label} is not a class index (0..{len(ds.classes) - 1})")
    train = [r for r in labelled if r.split in ("train", None)]
    val = [r for r in labelled if r.split == "val"]
    split_note = "from the dataset"
    if not val:
        train, val = _auto_split(train, val_fraction, seed)
        split_note = f"automatic ({val_fraction:.0%} of each class, seed {seed}; the dataset has no val split)"
    if not train or not val:
        raise DataError(ds.store_path, f"too few labelled images to train ({len(train)} train, {len(val)} val)",
                        "label more images (at least 2 per class)")
    need = (len(train) + len(val)) * 3 * imgsz * imgsz
    if need > CACHE_LIMIT_BYTES:
        raise ConfigError("train", "imgsz", f"{len(train) + len(val)} images at {imgsz}px need {need / 2**30:.1f} GB "
                          "in the in-memory cache", f"use a smaller imgsz (limit {CACHE_LIMIT_BYTES / 2**30:.0f} GB)")
    paths = {r.id: ds.image_path(r) for r in train + val}
    with ThreadPoolExecutor(max_workers=threads or min(4, os.cpu_count() or 1)) as pool:  # PIL releases the GIL
        arrays = dict(zip(paths, pool.map(lambda p: decode_image(p, imgsz), paths.values()), strict=True))
    if channels is None:
        channels = 1 if all(a.ndim == 2 for a in arrays.values()) else 3
    out = []
    for name, recs in (("train", train), ("val", val)):
        counts = [0] * len(ds.classes)
        for r in recs:
            counts[r.label] += 1
        split = Split(name, _stack([arrays[r.id] for r in recs], channels),
                      torch.tensor([r.label for r in recs], dtype=torch.int64), [r.file for r in recs])
        split.summary = {"split": name, "total": len(recs) + (unlabelled if name == "train" else 0),
                         "found": len(recs), "missing": 0, "empty": unlabelled if name == "train" else 0,
                         "corrupted": 0, "classes": dict(zip(ds.classes, counts, strict=True)),
                         "source": str(ds.root), "split_from": split_note}
        out.append(split)
    return list(ds.classes), channels, out[0], out[1]


def tensor_splits(data: dict[str, Any], imgsz: int | None) -> tuple[list[str], int, Split, Split]:
    """In-memory data: ``{"train": (x, y), "val": (x, y), "classes": [...]}``, x uint8 [N,C,H,W]."""
    for key in ("train", "val", "classes"):
        if key not in data:
            raise ConfigError("data", key, "missing", "give {'train': (images, labels), 'val': (...), 'classes': [...]}")
    classes = list(data["classes"])
    splits = []
    for name in ("train", "val"):
        x, y = data[name]
        x, y = torch.as_tensor(x), torch.as_tensor(y, dtype=torch.int64)
        if x.ndim != 4 or x.shape[0] != y.shape[0]:
            raise ConfigError("data", name, f"images {tuple(x.shape)} and labels {tuple(y.shape)} do not match",
                              "images must be [N, C, H, W] with one label each")
        if x.dtype != torch.uint8:
            x = (x.float().clamp(0, 1) * 255).round().to(torch.uint8)
        if imgsz and x.shape[-1] != imgsz or imgsz and x.shape[-2] != imgsz:
            x = F.interpolate(x.float(), size=(imgsz, imgsz), mode="bilinear", align_corners=False)
            x = x.round().clamp(0, 255).to(torch.uint8)
        if y.numel() and (y.min() < 0 or y.max() >= len(classes)):
            raise ConfigError("data", name, f"labels must be class indices 0..{len(classes) - 1}")
        counts = torch.bincount(y, minlength=len(classes)).tolist()
        split = Split(name, x.contiguous(), y)
        split.summary = {"split": name, "total": len(y), "found": len(y), "missing": 0, "empty": 0, "corrupted": 0,
                         "classes": dict(zip(classes, counts, strict=True)), "source": "memory",
                         "split_from": "given"}
        splits.append(split)
    return classes, int(splits[0].images.shape[1]), splits[0], splits[1]


class BatchAugment:
    """Random shift (pad + crop), flips and brightness on a uint8 batch, then normalisation."""

    def __init__(self, channels: int, imgsz: int, hyp: dict[str, Any]) -> None:
        self.pad = int(round(hyp["translate"] * imgsz))
        self.fliplr, self.flipud, self.hsv_v = hyp["fliplr"], hyp["flipud"], hyp["hsv_v"]
        mean, std = torch.tensor(MEAN[channels]), torch.tensor(STD[channels])
        self.scale = (1.0 / (255.0 * std)).view(1, -1, 1, 1)
        self.shift = (-mean / std).view(1, -1, 1, 1)

    def normalise(self, x: torch.Tensor, gain: torch.Tensor | None = None) -> torch.Tensor:
        x = x.float()
        if gain is not None:
            x = x.mul_(gain.view(-1, 1, 1, 1)).clamp_(0, 255)
        return torch.addcmul(self.shift, x, self.scale)

    def __call__(self, x: torch.Tensor, g: torch.Generator, total: int | None = None,
                 part: slice = slice(None)) -> torch.Tensor:
        """Augment ``x``.  Under DDP ``x`` is the ``part`` of a batch of ``total`` images: the
        random draws are made for the whole batch and ``part`` of them applied, so every process's
        images are augmented exactly as in the single-process batch."""
        b, c, h, w = x.shape
        total = total or b

        def draw(values: torch.Tensor) -> torch.Tensor:
            return values[part]

        if self.pad:
            p = self.pad
            padded = F.pad(x, (p, p, p, p))
            oy = draw(torch.randint(0, 2 * p + 1, (total,), generator=g))
            ox = draw(torch.randint(0, 2 * p + 1, (total,), generator=g))
            rows = (oy[:, None] + torch.arange(h))[:, None, :, None].expand(b, c, h, w + 2 * p)
            cols = (ox[:, None] + torch.arange(w))[:, None, None, :].expand(b, c, h, w)
            x = padded.gather(2, rows).gather(3, cols)
        if self.fliplr:
            x = torch.where((draw(torch.rand(total, generator=g)) < self.fliplr).view(b, 1, 1, 1), x.flip(3), x)
        if self.flipud:
            x = torch.where((draw(torch.rand(total, generator=g)) < self.flipud).view(b, 1, 1, 1), x.flip(2), x)
        gain = None
        if self.hsv_v:
            gain = 1.0 + (draw(torch.rand(total, generator=g)) * 2 - 1) * self.hsv_v
        return self.normalise(x, gain)
