"""What every format shares: the parsed form a reader returns, error collection, and the store builder.

A reader turns a folder into :class:`Parsed` (classes plus one :class:`Item` per image, with
shapes in pixels or normalised units) without touching the destination; :func:`build` then
copies the images into a new store.  A writer reads a :class:`Dataset` and writes files.
"""

from __future__ import annotations

import abc
import os
import shutil
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from ...errors import DataError
from .._dataset import IMAGES_DIR, Dataset
from .._images import (
    IMAGE_SUFFIXES,
    UNREAD_IMAGE_SUFFIXES,
    clean_name,
    header_size,
    is_image_name,
    name_key,
    safe_relpath,
)
from .._shapes import Box, ImageRecord, Polygon


@dataclass
class Item:
    """One image as a reader found it."""

    source: Path  # the image file to copy
    name: str  # its name in the format (posix, with suffix): the store keeps it unless unsafe or taken
    split: str | None = None
    label: int | None = None
    boxes: list[Box] = field(default_factory=list)
    polygons: list[Polygon] = field(default_factory=list)
    meta: dict[str, Any] = field(default_factory=dict)
    normalized: bool = False  # shapes are in 0..1 image units (YOLO)
    original: str | None = None  # its name before an earlier import (a store's record.original_name)
    problems: list[tuple[str, str]] = field(default_factory=list)  # (kind, message) about this image


@dataclass
class Parsed:
    task: str
    classes: list[str]
    items: list[Item]
    problems: list[dict[str, str]] = field(default_factory=list)
    meta: dict[str, Any] = field(default_factory=dict)


class Issues:
    """Where readers report broken label data: raised at once (``"raise"``) or kept (``"collect"``).

    Label data whose image is missing is always kept (as ``orphan_label``): it is a finding of
    the analysis, not a broken file.  Kept problems land in the store and :func:`analyse` shows them.
    """

    def __init__(self, mode: str = "raise") -> None:
        if mode not in ("raise", "collect"):
            raise ValueError(f"errors must be 'raise' or 'collect', not {mode!r}")
        self.mode = mode
        self.problems: list[dict[str, str]] = []

    def bad(self, path: str | os.PathLike, problem: str, hint: str = "fix or remove that line") -> None:
        if self.mode == "raise":
            raise DataError(path, problem, hint)
        self.problems.append({"kind": "bad_label", "file": str(path), "message": problem})

    def orphan(self, path: str | os.PathLike, problem: str) -> None:
        self.problems.append({"kind": "orphan_label", "file": str(path), "message": problem})

    def unsupported(self, paths: list[Path], fmt: str, images: str | None = None) -> None:
        """Files the reader does not read (``.heic``, stray ``.txt``...): ``unsupported_file`` problems.

        One problem per folder and suffix, so a folder of 3,000 masks is one line, not 3,000.
        ``images`` says why image files are not read, for formats that read them from one place.
        """
        groups: dict[tuple[Path, str], list[Path]] = {}
        for p in paths:
            groups.setdefault((p.parent, p.suffix.lower()), []).append(p)
        for (folder, suffix), files in groups.items():
            if suffix in UNREAD_IMAGE_SUFFIXES:
                why = f"{suffix} images are not read by tango; not imported (convert them to PNG or JPEG)"
            elif images and is_image_name(files[0]):
                why = f"{images}; not imported"
            else:
                why = f"not an image or a file the {fmt} format reads; not imported (drop this if nothing is missing)"
            if len(files) == 1:
                self.problems.append({"kind": "unsupported_file", "file": str(files[0]), "message": why})
                continue
            shown = ", ".join(f.name for f in files[:3]) + (", ..." if len(files) > 3 else "")
            self.problems.append({"kind": "unsupported_file", "file": str(folder / f"*{suffix}"),
                                  "message": f"{len(files)} files ({shown}): {why}"})


class Format(abc.ABC):
    """A dataset format: ``detect``, ``read`` and (optionally) ``write``; registered in ``FORMATS``."""

    name: str = ""
    tasks: tuple[str, ...] = ()
    description: str = ""
    writable: bool = True

    @abc.abstractmethod
    def detect(self, src: Path) -> bool:
        """Whether the folder ``src`` looks like this format."""

    @abc.abstractmethod
    def read(self, src: Path, issues: Issues, task: str | None = None) -> Parsed:
        """Parse the folder ``src``; ``task`` overrides the task the files suggest."""

    def write(self, ds: Dataset, dst: Path) -> Path:
        raise DataError(dst, f"the {self.name!r} format can be read but not written")

    def check_task(self, ds: Dataset, dst: Path) -> None:
        if ds.task not in self.tasks:
            from . import FORMATS

            fits = [n for n in FORMATS.names() if ds.task in FORMATS.get(n).tasks and FORMATS.get(n).writable]
            raise DataError(dst, f"the {self.name!r} format does not hold {ds.task} datasets",
                            f"formats for {ds.task}: {', '.join(fits)}")


