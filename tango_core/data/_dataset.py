"""The dataset store: ``<root>/dataset.json`` plus the images under ``<root>/images/``.

Widgets edit this store and the engine reads it.  ``save()`` is one atomic JSON write, cheap
enough to call after every edit; the schema is documented in docs/data.md.
"""

from __future__ import annotations

import json
import math
import os
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from .._io import atomic_write_bytes, atomic_write_text, read_json
from ..errors import DataError
from ._images import clean_name, decode, header_size, name_key, safe_relpath, suffix_for
from ._shapes import SPLITS, Box, ImageRecord, Polygon, Shape, _FieldError, record_from_dict

STORE_NAME = "dataset.json"
IMAGES_DIR = "images"
STORE_FORMAT = "tango-dataset"
STORE_VERSION = 1
TASKS = ("classification", "detection", "segmentation")


def _check_classes(classes: Any, source: str) -> list[str]:
    if not isinstance(classes, (list, tuple)) or not all(isinstance(c, str) and c.strip() for c in classes):
        raise DataError(source, "field 'classes': expected a list of non-empty class names",
                        "for example [\"cat\", \"dog\"]")
    dup = sorted({c for c in classes if list(classes).count(c) > 1})
    if dup:
        raise DataError(source, f"field 'classes': duplicate class names {dup}", "class names must be unique")
    return list(classes)


def _check_task(task: Any, source: str) -> str:
    if task not in TASKS:
        raise DataError(source, f"field 'task': {task!r} is not a task", f"use one of {list(TASKS)}")
    return task


