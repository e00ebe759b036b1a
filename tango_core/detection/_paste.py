"""Object pasting augmentations of the YOLO recipes: ``copy_paste`` and ``paste_in``.

``copy_paste`` (YOLOv5 / YOLOv9, segmentation data): each object of the image is, with
probability ``p``, mirrored left-right and pasted at its mirrored place, through its own polygon
mask, unless that place already holds another object.
``paste_in`` (YOLOv7): objects cut from another training image (through their polygon where
there is one, else their box) are pasted at random places and scales.

Both keep every label exact: a pasted polygon's pixels are that polygon's own mask and its box is
the polygon's extent (as everywhere in the pipeline); a pasted box is the tight box of its pixels; a paste is refused where it would cover more than ``max_cover`` of an
object already there (the repositories' 0.30 intersection-over-area rule), so no existing label
loses what makes it that object.
"""

from __future__ import annotations

import numpy as np

from ..data._masks import polygon_mask

MAX_COVER = 0.30


def _cover(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """Share of each of ``boxes`` (n, 4) that ``box`` (4,) covers."""
    if len(boxes) == 0:
        return np.zeros(0)
    iw = np.clip(np.minimum(box[2], boxes[:, 2]) - np.maximum(box[0], boxes[:, 0]), 0, None)
    ih = np.clip(np.minimum(box[3], boxes[:, 3]) - np.maximum(box[1], boxes[:, 1]), 0, None)
    area = np.clip((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]), 1e-9, None)
    return iw * ih / area


def _tight_box(mask: np.ndarray) -> np.ndarray | None:
    ys, xs = np.nonzero(mask)
    if len(xs) == 0:
        return None
    return np.array([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], dtype=np.float64)


def copy_paste(sample, rng: np.random.Generator, p: float, max_cover: float = MAX_COVER):
    """Mirror objects left-right into the same image (needs polygons; boxes-only samples pass through)."""
    from ._augment import Sample

    if p <= 0 or sample.segments is None or len(sample.labels) == 0:
        return sample
    h, w = sample.hw
    image, labels, segments = sample.image.copy(), [*sample.labels], [*sample.segments]
    for i in range(len(sample.labels)):
        if rng.random() >= p:
            continue
        mirrored = sample.segments[i] * [-1, 1] + [w, 0]
        mask = polygon_mask(mirrored, w, h)
        box = np.concatenate([mirrored.min(0), mirrored.max(0)])  # a polygon's box is its extent
        if not mask.any() or _cover(box, np.asarray(labels)[:, 1:5]).max(initial=0) > max_cover:
            continue
        # the mirrored polygon's own pixels, taken from the mirrored image: label and pixels agree
        image[mask] = sample.image[:, ::-1][mask]
        labels.append(np.concatenate([[sample.labels[i, 0]], box]))
        segments.append(mirrored)
    return Sample(image, np.asarray(labels).reshape(-1, 5), segments)


def _cut(donor, i: int) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Object ``i`` of ``donor``: its pixels and mask inside its box, and its polygon relative to the box."""
    x1, y1, x2, y2 = np.floor(donor.labels[i, 1:3]).astype(int).tolist() + np.ceil(donor.labels[i, 3:5]).astype(int).tolist()
    crop = donor.image[y1:y2, x1:x2]
    if donor.segments is None:
        return crop, np.ones(crop.shape[:2], dtype=bool), None
    poly = donor.segments[i] - [x1, y1]
    return crop, polygon_mask(poly, x2 - x1, y2 - y1), poly


def _resize_nearest(a: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    ys = np.minimum((np.arange(hw[0]) + 0.5) * a.shape[0] / hw[0], a.shape[0] - 1).astype(int)
    xs = np.minimum((np.arange(hw[1]) + 0.5) * a.shape[1] / hw[1], a.shape[1] - 1).astype(int)
    return a[ys][:, xs]


def paste_in(sample, donor, rng: np.random.Generator, tries: int = 8, max_cover: float = MAX_COVER):
    """Paste objects of ``donor`` into ``sample`` at random places and scales (0.5-1.5x, kept inside)."""
    from ._augment import Sample

    if len(donor.labels) == 0:
        return sample
    h, w = sample.hw
    image, labels = sample.image.copy(), [*sample.labels]
    segments = None if sample.segments is None else [*sample.segments]
    for _ in range(tries):
        i = int(rng.integers(len(donor.labels)))
        crop, mask, poly = _cut(donor, i)
        s = rng.uniform(0.5, 1.5)
        ch, cw = max(2, round(crop.shape[0] * s)), max(2, round(crop.shape[1] * s))
        if ch >= h or cw >= w:
            continue
        x, y = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
        if poly is None:  # a box-only donor pastes its whole box
            poly = np.array([[0, 0], [crop.shape[1], 0], [crop.shape[1], crop.shape[0]], [0, crop.shape[0]]], float)
        scaled = poly * [cw / crop.shape[1], ch / crop.shape[0]]
        # with polygons the pasted pixels are the scaled polygon's own mask, so label and pixels agree
        m = polygon_mask(scaled, cw, ch) if sample.segments is not None else _resize_nearest(mask, (ch, cw))
        box = _tight_box(m)
        if box is None:
            continue
        box += [x, y, x, y]
        if sample.segments is not None:
            box = np.concatenate([scaled.min(0), scaled.max(0)]) + [x, y, x, y]  # the polygon's extent
        if _cover(box, np.asarray(labels).reshape(-1, 5)[:, 1:5]).max(initial=0) > max_cover:
            continue
        region = image[y:y + ch, x:x + cw]
        region[m] = _resize_nearest(crop, (ch, cw))[m]
        labels.append(np.concatenate([[donor.labels[i, 0]], box]))
        if segments is not None:
            segments.append(scaled + [x, y])  # its mask is exactly the pixels pasted
    return Sample(image, np.asarray(labels).reshape(-1, 5), segments)
