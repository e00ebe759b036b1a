"""YOLO txt labels + ``dataset.yaml`` (Ultralytics layout), for boxes and polygons.

One ``labels/<split>/<name>.txt`` per ``images/<split>/<name>.<ext>``; each line is
``class x_center y_center width height`` or ``class x1 y1 x2 y2 x3 y3 ...``, in 0..1 image units.
``dataset.yaml`` lists ``train`` / ``val`` / ``test`` (folders or .txt lists) and ``names``.
Without a yaml, ``images/`` + ``labels/`` and an optional ``classes.txt`` are read.
"""

from __future__ import annotations

from pathlib import Path

from ..._io import read_yaml, write_yaml
from ...errors import DataError
from .._dataset import Dataset
from .._images import is_image_name
from .._shapes import SPLITS, Box, Polygon
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
    split_groups,
    unlisted,
    unread_files,
)

_SPLIT_DIRS = ("train", "val", "valid", "validation", "test")
_NOT_LABELS = ("classes.txt", "obj.names", "train.txt", "val.txt", "test.txt", "README.txt")
_YAMLS = ("dataset.yaml", "data.yaml", "dataset.yml", "data.yml")


def _fmt(v: float) -> str:
    return f"{v:.8g}"


class Yolo(Format):
    name = "yolo"
    tasks = ("detection", "segmentation")
    description = "YOLO txt labels with dataset.yaml (boxes or polygons)"

    def _yaml(self, src: Path) -> Path | None:
        if src.is_file():
            return src if src.suffix in (".yaml", ".yml") else None
        for name in _YAMLS:
            if (src / name).is_file():
                return src / name
        return None

    def detect(self, src: Path) -> bool:
        if self._yaml(src) is not None or ((src / "images").is_dir() and (src / "labels").is_dir()):
            return True
        # the flat layout: a.png beside a.txt (and a classes.txt), as labelling tools export it
        return src.is_dir() and any(p.with_suffix(".txt").is_file() for p in list_images(src))

    def read(self, src: Path, issues: Issues, task: str | None = None) -> Parsed:
        yaml_path = self._yaml(src)
        names: list[str] | None = None
        seen: set[Path] = {yaml_path} if yaml_path else set()
        if yaml_path:
            cfg = read_yaml(yaml_path)
            if not isinstance(cfg, dict):
                raise DataError(yaml_path, "expected a mapping with 'train', 'val' and 'names'")
            names = self._names(yaml_path, cfg)
            root = yaml_path.parent
            base = root
            # 'path' often names where the author kept the set (../datasets/x): only honour it inside
            if isinstance(cfg.get("path"), str) and (root / cfg["path"]).is_dir() and \
                    (root / cfg["path"]).resolve().is_relative_to(root.resolve()):
                base = root / cfg["path"]
            entries = {s: cfg.get(s) for s in SPLITS if cfg.get(s)}
            if not entries:
                raise DataError(yaml_path, "field 'train': no image folders listed", "add train: images/train")
        else:
            root = base = src
            for list_name in ("classes.txt", "obj.names"):
                if (src / list_name).is_file():
                    names = [n.strip() for n in (src / list_name).read_text().splitlines() if n.strip()]
                    seen.add(src / list_name)
            entries = {s: f"images/{s}" for s in SPLITS if (src / "images" / s).is_dir()}
            entries = entries or {None: "images" if (src / "images").is_dir() else "."}
        where = yaml_path or src

        found: dict[Path, str | None] = {}
        for split, entry in entries.items():
            for image in self._images(base, entry, issues, where, seen):
                found[image] = split if image not in found else None  # listed twice: no single split

        items, used_labels = [], set()
        for image, split in found.items():
            label = self._label_path(base, image)
            item = Item(source=image, name=self._name(base, image), split=split, normalized=True)
            if label.is_file():
                used_labels.add(label.resolve())
                self._parse(label, item, names, issues)
            items.append(item)
        label_files = (base / "labels").rglob("*.txt") if (base / "labels").is_dir() else base.glob("*.txt")
        for txt in sorted(label_files):
            if txt.resolve() not in used_labels and txt.name not in _NOT_LABELS:
                issues.orphan(txt, "label file without an image")
                seen.add(txt)
        seen |= set(found) | used_labels
        why = f"is in no image folder or list that {yaml_path.name} names" if yaml_path else "is outside images/"
        items += unlisted(root, unread_files(root, seen, issues, self.name), why)

        if names is None:
            top = max((s.cls for it in items for s in (*it.boxes, *it.polygons)), default=-1)
            names = [str(i) for i in range(top + 1)]
        has_polygons = any(it.polygons for it in items)
        task = task or ("segmentation" if has_polygons else "detection")
        if task != "segmentation":
            for it in items:
                it.boxes += [p.bbox() for p in it.polygons]
                it.polygons = []
        return Parsed(task, names, items, issues.problems)

    def _names(self, yaml_path: Path, cfg: dict) -> list[str]:
        names = cfg.get("names")
        if isinstance(names, dict):
            if sorted(names) != list(range(len(names))):
                raise DataError(yaml_path, f"field 'names': ids {sorted(names)} are not 0..{len(names) - 1}",
                                "number the classes from 0 without gaps")
            names = [names[i] for i in range(len(names))]
        if not isinstance(names, list) or not all(isinstance(n, (str, int)) for n in names):
            raise DataError(yaml_path, "field 'names': expected a list of class names or a mapping id -> name")
        names = [str(n) for n in names]
        if "nc" in cfg and cfg["nc"] != len(names):
            raise DataError(yaml_path, f"field 'nc': {cfg['nc']!r} but 'names' has {len(names)} classes",
                            "make them agree")
        return names

    def _images(self, base: Path, entry, issues: Issues, where: Path, seen: set[Path]) -> list[Path]:
        out: list[Path] = []
        for e in entry if isinstance(entry, list) else [entry]:
            path = inside(base, str(e), issues, where)
            if path is None:
                continue
            if path.is_dir():
                images = list_images(path)
                seen.update(images)  # those linking out are reported here
                out += [p for p in images if self._safe(base, p, issues, where)]
            elif path.suffix == ".txt" and path.is_file():
                seen.add(path)
                for line in path.read_text().splitlines():
                    if line.strip():
                        p = inside(base, line.strip(), issues, path)
                        if p is not None and p.is_file() and is_image_name(p):
                            out.append(p)
                        elif p is not None:
                            issues.bad(path, f"listed image {line.strip()!r} not found")
            else:
                issues.bad(where, f"image folder or list {e!r} not found", "fix the path in the yaml")
        return out

    def _safe(self, base: Path, p: Path, issues: Issues, where: Path) -> bool:
        if p.resolve().is_relative_to(base.resolve()):
            return True
        issues.bad(where, f"{p} links outside the dataset folder")
        return False

    def _label_path(self, base: Path, image: Path) -> Path:
        parts = list(image.relative_to(base).parts)
        if "images" in parts:
            i = len(parts) - 1 - parts[::-1].index("images")
            parts[i] = "labels"
        return base.joinpath(*parts).with_suffix(".txt")

    def _name(self, base: Path, image: Path) -> str:
        parts = list(image.relative_to(base).parts)
        if "images" in parts:
            parts = parts[len(parts) - parts[::-1].index("images"):]
            if len(parts) > 1 and parts[0].lower().rstrip("0123456789") in _SPLIT_DIRS:
                parts = parts[1:]
        return "/".join(parts)

    def _parse(self, label: Path, item: Item, names: list[str] | None, issues: Issues) -> None:
        for ln, line in enumerate(label.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
            toks = line.split()
            if not toks:
                continue
            try:
                vals = [float(t) for t in toks]
            except ValueError:
                issues.bad(label, f"line {ln}: expected numbers, got {line.strip()!r}")
                continue
            c = vals[0]
            if not c.is_integer() or c < 0:
                issues.bad(label, f"line {ln}: class id {toks[0]!r} is not a non-negative integer")
                continue
            c = int(c)
            if names is not None and c >= len(names):
                issues.bad(label, f"line {ln}: class id {c} is out of range (there are {len(names)} classes)",
                           "fix the id, or add the class to 'names' in dataset.yaml")
                continue
            n = len(vals) - 1
            if n == 4:
                xc, yc, w, h = vals[1:]
                item.boxes.append(Box(c, xc - w / 2, yc - h / 2, xc + w / 2, yc + h / 2))
            elif n >= 6 and n % 2 == 0:
                item.polygons.append(Polygon(c, list(zip(vals[1::2], vals[2::2], strict=True))))
            else:
                issues.bad(label, f"line {ln}: expected 'class x_center y_center width height' or "
                                  f"'class x1 y1 x2 y2 x3 y3 ...', got {len(toks)} values")

    def write(self, ds: Dataset, dst: Path) -> Path:
        self.check_task(ds, dst)
        groups = split_groups(ds, dst)
        dst = prepare_dst(dst)
        names = export_names(ds.records, folder=lambda rec: rec.split, by_stem=True)  # a.png, a.jpg: one a.txt
        for split, recs in groups.items():
            sub = f"/{split}" if split else ""
            for rec in recs:
                name = names[rec.id]
                copy_image(ds, rec, dst / f"images{sub}" / name)
                if (rec.boxes or rec.polygons) and (rec.width <= 0 or rec.height <= 0):
                    raise DataError(ds.image_path(rec), "image size unknown, labels cannot be normalised",
                                    "run analyse() and fix the 'size_mismatch' / 'corrupt' problems")
                lines = []
                for b in rec.boxes:
                    check_class(ds, rec, b.cls)
                    xc, yc = (b.x1 + b.x2) / 2 / rec.width, (b.y1 + b.y2) / 2 / rec.height
                    vals = [xc, yc, b.width / rec.width, b.height / rec.height]
                    lines.append(" ".join([str(b.cls), *map(_fmt, vals)]))
                for p in rec.polygons:
                    check_class(ds, rec, p.cls)
                    vals = [v for x, y in p.points for v in (x / rec.width, y / rec.height)]
                    lines.append(" ".join([str(p.cls), *map(_fmt, vals)]))
                label = (dst / f"labels{sub}" / name).with_suffix(".txt")
                label.parent.mkdir(parents=True, exist_ok=True)
                label.write_text("".join(line + "\n" for line in lines))
        cfg: dict = {}
        if groups and None not in groups:
            cfg.update({s: f"images/{s}" for s in SPLITS if s in groups})
        else:
            cfg.update({"train": "images", "val": "images"})
        cfg.update({"nc": len(ds.classes), "names": dict(enumerate(ds.classes))})
        write_yaml(dst / "dataset.yaml", cfg)
        return dst
