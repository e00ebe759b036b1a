"""Validation and statistics of a dataset: every problem names its file, the user decides what to do.

``report = analyse(ds)`` finds the problems below and measures the set; ``report.apply(ds,
fix=[...], drop=[...], keep=[...])`` acts on them per kind.  Every kind present must be given
a decision (``"*"`` stands for all remaining kinds), so nothing is skipped without the user
saying so.
"""

from __future__ import annotations

import math
import os
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from ..errors import ConfigError, UnknownNameError
from ._dataset import Dataset
from ._images import decode, pixel_hash
from ._shapes import SPLITS, Box, ImageRecord, Polygon, Shape, finite

#: kind -> (what it means, the actions it allows)
KINDS: dict[str, tuple[str, tuple[str, ...]]] = {
    "missing_image": ("a record whose image file is gone (labels without an image)", ("drop", "keep")),
    "orphan_label": ("label data found at import whose image was not found", ("drop", "keep")),
    "unlisted_image": ("an image found at import that the label files do not list (imported without labels)",
                       ("fix", "drop", "keep")),
    "unsupported_file": ("a file found at import that the format does not read (not imported)", ("drop", "keep")),
    "bad_label": ("a label line or field that could not be read at import", ("drop", "keep")),
    "corrupt": ("an image that does not decode (corrupt or truncated)", ("drop", "keep")),
    "size_mismatch": ("the recorded width / height differ from the image file", ("fix", "drop", "keep")),
    "duplicate": ("the same pixels as an earlier image", ("drop", "keep")),
    "unlabelled": ("an image without any label, box or polygon", ("drop", "keep")),
    "unknown_class": ("a class id outside the class list", ("drop", "keep")),
    "outside": ("a box or polygon reaching outside the image", ("fix", "drop", "keep")),
    "degenerate": ("a box or polygon without area (or with non-finite numbers)", ("fix", "drop", "keep")),
}
_EPS = 1e-3  # pixels: text formats round coordinates


@dataclass
class Problem:
    kind: str
    file: str  # relative to the dataset root, or the source file of an import problem
    message: str
    record: str | None = None  # image id
    shape: str | None = None  # shape id, for shape problems
    entry: dict[str, Any] | None = field(default=None, repr=False)  # the stored import problem

    def __str__(self) -> str:
        return f"{self.kind}: {self.file}: {self.message}"


def _quantiles(values: list[float]) -> dict[str, float] | None:
    if not values:
        return None
    a = np.asarray(values, dtype=np.float64)
    q = np.quantile(a, [0.0, 0.1, 0.5, 0.9, 1.0])
    return {"min": float(q[0]), "p10": float(q[1]), "median": float(q[2]), "p90": float(q[3]),
            "max": float(q[4]), "mean": float(a.mean())}


def _degenerate(shape: Shape) -> str | None:
    if not finite(shape):
        return "has non-finite coordinates"
    if isinstance(shape, Box):
        if shape.width <= 0 or shape.height <= 0:
            return f"box {shape.xyxy} has no area (needs x2 > x1 and y2 > y1)"
        return None
    if len(shape.points) < 3:
        return f"polygon has {len(shape.points)} points (needs at least 3)"
    if shape.area <= 0:
        return "polygon has no area"
    return None


def _outside(shape: Shape, rec: ImageRecord) -> bool:
    if rec.width <= 0 or rec.height <= 0 or not finite(shape):
        return False
    xs, ys = ((shape.x1, shape.x2), (shape.y1, shape.y2)) if isinstance(shape, Box) else zip(*shape.points, strict=True)
    return min(xs) < -_EPS or min(ys) < -_EPS or max(xs) > rec.width + _EPS or max(ys) > rec.height + _EPS