class Dataset:
    """An annotated image set.  Make one with :meth:`create`, open one with :meth:`load`."""

    def __init__(self, root: str | os.PathLike, task: str, classes: list[str],
                 records: list[ImageRecord] | None = None, meta: dict[str, Any] | None = None,
                 problems: list[dict[str, str]] | None = None) -> None:
        self.root = Path(root)
        self.task = _check_task(task, str(self.root / STORE_NAME))
        self.classes = _check_classes(classes, str(self.root / STORE_NAME))
        self.records: list[ImageRecord] = []
        self.meta: dict[str, Any] = dict(meta or {})
        #: problems found while importing that no record can hold (label files without an image,
        #: unreadable lines); analyse() reports them until the user drops them.
        self.problems: list[dict[str, str]] = list(problems or [])
        self._by_id: dict[str, ImageRecord] = {}
        self._id_keys: Counter[str] = Counter()  # name_key of every id: names that would share one file
        self._next_shape = 1
        for rec in records or []:
            self._insert(rec)

    # --- construction ----------------------------------------------------------------------------
    @classmethod
    def create(cls, root: str | os.PathLike, task: str = "classification", classes: list[str] | tuple = (),
               exist_ok: bool = False) -> Dataset:
        root = Path(root)
        if (root / STORE_NAME).exists():
            if not exist_ok:
                raise DataError(root / STORE_NAME, "a dataset exists here already",
                                "open it with load_dataset(), or pass exist_ok=True")
            ds = cls.load(root)
            if ds.task != task:
                raise DataError(root / STORE_NAME, f"the existing dataset's task is {ds.task!r}, not {task!r}")
            return ds
        ds = cls(root, task, list(classes))
        (root / IMAGES_DIR).mkdir(parents=True, exist_ok=True)
        ds.save()
        return ds

    @classmethod
    def load(cls, root: str | os.PathLike) -> Dataset:
        root = Path(root)
        path = root / STORE_NAME if root.is_dir() or not root.name.endswith(".json") else root
        root = path.parent
        if not path.exists():
            raise DataError(path, "not found", "make a dataset with Dataset.create() or import_dataset()")
        raw = read_json(path)
        if not isinstance(raw, dict):
            raise DataError(path, "expected a JSON object at the top level")
        if raw.get("format") != STORE_FORMAT:
            raise DataError(path, f"field 'format': expected {STORE_FORMAT!r}, got {raw.get('format')!r}",
                            "this is not a tango dataset store; import it with import_dataset()")
        version = raw.get("version")
        if not isinstance(version, int) or version > STORE_VERSION:
            raise DataError(path, f"field 'version': {version!r} is not a store version this tango reads",
                            f"this tango reads versions up to {STORE_VERSION}; upgrade tango")
        images = raw.get("images", [])
        if not isinstance(images, list):
            raise DataError(path, "field 'images': expected a list of image records")
        problems = raw.get("problems", [])
        if not isinstance(problems, list) or not all(isinstance(p, dict) for p in problems):
            raise DataError(path, "field 'problems': expected a list of objects")
        meta = raw.get("meta", {})
        if not isinstance(meta, dict):
            raise DataError(path, "field 'meta': expected an object")
        try:
            records = [record_from_dict(d, f"images[{i}]") for i, d in enumerate(images)]
        except _FieldError as exc:
            raise DataError(path, str(exc), "fix or remove that entry") from None
        ds = cls(root, _check_task(raw.get("task"), str(path)), _check_classes(raw.get("classes", []), str(path)),
                 meta=meta, problems=problems)
        for i, rec in enumerate(records):
            if rec.id in ds._by_id:
                raise DataError(path, f"field 'images[{i}].id': duplicate image id {rec.id!r}",
                                "every image needs its own id")
            ds._insert(rec)
        return ds

    # --- persistence -------------------------------------------------------------------------------
    @property
    def store_path(self) -> Path:
        return self.root / STORE_NAME

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"format": STORE_FORMAT, "version": STORE_VERSION, "task": self.task,
                               "classes": list(self.classes)}
        if self.meta:
            out["meta"] = self.meta
        out["images"] = [r.to_dict() for r in self.records]
        if self.problems:
            out["problems"] = self.problems
        return out

    def save(self) -> Path:
        """Write ``dataset.json`` atomically (temp file + rename): a crash keeps the previous version."""
        return atomic_write_text(self.store_path, _dumps_store(self.to_dict()))

    # --- records -------------------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.records)

    def __iter__(self) -> Iterator[ImageRecord]:
        return iter(self.records)

    def __repr__(self) -> str:
        return f"Dataset({str(self.root)!r}, task={self.task!r}, classes={len(self.classes)}, images={len(self)})"

    def get(self, rec_id: str) -> ImageRecord:
        try:
            return self._by_id[rec_id]
        except KeyError:
            from ..errors import UnknownNameError

            raise UnknownNameError("image id", rec_id, list(self._by_id)) from None

    def __contains__(self, rec_id: object) -> bool:
        return rec_id in self._by_id

    def image_path(self, rec: ImageRecord | str) -> Path:
        rec = self.get(rec) if isinstance(rec, str) else rec
        return self.root / rec.file

    def _insert(self, rec: ImageRecord) -> ImageRecord:
        if rec.id in self._by_id:
            raise DataError(self.store_path, f"duplicate image id {rec.id!r}")
        for shape in (*rec.boxes, *rec.polygons):
            self._claim_id(shape)
        self.records.append(rec)
        self._by_id[rec.id] = rec
        self._id_keys[name_key(rec.id)] += 1
        return rec

    def _claim_id(self, shape: Shape) -> None:
        if shape.id is None:
            shape.id = str(self._next_shape)
            self._next_shape += 1
        elif shape.id.isdigit():
            self._next_shape = max(self._next_shape, int(shape.id) + 1)

    def _free_name(self, name: str) -> tuple[str, str]:
        """(id, file) for a new image called ``name``: ids are the path under images/ without suffix.

        A name is taken when an image has the same id ignoring case and unicode normalisation
        (``a.png`` and ``A.jpg`` would share a file on macOS and Windows, and an id): then ``_1``,
        ``_2``... is added to the stem.
        """
        stem, suffix = os.path.splitext(name)
        candidate, n = stem, 1
        while name_key(candidate) in self._id_keys or (self.root / IMAGES_DIR / f"{candidate}{suffix}").exists():
            candidate = f"{stem}_{n}"
            n += 1
        return candidate, f"{IMAGES_DIR}/{candidate}{suffix}"

    def add_image(self, image: str | os.PathLike | bytes, name: str | None = None, split: str | None = None,
                  *, check: bool = True, size: tuple[int, int] | None = None,
                  durable: bool = True, original: str | None = None) -> ImageRecord:
        """Copy an image (a path or its bytes) under ``images/`` and add an unlabelled record for it.

        ``name`` may hold sub-folders (``"cat/001.png"``); it becomes the record id without suffix.
        It is kept as it is unless it is unsafe on some OS (see :func:`clean_name`) or taken (then
        ``_1``, ``_2``... are added); a changed name is kept in ``record.original_name``, as is
        ``original`` (the name the image had before an earlier import) when it differs.
        With ``check`` the file must decode completely.
        ``durable=False`` skips the fsync, for bulk writers that save the store once at the end.
        """
        if isinstance(image, (bytes, bytearray, memoryview)):
            data, source = bytes(image), name or "<bytes>"
        else:
            source = str(image)
            try:
                data = Path(image).read_bytes()
            except OSError as exc:
                raise DataError(source, f"cannot read the image: {exc.strerror or exc}") from None
            name = name or Path(image).name
        if split is not None and split not in SPLITS:
            raise DataError(source, f"split {split!r} is not one of {list(SPLITS)} or None")
        if check:
            img, err = decode(data)
            if img is None:
                raise DataError(source, f"not a readable image ({err})", "check the file is a PNG/JPEG/... image")
            width, height = img.width, img.height
        else:
            width, height = size or header_size(data) or (0, 0)
        rel = safe_relpath(name or "image")
        if rel is None:
            raise DataError(source, f"image name {name!r} leaves the dataset folder", "use a plain relative name")
        if not os.path.splitext(rel)[1]:
            rel += suffix_for(data)
        rec_id, file = self._free_name(clean_name(rel))
        if durable:
            atomic_write_bytes(self.root / file, data)
        else:
            (self.root / file).parent.mkdir(parents=True, exist_ok=True)
            (self.root / file).write_bytes(data)
        original = original or rel
        rec = ImageRecord(id=rec_id, file=file, width=width, height=height, split=split,
                          original_name=None if original == file[len(IMAGES_DIR) + 1:] else original)
        return self._insert(rec)

    def remove_image(self, rec_id: str, delete_file: bool = True) -> ImageRecord:
        rec = self.get(rec_id)
        self.records.remove(rec)
        del self._by_id[rec_id]
        key = name_key(rec_id)
        self._id_keys[key] -= 1
        if not self._id_keys[key]:
            del self._id_keys[key]
        # import problems about this image (e.g. 'unlisted_image') have nothing left to decide
        self.problems = [p for p in self.problems if p.get("record") != rec_id]
        path = self.image_path(rec)
        if delete_file and path.is_file() and self.root / IMAGES_DIR in path.parents:
            path.unlink()
        return rec

    # --- labels and shapes ------------------------------------------------------------------------------
    def _cls_index(self, cls: int | str) -> int:
        if isinstance(cls, str):
            if cls not in self.classes:
                from ..errors import UnknownNameError

                raise UnknownNameError("class", cls, self.classes)
            return self.classes.index(cls)
        return int(cls)

    def set_label(self, rec_id: str, cls: int | str | None) -> ImageRecord:
        rec = self.get(rec_id)
        rec.label = None if cls is None else self._cls_index(cls)
        return rec

    def add_box(self, rec_id: str, box: Box) -> Box:
        if not isinstance(box, Box):
            raise TypeError(f"add_box expects a Box, got {type(box).__name__}")
        self._claim_id(box)
        self.get(rec_id).boxes.append(box)
        return box

    def add_polygon(self, rec_id: str, polygon: Polygon) -> Polygon:
        if not isinstance(polygon, Polygon):
            raise TypeError(f"add_polygon expects a Polygon, got {type(polygon).__name__}")
        self._claim_id(polygon)
        self.get(rec_id).polygons.append(polygon)
        return polygon

    def _locate(self, rec: ImageRecord, key: int | str, kind: str | None) -> tuple[list, int]:
        """The list holding a shape and its index: ``key`` is an index (in ``kind``'s list) or a shape id."""
        if isinstance(key, str):
            for shapes in (rec.boxes, rec.polygons):
                for i, s in enumerate(shapes):
                    if s.id == key:
                        return shapes, i
            raise DataError(rec.file, f"image {rec.id!r} has no shape with id {key!r}")
        kind = kind or ("polygon" if self.task == "segmentation" else "box")
        if kind not in ("box", "polygon"):
            raise ValueError(f"kind must be 'box' or 'polygon', not {kind!r}")
        shapes = rec.boxes if kind == "box" else rec.polygons
        if not -len(shapes) <= key < len(shapes):
            raise DataError(rec.file, f"image {rec.id!r} has {len(shapes)} shapes of kind {kind!r}, no index {key}")
        return shapes, key % len(shapes)

    def update_shape(self, rec_id: str, key: int | str, shape: Shape) -> Shape:
        """Replace a box or polygon (by index or id); the new shape keeps the old id unless it has one."""
        rec = self.get(rec_id)
        shapes, i = self._locate(rec, key, "box" if isinstance(shape, Box) else "polygon")
        if type(shapes[i]) is not type(shape):
            raise TypeError(f"shape {key!r} is a {type(shapes[i]).__name__}, not a {type(shape).__name__}")
        if shape.id is None:
            shape.id = shapes[i].id
        shapes[i] = shape
        return shape

    def remove_shape(self, rec_id: str, key: int | str, kind: str | None = None) -> Shape:
        """Remove a shape by id, or by index in the ``kind`` list (default: the task's shape)."""
        rec = self.get(rec_id)
        shapes, i = self._locate(rec, key, kind)
        return shapes.pop(i)

    # --- classes -------------------------------------------------------------------------------------
    def add_class(self, name: str) -> int:
        if not isinstance(name, str) or not name.strip():
            raise DataError(self.store_path, f"class name {name!r} must be a non-empty string")
        if name in self.classes:
            raise DataError(self.store_path, f"class {name!r} exists already")
        self.classes.append(name)
        return len(self.classes) - 1

    def rename_class(self, old: str, new: str) -> None:
        idx = self._cls_index(old)
        if new in self.classes:
            raise DataError(self.store_path, f"class {new!r} exists already", "remove it first or pick another name")
        if not isinstance(new, str) or not new.strip():
            raise DataError(self.store_path, f"class name {new!r} must be a non-empty string")
        self.classes[idx] = new

    def remove_class(self, name: str, drop_annotations: bool = False) -> int:
        """Remove a class; later class ids shift down by one.  Returns how many annotations were dropped."""
        idx = self._cls_index(name)
        used = self.class_counts().get(name, 0)
        if used and not drop_annotations:
            raise DataError(self.store_path, f"class {name!r} is used by {used} annotations",
                            "pass drop_annotations=True to delete them, or rename the class instead")
        for rec in self.records:
            if rec.label == idx:
                rec.label = None
            elif rec.label is not None and rec.label > idx:
                rec.label -= 1
            rec.boxes = [s for s in rec.boxes if s.cls != idx]
            rec.polygons = [s for s in rec.polygons if s.cls != idx]
            for s in (*rec.boxes, *rec.polygons):
                if s.cls > idx:
                    s.cls -= 1
        del self.classes[idx]
        return used

    def class_counts(self, split: str | None = None) -> dict[str, int]:
        """Annotations per class name (labels for classification, shapes otherwise), zeros included."""
        counts: Counter[int] = Counter()
        for rec in self.records_of(split) if split else self.records:
            if self.task == "classification":
                if rec.label is not None:
                    counts[rec.label] += 1
            else:
                counts.update(s.cls for s in (*rec.boxes, *rec.polygons))
        return {name: counts.get(i, 0) for i, name in enumerate(self.classes)}

    # --- splits ------------------------------------------------------------------------------------
    def records_of(self, split: str | None) -> list[ImageRecord]:
        if split is not None and split not in SPLITS:
            raise DataError(self.store_path, f"split {split!r} is not one of {list(SPLITS)} or None")
        return [r for r in self.records if r.split == split]

    def split(self, val: float = 0.2, test: float = 0.0, seed: int = 0) -> dict[str, int]:
        """Assign train / val / test deterministically (by seed and image id, not list order).

        Classification is stratified by label; other tasks by each image's most common class.
        Strata are filled in turn with running totals, so every stratum gets its share within
        one image and the whole set gets ``round(n * val)`` val and ``round(n * test)`` test images.
        """
        if not (0 <= val < 1 and 0 <= test < 1 and val + test < 1):
            raise ValueError(f"val={val} and test={test} must be fractions with val + test < 1")
        strata: dict[int, list[ImageRecord]] = {}
        for rec in sorted(self.records, key=lambda r: r.id):
            strata.setdefault(self._stratum(rec), []).append(rec)

        def upto(n: int, fraction: float) -> int:
            return math.floor(n * fraction + 0.5)

        rng = np.random.default_rng(seed)
        done = 0
        for key in sorted(strata):
            group = strata[key]
            n_test = upto(done + len(group), test) - upto(done, test)
            n_held = n_test + upto(done + len(group), val) - upto(done, val)
            done += len(group)
            for j, k in enumerate(rng.permutation(len(group))):
                group[k].split = "test" if j < n_test else "val" if j < n_held else "train"
        return {s: len(self.records_of(s)) for s in SPLITS}

    def _stratum(self, rec: ImageRecord) -> int:
        if self.task == "classification":
            return -1 if rec.label is None else rec.label
        classes = Counter(s.cls for s in (*rec.boxes, *rec.polygons))
        return min(classes, key=lambda c: (-classes[c], c)) if classes else -1


def _dumps_store(data: dict[str, Any]) -> str:
    """Pretty at the top, one compact line per image: readable, diff-friendly and quick to write."""
    lines = []
    for key, value in data.items():
        if key in ("images", "problems") and value:
            items = ",\n".join("  " + json.dumps(v, ensure_ascii=False, separators=(",", ":")) for v in value)
            lines.append(f" {json.dumps(key)}: [\n{items}\n ]")
        else:
            lines.append(f" {json.dumps(key)}: {json.dumps(value, ensure_ascii=False)}")
    return "{\n" + ",\n".join(lines) + "\n}\n"


def load_dataset(root: str | os.PathLike) -> Dataset:
    """Open the dataset store at ``root`` (the folder holding ``dataset.json``)."""
    return Dataset.load(root)
