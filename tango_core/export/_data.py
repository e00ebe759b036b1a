"""Images for INT8 calibration and for verification, from whatever the user has.

Accepted: a tango dataset (object or folder with ``dataset.json``; its splits are honoured:
calibration draws from ``train``, verification from ``val`` / ``test``), a folder of images (an
image-folder layout with one sub-folder per class gives labels), a list of image paths, an array
already pre-processed to the model input, or ``(array, labels)``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import DataError
from ._preprocess import to_input

_IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff")


@dataclass
class Samples:
    """Pre-processed inputs (N, C, H, W float32) with optional labels.

    ``labels`` is an int array for classification, or for detection a list of (k, 5) arrays
    ``cls, x1, y1, x2, y2`` in input pixels (after resize / letterbox).
    """

    images: np.ndarray
    labels: Any = None
    description: str = ""

    def __len__(self) -> int:
        return len(self.images)

    def take(self, n: int, seed: int = 0) -> Samples:
        if n >= len(self):
            return self
        idx = np.sort(np.random.default_rng(seed).choice(len(self), n, replace=False))
        labels = self.labels
        if labels is not None:
            labels = labels[idx] if isinstance(labels, np.ndarray) else [labels[i] for i in idx]
        return Samples(self.images[idx], labels, f"{self.description}, {n} drawn with seed {seed}")


def random_samples(n: int, shape: Sequence[int], seed: int = 0) -> Samples:
    rng = np.random.default_rng(seed)
    return Samples(rng.standard_normal((n, *shape)).astype(np.float32), None, f"{n} seeded random inputs")


def load_samples(data: Any, *, imgsz: list[int], preprocess: dict[str, Any], task: str, class_names: list[str],
                 channels: int = 3, purpose: str = "verification", limit: int | None = None,
                 seed: int = 0) -> Samples:
    """``purpose`` is ``verification`` (held-out splits) or ``calibration`` (the train split)."""
    if isinstance(data, Samples):
        out = data
    elif isinstance(data, tuple) and len(data) == 2 and isinstance(data[0], np.ndarray):
        out = Samples(np.asarray(data[0], np.float32), _labels(data[1]), f"{len(data[0])} given inputs")
    elif isinstance(data, np.ndarray):
        out = Samples(np.asarray(data, np.float32), None, f"{len(data)} given inputs")
    elif _is_dataset(data):
        out = _from_dataset(_open_dataset(data), imgsz, preprocess, task, class_names, channels, purpose, limit, seed)
    elif isinstance(data, (str, os.PathLike)) and Path(data).is_dir():
        out = _from_folder(Path(data), imgsz, preprocess, class_names, channels, limit, seed)
    elif isinstance(data, (list, tuple)) and data and all(isinstance(p, (str, os.PathLike)) for p in data):
        paths = [Path(p) for p in data]
        out = _from_paths(paths, [None] * len(paths), imgsz, preprocess, channels, f"{len(paths)} given images")
    else:
        where = str(data) if isinstance(data, (str, os.PathLike)) else type(data).__name__
        raise DataError(where, f"cannot be used as {purpose} images",
                        "give a tango dataset, a folder of images, a list of image paths or an array")
    if len(out) == 0:
        raise DataError(str(data), f"holds no images for {purpose}")
    if limit is not None:
        out = out.take(limit, seed)
    return out


def _labels(labels: Any) -> Any:
    if labels is None:
        return None
    if isinstance(labels, (list, tuple)) and labels and isinstance(labels[0], np.ndarray) and labels[0].ndim == 2:
        return list(labels)
    return np.asarray(labels, np.int64)


def _is_dataset(data: Any) -> bool:
    if hasattr(data, "records_of") and hasattr(data, "image_path"):
        return True
    return isinstance(data, (str, os.PathLike)) and (Path(data) / "dataset.json").is_file()


def _open_dataset(data: Any):
    if hasattr(data, "records_of"):
        return data
    from ..data import load_dataset

    return load_dataset(data)


def _from_dataset(ds, imgsz, preprocess, task, class_names, channels, purpose, limit, seed) -> Samples:
    order = ("train", None, "val", "test") if purpose == "calibration" else ("val", "test", None)
    for split in order:
        records = [r for r in ds.records_of(split) if not getattr(r, "problem", None)]
        if task == "classification":
            records = [r for r in records if r.label is not None] or records
        if records:
            break
    else:
        records = list(ds.records)
        split = "all"
    if limit is not None and len(records) > limit:
        idx = np.sort(np.random.default_rng(seed).choice(len(records), limit, replace=False))
        records = [records[i] for i in idx]
    if class_names and list(ds.classes) != list(class_names):
        raise DataError(ds.root, f"its classes {list(ds.classes)} differ from the model's {list(class_names)}",
                        "verify on the dataset the model was trained on")
    labels: list[Any] = []
    for rec in records:
        if task == "classification":
            labels.append(rec.label)
        else:
            labels.append(np.array([[b.cls, b.x1, b.y1, b.x2, b.y2] for b in rec.boxes], np.float32).reshape(-1, 5))
    name = "unassigned" if split is None else split
    return _from_paths([ds.image_path(r) for r in records], labels, imgsz, preprocess, channels,
                       f"split {name!r} of {ds.root} ({len(records)} images)")


def _from_folder(root: Path, imgsz, preprocess, class_names, channels, limit, seed) -> Samples:
    subdirs = sorted(d for d in root.iterdir() if d.is_dir())
    paths, labels = [], []
    if subdirs:
        names = list(class_names) or [d.name for d in subdirs]
        for d in subdirs:
            if d.name not in names:
                raise DataError(d, f"folder name {d.name!r} is not a class of the model", f"classes: {names}")
            for p in sorted(d.iterdir()):
                if p.suffix.lower() in _IMAGE_SUFFIXES:
                    paths.append(p)
                    labels.append(names.index(d.name))
    else:
        paths = sorted(p for p in root.iterdir() if p.suffix.lower() in _IMAGE_SUFFIXES)
        labels = [None] * len(paths)
    if limit is not None and len(paths) > limit:
        idx = np.sort(np.random.default_rng(seed).choice(len(paths), limit, replace=False))
        paths, labels = [paths[i] for i in idx], [labels[i] for i in idx]
    return _from_paths(paths, labels, imgsz, preprocess, channels, f"{len(paths)} images of {root}")


def _from_paths(paths: list[Path], labels: list[Any], imgsz, preprocess, channels, description) -> Samples:
    from PIL import Image

    arrays, out_labels = [], []
    for path, label in zip(paths, labels, strict=True):
        try:
            with Image.open(path) as img:
                arr, geom = to_input(img, imgsz, preprocess, channels)
        except OSError as exc:
            raise DataError(path, f"cannot be read as an image ({exc})", "remove or replace the file") from exc
        arrays.append(arr)
        if isinstance(label, np.ndarray):  # boxes: image pixels -> input pixels
            rx, ry = geom["ratio"]
            top, left = geom["pad"]
            label = label.copy()
            label[:, [1, 3]] = label[:, [1, 3]] * rx + left
            label[:, [2, 4]] = label[:, [2, 4]] * ry + top
        out_labels.append(label)
    if not arrays:
        return Samples(np.zeros((0, channels, *imgsz), np.float32), None, description)
    if all(lab is None for lab in out_labels):
        final = None
    elif all(isinstance(lab, np.ndarray) for lab in out_labels):
        final = out_labels
    else:
        final = np.asarray([-1 if lab is None else lab for lab in out_labels], np.int64)
    return Samples(np.stack(arrays), final, description)