def analyse(ds: Dataset | str | os.PathLike) -> Report:
    """Check every image and label of ``ds`` and measure it; returns a :class:`Report`."""
    ds = ds if isinstance(ds, Dataset) else Dataset.load(ds)
    problems: list[Problem] = []
    seen: dict[str, str] = {}
    n_classes = len(ds.classes)
    for rec in ds.records:
        path = ds.image_path(rec)
        if not path.is_file():
            problems.append(Problem("missing_image", rec.file, "image file not found", rec.id))
        else:
            img, err = decode(path)
            if img is None:
                problems.append(Problem("corrupt", rec.file, f"does not decode: {err}", rec.id))
            else:
                if (img.width, img.height) != (rec.width, rec.height):
                    problems.append(Problem("size_mismatch", rec.file, f"recorded {rec.width} x {rec.height}, "
                                            f"file is {img.width} x {img.height}", rec.id))
                digest = pixel_hash(img)
                if digest in seen:
                    problems.append(Problem("duplicate", rec.file, f"same pixels as {seen[digest]}", rec.id))
                else:
                    seen[digest] = rec.file
        if not rec.is_labelled:
            problems.append(Problem("unlabelled", rec.file, "no label, box or polygon", rec.id))
        if rec.label is not None and not 0 <= rec.label < n_classes:
            problems.append(Problem("unknown_class", rec.file, f"label {rec.label} is not a class id "
                                    f"(there are {n_classes} classes)", rec.id))
        for shape in (*rec.boxes, *rec.polygons):
            what = f"{type(shape).__name__.lower()} {shape.id}"
            if not 0 <= shape.cls < n_classes:
                problems.append(Problem("unknown_class", rec.file, f"{what} has class {shape.cls}, not a class id "
                                        f"(there are {n_classes} classes)", rec.id, shape.id))
            reason = _degenerate(shape)
            if reason:
                problems.append(Problem("degenerate", rec.file, f"{what} {reason}", rec.id, shape.id))
            elif _outside(shape, rec):
                problems.append(Problem("outside", rec.file, f"{what} reaches outside the "
                                        f"{rec.width} x {rec.height} image", rec.id, shape.id))
    for entry in ds.problems:
        kind = entry.get("kind") if entry.get("kind") in KINDS else "bad_label"
        record = entry.get("record") if isinstance(entry.get("record"), str) else None
        if record is not None and record not in ds:
            continue  # about an image that was removed since: nothing left to decide
        problems.append(Problem(kind, str(entry.get("file", "?")), str(entry.get("message", "")), record,
                                entry=entry))
    return Report(str(ds.root), problems, _stats(ds))


def _stats(ds: Dataset) -> dict[str, Any]:
    sizes = Counter((r.width, r.height) for r in ds.records)
    widths, heights, areas, aspects, per_image = [], [], [], [], []
    for rec in ds.records:
        boxes = [b for b in rec.all_boxes() if finite(b) and b.width > 0 and b.height > 0]
        per_image.append(len(boxes))
        if rec.width > 0 and rec.height > 0:
            for b in boxes:
                widths.append(b.width / rec.width)
                heights.append(b.height / rec.height)
                areas.append(b.area / (rec.width * rec.height))
                aspects.append(b.width / b.height)
    return {
        "task": ds.task,
        "images": len(ds),
        "labelled": sum(r.is_labelled for r in ds.records),
        "classes": list(ds.classes),
        "class_counts": {"all": ds.class_counts(), **{s: ds.class_counts(s) for s in SPLITS}},
        "splits": {**{s: len(ds.records_of(s)) for s in SPLITS}, "none": len(ds.records_of(None))},
        "image_sizes": {
            "width": _quantiles([r.width for r in ds.records]),
            "height": _quantiles([r.height for r in ds.records]),
            "most_common": [[w, h, n] for (w, h), n in sizes.most_common(5)],
        },
        "shapes": {
            "count": int(sum(per_image)),
            "per_image": _quantiles(per_image),
            "width": _quantiles(widths),  # fractions of the image width
            "height": _quantiles(heights),
            "area": _quantiles(areas),
            "aspect": _quantiles(aspects),  # width / height
        },
    }


