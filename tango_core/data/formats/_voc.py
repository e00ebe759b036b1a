"""Pascal VOC: one XML per image (``Annotations/``), images in ``JPEGImages/``, splits in ``ImageSets/Main``.

VOC pixel indices start at 1 and are inclusive, so ``xmin=1, xmax=10`` is our ``x1=0, x2=10``.
The class order comes from ``labels.txt`` (written on export) or, without it, sorted names.
The ``difficult``, ``truncated`` and ``pose`` flags are not kept; a ``<score>`` per object is.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

from ..._io import atomic_write_text
from ...errors import DataError
from .._dataset import Dataset
from .._shapes import SPLITS, Box
from ._base import (
    Format,
    Issues,
    Item,
    Parsed,
    check_class,
    copy_image,
    export_names,
    find_image,
    inside,
    list_images,
    num,
    prepare_dst,
    unread_files,
)

_CLASS_FILES = ("labels.txt", "classes.txt", "labelmap.txt")


def _listed_stem(line: str) -> str:
    """The image of an ImageSets line: the whole line (names may hold spaces), or the first word
    of the ``stem flag`` lines of VOC's per-class lists (``000005 -1``)."""
    words = line.split()
    return words[0] if len(words) == 2 and words[1] in ("-1", "0", "1") else line.strip()


