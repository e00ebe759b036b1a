"""The annotation model: one image record with its label, boxes and polygons.

Coordinates are absolute pixels on a continuous grid: pixel ``(i, j)`` covers
``[i, i + 1) x [j, j + 1)``, so a box around a whole 32 x 32 image is ``(0, 0, 32, 32)``.
Every format converts to and from this one convention at its edge.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ._images import safe_relpath


@dataclass
class Box:
    """An axis-aligned box ``(x1, y1) - (x2, y2)``; ``score`` is None for human labels.

    ``iscrowd`` marks one label over a crowd of objects (COCO's ``iscrowd: 1``).
    """

    cls: int
    x1: float
    y1: float
    x2: float
    y2: float
    id: str | None = None
    score: float | None = None
    iscrowd: bool = False

    def __post_init__(self) -> None:
        self.cls = int(self.cls)
        self.x1, self.y1, self.x2, self.y2 = (float(v) for v in (self.x1, self.y1, self.x2, self.y2))
        if self.score is not None:
            self.score = float(self.score)
        self.iscrowd = bool(self.iscrowd)

    @property
    def xyxy(self) -> tuple[float, float, float, float]:
        return (self.x1, self.y1, self.x2, self.y2)

    @property
    def width(self) -> float:
        return self.x2 - self.x1

    @property
    def height(self) -> float:
        return self.y2 - self.y1

    @property
    def area(self) -> float:
        return max(self.width, 0.0) * max(self.height, 0.0)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"id": self.id, "cls": self.cls, "bbox": [self.x1, self.y1, self.x2, self.y2]}
        if self.score is not None:
            out["score"] = self.score
        if self.iscrowd:
            out["iscrowd"] = True
        return out


@dataclass
class Polygon:
    """A closed polygon (the last point joins the first); ``score`` is None for human labels.

    ``iscrowd`` as for :class:`Box`.  ``rle`` is the COCO mask (``{"size": [h, w], "counts": ...}``)
    this polygon was traced from, kept so that a COCO export can write the mask back exactly (with
    its holes) while the traced polygons are unchanged; polygons ``"<id>_1"``... hold its other parts.
    """

    cls: int
    points: list[tuple[float, float]]
    id: str | None = None
    score: float | None = None
    iscrowd: bool = False
    rle: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        self.cls = int(self.cls)
        self.points = [(float(x), float(y)) for x, y in self.points]
        if self.score is not None:
            self.score = float(self.score)
        self.iscrowd = bool(self.iscrowd)

    @property
    def area(self) -> float:
        """Absolute area by the shoelace formula."""
        if len(self.points) < 3:
            return 0.0
        p = np.asarray(self.points)
        x, y = p[:, 0], p[:, 1]
        return float(abs(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))) / 2)

    def bbox(self) -> Box:
        """The box around the polygon (same class, id and score)."""
        xs = [p[0] for p in self.points] or [0.0]
        ys = [p[1] for p in self.points] or [0.0]
        return Box(self.cls, min(xs), min(ys), max(xs), max(ys), id=self.id, score=self.score, iscrowd=self.iscrowd)

    def mask(self, width: int, height: int) -> np.ndarray:
        """Rasterise to a ``(height, width)`` bool mask: the pixels whose centres the polygon covers."""
        from ._masks import polygon_mask

        return polygon_mask(self.points, width, height)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"id": self.id, "cls": self.cls, "points": [[x, y] for x, y in self.points]}
        if self.score is not None:
            out["score"] = self.score
        if self.iscrowd:
            out["iscrowd"] = True
        if self.rle is not None:
            out["rle"] = self.rle
        return out


Shape = Box | Polygon


@dataclass
class ImageRecord:
    """One image of a dataset.  ``file`` is relative to the dataset root (posix)."""

    id: str
    file: str
    width: int
    height: int
    split: str | None = None
    label: int | None = None
    boxes: list[Box] = field(default_factory=list)
    polygons: list[Polygon] = field(default_factory=list)
    meta: dict[str, Any] = field(default_factory=dict)
    #: the image's name (path, posix) in the dataset it was imported from, when the store had to
    #: use another one (unsafe characters, or a name taken); exports write it back where they can
    original_name: str | None = None

    @property
    def is_labelled(self) -> bool:
        return self.label is not None or bool(self.boxes) or bool(self.polygons)

    def all_boxes(self) -> list[Box]:
        """Boxes plus the box around every polygon: what a detector trains on."""
        return list(self.boxes) + [p.bbox() for p in self.polygons]

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"id": self.id, "file": self.file}
        if self.original_name is not None:
            out["original_name"] = self.original_name
        out.update({
            "width": self.width,
            "height": self.height,
            "split": self.split,
            "label": self.label,
            "boxes": [b.to_dict() for b in self.boxes],
            "polygons": [p.to_dict() for p in self.polygons],
        })
        if self.meta:
            out["meta"] = self.meta
        return out


# --- parsing the store, with errors that name the field -------------------------------------------
class _FieldError(Exception):
    def __init__(self, field: str, problem: str):
        super().__init__(f"field '{field}': {problem}")
        self.field, self.problem = field, problem


def _num(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _FieldError(where, f"expected a number, got {value!r}")
    return float(value)


def _int(value: Any, where: str, allow_none: bool = False) -> int | None:
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise _FieldError(where, f"expected an integer, got {value!r}")
    return value


def _opt_str(value: Any, where: str) -> str | None:
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    raise _FieldError(where, f"expected a string id, got {value!r}")


def _score(d: dict, where: str) -> float | None:
    s = d.get("score")
    return None if s is None else _num(s, f"{where}.score")


def _iscrowd(d: dict, where: str) -> bool:
    v = d.get("iscrowd", False)
    if not isinstance(v, bool):
        raise _FieldError(f"{where}.iscrowd", f"expected true or false, got {v!r}")
    return v


def rle_problem(rle: Any) -> str | None:
    """Why ``rle`` is not a COCO RLE object (``{"size": [h, w], "counts": str | [int, ...]}``), or None."""
    if not isinstance(rle, dict) or set(rle) != {"size", "counts"}:
        return "expected {\"size\": [height, width], \"counts\": ...}"
    size, counts = rle["size"], rle["counts"]
    if not (isinstance(size, list) and len(size) == 2 and all(isinstance(v, int) and v >= 0 for v in size)):
        return f"size: expected [height, width], got {size!r}"
    if not (isinstance(counts, str) or isinstance(counts, list) and all(isinstance(v, int) for v in counts)):
        return "counts: expected a compressed string or a list of run lengths"
    return None


def box_from_dict(d: Any, where: str) -> Box:
    if not isinstance(d, dict):
        raise _FieldError(where, "expected an object with 'cls' and 'bbox'")
    bbox = d.get("bbox")
    if not isinstance(bbox, list) or len(bbox) != 4:
        raise _FieldError(f"{where}.bbox", f"expected [x1, y1, x2, y2], got {bbox!r}")
    coords = [_num(v, f"{where}.bbox[{i}]") for i, v in enumerate(bbox)]
    return Box(_int(d.get("cls"), f"{where}.cls"), *coords, id=_opt_str(d.get("id"), f"{where}.id"),
               score=_score(d, where), iscrowd=_iscrowd(d, where))


def polygon_from_dict(d: Any, where: str) -> Polygon:
    if not isinstance(d, dict):
        raise _FieldError(where, "expected an object with 'cls' and 'points'")
    pts = d.get("points")
    if not isinstance(pts, list):
        raise _FieldError(f"{where}.points", f"expected a list of [x, y] pairs, got {pts!r}")
    points = []
    for i, p in enumerate(pts):
        if not isinstance(p, list) or len(p) != 2:
            raise _FieldError(f"{where}.points[{i}]", f"expected [x, y], got {p!r}")
        points.append((_num(p[0], f"{where}.points[{i}][0]"), _num(p[1], f"{where}.points[{i}][1]")))
    rle = d.get("rle")
    if rle is not None and rle_problem(rle):
        raise _FieldError(f"{where}.rle", rle_problem(rle))
    return Polygon(_int(d.get("cls"), f"{where}.cls"), points, id=_opt_str(d.get("id"), f"{where}.id"),
                   score=_score(d, where), iscrowd=_iscrowd(d, where), rle=rle)


SPLITS = ("train", "val", "test")


def record_from_dict(d: Any, where: str) -> ImageRecord:
    if not isinstance(d, dict):
        raise _FieldError(where, "expected an object")
    rid, file = d.get("id"), d.get("file")
    if not isinstance(rid, str) or not rid:
        raise _FieldError(f"{where}.id", f"expected a non-empty string, got {rid!r}")
    if not isinstance(file, str) or not file or safe_relpath(file) != file:
        raise _FieldError(f"{where}.file", f"expected a plain path inside the dataset folder, got {file!r}")
    split = d.get("split")
    if split is not None and split not in SPLITS:
        raise _FieldError(f"{where}.split", f"{split!r} is not one of {list(SPLITS)} or null")
    boxes, polys = d.get("boxes", []), d.get("polygons", [])
    if not isinstance(boxes, list):
        raise _FieldError(f"{where}.boxes", "expected a list")
    if not isinstance(polys, list):
        raise _FieldError(f"{where}.polygons", "expected a list")
    meta = d.get("meta", {})
    if not isinstance(meta, dict):
        raise _FieldError(f"{where}.meta", "expected an object")
    original = d.get("original_name")
    if original is not None and (not isinstance(original, str) or safe_relpath(original) != original):
        raise _FieldError(f"{where}.original_name", f"expected a plain relative path, got {original!r}")
    width, height = _int(d.get("width"), f"{where}.width"), _int(d.get("height"), f"{where}.height")
    return ImageRecord(
        id=rid,
        file=file,
        width=width,
        height=height,
        split=split,
        label=_int(d.get("label"), f"{where}.label", allow_none=True),
        boxes=[box_from_dict(b, f"{where}.boxes[{i}]") for i, b in enumerate(boxes)],
        polygons=[polygon_from_dict(p, f"{where}.polygons[{i}]") for i, p in enumerate(polys)],
        meta=meta,
        original_name=original,
    )


def finite(shape: Shape) -> bool:
    vals = shape.xyxy if isinstance(shape, Box) else [v for p in shape.points for v in p]
    return all(math.isfinite(v) for v in vals)