@dataclass
class Report:
    root: str
    problems: list[Problem]
    stats: dict[str, Any]

    @property
    def ok(self) -> bool:
        return not self.problems

    def kinds(self) -> dict[str, int]:
        """Problems per kind, in the order of :data:`KINDS`."""
        counts = Counter(p.kind for p in self.problems)
        return {k: counts[k] for k in KINDS if counts[k]}

    def by_kind(self, kind: str) -> list[Problem]:
        if kind not in KINDS:
            raise UnknownNameError("problem kind", kind, list(KINDS))
        return [p for p in self.problems if p.kind == kind]

    def to_dict(self) -> dict[str, Any]:
        return {"root": self.root, "ok": self.ok, "kinds": self.kinds(), "stats": self.stats,
                "problems": [{k: v for k, v in asdict(p).items() if k != "entry"} for p in self.problems]}

    def summary(self, max_per_kind: int = 10) -> str:
        s = self.stats
        lines = [f"{self.root}: {s['images']} images ({s['labelled']} labelled), task {s['task']}, "
                 f"{len(s['classes'])} classes",
                 "splits: " + ", ".join(f"{k} {v}" for k, v in s["splits"].items() if v),
                 "class counts: " + ", ".join(f"{k} {v}" for k, v in s["class_counts"]["all"].items())]
        if s["image_sizes"]["most_common"]:
            lines.append("image sizes: " + ", ".join(f"{w}x{h} ({n})" for w, h, n in s["image_sizes"]["most_common"]))
        if s["shapes"]["count"]:
            sh = s["shapes"]
            lines.append(f"shapes: {sh['count']} ({sh['per_image']['mean']:.2f} per image); width "
                         f"{sh['width']['median']:.3f}, height {sh['height']['median']:.3f} of the image (median); "
                         f"aspect {sh['aspect']['min']:.2f}..{sh['aspect']['max']:.2f}")
        if self.ok:
            lines.append("no problems found")
        for kind, n in self.kinds().items():
            lines.append(f"{kind} ({n}): {KINDS[kind][0]}; you can {' / '.join(KINDS[kind][1])}")
            for p in self.by_kind(kind)[:max_per_kind]:
                lines.append(f"  {p.file}: {p.message}")
            if n > max_per_kind:
                lines.append(f"  ... and {n - max_per_kind} more")
        return "\n".join(lines)

    __str__ = summary

    # --- acting on the problems ----------------------------------------------------------------
    def _decisions(self, fix, drop, keep) -> dict[str, str]:
        lists = {a: [v] if isinstance(v, str) else list(v) for a, v in (("fix", fix), ("drop", drop), ("keep", keep))}
        decided: dict[str, str] = {}
        rest = None
        for action, kinds in lists.items():
            for kind in kinds:
                if kind == "*":
                    rest = action
                    continue
                if kind not in KINDS:
                    raise UnknownNameError("problem kind", kind, list(KINDS))
                if kind in decided:
                    raise ConfigError("report.apply", kind, f"given to both {decided[kind]!r} and {action!r}")
                if action not in KINDS[kind][1]:
                    raise ConfigError("report.apply", kind, f"cannot be {action}ed",
                                      f"{kind} allows {' / '.join(KINDS[kind][1])}")
                decided[kind] = action
        for kind, n in self.kinds().items():
            if kind not in decided:
                if rest is None:
                    raise ConfigError("report.apply", kind, f"no decision for {n} problems",
                                      "pass the kind in fix=, drop= or keep= ('*' for all the rest)")
                decided[kind] = rest if rest in KINDS[kind][1] else "keep"
        return decided

    def apply(self, ds: Dataset, fix=(), drop=(), keep=(), save: bool = True) -> dict[str, dict[str, Any]]:
        """Fix, drop or keep the problems of each kind; returns what was done per kind.

        drop: a record-level problem removes the image (and its file); a shape-level problem
        removes the shape (for a label, clears it); an import problem is forgotten (with its
        image, for ``unlisted_image``).
        fix: ``size_mismatch`` takes the file's size, ``outside`` clips to the image,
        ``degenerate`` puts box corners in order; a shape still without area is removed;
        ``unlisted_image`` takes the image in as it is (the problem is forgotten).
        """
        decided = self._decisions(fix, drop, keep)
        done: dict[str, dict[str, Any]] = {}
        order = sorted(self.problems, key=lambda p: p.shape is None)  # shapes before their records
        for p in order:
            action = decided[p.kind]
            out = done.setdefault(p.kind, {"action": action, "problems": 0, "fixed": 0, "removed_images": 0,
                                           "removed_shapes": 0})
            out["problems"] += 1
            if action == "keep":
                continue
            if p.entry is not None:  # an import problem: forgotten, and for drop its image goes too
                if p.entry in ds.problems:
                    ds.problems.remove(p.entry)
                if action == "drop" and p.record in ds:
                    ds.remove_image(p.record)
                    out["removed_images"] += 1
                elif action == "fix":
                    out["fixed"] += 1  # unlisted_image: the image is taken in as it is
                continue
            if p.record not in ds:
                continue  # removed already by another decision
            rec = ds.get(p.record)
            if action == "drop":
                if p.shape is not None:
                    out["removed_shapes"] += _remove_shape(rec, p.shape)
                elif p.kind == "unknown_class":
                    rec.label = None
                else:
                    ds.remove_image(rec.id)
                    out["removed_images"] += 1
            elif p.kind == "size_mismatch":
                img, _ = decode(ds.image_path(rec))
                rec.width, rec.height = img.width, img.height
                out["fixed"] += 1
            else:
                fixed = _fix_shape(rec, p.shape, clip=p.kind == "outside")
                out["fixed" if fixed else "removed_shapes"] += 1
        if save:
            ds.save()
        return done


