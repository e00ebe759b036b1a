"""Formats made of folders alone: ImageFolder (one folder per class), plain images, and the tango store.

ImageFolder: ``[<split>/]<class>/<name>.<ext>`` with split folders ``train``, ``val`` (``valid``)
and ``test``; ``classes.txt`` (written on export) keeps the class order and empty classes,
otherwise classes are the sorted folder names.  Images lying beside the class folders are
read as unlabelled.
"""

from __future__ import annotations

from pathlib import Path

from ..._io import atomic_write_text
from ...errors import DataError
from .._dataset import STORE_FORMAT, STORE_NAME, Dataset
from .._images import is_image_name
from .._shapes import Box, Polygon, record_from_dict
from ._base import (
    Format,
    Issues,
    Item,
    Parsed,
    check_class,
    copy_image,
    export_names,
    inside,
    list_images,
    prepare_dst,
    rel_name,
    split_groups,
    unlisted,
    unread_files,
)

_SPLIT_DIRS = {"train": "train", "val": "val", "valid": "val", "validation": "val", "test": "test"}


def _subdirs(p: Path) -> list[Path]:
    return sorted(d for d in p.iterdir() if d.is_dir() and not d.name.startswith(".")) if p.is_dir() else []


class ImageFolder(Format):
    name = "imagefolder"
    tasks = ("classification",)
    description = "one folder per class, optionally inside train/val/test folders"

    def detect(self, src: Path) -> bool:
        if not src.is_dir() or any(src.glob("*.json")) or any(src.glob("*.yaml")) or any(src.glob("*.xml")):
            return False
        return any(list_images(d) for d in _subdirs(src))

    def read(self, src: Path, issues: Issues, task: str | None = None) -> Parsed:
        if task not in (None, "classification"):
            raise DataError(src, f"an ImageFolder tree holds classification labels, not {task}")
        tops = _subdirs(src)
        split_layout = bool(tops) and all(d.name.lower() in _SPLIT_DIRS for d in tops)
        roots = [(d, _SPLIT_DIRS[d.name.lower()]) for d in tops] if split_layout else [(src, None)]
        names: list[str] = []
        seen: set[Path] = set()
        if (src / "classes.txt").is_file():
            names = [n.strip() for n in (src / "classes.txt").read_text().splitlines() if n.strip()]
            seen.add(src / "classes.txt")
        for root, _ in roots:
            names += [d.name for d in _subdirs(root) if d.name not in names]
        loose = [(src, None)] if split_layout else []  # images beside the split folders: no split, no label
        items = []
        for root, split in loose + roots:
            for image in sorted(p for p in root.iterdir() if p.is_file() and is_image_name(p)):
                seen.add(image)
                if inside(src, image.relative_to(src).as_posix(), issues, image):
                    items.append(Item(source=image, name=image.name, split=split))
        for root, split in roots:
            for class_dir in _subdirs(root):
                for image in list_images(class_dir):
                    seen.add(image)
                    if inside(src, image.relative_to(src).as_posix(), issues, image):
                        items.append(Item(source=image, name=image.relative_to(class_dir).as_posix(),
                                          split=split, label=names.index(class_dir.name)))
        items += unlisted(src, unread_files(src, seen, issues, self.name), "is in no class folder")
        return Parsed("classification", names, items, issues.problems)

    def write(self, ds: Dataset, dst: Path) -> Path:
        self.check_task(ds, dst)
        unlabelled = [r for r in ds.records if r.label is None]
        if unlabelled:
            raise DataError(ds.image_path(unlabelled[0]), f"{len(unlabelled)} images have no label, and an "
                            "ImageFolder tree has no place for them", "label them, or drop them with analyse()")
        groups = split_groups(ds, dst)
        dst = prepare_dst(dst)
        names = export_names(ds.records, folder=lambda rec: (rec.split, rec.label))  # cat/1.png and dog/1.png
        for split, recs in groups.items():
            base = dst / split if split else dst
            for name in ds.classes:
                (base / name).mkdir(parents=True, exist_ok=True)
            for rec in recs:
                check_class(ds, rec, rec.label)
                copy_image(ds, rec, base / ds.classes[rec.label] / names[rec.id])
        atomic_write_text(dst / "classes.txt", "".join(c + "\n" for c in ds.classes))
        return dst


class Images(Format):
    name = "images"
    tasks = ("classification", "detection", "segmentation")
    description = "a folder of images without labels (read only)"
    writable = False

    def detect(self, src: Path) -> bool:
        return bool(list_images(src))

    def read(self, src: Path, issues: Issues, task: str | None = None) -> Parsed:
        images = list_images(src)
        items = [Item(source=p, name=p.relative_to(src).as_posix()) for p in images
                 if inside(src, p.relative_to(src).as_posix(), issues, p)]
        unread_files(src, set(images), issues, self.name)  # every image is read: what is left is not an image
        if not items:
            raise DataError(src, "no images found", "images need a .png, .jpg, .bmp, .gif, .tif or .webp suffix")
        return Parsed(task or "classification", [], items, issues.problems)


class Tango(Format):
    name = "tango"
    tasks = ("classification", "detection", "segmentation")
    description = "the tango store itself: dataset.json + images/"

    def detect(self, src: Path) -> bool:
        p = src / STORE_NAME
        return p.is_file() and STORE_FORMAT in p.read_text(encoding="utf-8", errors="replace")[:200]

    def read(self, src: Path, issues: Issues, task: str | None = None) -> Parsed:
        ds = Dataset.load(src)
        # problems about one image follow it (its id may change in the new store), the others stay
        about: dict[str, list[tuple[str, str]]] = {}
        for p in ds.problems:
            if isinstance(p.get("record"), str) and p["record"] in ds:
                about.setdefault(p["record"], []).append((str(p.get("kind")), str(p.get("message", ""))))
        items, seen = [], {ds.store_path}
        for rec in ds.records:
            path = inside(src, rec.file, issues, ds.store_path)
            if path is None:
                continue
            seen.add(path)
            if not path.is_file():
                issues.orphan(ds.store_path, f"image {rec.file!r} not found; its labels were not imported")
                continue
            items.append(Item(source=path, name=rel_name(rec), split=rec.split, label=rec.label, meta=dict(rec.meta),
                              original=rec.original_name, boxes=[Box(**vars(b)) for b in rec.boxes],
                              polygons=[Polygon(**vars(p)) for p in rec.polygons], problems=about.get(rec.id, [])))
        items += unlisted(src, unread_files(src, seen, issues, self.name), f"is not in {STORE_NAME}")
        kept = [p for p in ds.problems if "record" not in p]
        return Parsed(task or ds.task, list(ds.classes), items, kept + issues.problems, dict(ds.meta))

    def write(self, ds: Dataset, dst: Path) -> Path:
        dst = prepare_dst(dst)
        out = Dataset(dst, ds.task, list(ds.classes), meta=dict(ds.meta), problems=list(ds.problems))
        for rec in ds.records:
            copy_image(ds, rec, dst / rec.file)
            out._insert(record_from_dict(rec.to_dict(), rec.id))
        out.save()
        return dst
