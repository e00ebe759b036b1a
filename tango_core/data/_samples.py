"""Built-in sample datasets, generated on the spot (no download), deterministic for a seed.

``digits``: scikit-learn's 8 x 8 handwritten digits, upsampled with a light random affine
warp, noise and tint, so that repeated draws of one digit are not duplicates.
``shapes``: circles, squares, triangles, hexagons and stars of random size, angle and colour
on a noisy smooth background.  Each shape is a polygon rasterised by the same rule as
:meth:`Polygon.mask`, so its polygon is exact and its box is the tight box of its pixels.
"""

from __future__ import annotations

import io
import math
import os
from pathlib import Path

import numpy as np

from ..errors import DataError
from ..registry import Registry
from ._dataset import Dataset
from ._masks import polygon_mask
from ._shapes import Box, Polygon

SAMPLES: Registry = Registry("sample dataset")
SHAPE_CLASSES = ["circle", "square", "triangle", "hexagon", "star"]


def make_sample(name: str, dest: str | os.PathLike, **options) -> Dataset:
    """Generate the sample dataset ``name`` (see ``SAMPLES.names()``) into a new store at ``dest``."""
    return SAMPLES.get(name)(Path(dest), **options)


def _png(arr: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, "PNG", compress_level=1)
    return buf.getvalue()


@SAMPLES.register("digits", tasks=("classification",), description="handwritten digits 0-9 (scikit-learn)")
def digits(dest: Path, n_per_class: int = 20, size: int = 32, mode: str = "RGB", seed: int = 0,
           val: float = 0.2, test: float = 0.0) -> Dataset:
    from PIL import Image
    from sklearn.datasets import load_digits

    if mode not in ("RGB", "L"):
        raise ValueError(f"mode must be 'RGB' or 'L', not {mode!r}")
    if n_per_class < 1 or size < 8:
        raise ValueError("n_per_class must be >= 1 and size >= 8")
    data = load_digits()
    rng = np.random.default_rng(seed)
    ds = Dataset.create(dest, task="classification", classes=[str(d) for d in range(10)])
    for digit in range(10):
        pool = np.flatnonzero(data.target == digit)
        picks = rng.choice(pool, n_per_class, replace=n_per_class > len(pool))
        for k, idx in enumerate(picks):
            base = Image.fromarray((data.images[idx] * (255 / 16)).astype(np.uint8)).resize((size, size),
                                                                                             Image.BICUBIC)
            # a small random rotation, scale and shift about the centre
            angle, scale = math.radians(rng.uniform(-12, 12)), rng.uniform(0.85, 1.1)
            tx, ty = rng.uniform(-0.08, 0.08, 2) * size
            a, b = math.cos(angle) / scale, math.sin(angle) / scale
            c0 = size / 2
            coeffs = (a, b, c0 - a * (c0 + tx) - b * (c0 + ty), -b, a, c0 + b * (c0 + tx) - a * (c0 + ty))
            warped = np.asarray(base.transform((size, size), Image.AFFINE, coeffs, Image.BILINEAR),
                                dtype=np.float32) / 255
            if mode == "RGB":
                fg = rng.uniform(0.6, 1.0, 3)
                bg = rng.uniform(0.0, 0.25, 3)
                img = bg + warped[..., None] * (fg - bg)
            else:
                img = warped
            img = img + rng.normal(0, 0.03, img.shape)
            arr = (np.clip(img, 0, 1) * 255).astype(np.uint8)
            rec = ds.add_image(_png(arr), name=f"{digit}/{digit}_{k:04d}.png", check=False, size=(size, size),
                               durable=False)
            rec.label = digit
    if val or test:
        ds.split(val=val, test=test, seed=seed)
    ds.save()
    return ds