def _remove_shape(rec: ImageRecord, shape_id: str) -> int:
    before = len(rec.boxes) + len(rec.polygons)
    rec.boxes = [s for s in rec.boxes if s.id != shape_id]
    rec.polygons = [s for s in rec.polygons if s.id != shape_id]
    return before - len(rec.boxes) - len(rec.polygons)


def _fix_shape(rec: ImageRecord, shape_id: str, clip: bool) -> bool:
    """Repair a shape in place; remove it when no area is left.  True when it survived."""
    for shapes in (rec.boxes, rec.polygons):
        for i, s in enumerate(shapes):
            if s.id != shape_id:
                continue
            if isinstance(s, Box):
                x1, x2 = sorted((s.x1, s.x2))
                y1, y2 = sorted((s.y1, s.y2))
                if clip:
                    x1, x2 = max(x1, 0.0), min(x2, float(rec.width))
                    y1, y2 = max(y1, 0.0), min(y2, float(rec.height))
                new: Shape = Box(s.cls, x1, y1, x2, y2, id=s.id, score=s.score, iscrowd=s.iscrowd)
            else:
                pts = [p for j, p in enumerate(s.points) if p != s.points[j - 1]] or s.points[:1]
                if clip:
                    pts = _clip_polygon(pts, rec.width, rec.height)
                new = Polygon(s.cls, pts, id=s.id, score=s.score, iscrowd=s.iscrowd,
                              rle=s.rle)  # a COCO export sees the change and writes the polygon
            if _degenerate(new):
                del shapes[i]
                return False
            shapes[i] = new
            return True
    return False


def _clip_polygon(points: list[tuple[float, float]], width: float, height: float) -> list[tuple[float, float]]:
    """Sutherland-Hodgman clipping against the image rectangle."""
    def clip(pts, inside, cross):
        out = []
        for j, cur in enumerate(pts):
            prev = pts[j - 1]
            if inside(cur):
                if not inside(prev):
                    out.append(cross(prev, cur))
                out.append(cur)
            elif inside(prev):
                out.append(cross(prev, cur))
        return out

    def at_x(x):
        return lambda p, q: (x, p[1] + (q[1] - p[1]) * (x - p[0]) / (q[0] - p[0]))

    def at_y(y):
        return lambda p, q: (p[0] + (q[0] - p[0]) * (y - p[1]) / (q[1] - p[1]), y)

    pts = list(points)
    for inside, cross in ((lambda p: p[0] >= 0, at_x(0.0)), (lambda p: p[0] <= width, at_x(float(width))),
                          (lambda p: p[1] >= 0, at_y(0.0)), (lambda p: p[1] <= height, at_y(float(height)))):
        if not pts:
            break
        pts = clip(pts, inside, cross)
    return [(float(x), float(y)) for x, y in pts if math.isfinite(x) and math.isfinite(y)]
