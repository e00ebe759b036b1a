"""Training augmentation for detection and instance segmentation, boxes and polygons moved exactly
with the pixels.

A :class:`Sample` is an image ``(H, W, C)`` uint8, its labels ``(n, 5)`` (class, x1, y1, x2, y2 in
pixels, the data layer's continuous grid) and, for segmentation, one polygon ``(k, 2)`` per label.

The recipe is the YOLOv7 / YOLOv9 one: a mosaic of 4 tiles (or of 9, one time in five, as
YOLOv7 does) on a canvas twice the training size, then a random affine (scale, translation,
rotation, shear) that crops it to the training size; mixup of two such mosaics; HSV gains;
flips.  Without mosaic (the last ``close_mosaic`` epochs) the image is letterboxed and gets the
same affine.  Pixels are warped by one affine matrix; boxes map their corners through it (the
enclosing box), polygons map their vertices and are clipped to the image exactly
(Sutherland-Hodgman), and each polygon's box is its clipped extent.  Labels that become too
small, too thin or lose most of their area are dropped (the repositories' box candidate rule).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from ._paste import copy_paste, paste_in

PAD_VALUE = 114  # the grey of the YOLO letterbox and mosaic canvas


@dataclass
class Sample:
    image: np.ndarray  # (H, W, C) uint8
    labels: np.ndarray = field(default_factory=lambda: np.zeros((0, 5)))  # (n, 5): class, x1, y1, x2, y2
    segments: list[np.ndarray] | None = None  # per label: polygon (k, 2), or None for boxes only

    def __post_init__(self) -> None:
        if self.image.ndim == 2:
            self.image = self.image[:, :, None]
        self.labels = np.asarray(self.labels, dtype=np.float64).reshape(-1, 5)
        if self.segments is not None and len(self.segments) != len(self.labels):
            raise ValueError(f"{len(self.segments)} polygons for {len(self.labels)} labels")

    @property
    def hw(self) -> tuple[int, int]:
        return self.image.shape[0], self.image.shape[1]


# --- geometry -------------------------------------------------------------------------------------


def clip_polygon(points: np.ndarray, w: float, h: float) -> np.ndarray:
    """The part of a polygon inside ``[0, w] x [0, h]`` (Sutherland-Hodgman; may be empty)."""
    out = np.asarray(points, dtype=np.float64)
    for axis, bound, keep_below in ((0, 0.0, False), (0, w, True), (1, 0.0, False), (1, h, True)):
        if len(out) == 0:
            break
        inside = out[:, axis] <= bound if keep_below else out[:, axis] >= bound
        prev = np.roll(out, 1, axis=0)
        prev_inside = np.roll(inside, 1)
        pts = []
        for p, q, p_in, q_in in zip(out, prev, inside, prev_inside, strict=True):
            if p_in != q_in:  # the edge q -> p crosses the boundary
                t = (bound - q[axis]) / (p[axis] - q[axis])
                pts.append(q + t * (p - q))
            if p_in:
                pts.append(p)
        out = np.array(pts).reshape(-1, 2)
    return out


def _transform_points(points: np.ndarray, m: np.ndarray) -> np.ndarray:
    return points @ m[:2, :2].T + m[:2, 2]


def _cv2():
    """OpenCV when installed (the ``detection`` extra): ~50x faster warps and colour conversions."""
    try:
        import cv2
    except ImportError:
        return None
    return cv2


def _warp(image: np.ndarray, m: np.ndarray, out_hw: tuple[int, int]) -> np.ndarray:
    """``image`` warped by the 3x3 affine ``m`` (input -> output, continuous pixel coordinates where
    pixel ``i`` covers ``[i, i + 1)``), bilinear, grey border."""
    cv2 = _cv2()
    if cv2 is not None:
        # OpenCV addresses pixel centres by integer indices: shift by half a pixel on both sides
        shift = np.array([[1, 0, 0.5], [0, 1, 0.5], [0, 0, 1.0]])
        m_idx = np.linalg.inv(shift) @ m @ shift
        out = cv2.warpAffine(np.ascontiguousarray(image), m_idx[:2], (out_hw[1], out_hw[0]), flags=cv2.INTER_LINEAR,
                             borderMode=cv2.BORDER_CONSTANT, borderValue=(PAD_VALUE,) * 3)
        return out[:, :, None] if out.ndim == 2 else out
    h, w = image.shape[:2]
    oh, ow = out_hw
    inv = np.linalg.inv(m)
    # output pixel centres -> input pixel centres -> grid_sample's [-1, 1] (align_corners=False)
    ys, xs = torch.meshgrid(torch.arange(oh, dtype=torch.float64) + 0.5, torch.arange(ow, dtype=torch.float64) + 0.5,
                            indexing="ij")
    src_x = inv[0, 0] * xs + inv[0, 1] * ys + inv[0, 2]
    src_y = inv[1, 0] * xs + inv[1, 1] * ys + inv[1, 2]
    grid = torch.stack([src_x / w * 2 - 1, src_y / h * 2 - 1], -1)[None].float()
    src = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)[None].float() - PAD_VALUE
    out = F.grid_sample(src, grid, mode="bilinear", padding_mode="zeros", align_corners=False) + PAD_VALUE
    return out[0].permute(1, 2, 0).round().clamp(0, 255).to(torch.uint8).numpy()


def _resize(image: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    if image.shape[:2] == tuple(hw):
        return image
    cv2 = _cv2()
    if cv2 is not None:  # area averaging to shrink, bilinear to enlarge (as the repositories do)
        down = hw[0] < image.shape[0] or hw[1] < image.shape[1]
        out = cv2.resize(np.ascontiguousarray(image), (hw[1], hw[0]),
                         interpolation=cv2.INTER_AREA if down else cv2.INTER_LINEAR)
        return out[:, :, None] if out.ndim == 2 else out
    x = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)[None].float()
    down = hw[0] < image.shape[0] or hw[1] < image.shape[1]
    y = F.interpolate(x, size=hw, mode="bilinear", align_corners=False, antialias=down)
    return y[0].permute(1, 2, 0).round().clamp(0, 255).to(torch.uint8).numpy()


def apply_affine(sample: Sample, m: np.ndarray, out_hw: tuple[int, int], min_size: float = 2.0,
                 min_area_ratio: float = 0.1, max_aspect: float = 20.0) -> Sample:
    """Warp a sample by the 3x3 affine ``m`` into an ``out_hw`` image; labels follow exactly.

    Boxes map their four corners and take the enclosing box, clipped to the image; polygons map
    their vertices and are clipped to the image.  Labels narrower or lower than ``min_size``
    pixels, more elongated than ``max_aspect``, or keeping less than ``min_area_ratio`` of their
    area after the transform are dropped.
    """
    oh, ow = out_hw
    image = _warp(sample.image, m, out_hw)
    n = len(sample.labels)
    if n == 0:
        return Sample(image, np.zeros((0, 5)), [] if sample.segments is not None else None)
    scale = math.sqrt(abs(np.linalg.det(m[:2, :2])))
    boxes = np.zeros((n, 4))
    segments: list[np.ndarray] | None = None
    if sample.segments is not None:
        segments = []
        for i, seg in enumerate(sample.segments):
            pts = clip_polygon(_transform_points(seg, m), ow, oh)
            segments.append(pts)
            boxes[i] = [*pts.min(0), *pts.max(0)] if len(pts) >= 3 else 0
    else:
        x1, y1, x2, y2 = sample.labels[:, 1:5].T
        corners = np.stack([np.stack([x1, y1], 1), np.stack([x2, y1], 1), np.stack([x2, y2], 1),
                            np.stack([x1, y2], 1)], 1)  # (n, 4, 2)
        moved = _transform_points(corners.reshape(-1, 2), m).reshape(n, 4, 2)
        boxes = np.concatenate([moved.min(1), moved.max(1)], 1)
        boxes[:, [0, 2]] = boxes[:, [0, 2]].clip(0, ow)
        boxes[:, [1, 3]] = boxes[:, [1, 3]].clip(0, oh)
    old_wh = (sample.labels[:, 3:5] - sample.labels[:, 1:3]) * scale
    keep = box_candidates(old_wh, boxes[:, 2:] - boxes[:, :2], min_size, min_area_ratio, max_aspect)
    labels = np.concatenate([sample.labels[:, :1], boxes], 1)[keep]
    if segments is not None:
        segments = [s for s, k in zip(segments, keep, strict=True) if k]
    return Sample(image, labels, segments)


def box_candidates(old_wh: np.ndarray, new_wh: np.ndarray, min_size: float = 2.0, min_area_ratio: float = 0.1,
                   max_aspect: float = 20.0) -> np.ndarray:
    """Which transformed labels are worth keeping (see :func:`apply_affine`)."""
    w, h = new_wh[:, 0], new_wh[:, 1]
    aspect = np.maximum(w / (h + 1e-16), h / (w + 1e-16))
    area_ratio = w * h / (old_wh[:, 0] * old_wh[:, 1] + 1e-16)
    return (w > min_size) & (h > min_size) & (area_ratio > min_area_ratio) & (aspect < max_aspect)


def random_affine_matrix(rng: np.random.Generator, in_hw: tuple[int, int], out_hw: tuple[int, int],
                         degrees: float = 0.0, translate: float = 0.1, scale: float = 0.5,
                         shear: float = 0.0) -> np.ndarray:
    """The YOLO random affine: centre the input, rotate and scale about the centre, shear, then
    move the centre to a random point near the output centre (``translate`` of its size)."""
    centre = np.array([[1, 0, -in_hw[1] / 2], [0, 1, -in_hw[0] / 2], [0, 0, 1.0]])
    a = math.radians(rng.uniform(-degrees, degrees))
    s = rng.uniform(1 - scale, 1 + scale)
    rot = np.array([[s * math.cos(a), -s * math.sin(a), 0], [s * math.sin(a), s * math.cos(a), 0], [0, 0, 1.0]])
    sh = np.eye(3)
    sh[0, 1] = math.tan(math.radians(rng.uniform(-shear, shear)))
    sh[1, 0] = math.tan(math.radians(rng.uniform(-shear, shear)))
    move = np.eye(3)
    move[0, 2] = rng.uniform(0.5 - translate, 0.5 + translate) * out_hw[1]
    move[1, 2] = rng.uniform(0.5 - translate, 0.5 + translate) * out_hw[0]
    return move @ sh @ rot @ centre


# --- image-level operations ---------------------------------------------------------------------------


def resized_hw(hw: tuple[int, int], size: int) -> tuple[int, int]:
    """The size of an ``hw`` image once its longer side is ``size``."""
    h, w = hw
    r = size / max(h, w)
    return (h, w) if r == 1 else (max(1, round(h * r)), max(1, round(w * r)))


def resize_long_side(sample: Sample, size: int) -> Sample:
    """Resize so that the longer side is ``size`` (labels scaled with it)."""
    h, w = sample.hw
    nh, nw = resized_hw((h, w), size)
    if (nh, nw) == (h, w):
        return sample
    sx, sy = nw / w, nh / h
    labels = sample.labels.copy()
    labels[:, [1, 3]] *= sx
    labels[:, [2, 4]] *= sy
    segs = None if sample.segments is None else [s * [sx, sy] for s in sample.segments]
    return Sample(_resize(sample.image, (nh, nw)), labels, segs)


def _shifted(sample: Sample, dx: float, dy: float) -> tuple[np.ndarray, list[np.ndarray] | None]:
    labels = sample.labels.copy()
    labels[:, [1, 3]] += dx
    labels[:, [2, 4]] += dy
    segs = None if sample.segments is None else [s + [dx, dy] for s in sample.segments]
    return labels, segs


def _paste(canvas: np.ndarray, image: np.ndarray, x: int, y: int) -> None:
    """Paste ``image`` with its top-left corner at ``(x, y)``; what falls outside is cut."""
    h, w = image.shape[:2]
    ch, cw = canvas.shape[:2]
    x1, y1, x2, y2 = max(x, 0), max(y, 0), min(x + w, cw), min(y + h, ch)
    if x2 > x1 and y2 > y1:
        canvas[y1:y2, x1:x2] = image[y1 - y:y2 - y, x1 - x:x2 - x]


def _clip_to_canvas(labels: np.ndarray, segments: list[np.ndarray] | None, w: float, h: float,
                    ) -> tuple[np.ndarray, list[np.ndarray] | None]:
    """Labels cut to the visible canvas; labels that vanish are dropped."""
    labels = labels.copy()
    if segments is not None:
        segments = [clip_polygon(s, w, h) for s in segments]
        for i, s in enumerate(segments):
            labels[i, 1:5] = [*s.min(0), *s.max(0)] if len(s) >= 3 else 0
    labels[:, [1, 3]] = labels[:, [1, 3]].clip(0, w)
    labels[:, [2, 4]] = labels[:, [2, 4]].clip(0, h)
    keep = (labels[:, 3] > labels[:, 1]) & (labels[:, 4] > labels[:, 2])
    if segments is not None:
        segments = [s for s, k in zip(segments, keep, strict=True) if k]
    return labels[keep], segments


def _combine(parts: list[tuple[np.ndarray, list[np.ndarray] | None]]) -> tuple[np.ndarray, list | None]:
    labels = np.concatenate([p[0] for p in parts]) if parts else np.zeros((0, 5))
    segs = None if parts[0][1] is None else [s for p in parts for s in p[1]]
    return labels, segs


def mosaic4(samples: list[Sample], size: int, rng: np.random.Generator) -> Sample:
    """Four images (longer side ``size``) on a ``2 size`` canvas around a random centre, one per
    quadrant, each with a corner on the centre; what passes the canvas border is cut."""
    s = size
    canvas = np.full((2 * s, 2 * s, samples[0].image.shape[2]), PAD_VALUE, dtype=np.uint8)
    xc, yc = (int(rng.uniform(s / 2, 3 * s / 2)) for _ in range(2))
    parts = []
    for i, sample in enumerate(samples):  # top-left, top-right, bottom-left, bottom-right
        sample = resize_long_side(sample, s)
        h, w = sample.hw
        x = xc - w if i in (0, 2) else xc
        y = yc - h if i in (0, 1) else yc
        _paste(canvas, sample.image, x, y)
        labels, segs = _shifted(sample, x, y)
        parts.append(_clip_to_canvas(labels, segs, 2 * s, 2 * s))
    labels, segs = _combine(parts)
    return Sample(canvas, labels, segs)


def mosaic9(samples: list[Sample], size: int, rng: np.random.Generator) -> Sample:
    """Nine images: the first in the middle of a ``3 size`` canvas, eight around it clockwise from
    the top; a random ``2 size`` window of it is kept."""
    s = size
    c = samples[0].image.shape[2]
    canvas = np.full((3 * s, 3 * s, c), PAD_VALUE, dtype=np.uint8)
    placed: list[tuple[int, int, int, int]] = []  # x, y, w, h of each tile
    parts = []
    for i, sample in enumerate(samples):
        sample = resize_long_side(sample, s)
        h, w = sample.hw
        if i == 0:
            x, y = s, s
        else:
            x0, y0, w0, h0 = placed[0]
            _, _, wp, hp = placed[-1]
            x, y = {1: (s, s - h), 2: (s + wp, s - h), 3: (s + w0, s), 4: (s + w0, s + hp),
                    5: (s + w0 - w, s + h0), 6: (s + w0 - wp - w, s + h0), 7: (s - w, s + h0 - h),
                    8: (s - w, s + h0 - hp - h)}[i]
        placed.append((x, y, w, h))
        _paste(canvas, sample.image, x, y)
        labels, segs = _shifted(sample, x, y)
        parts.append(_clip_to_canvas(labels, segs, 3 * s, 3 * s))
    labels, segs = _combine(parts)
    xc, yc = (int(rng.uniform(0, s)) for _ in range(2))
    labels[:, [1, 3]] -= xc
    labels[:, [2, 4]] -= yc
    if segs is not None:
        segs = [p - [xc, yc] for p in segs]
    labels, segs = _clip_to_canvas(labels, segs, 2 * s, 2 * s)
    return Sample(canvas[yc:yc + 2 * s, xc:xc + 2 * s].copy(), labels, segs)


def letterbox(sample: Sample, size: int) -> Sample:
    """Resize the longer side to ``size`` and pad to ``size x size`` with grey, centred."""
    sample = resize_long_side(sample, size)
    h, w = sample.hw
    canvas = np.full((size, size, sample.image.shape[2]), PAD_VALUE, dtype=np.uint8)
    x, y = (size - w) // 2, (size - h) // 2
    _paste(canvas, sample.image, x, y)
    labels, segs = _shifted(sample, x, y)
    return Sample(canvas, labels, segs)


def augment_hsv(image: np.ndarray, rng: np.random.Generator, hgain: float = 0.015, sgain: float = 0.7,
                vgain: float = 0.4) -> np.ndarray:
    """Random gains on hue, saturation and value (hue multiplied, wrapping, as the repositories do)."""
    if image.shape[2] != 3 or not (hgain or sgain or vgain):
        if image.shape[2] == 1 and vgain:  # grey images: value only
            g = rng.uniform(-1, 1) * vgain + 1
            return np.clip(image.astype(np.float32) * g, 0, 255).round().astype(np.uint8)
        return image
    gh, gs, gv = rng.uniform(-1, 1, 3) * [hgain, sgain, vgain] + 1
    cv2 = _cv2()
    if cv2 is not None:  # look-up tables on OpenCV's 8-bit HSV (hue in 0..179)
        hue, sat, val = cv2.split(cv2.cvtColor(image, cv2.COLOR_RGB2HSV))
        x = np.arange(256, dtype=np.float64)
        lut_h = ((x * gh) % 180).astype(np.uint8)
        lut_s = np.clip(x * gs, 0, 255).astype(np.uint8)
        lut_v = np.clip(x * gv, 0, 255).astype(np.uint8)
        merged = cv2.merge((cv2.LUT(hue, lut_h), cv2.LUT(sat, lut_s), cv2.LUT(val, lut_v)))
        return cv2.cvtColor(merged, cv2.COLOR_HSV2RGB)
    x = torch.from_numpy(image).float() / 255
    r, g, b = x.unbind(-1)
    maxc, _ = x.max(-1)
    minc, _ = x.min(-1)
    delta = maxc - minc
    safe = torch.where(delta > 0, delta, torch.ones_like(delta))
    hue = torch.where(maxc == r, (g - b) / safe % 6, torch.where(maxc == g, (b - r) / safe + 2, (r - g) / safe + 4))
    hue = torch.where(delta > 0, hue / 6, torch.zeros_like(hue))
    sat = torch.where(maxc > 0, delta / torch.where(maxc > 0, maxc, torch.ones_like(maxc)), torch.zeros_like(maxc))
    hue = (hue * gh) % 1.0
    sat = (sat * gs).clamp(0, 1)
    val = (maxc * gv).clamp(0, 1)
    k = lambda n: (n + hue * 6) % 6  # noqa: E731
    f = lambda n: val - val * sat * torch.clamp(torch.minimum(k(n), 4 - k(n)), 0, 1)  # noqa: E731
    out = torch.stack([f(5), f(3), f(1)], -1)
    return (out * 255).round().clamp(0, 255).to(torch.uint8).numpy()


def flip(sample: Sample, horizontal: bool = True) -> Sample:
    h, w = sample.hw
    labels = sample.labels.copy()
    if horizontal:
        image = sample.image[:, ::-1]
        labels[:, [1, 3]] = w - sample.labels[:, [3, 1]]
        segs = None if sample.segments is None else [s * [-1, 1] + [w, 0] for s in sample.segments]
    else:
        image = sample.image[::-1]
        labels[:, [2, 4]] = h - sample.labels[:, [4, 2]]
        segs = None if sample.segments is None else [s * [1, -1] + [0, h] for s in sample.segments]
    return Sample(np.ascontiguousarray(image), labels, segs)


def mixup(a: Sample, b: Sample, rng: np.random.Generator) -> Sample:
    """Blend two samples of one size (ratio ~ Beta(32, 32)) and keep both sets of labels."""
    r = rng.beta(32.0, 32.0)
    image = (a.image.astype(np.float32) * r + b.image.astype(np.float32) * (1 - r)).round().astype(np.uint8)
    segs = None if a.segments is None or b.segments is None else a.segments + b.segments
    return Sample(image, np.concatenate([a.labels, b.labels]), segs)


# --- the pipeline ---------------------------------------------------------------------------------------


class DetectionAugment:
    """Training samples for one epoch: ``augment(index, rng, mosaic=True)``.

    ``load(i)`` returns the i-th :class:`Sample` of the training split (any size); ``hyp`` holds the
    augmentation hyper-parameters of ``hyp.yaml`` (``mosaic``, ``mixup``, ``paste_in``, ``copy_paste``,
    ``degrees``, ``translate``, ``scale``, ``shear``, ``hsv_h``, ``hsv_s``, ``hsv_v``, ``fliplr``, ``flipud``).
    ``mosaic9_fraction`` of the mosaics have 9 tiles (YOLOv7 uses 0.2; YOLOv9 uses 4 tiles only).
    """

    def __init__(self, load: Callable[[int], Sample], n: int, imgsz: int, hyp: dict,
                 mosaic9_fraction: float = 0.2) -> None:
        if n < 1:
            raise ValueError("the training split is empty")
        self.load, self.n, self.imgsz, self.hyp = load, n, imgsz, hyp
        self.mosaic9_fraction = mosaic9_fraction

    def _affine(self, sample: Sample, rng: np.random.Generator) -> Sample:
        h = self.hyp
        m = random_affine_matrix(rng, sample.hw, (self.imgsz, self.imgsz), h.get("degrees", 0.0),
                                 h.get("translate", 0.1), h.get("scale", 0.5), h.get("shear", 0.0))
        return apply_affine(sample, m, (self.imgsz, self.imgsz),
                            min_area_ratio=0.01 if sample.segments is not None else 0.1)

    def _mosaic(self, index: int, rng: np.random.Generator) -> Sample:
        nine = rng.random() < self.mosaic9_fraction
        others = rng.integers(0, self.n, 8 if nine else 3).tolist()
        samples = [self.load(i) for i in [index, *others]]
        canvas = mosaic9(samples, self.imgsz, rng) if nine else mosaic4(samples, self.imgsz, rng)
        return self._affine(canvas, rng)

    def __call__(self, index: int, rng: np.random.Generator, mosaic: bool = True) -> Sample:
        h = self.hyp
        if mosaic and rng.random() < h.get("mosaic", 1.0):
            sample = self._mosaic(index, rng)
            if rng.random() < h.get("mixup", 0.0):
                sample = mixup(sample, self._mosaic(int(rng.integers(0, self.n)), rng), rng)
        else:
            sample = self._affine(letterbox(self.load(index), self.imgsz), rng)
        if rng.random() < h.get("paste_in", 0.0):
            donor = self.load(int(rng.integers(0, self.n)))
            sample = paste_in(sample, donor, rng)
        sample = copy_paste(sample, rng, h.get("copy_paste", 0.0))
        sample.image = augment_hsv(sample.image, rng, h.get("hsv_h", 0.0), h.get("hsv_s", 0.0), h.get("hsv_v", 0.0))
        if rng.random() < h.get("flipud", 0.0):
            sample = flip(sample, horizontal=False)
        if rng.random() < h.get("fliplr", 0.5):
            sample = flip(sample, horizontal=True)
        return sample