def _shape_points(kind: str, cx: float, cy: float, r: float, angle: float) -> list[tuple[float, float]]:
    if kind == "circle":
        n = max(16, int(2 * math.pi * r / 2))
        radii = [r] * n
    elif kind == "star":
        n = 10
        radii = [r if i % 2 == 0 else 0.45 * r for i in range(n)]
    else:
        n = {"square": 4, "triangle": 3, "hexagon": 6}[kind]
        radii = [r] * n
    return [(cx + rad * math.cos(angle + 2 * math.pi * i / n), cy + rad * math.sin(angle + 2 * math.pi * i / n))
            for i, rad in enumerate(radii)]


def _background(rng: np.random.Generator, size: int) -> np.ndarray:
    from PIL import Image

    coarse = (rng.uniform(0, 1, (4, 4, 3)) * rng.uniform(60, 200) + rng.uniform(0, 55)).astype(np.uint8)
    smooth = np.asarray(Image.fromarray(coarse).resize((size, size), Image.BICUBIC), dtype=np.float32)
    return smooth + rng.standard_normal((size, size, 3), dtype=np.float32) * 10


@SAMPLES.register("shapes", tasks=("classification", "detection", "segmentation"),
                  description="synthetic shapes with exact boxes and polygons")
def shapes(dest: Path, n: int = 40, size: int = 64, task: str = "detection", seed: int = 0,
           max_shapes: int = 4, max_overlap: float | None = None, val: float = 0.2, test: float = 0.0) -> Dataset:
    """``max_overlap`` is the largest share of a shape that later shapes may cover (default 0.3 for
    detection, where boxes keep the whole shape; 0 for segmentation, so polygons are what is seen)."""
    if task not in ("classification", "detection", "segmentation"):
        raise DataError(dest, f"task {task!r} is not a task", "use classification, detection or segmentation")
    if n < 1 or size < 16:
        raise ValueError("n must be >= 1 and size >= 16")
    if max_overlap is None:
        max_overlap = 0.3 if task == "detection" else 0.0
    rng = np.random.default_rng(seed)
    ds = Dataset.create(dest, task=task, classes=list(SHAPE_CLASSES))
    for i in range(n):
        img = _background(rng, size)
        count = 1 if task == "classification" else int(rng.integers(1, max_shapes + 1))
        placed: list[tuple[int, list, np.ndarray]] = []
        union = np.zeros((size, size), dtype=bool)
        for _ in range(count * 20):
            if len(placed) == count:
                break
            cls = int(rng.integers(len(SHAPE_CLASSES)))
            r = rng.uniform(0.1, 0.3) * size
            cx, cy = rng.uniform(r, size - r, 2)
            pts = _shape_points(SHAPE_CLASSES[cls], cx, cy, r, rng.uniform(0, 2 * math.pi))
            mask = polygon_mask(pts, size, size)
            area = mask.sum()
            if area < 9 or (mask & union).sum() > max_overlap * area:
                continue
            # the colour must stand out from the background under the shape
            under = img[mask].mean(axis=0)
            colour = rng.uniform(0, 255, 3)
            for _ in range(10):
                if np.abs(colour - under).sum() > 150:
                    break
                colour = rng.uniform(0, 255, 3)
            else:
                colour = np.where(under > 127, 0.0, 255.0)
            img[mask] = np.round(colour)
            union |= mask
            placed.append((cls, pts, mask))
        rec = ds.add_image(_png(np.clip(img, 0, 255).astype(np.uint8)), name=f"shapes_{i:05d}.png",
                           check=False, size=(size, size), durable=False)
        for cls, pts, mask in placed:
            if task == "classification":
                rec.label = cls
            elif task == "segmentation":
                ds.add_polygon(rec.id, Polygon(cls, pts))
            else:
                ys, xs = np.nonzero(mask)
                ds.add_box(rec.id, Box(cls, xs.min(), ys.min(), xs.max() + 1, ys.max() + 1))
    if val or test:
        ds.split(val=val, test=test, seed=seed)
    ds.save()
    return ds