# --- helpers for readers ---------------------------------------------------------------------------
def inside(root: Path, rel: str, issues: Issues, where: str | os.PathLike) -> Path | None:
    """``root / rel`` if it stays inside ``root`` (no ``..``, absolute path or symlink out), else report it."""
    clean = "." if rel.strip().rstrip("/") in ("", ".") else safe_relpath(rel)
    path = None if clean is None else root / clean
    if path is not None and path.resolve().is_relative_to(root.resolve()):
        return path
    issues.bad(where, f"path {rel!r} leaves the dataset folder", "paths must be relative and stay inside it")
    return None


#: what file managers leave in folders: never data, so never reported
_OS_FILES = ("thumbs.db", "desktop.ini")
#: split folder names in the layouts formats use (``images/train``, ``val2017``, ``valid``)
SPLIT_DIRS = {"train": "train", "val": "val", "valid": "val", "validation": "val", "test": "test"}


def walk_files(folder: Path) -> list[Path]:
    """Every file under ``folder``, sorted, without hidden files and folders (``.DS_Store``,
    ``.git/``), ``__MACOSX/`` and the ``Thumbs.db`` / ``desktop.ini`` of file managers."""
    if not folder.is_dir():
        return []
    out = []
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith(".") and d != "__MACOSX")
        out += [Path(dirpath, f) for f in sorted(filenames) if not f.startswith(".") and f.lower() not in _OS_FILES]
    return out


def list_images(folder: Path) -> list[Path]:
    """Image files under ``folder``, sorted, skipping hidden files and folders."""
    return [p for p in walk_files(folder) if is_image_name(p)]


def unread_files(root: Path, seen: set[Path], issues: Issues, fmt: str, images: str | None = None) -> list[Path]:
    """What a reader left unread under ``root``, so that nothing is skipped silently.

    ``seen`` holds every file the reader read or reported.  Other files become ``unsupported_file``
    problems; other images are returned for the reader to import as ``unlisted_image`` (or, given
    ``images``, the reason they are not read, reported as unsupported too).  A file that links
    out of ``root`` is refused, as everywhere.
    """
    seen = {p.resolve() for p in seen}
    inside_root, other, left = root.resolve(), [], []
    for p in walk_files(root):
        target = p.resolve()
        if target in seen:
            continue
        if not target.is_relative_to(inside_root):
            issues.bad(p, "links outside the dataset folder", "remove the link, or copy the file in")
        elif is_image_name(p) and images is None:
            left.append(p)
        else:
            other.append(p)
    issues.unsupported(other, fmt, images)
    return left


def unlisted(root: Path, images: list[Path], why: str) -> list[Item]:
    """Items for images found under ``root`` that the label files do not list (``why`` says so).

    They are imported without labels and each is an ``unlisted_image`` problem, so the user
    decides; the name drops a leading ``images/`` and split folder, whose split the image takes.
    """
    items = []
    for p in images:
        parts = list(p.relative_to(root).parts)
        if len(parts) > 1 and parts[0] == "images":
            parts = parts[1:]
        split = SPLIT_DIRS.get(parts[0].lower().rstrip("0123456789")) if len(parts) > 1 else None
        rel = "/".join(parts[1:] if split else parts)
        message = (f"{p.relative_to(root).as_posix()} {why}; imported without labels "
                   "(fix: take it in as it is, or drop it)")
        items.append(Item(source=p, name=rel, split=split, problems=[("unlisted_image", message)]))
    return items


def find_image(folder: Path, stem: str) -> Path | None:
    for suffix in IMAGE_SUFFIXES + tuple(s.upper() for s in IMAGE_SUFFIXES):
        if (folder / f"{stem}{suffix}").is_file():
            return folder / f"{stem}{suffix}"
    return None


def split_of(name: str) -> str | None:
    """The split a folder or file name stands for (``train2017`` -> train, ``valid`` -> val)."""
    low = name.lower()
    for token, split in (("train", "train"), ("val", "val"), ("test", "test")):
        if token in low:
            return split
    return None


