"""Predict boxes (detection) and instance outlines (segmentation) with YOLO weights tango saved.

>>> predictor = DetectionPredictor("runs/train/1/weights/best.pt")
>>> [r.detections for r in predictor(["a.jpg", "folder/"])]    # boxes in each image's own pixels

The input is prepared exactly as detection validation prepares it (``tango_core.detection._data``):
the image decoded as the model's colour mode, its longer side resized to the training size
(area averaging to shrink, bilinear to enlarge), centred on a grey (114) square, scaled by the
weights' ``preprocess`` block.  Predictions go through :func:`non_max_suppression` with the
weights' ``postprocess`` settings (confidence 0.25, IoU 0.7 for YOLOv9 / 0.65 for YOLOv7) and
the boxes are mapped back through the letterbox (``x = (x_in - pad) / scale``), clipped to the
image.  Segmentation weights add, per detection, the outline of its instance mask (the largest
region of the mask at the input size, simplified to within a pixel there) in image pixels.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import DataError
from ._augment import Sample, letterbox, resized_hw
from ._nms import non_max_suppression, process_masks

TASKS = ("detection", "segmentation")
MASK_CHUNK = 32  # detections whose masks are computed at once (n x imgsz x imgsz floats)


@dataclass
class Detection:
    """One object: class index and name, score, box ``(x1, y1, x2, y2)`` in original image pixels,
    and for segmentation weights the instance outline (points in original image pixels)."""

    cls: int
    name: str
    score: float
    box: tuple[float, float, float, float]
    polygon: list[tuple[float, float]] | None = None

    def to_box(self, cls: int | None = None):
        """A scored :class:`tango_core.data.Box` (the form the annotation store and the labeler use)."""
        from ..data import Box

        return Box(self.cls if cls is None else cls, *self.box, score=self.score)

    def to_polygon(self, cls: int | None = None):
        """A scored :class:`tango_core.data.Polygon`: the outline, or the box's rectangle when the
        weights predict boxes only (or the mask came out empty)."""
        from ..data import Polygon

        x1, y1, x2, y2 = self.box
        points = self.polygon or [(x1, y1), (x2, y1), (x2, y2), (x1, y2)]
        return Polygon(self.cls if cls is None else cls, list(points), score=self.score)


@dataclass
class DetectionResult:
    """The detections of one image, best first; ``size`` is the image's (width, height)."""

    source: str | None  # the file, or None for an in-memory image
    size: tuple[int, int]
    detections: list[Detection] = field(default_factory=list)

    def as_array(self) -> np.ndarray:
        """Rows ``x1, y1, x2, y2, score, class`` (the layout of :func:`non_max_suppression`)."""
        return np.array([[*d.box, d.score, d.cls] for d in self.detections], dtype=np.float64).reshape(-1, 6)