class Voc(Format):
    name = "voc"
    tasks = ("detection",)
    description = "Pascal VOC XML (boxes)"

    def _ann_dir(self, src: Path) -> Path | None:
        if (src / "Annotations").is_dir():
            return src / "Annotations"
        return src if src.is_dir() and any(src.glob("*.xml")) else None

    def detect(self, src: Path) -> bool:
        return self._ann_dir(src) is not None

    def read(self, src: Path, issues: Issues, task: str | None = None) -> Parsed:
        ann_dir = self._ann_dir(src)
        if ann_dir is None:
            raise DataError(src, "no Annotations/ folder with VOC XML files found")
        img_dir = src / "JPEGImages" if (src / "JPEGImages").is_dir() else ann_dir
        names = None
        seen: set[Path] = set()
        for fname in _CLASS_FILES:
            if (src / fname).is_file():
                names = [n.strip() for n in (src / fname).read_text().splitlines() if n.strip()]
                seen.add(src / fname)
                break
        splits: dict[str, str] = {}
        for split in SPLITS:
            listing = src / "ImageSets" / "Main" / f"{split}.txt"
            if listing.is_file():
                seen.add(listing)
                for line in listing.read_text(encoding="utf-8").split("\n"):
                    if line.strip():
                        splits.setdefault(_listed_stem(line), split)

        parsed: list[tuple[Item, list[tuple[str, Box, Path, int]]]] = []
        seen_images = set()
        for xml in sorted(ann_dir.rglob("*.xml")):
            seen.add(xml)
            stem = xml.relative_to(ann_dir).with_suffix("").as_posix()
            result = self._parse(xml, issues)
            if result is None:
                continue
            filename, objects = result
            image = inside(img_dir, str(Path(stem).parent / filename), issues, xml) if filename else None
            if image is not None and not image.is_file():
                image = None
            image = image or find_image(img_dir / Path(stem).parent, Path(stem).name)
            if image is not None:
                seen.add(image)
            if image is None or not image.resolve().is_relative_to(src.resolve()):
                issues.orphan(xml, f"image {filename or stem!r} not found; its {len(objects)} objects were not imported")
                continue
            seen_images.add(image.resolve())
            name = image.relative_to(img_dir).as_posix()
            parsed.append((Item(source=image, name=name, split=splits.get(stem)), objects))
        if names is None:
            names = sorted({obj[0] for _, objs in parsed for obj in objs})
        items = []
        for item, objects in parsed:
            for cls_name, box, xml, k in objects:
                if cls_name not in names:
                    issues.bad(xml, f"field 'object[{k}].name': class {cls_name!r} is not in the class list {names}",
                               "add it to labels.txt or fix the name")
                    continue
                box.cls = names.index(cls_name)
                item.boxes.append(box)
            items.append(item)
        for image in list_images(img_dir):  # images without an XML are unlabelled images, not lost
            if image.resolve() not in seen_images and inside(src, image.relative_to(src).as_posix(), issues, image):
                name = image.relative_to(img_dir).as_posix()
                items.append(Item(source=image, name=name, split=splits.get(name.rsplit(".", 1)[0])))
            seen.add(image)
        # VOC keeps its photos in JPEGImages/: other images (SegmentationClass/ masks...) are not photos to import
        why = f"an image outside {img_dir.relative_to(src).as_posix()}/, where VOC keeps its photos"
        unread_files(src, seen, issues, self.name, images=why + " (segmentation masks are not read)")
        return Parsed(task or "detection", names, items, issues.problems)

    def _parse(self, xml: Path, issues: Issues):
        try:
            root = ET.parse(xml).getroot()
        except ET.ParseError as exc:
            line, col = exc.position
            issues.bad(xml, f"malformed XML at line {line}, column {col}: {exc}", "fix or remove the file")
            return None
        if root.tag != "annotation":
            issues.bad(xml, f"root element is <{root.tag}>, expected <annotation>")
            return None
        objects = []
        for k, obj in enumerate(root.findall("object")):
            cls_name = (obj.findtext("name") or "").strip()
            if not cls_name:
                issues.bad(xml, f"field 'object[{k}].name': missing class name")
                continue
            coords = []
            for tag in ("xmin", "ymin", "xmax", "ymax"):
                text = obj.findtext(f"bndbox/{tag}")
                try:
                    coords.append(float(text))
                except (TypeError, ValueError):
                    issues.bad(xml, f"field 'object[{k}].bndbox.{tag}': expected a number, got {text!r}")
                    break
            else:
                score = obj.findtext("score")
                try:
                    score = None if score is None else float(score)
                except ValueError:
                    issues.bad(xml, f"field 'object[{k}].score': expected a number, got {score!r}")
                    continue
                xmin, ymin, xmax, ymax = coords
                objects.append((cls_name, Box(0, xmin - 1, ymin - 1, xmax, ymax, score=score), xml, k))
        return (root.findtext("filename") or "").strip(), objects

    def write(self, ds: Dataset, dst: Path) -> Path:
        self.check_task(ds, dst)
        with_polygons = [r for r in ds.records if r.polygons]
        if with_polygons:
            raise DataError(ds.image_path(with_polygons[0]), f"{len(with_polygons)} images have polygons, "
                            "which VOC XML cannot hold", "export to COCO or YOLO to keep them")
        dst = prepare_dst(dst)
        lists: dict[str, list[str]] = {}
        names = export_names(ds.records, by_stem=True)  # one JPEGImages/ and one XML per stem for all splits
        for rec in ds.records:
            name = names[rec.id]
            copy_image(ds, rec, dst / "JPEGImages" / name)
            stem = name.rsplit(".", 1)[0]
            root = ET.Element("annotation")
            ET.SubElement(root, "folder").text = "JPEGImages"
            ET.SubElement(root, "filename").text = name.rsplit("/", 1)[-1]
            size = ET.SubElement(root, "size")
            for tag, v in (("width", rec.width), ("height", rec.height), ("depth", 3)):
                ET.SubElement(size, tag).text = str(v)
            ET.SubElement(root, "segmented").text = "0"
            for b in rec.boxes:
                check_class(ds, rec, b.cls)
                obj = ET.SubElement(root, "object")
                ET.SubElement(obj, "name").text = ds.classes[b.cls]
                ET.SubElement(obj, "difficult").text = "0"
                if b.score is not None:
                    ET.SubElement(obj, "score").text = repr(b.score)
                box = ET.SubElement(obj, "bndbox")
                for tag, v in (("xmin", b.x1 + 1), ("ymin", b.y1 + 1), ("xmax", b.x2), ("ymax", b.y2)):
                    ET.SubElement(box, tag).text = repr(num(v))
            ET.indent(root)
            atomic_write_text(dst / "Annotations" / f"{stem}.xml", ET.tostring(root, encoding="unicode") + "\n")
            if rec.split:
                lists.setdefault(rec.split, []).append(stem)
        for split, stems in lists.items():
            atomic_write_text(dst / "ImageSets" / "Main" / f"{split}.txt", "".join(s + "\n" for s in stems))
        atomic_write_text(dst / "labels.txt", "".join(c + "\n" for c in ds.classes))
        return dst