# --- building a store from a reader's output -----------------------------------------------------------
def build(parsed: Parsed, dest: Path, task: str | None = None) -> Dataset:
    """Make a new store at ``dest`` from ``parsed``: images copied, shapes scaled to pixels."""
    ds = Dataset.create(dest, task=task or parsed.task, classes=parsed.classes)
    ds.meta.update(parsed.meta)
    ds.problems.extend(parsed.problems)
    for item in parsed.items:
        data = item.source.read_bytes()
        size = header_size(data)
        rec = ds.add_image(data, name=item.name, split=item.split, check=False, size=size or (0, 0),
                           durable=False, original=item.original)
        rec.label, rec.meta = item.label, dict(item.meta)
        for kind, message in item.problems:  # about this image: the user decides on it in analyse()
            ds.problems.append({"kind": kind, "file": rec.file, "message": message, "record": rec.id})
        if item.normalized and size is None and (item.boxes or item.polygons):
            ds.problems.append({"kind": "corrupt", "file": rec.file,
                                "message": f"unreadable image: its {len(item.boxes) + len(item.polygons)} "
                                           "normalised labels cannot be scaled and were not imported"})
            continue
        sx, sy = (rec.width, rec.height) if item.normalized else (1, 1)
        for b in item.boxes:
            ds.add_box(rec.id, replace(b, x1=b.x1 * sx, y1=b.y1 * sy, x2=b.x2 * sx, y2=b.y2 * sy))
        for p in item.polygons:
            ds.add_polygon(rec.id, replace(p, points=[(x * sx, y * sy) for x, y in p.points]))
    ds.save()
    return ds


# --- helpers for writers ---------------------------------------------------------------------------
def prepare_dst(dst: Path) -> Path:
    dst = Path(dst)
    if dst.exists() and (not dst.is_dir() or any(dst.iterdir())):
        raise DataError(dst, "exists and is not an empty folder", "export into a new or empty folder")
    dst.mkdir(parents=True, exist_ok=True)
    return dst


def copy_image(ds: Dataset, rec: ImageRecord, dst: Path) -> Path:
    """Copy ``rec``'s image to ``dst`` (a file path) and return it; a missing image is an error."""
    src = ds.image_path(rec)
    if not src.is_file():
        raise DataError(src, f"image of record {rec.id!r} is missing",
                        "run analyse() and drop the 'missing_image' problems before exporting")
    dst.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src, dst)
    return dst


def split_groups(ds: Dataset, dst: Path) -> dict[str | None, list[ImageRecord]]:
    """Records by split, for layouts with one folder per split: all images have a split, or none has."""
    unsplit = [r for r in ds.records if r.split is None]
    if unsplit and len(unsplit) < len(ds.records):
        raise DataError(dst, f"{len(unsplit)} of {len(ds.records)} images have no split (e.g. {unsplit[0].file})",
                        "run ds.split() to assign every image, or clear the splits, before exporting")
    groups: dict[str | None, list[ImageRecord]] = {}
    for rec in ds.records:
        groups.setdefault(rec.split, []).append(rec)
    return groups


def check_class(ds: Dataset, rec: ImageRecord, cls: int | None) -> None:
    if cls is not None and not 0 <= cls < len(ds.classes):
        raise DataError(ds.image_path(rec), f"class id {cls} is not one of the {len(ds.classes)} classes",
                        "run analyse() and fix or drop the 'unknown_class' problems before exporting")


def rel_name(rec: ImageRecord) -> str:
    """The record's file name relative to images/ (id plus suffix) used by every writer."""
    prefix = IMAGES_DIR + "/"
    return rec.file[len(prefix):] if rec.file.startswith(prefix) else rec.id + os.path.splitext(rec.file)[1]


def export_names(records: list[ImageRecord], folder: Callable[[ImageRecord], Hashable] = lambda rec: None,
                 by_stem: bool = False) -> dict[str, str]:
    """The file name (under its export folder) of each record's image, by record id.

    A record renamed at import (its name was taken) gets its ``original_name`` back when no
    other image of the same export folder has it; otherwise, and for every other record, the
    store name.  ``folder`` says which records share a folder; with ``by_stem``, names that
    differ only in suffix collide (formats with one label file per image stem: YOLO, VOC).
    Names are compared as the store compares them (ignoring case), so exports stay portable.
    """
    def usable(name: str | None) -> bool:
        return name is not None and clean_name(name) == name

    def key(rec: ImageRecord, name: str) -> tuple:
        return folder(rec), name_key(os.path.splitext(name)[0] if by_stem else name)

    taken: set[tuple] = set()
    out: dict[str, str] = {}
    # store names are unique, so records that keep theirs go first and never move
    for rec in sorted(records, key=lambda r: usable(r.original_name)):
        store = rel_name(rec)
        name = next((n for n in (rec.original_name, store) if usable(n) and key(rec, n) not in taken), None)
        stem, suffix = os.path.splitext(store)
        n = 1
        while name is None or key(rec, name) in taken:  # only when names clash ignoring case
            name, n = f"{stem}_{n}{suffix}", n + 1
        taken.add(key(rec, name))
        out[rec.id] = name
    return out


def num(v: float) -> int | float:
    """Integers stay integers in text formats."""
    return int(v) if float(v).is_integer() else float(v)