class DetectionPredictor:
    """``DetectionPredictor("best.pt")(sources)`` -> one :class:`DetectionResult` per image.

    ``sources``: an image file, a folder (its images, recursively, sorted), an HxW(xC) uint8 array
    or PIL image, or a list of those.  ``conf`` / ``iou`` default to the weights' own settings;
    ``agnostic`` suppresses overlapping boxes across classes (one suggestion per object).
    """

    def __init__(self, weights: str | os.PathLike, device: str = "cpu", conf: float | None = None,
                 iou: float | None = None, max_det: int = 300, agnostic: bool = False) -> None:
        from ..models import create_model
        from ..models.weights import load_weights, read_weights

        data = read_weights(weights)
        missing = [k for k in ("model", "classes", "imgsz", "in_channels") if not data.get(k)]
        if missing:
            raise DataError(weights, f"has no {', '.join(missing)} metadata",
                            "predict with weights saved by tango's trainer (its best.pt / last.pt)")
        self.task = str(data.get("task") or "")
        if self.task not in TASKS:
            raise DataError(weights, f"holds a {self.task or 'model of no stated'} task model; this predictor "
                                     "finds objects", "use tango_core.engine.Predictor for classification weights")
        self.weights = Path(weights)
        self.classes: list[str] = list(data["classes"])
        self.imgsz, self.channels = int(data["imgsz"]), int(data["in_channels"])
        self.model_name = str(data["model"])
        self.device = torch.device(device)
        self.model = create_model(self.model_name, num_classes=len(self.classes), in_channels=self.channels)
        load_weights(self.model, weights, strict=True)
        self.model.to(self.device).eval()
        post = data.get("postprocess") or {}
        default_iou = 0.65 if self.model_name.startswith("yolov7") else 0.7
        self.conf = float(post.get("conf", 0.25) if conf is None else conf)
        self.iou = float(post.get("nms_iou", default_iou) if iou is None else iou)
        self.max_det, self.agnostic = int(max_det), bool(agnostic)
        pre = data.get("preprocess") or {}
        self.pad_value = int(pre.get("pad_value", 114))
        mean = torch.tensor(pre.get("mean", [0.0] * self.channels), dtype=torch.float32).view(1, -1, 1, 1)
        std = torch.tensor(pre.get("std", [1.0] * self.channels), dtype=torch.float32).view(1, -1, 1, 1)
        self.scale, self.shift = float(pre.get("scale", 1 / 255)) / std, -mean / std

    # --- input -------------------------------------------------------------------------------------
    def load(self, item: Any) -> np.ndarray:
        """An HxWxC uint8 array of the item in the model's colour mode (C = its input channels)."""
        from ._data import _decode, _to_channels

        if isinstance(item, (str, os.PathLike)):
            return _to_channels(_decode(item, self.channels == 1), self.channels)
        from PIL import Image

        if isinstance(item, Image.Image):
            item = np.asarray(item.convert("L" if self.channels == 1 else "RGB"))
        if isinstance(item, np.ndarray) and item.dtype == np.uint8 and item.ndim in (2, 3):
            if item.ndim == 3 and item.shape[2] == 4:
                item = item[..., :3]
            return _to_channels(item, self.channels)
        raise DataError(repr(item)[:80], "is not an image path, PIL image or HxW(xC) uint8 array")

    def letterbox(self, image: np.ndarray) -> tuple[np.ndarray, tuple[float, float, float, float]]:
        """The model's input (imgsz x imgsz x C uint8) and the transform ``(sx, sy, pad_x, pad_y)``:
        image pixel ``x`` is at ``x * sx + pad_x`` of the input (as ``DetSplit.transforms``)."""
        h, w = image.shape[:2]
        boxed = letterbox(Sample(image), self.imgsz).image
        if self.pad_value != 114:  # the letterbox pads with the YOLO grey; weights may say otherwise
            nh, nw = resized_hw((h, w), self.imgsz)
            top, left = (self.imgsz - nh) // 2, (self.imgsz - nw) // 2
            mask = np.ones(boxed.shape[:2], dtype=bool)
            mask[top:top + nh, left:left + nw] = False
            boxed[mask] = self.pad_value
        nh, nw = resized_hw((h, w), self.imgsz)
        return boxed, (nw / w, nh / h, float((self.imgsz - nw) // 2), float((self.imgsz - nh) // 2))

    def to_tensor(self, boxed: list[np.ndarray]) -> torch.Tensor:
        x = torch.from_numpy(np.stack(boxed)).permute(0, 3, 1, 2).float()
        return torch.addcmul(self.shift, x, self.scale).contiguous()

    # --- prediction --------------------------------------------------------------------------------
    @torch.inference_mode()
    def __call__(self, source: Any, batch_size: int = 16) -> list[DetectionResult]:
        from ..engine.predict import expand_sources

        items = list(expand_sources(source))
        results: list[DetectionResult] = []
        for i in range(0, len(items), max(1, batch_size)):
            chunk = items[i:i + max(1, batch_size)]
            images = [self.load(it) for it in chunk]
            prepared = [self.letterbox(im) for im in images]
            x = self.to_tensor([p[0] for p in prepared]).to(self.device)
            out = self.model(x)
            pred, protos = out if isinstance(out, tuple) else (out, None)
            dets = non_max_suppression(pred.float(), self.conf, self.iou, max_det=self.max_det,
                                       num_classes=len(self.classes), agnostic=self.agnostic)
            for j, (item, image, (_, transform), det) in enumerate(zip(chunk, images, prepared, dets, strict=True)):
                src = str(item) if isinstance(item, (str, os.PathLike)) else None
                h, w = image.shape[:2]
                outlines = self._outlines(protos[j], det, transform, (h, w)) if protos is not None else None
                results.append(DetectionResult(src, (w, h), self._detections(det, transform, (h, w), outlines)))
        return results

    def _detections(self, det: torch.Tensor, transform: tuple[float, float, float, float], hw: tuple[int, int],
                    outlines: list[list[tuple[float, float]] | None] | None) -> list[Detection]:
        boxes = to_original(det[:, :4].cpu().double().numpy(), transform, hw)
        out = []
        for k, (row, box) in enumerate(zip(det.cpu().tolist(), boxes.tolist(), strict=True)):
            cls = int(row[5])
            out.append(Detection(cls, self.classes[cls], float(row[4]), tuple(round(v, 2) for v in box),
                                 outlines[k] if outlines is not None else None))
        return out

    def _outlines(self, protos: torch.Tensor, det: torch.Tensor, transform: tuple[float, float, float, float],
                  hw: tuple[int, int]) -> list[list[tuple[float, float]] | None]:
        """Per detection, the outline of its mask at the input size, in image pixels (None: empty mask)."""
        from ..data._masks import mask_to_polygons

        shape = (self.imgsz, self.imgsz)
        sx, sy, px, py = transform
        nh, nw = round(hw[0] * sy), round(hw[1] * sx)
        top, left = int(py), int(px)
        out: list[list[tuple[float, float]] | None] = []
        for k in range(0, det.shape[0], MASK_CHUNK):
            part = det[k:k + MASK_CHUNK]
            masks = process_masks(protos.float(), part[:, 6:].float(), part[:, :4].float(), shape).cpu().numpy()
            for mask in masks:
                inside = np.zeros_like(mask)
                inside[top:top + nh, left:left + nw] = mask[top:top + nh, left:left + nw]  # not the padding
                polys = mask_to_polygons(inside)
                if not polys:
                    out.append(None)
                    continue
                best = max(polys, key=_area)
                pts = simplify_polygon(np.asarray(best, dtype=np.float64), 1.0)
                if len(pts) < 3:
                    out.append(None)
                    continue
                pts[:, 0] = ((pts[:, 0] - px) / sx).clip(0, hw[1])
                pts[:, 1] = ((pts[:, 1] - py) / sy).clip(0, hw[0])
                out.append([(round(float(a), 2), round(float(b), 2)) for a, b in pts])
        return out


def to_original(boxes: np.ndarray, transform: tuple[float, float, float, float], hw: tuple[int, int]) -> np.ndarray:
    """Boxes ``(n, 4)`` in letterboxed input pixels -> the original image's pixels, clipped to it."""
    sx, sy, px, py = transform
    out = np.array(boxes, dtype=np.float64).reshape(-1, 4)
    out[:, [0, 2]] = ((out[:, [0, 2]] - px) / sx).clip(0, hw[1])
    out[:, [1, 3]] = ((out[:, [1, 3]] - py) / sy).clip(0, hw[0])
    return out


def _area(points: list[tuple[float, float]]) -> float:
    p = np.asarray(points, dtype=np.float64)
    return abs(float(np.dot(p[:, 0], np.roll(p[:, 1], -1)) - np.dot(p[:, 1], np.roll(p[:, 0], -1)))) / 2


def simplify_polygon(points: np.ndarray, tolerance: float) -> np.ndarray:
    """A closed polygon with the vertices that matter: every dropped vertex lies within ``tolerance``
    of the simplified outline (Douglas-Peucker from the two vertices farthest apart)."""
    p = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    if len(p) <= 3:
        return p
    a = 0
    b = int(np.argmax(((p - p[a]) ** 2).sum(1)))
    keep = np.zeros(len(p), dtype=bool)
    keep[[a, b]] = True
    ring = np.concatenate([p, p[:1]])
    for lo, hi in ((a, b), (b, len(p))):
        stack = [(lo, hi)]
        while stack:
            i, j = stack.pop()
            if j - i < 2:
                continue
            seg = ring[i + 1:j]
            start, end = ring[i], ring[j]
            d = end - start
            norm = np.hypot(*d)
            if norm == 0:
                dist = np.hypot(*(seg - start).T)
            else:
                dist = np.abs(d[0] * (seg[:, 1] - start[1]) - d[1] * (seg[:, 0] - start[0])) / norm
            m = int(np.argmax(dist))
            if dist[m] > tolerance:
                keep[(i + 1 + m) % len(p)] = True
                stack += [(i, i + 1 + m), (i + 1 + m, j)]
    return p[keep]
