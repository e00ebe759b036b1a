"""Detection / segmentation data for training: decode each image once, keep it in memory.

Training images are kept with their longer side at the training size (the mosaic resizes tiles to
that anyway); validation images are letterboxed to ``imgsz x imgsz`` and stacked.  Sources: a tango
``Dataset`` (boxes, and polygons whose boxes count too; segmentation uses polygons only), or
in-memory samples ``{"train": [(image, labels[, polygons])...], "val": [...], "classes": [...]}``.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from ..errors import ConfigError, DataError
from ._augment import Sample, letterbox, resize_long_side, resized_hw

CACHE_LIMIT_BYTES = 4 * 2**30
GRAY_MODES = ("1", "L", "LA", "I", "I;16", "F")


@dataclass
class DetSplit:
    name: str
    samples: list[Sample]
    files: list[str] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)
    #: per sample (sx, sy, pad_x, pad_y): its pixels are at ``x * sx + pad_x`` of the original image
    transforms: list[tuple[float, float, float, float]] = field(default_factory=list)

    def to_original(self, i: int, boxes: np.ndarray) -> np.ndarray:
        """Boxes (x1, y1, x2, y2 in the first four columns) of sample ``i`` in its original pixels."""
        sx, sy, px, py = self.transforms[i]
        out = np.array(boxes, dtype=np.float64).reshape(-1, np.shape(boxes)[-1] if np.size(boxes) else 4)
        out[:, [0, 2]] = (out[:, [0, 2]] - px) / sx
        out[:, [1, 3]] = (out[:, [1, 3]] - py) / sy
        return out


def _decode(path: str | os.PathLike, gray: bool | None) -> np.ndarray:
    from PIL import Image

    try:
        with Image.open(path) as img:
            img.load()
            is_gray = img.mode in GRAY_MODES if gray is None else gray
            return np.asarray(img.convert("L" if is_gray else "RGB"), dtype=np.uint8)
    except FileNotFoundError:
        raise DataError(path, "image file not found", "restore the file or remove its record from the dataset") from None
    except Exception as exc:  # PIL raises many kinds for broken files
        raise DataError(path, f"cannot be decoded as an image ({type(exc).__name__}: {exc})",
                        "replace the file or remove it from the dataset") from exc


def _to_channels(image: np.ndarray, channels: int) -> np.ndarray:
    if image.ndim == 2:
        image = image[:, :, None]
    if image.shape[2] == channels:
        return image
    if channels == 1:  # colour into a grey model: luminance as PIL computes it
        return (image[..., :3] @ np.array([0.299, 0.587, 0.114])).round().astype(np.uint8)[:, :, None]
    return np.repeat(image[:, :, :1], channels, axis=2)


def _auto_split(records: list, val: float, seed: int) -> tuple[list, list]:
    rng = np.random.default_rng(seed)
    order = sorted(records, key=lambda r: r.id)
    pick = rng.permutation(len(order))
    n_val = max(1, round(val * len(order))) if len(order) > 1 else 0
    val_ids = {order[i].id for i in pick[:n_val]}
    return [r for r in order if r.id not in val_ids], [r for r in order if r.id in val_ids]


def _record_sample(ds: Any, rec: Any, image: np.ndarray, segmentation: bool) -> Sample:
    if segmentation:
        polys = [p for p in rec.polygons if len(p.points) >= 3]
        labels = np.array([[p.cls, *p.bbox().xyxy] for p in polys], dtype=np.float64).reshape(-1, 5)
        return Sample(image, labels, [np.asarray(p.points, dtype=np.float64) for p in polys])
    boxes = rec.all_boxes()
    return Sample(image, np.array([[b.cls, *b.xyxy] for b in boxes], dtype=np.float64).reshape(-1, 5))


def load_splits(ds: Any, imgsz: int, channels: int | None, seed: int, val_fraction: float = 0.2,
                segmentation: bool = False, threads: int | None = None) -> tuple[list[str], int, DetSplit, DetSplit]:
    """Read a tango Dataset into cached train and letterboxed val splits."""
    want = "segmentation" if segmentation else "detection"
    if ds.task not in (want, "segmentation"):
        raise ConfigError(str(ds.store_path), "task", f"is {ds.task!r}, but a {want} model was asked for",
                          "pick a model of the dataset's task")
    if not ds.classes:
        raise DataError(ds.store_path, "the dataset has no classes", "add classes and draw some boxes first")
    usable = [r for r in ds.records if (r.polygons if segmentation else r.all_boxes())]
    empty = len(ds.records) - len(usable)
    for rec in usable:
        for shape in rec.boxes + rec.polygons:
            if not 0 <= shape.cls < len(ds.classes):
                raise DataError(ds.image_path(rec), f"class {shape.cls} is not a class index (0..{len(ds.classes) - 1})")
    train = [r for r in usable if r.split in ("train", None)]
    val = [r for r in usable if r.split == "val"]
    note = "from the dataset"
    if not val:
        train, val = _auto_split(train, val_fraction, seed)
        note = f"automatic ({val_fraction:.0%}, seed {seed}; the dataset has no val split)"
    if not train or not val:
        raise DataError(ds.store_path, f"too few labelled images to train ({len(train)} train, {len(val)} val)",
                        "label more images (at least 2)")
    need = (len(train) + len(val)) * 3 * imgsz * imgsz
    if need > CACHE_LIMIT_BYTES:
        raise ConfigError("train", "imgsz", f"{len(train) + len(val)} images at {imgsz}px need {need / 2**30:.1f} GB "
                          "in the in-memory cache", f"use a smaller imgsz (limit {CACHE_LIMIT_BYTES / 2**30:.0f} GB)")
    gray = None if channels is None else channels == 1
    with ThreadPoolExecutor(max_workers=threads or min(4, os.cpu_count() or 1)) as pool:
        arrays = dict(zip([r.id for r in train + val],
                          pool.map(lambda r: _decode(ds.image_path(r), gray), train + val), strict=True))
    if channels is None:
        channels = 1 if all(a.ndim == 2 for a in arrays.values()) else 3
    out = []
    for name, recs in (("train", train), ("val", val)):
        samples = [_record_sample(ds, r, _to_channels(arrays[r.id], channels), segmentation) for r in recs]
        out.append(make_split(name, samples, imgsz, list(ds.classes), [r.file for r in recs],
                              {"source": str(ds.root), "split_from": note, "empty": empty if name == "train" else 0}))
    return list(ds.classes), channels, out[0], out[1]


def make_split(name: str, samples: list[Sample], imgsz: int, classes: list[str], files: list[str] | None = None,
               extra: dict[str, Any] | None = None) -> DetSplit:
    """Resize (train) or letterbox (val) the samples and describe the split (a DATASET_SUMMARY)."""
    prepared = [resize_long_side(s, imgsz) if name == "train" else letterbox(s, imgsz) for s in samples]
    transforms = []
    for before in samples:
        h, w = before.hw
        nh, nw = resized_hw((h, w), imgsz)
        pad = ((imgsz - nw) // 2, (imgsz - nh) // 2) if name == "val" else (0, 0)
        transforms.append((nw / w, nh / h, float(pad[0]), float(pad[1])))
    counts = [0] * len(classes)
    for s in prepared:
        for c in s.labels[:, 0].astype(int):
            counts[c] += 1
    summary = {"split": name, "total": len(samples) + int((extra or {}).get("empty", 0)), "found": len(samples),
               "missing": 0, "empty": int((extra or {}).get("empty", 0)), "corrupted": 0,
               "classes": dict(zip(classes, counts, strict=True)), "objects": sum(counts)}
    summary.update({k: v for k, v in (extra or {}).items() if k != "empty"})
    return DetSplit(name, prepared, list(files or []), summary, transforms)


def memory_splits(data: dict[str, Any], imgsz: int, segmentation: bool = False
                  ) -> tuple[list[str], int, DetSplit, DetSplit]:
    """In-memory data: ``{"train": [(image HxWxC uint8, labels (n, 5)[, polygons])...], "val": [...],
    "classes": [...]}``."""
    for key in ("train", "val", "classes"):
        if key not in data:
            raise ConfigError("data", key, "missing", "give {'train': [(image, labels), ...], 'val': [...], 'classes': [...]}")
    classes = list(data["classes"])
    splits = []
    channels = None
    for name in ("train", "val"):
        samples = []
        for i, item in enumerate(data[name]):
            image, labels = np.asarray(item[0], dtype=np.uint8), np.asarray(item[1], dtype=np.float64).reshape(-1, 5)
            polys = [np.asarray(p, dtype=np.float64) for p in item[2]] if len(item) > 2 else None
            if segmentation and polys is None:
                raise ConfigError("data", f"{name}[{i}]", "a segmentation sample needs polygons",
                                  "give (image, labels, polygons)")
            if len(labels) and (labels[:, 0].min() < 0 or labels[:, 0].max() >= len(classes)):
                raise ConfigError("data", f"{name}[{i}]", f"class ids must be in 0..{len(classes) - 1}")
            sample = Sample(image, labels, polys if segmentation else None)
            channels = sample.image.shape[2]
            samples.append(sample)
        if not samples:
            raise ConfigError("data", name, "has no samples")
        splits.append(make_split(name, samples, imgsz, classes, extra={"source": "<memory>"}))
    return classes, int(channels or 3), splits[0], splits[1]


def stack_images(samples: list[Sample]) -> torch.Tensor:
    """uint8 ``(B, C, H, W)`` from samples of one size."""
    return torch.from_numpy(np.stack([s.image for s in samples])).permute(0, 3, 1, 2).contiguous()


def rasterise(segments: list[np.ndarray], hw: tuple[int, int], scale: float) -> torch.Tensor:
    """Instance masks ``(n, h, w)`` (uint8) of polygons given in input pixels, at ``scale`` of the input."""
    from ..data._masks import polygon_mask

    h, w = hw
    out = np.zeros((len(segments), h, w), dtype=np.uint8)
    for i, poly in enumerate(segments):
        if len(poly) >= 3:
            out[i] = polygon_mask((poly * scale).tolist(), w, h)
    return torch.from_numpy(out)
