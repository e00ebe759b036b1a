"""The labeler's editing logic over a :class:`tango_core.data.Dataset`, without any widget.

A :class:`LabelSession` knows the current image, the selected shape, the current class and
the undo / redo history; every edit goes through one method here, which snapshots the image
for undo, applies the change through the dataset's API and saves the store (one atomic JSON
write), so nothing is lost if the kernel dies.  The widget only turns clicks and keys into
these calls.  Coordinates are image pixels.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from tango_core.data import Box, Dataset, ImageRecord, Polygon
from tango_core.errors import ConfigError, DataError

PALETTE = ["#e6194b", "#3cb44b", "#4363d8", "#f58231", "#911eb4", "#42d4f4", "#f032e6", "#bfef45", "#fabed4",
           "#469990", "#dcbeff", "#9a6324", "#800000", "#aaffc3", "#808000", "#000075"]
FILTERS = ("all", "unlabeled")
MIN_SIZE = 1.0  # boxes smaller than this (px) are clicks, not boxes


@dataclass
class _Snapshot:
    rec_id: str
    label: int | None
    boxes: list[Box]
    polygons: list[Polygon]
    classes: list[str]
    colors: dict[str, str]
    suggestions: list[Any]


class LabelSession:
    """Edit a dataset image by image.  ``on_change()`` is called after every change."""

    def __init__(self, dataset: Dataset, autosave: bool = True, on_change: Callable[[], None] | None = None) -> None:
        if not len(dataset):
            raise DataError(dataset.store_path, "has no images to label", "import images first")
        self.ds = dataset
        self.autosave = autosave
        self.on_change = on_change
        self.rec_id = dataset.records[0].id
        self.filter = "all"
        self.selected: str | None = None
        self.current_class = 0
        self.undo_stack: list[_Snapshot] = []
        self.redo_stack: list[_Snapshot] = []
        #: model predictions not yet accepted, per image: a label (cls, score) or shapes with scores
        self.suggestions: dict[str, list[Any]] = {}
        self.saves = 0

    # --- where we are -----------------------------------------------------------------------
    @property
    def record(self) -> ImageRecord:
        return self.ds.get(self.rec_id)

    @property
    def task(self) -> str:
        return self.ds.task

    def visible(self) -> list[ImageRecord]:
        """The images the filter shows (the current one always, so it does not vanish mid-edit)."""
        if self.filter == "all":
            return list(self.ds.records)
        return [r for r in self.ds.records if not r.is_labelled or r.id == self.rec_id]

    @property
    def position(self) -> tuple[int, int]:
        vis = self.visible()
        return next(i for i, r in enumerate(vis) if r.id == self.rec_id), len(vis)

    @property
    def progress(self) -> tuple[int, int]:
        """(labelled images, all images)."""
        return sum(r.is_labelled for r in self.ds.records), len(self.ds)

    def colors(self) -> dict[str, str]:
        saved = self.ds.meta.get("class_colors") or {}
        return {name: saved.get(name, PALETTE[i % len(PALETTE)]) for i, name in enumerate(self.ds.classes)}

    # --- navigation ---------------------------------------------------------------------------
    def go(self, rec_id: str) -> None:
        self.ds.get(rec_id)
        self.rec_id, self.selected = rec_id, None
        self._changed(save=False)

    def step(self, delta: int) -> bool:
        """Next (+1) or previous (-1) image under the filter; False at either end."""
        records = self.ds.records
        i = next(k for k, r in enumerate(records) if r.id == self.rec_id)
        j = i + delta
        while 0 <= j < len(records):
            if self.filter == "all" or not records[j].is_labelled:
                self.go(records[j].id)
                return True
            j += delta
        return False

    def set_filter(self, name: str) -> None:
        if name not in FILTERS:
            raise ConfigError("labeler", "filter", f"{name!r} is not a filter", f"use one of {list(FILTERS)}")
        self.filter = name
        if name == "unlabeled" and self.record.is_labelled and not self.step(+1):
            self.step(-1)  # when everything is labelled, this stays where it is
        self._changed(save=False)

    # --- undo / redo ----------------------------------------------------------------------------
    def _snapshot(self) -> _Snapshot:
        rec = self.record
        return _Snapshot(rec.id, rec.label, copy.deepcopy(rec.boxes), copy.deepcopy(rec.polygons),
                         list(self.ds.classes), dict(self.ds.meta.get("class_colors") or {}),
                         copy.deepcopy(self.suggestions.get(rec.id, [])))

    def _restore(self, snap: _Snapshot) -> None:
        rec = self.ds.get(snap.rec_id)
        rec.label, rec.boxes, rec.polygons = snap.label, snap.boxes, snap.polygons
        self.ds.classes[:] = snap.classes
        self.ds.meta["class_colors"] = snap.colors
        self.suggestions[rec.id] = snap.suggestions
        self.rec_id = rec.id
        ids = {s.id for s in (*rec.boxes, *rec.polygons)}
        if self.selected not in ids:
            self.selected = None

    def _edit(self) -> None:
        """Call before changing anything: remembers the state for undo."""
        self.undo_stack.append(self._snapshot())
        self.redo_stack.clear()

    def undo(self) -> bool:
        if not self.undo_stack:
            return False
        snap = self.undo_stack.pop()
        current = self.rec_id
        self.rec_id = snap.rec_id
        self.redo_stack.append(self._snapshot())
        self.rec_id = current
        self._restore(snap)
        self._changed()
        return True

    def redo(self) -> bool:
        if not self.redo_stack:
            return False
        snap = self.redo_stack.pop()
        self.rec_id = snap.rec_id
        self.undo_stack.append(self._snapshot())
        self._restore(snap)
        self._changed()
        return True

    def _changed(self, save: bool = True) -> None:
        if save and self.autosave:
            self.ds.save()
            self.saves += 1
        if self.on_change is not None:
            self.on_change()

    # --- shapes -------------------------------------------------------------------------------
    def _cls(self, cls: int | None) -> int:
        cls = self.current_class if cls is None else int(cls)
        if not 0 <= cls < len(self.ds.classes):
            raise ConfigError("labeler", "class", f"class index {cls} does not exist",
                              f"the dataset has {len(self.ds.classes)} classes; add one first")
        return cls

    def _clamp(self, x: float, y: float) -> tuple[float, float]:
        rec = self.record
        return (round(min(max(float(x), 0.0), rec.width), 2), round(min(max(float(y), 0.0), rec.height), 2))

    def _box(self, x1: float, y1: float, x2: float, y2: float) -> tuple[float, float, float, float]:
        (ax, ay), (bx, by) = self._clamp(x1, y1), self._clamp(x2, y2)
        return min(ax, bx), min(ay, by), max(ax, bx), max(ay, by)

    def shape(self, shape_id: str) -> Box | Polygon:
        rec = self.record
        for s in (*rec.boxes, *rec.polygons):
            if s.id == shape_id:
                return s
        raise DataError(rec.file, f"has no shape {shape_id!r}", "select a shape on this image")

    def add_box(self, x1: float, y1: float, x2: float, y2: float, cls: int | None = None) -> Box | None:
        if self.task == "classification":
            raise ConfigError("labeler", "tool", "classification images take a label, not boxes",
                              "press a class hotkey (1-9) instead")
        box = self._box(x1, y1, x2, y2)
        if box[2] - box[0] < MIN_SIZE or box[3] - box[1] < MIN_SIZE:
            return None
        self._edit()
        shape = self.ds.add_box(self.rec_id, Box(self._cls(cls), *box))
        self.selected = shape.id
        self._changed()
        return shape

    def add_polygon(self, points: Iterable[Iterable[float]], cls: int | None = None) -> Polygon | None:
        if self.task == "classification":
            raise ConfigError("labeler", "tool", "classification images take a label, not polygons",
                              "press a class hotkey (1-9) instead")
        pts = [self._clamp(*p) for p in points]
        if len(pts) < 3:
            return None
        self._edit()
        shape = self.ds.add_polygon(self.rec_id, Polygon(self._cls(cls), pts))
        self.selected = shape.id
        self._changed()
        return shape

    def select(self, shape_id: str | None) -> None:
        if shape_id and not self.is_suggestion(shape_id):
            self.shape(shape_id)
        self.selected = shape_id or None
        self._changed(save=False)

    def move(self, shape_id: str, dx: float, dy: float) -> None:
        """Move a whole shape, kept inside the image."""
        s = self.shape(shape_id)
        rec = self.record
        xs = [s.x1, s.x2] if isinstance(s, Box) else [p[0] for p in s.points]
        ys = [s.y1, s.y2] if isinstance(s, Box) else [p[1] for p in s.points]
        dx = min(max(float(dx), -min(xs)), rec.width - max(xs))
        dy = min(max(float(dy), -min(ys)), rec.height - max(ys))
        if dx == 0 and dy == 0:
            return
        self._edit()
        if isinstance(s, Box):
            s.x1, s.x2 = round(s.x1 + dx, 2), round(s.x2 + dx, 2)
            s.y1, s.y2 = round(s.y1 + dy, 2), round(s.y2 + dy, 2)
        else:
            s.points = [(round(x + dx, 2), round(y + dy, 2)) for x, y in s.points]
        self.selected = shape_id
        self._changed()

    def nudge(self, dx: float, dy: float) -> None:
        if self.selected:
            self.move(self.selected, dx, dy)

    def set_box(self, shape_id: str, x1: float, y1: float, x2: float, y2: float) -> None:
        """Resize (or redraw) a box."""
        s = self.shape(shape_id)
        if not isinstance(s, Box):
            raise DataError(self.record.file, f"shape {shape_id!r} is a polygon", "move its vertices instead")
        box = self._box(x1, y1, x2, y2)
        if box[2] - box[0] < MIN_SIZE or box[3] - box[1] < MIN_SIZE or box == s.xyxy:
            return
        self._edit()
        self.ds.update_shape(self.rec_id, shape_id, Box(s.cls, *box, id=s.id, iscrowd=s.iscrowd))
        self._changed()

    def _polygon(self, shape_id: str) -> Polygon:
        s = self.shape(shape_id)
        if not isinstance(s, Polygon):
            raise DataError(self.record.file, f"shape {shape_id!r} is a box, not a polygon")
        return s

    def move_vertex(self, shape_id: str, index: int, x: float, y: float) -> None:
        s = self._polygon(shape_id)
        if not 0 <= index < len(s.points):
            raise DataError(self.record.file, f"polygon {shape_id!r} has no vertex {index}")
        self._edit()
        s.points[index] = self._clamp(x, y)
        self._changed()

    def insert_vertex(self, shape_id: str, index: int, x: float, y: float) -> None:
        """Add a vertex before position ``index`` (on the edge from ``index - 1`` to ``index``)."""
        s = self._polygon(shape_id)
        if not 0 <= index <= len(s.points):
            raise DataError(self.record.file, f"polygon {shape_id!r} has no edge before vertex {index}")
        self._edit()
        s.points.insert(index, self._clamp(x, y))
        self._changed()

    def delete_vertex(self, shape_id: str, index: int) -> None:
        s = self._polygon(shape_id)
        if len(s.points) <= 3:
            raise DataError(self.record.file, f"polygon {shape_id!r} has only 3 vertices",
                            "delete the polygon instead")
        if not 0 <= index < len(s.points):
            raise DataError(self.record.file, f"polygon {shape_id!r} has no vertex {index}")
        self._edit()
        del s.points[index]
        self._changed()

    def delete(self, shape_id: str | None = None) -> None:
        shape_id = shape_id or self.selected
        if not shape_id:
            return
        if self.is_suggestion(shape_id):
            self.reject(shape_id)
            return
        self.shape(shape_id)
        self._edit()
        self.ds.remove_shape(self.rec_id, shape_id)
        self.selected = None
        self._changed()

    def set_class(self, cls: int, shape_id: str | None = None) -> None:
        """Hotkey: the class of the selected shape (or the label of a classification image);
        also the class new shapes get."""
        cls = self._cls(cls)
        self.current_class = cls
        shape_id = shape_id or self.selected
        if self.task == "classification":
            if self.record.label != cls:
                self._edit()
                self.ds.set_label(self.rec_id, cls)
                self.suggestions.pop(self.rec_id, None)
                self._changed()
                return
        elif shape_id and not self.is_suggestion(shape_id):
            s = self.shape(shape_id)
            if s.cls != cls:
                self._edit()
                s.cls = cls
                self._changed()
                return
        self._changed(save=False)

    def clear_label(self) -> None:
        if self.task == "classification" and self.record.label is not None:
            self._edit()
            self.ds.set_label(self.rec_id, None)
            self._changed()

    # --- classes ------------------------------------------------------------------------------
    def add_class(self, name: str, color: str | None = None) -> int:
        if color:
            _check_color(color)
        self._edit()
        try:
            idx = self.ds.add_class(name.strip() if isinstance(name, str) else name)
        except DataError:
            self.undo_stack.pop()
            raise
        if color:
            self._set_color(self.ds.classes[idx], color)
        self._changed()
        return idx

    def rename_class(self, old: str, new: str) -> None:
        self._edit()
        try:
            self.ds.rename_class(old, new.strip() if isinstance(new, str) else new)
        except (DataError, KeyError):
            self.undo_stack.pop()
            raise
        colors = dict(self.ds.meta.get("class_colors") or {})
        if old in colors:
            colors[new.strip()] = colors.pop(old)
            self.ds.meta["class_colors"] = colors
        self._changed()

    def set_color(self, name: str, color: str) -> None:
        if name not in self.ds.classes:
            from tango_core.errors import UnknownNameError

            raise UnknownNameError("class", name, self.ds.classes)
        _check_color(color)
        self._edit()
        self._set_color(name, color)
        self._changed()

    def _set_color(self, name: str, color: str) -> None:
        _check_color(color)
        colors = dict(self.ds.meta.get("class_colors") or {})
        colors[name] = color.lower()
        self.ds.meta["class_colors"] = colors

    # --- model suggestions ----------------------------------------------------------------------
    def is_suggestion(self, shape_id: str) -> bool:
        return any(getattr(s, "id", None) == shape_id for s in self.suggestions.get(self.rec_id, []))

    def suggest(self, rec_id: str, predictions: list[Any]) -> None:
        """Store predictions for an image: ``[(cls, score)]`` for a label, or Boxes / Polygons."""
        out = []
        for k, p in enumerate(predictions):
            if isinstance(p, (Box, Polygon)):
                p = copy.deepcopy(p)
                p.id = f"s{k + 1}"
                p.score = 1.0 if p.score is None else p.score
            out.append(p)
        self.suggestions[rec_id] = out
        if rec_id == self.rec_id:
            self._changed(save=False)

    def editable(self, shape_id: str) -> str:
        """The id to edit: editing a suggestion makes it a label first."""
        if self.is_suggestion(shape_id):
            self.accept(shape_id)
            return self.selected or shape_id
        return shape_id

    def accept(self, shape_id: str | None = None) -> None:
        """Make a suggestion (or, without an id, every suggestion of this image) a label."""
        pending = self.suggestions.get(self.rec_id, [])
        chosen = [p for p in pending if shape_id is None or getattr(p, "id", None) == shape_id]
        if not chosen:
            return
        self._edit()
        for p in chosen:
            if isinstance(p, tuple):
                self.ds.set_label(self.rec_id, int(p[0]))
            elif isinstance(p, Box):
                s = self.ds.add_box(self.rec_id, Box(p.cls, *p.xyxy))
                self.selected = s.id
            else:
                s = self.ds.add_polygon(self.rec_id, Polygon(p.cls, list(p.points)))
                self.selected = s.id
        self.suggestions[self.rec_id] = [p for p in pending if p not in chosen]
        self._changed()

    def reject(self, shape_id: str | None = None) -> None:
        pending = self.suggestions.get(self.rec_id, [])
        keep = [p for p in pending if shape_id is not None and getattr(p, "id", None) != shape_id]
        if len(keep) == len(pending):
            return
        self._edit()
        self.suggestions[self.rec_id] = keep
        if self.selected == shape_id:
            self.selected = None
        self._changed(save=False)


def _check_color(color: Any) -> None:
    import re

    if not isinstance(color, str) or not re.fullmatch(r"#[0-9a-fA-F]{6}", color):
        raise ConfigError("labeler", "color", f"{color!r} is not a colour", "use #rrggbb, e.g. '#ff8800'")
