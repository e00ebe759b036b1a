"""COCO instances JSON: boxes, polygons and RLE masks (traced to polygons, holes filled; the mask
is kept beside them and written back exactly while they are unchanged), and ``iscrowd``.

Read: ``annotations/*.json`` or ``*.json`` (one file per split: ``instances_train2017.json``);
images are looked up beside the JSON, under ``images/``, ``images/<split>/`` or ``train2017/``.
COCO ids are kept: image ids in ``record.meta["coco_id"]``, category ids in
``dataset.meta["coco_category_ids"]``, annotation ids as shape ids (a multi-part polygon
becomes polygons ``"<id>"``, ``"<id>_1"``...).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..._io import read_json, write_json
from ...errors import DataError
from .._dataset import Dataset
from .._images import safe_relpath
from .._masks import mask_to_polygons, rle_decode
from .._shapes import SPLITS, Box, ImageRecord, Polygon, rle_problem
from ._base import (
    Format,
    Issues,
    Item,
    Parsed,
    check_class,
    copy_image,
    export_names,
    prepare_dst,
    split_of,
    unlisted,
    unread_files,
)


def _is_num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


class Coco(Format):
    name = "coco"
    tasks = ("detection", "segmentation")
    description = "COCO instances JSON (boxes, polygons, RLE masks)"

    def _files(self, src: Path) -> list[Path]:
        if src.is_file():
            return [src] if src.suffix == ".json" else []
        found = sorted((src / "annotations").glob("*.json")) + sorted(src.glob("*.json"))
        out = []
        for p in found:
            if p.name == "dataset.json":
                continue
            head = p.read_text(encoding="utf-8", errors="replace")
            if '"images"' in head and ('"annotations"' in head or '"categories"' in head):
                out.append(p)
        return out

    def detect(self, src: Path) -> bool:
        return bool(self._files(src))

    def read(self, src: Path, issues: Issues, task: str | None = None) -> Parsed:
        files = self._files(src)
        if not files:
            raise DataError(src, "no COCO annotation JSON found",
                            "expected annotations/*.json with 'images', 'annotations' and 'categories'")
        root = src if src.is_dir() else src.parent
        loaded = [(f, read_json(f)) for f in files]
        for f, data in loaded:
            if not isinstance(data, dict):
                raise DataError(f, "expected a JSON object with 'images', 'annotations' and 'categories'")
            for key in ("images", "annotations", "categories"):
                if not isinstance(data.get(key, []), list):
                    raise DataError(f, f"field '{key}': expected a list")
        has_seg = any(a.get("segmentation") for _, d in loaded for a in d.get("annotations", [])
                      if isinstance(a, dict))
        task = task or ("segmentation" if has_seg else "detection")
        classes: list[str] = []
        cat_ids: list[int] = []
        items: list[Item] = []
        seen = set(files)
        for f, data in loaded:
            items += self._read_file(f, data, root, task, classes, cat_ids, issues, seen)
        why = "is not listed in " + ", ".join(f.relative_to(root).as_posix() for f in files)
        items += unlisted(root, unread_files(root, seen, issues, self.name), why)
        return Parsed(task, classes, items, issues.problems, {"coco_category_ids": cat_ids})

    def _read_file(self, f: Path, data: dict, root: Path, task: str, classes: list[str],
                   cat_ids: list[int], issues: Issues, seen: set[Path]) -> list[Item]:
        cat_map: dict[Any, int] = {}
        cats = [c for c in data.get("categories", []) if isinstance(c, dict)]
        for i, c in enumerate(data.get("categories", [])):
            if not isinstance(c, dict) or not isinstance(c.get("name"), str) or not isinstance(c.get("id"), int):
                issues.bad(f, f"field 'categories[{i}]': needs an integer 'id' and a string 'name'", "fix the entry")
        for c in sorted((c for c in cats if isinstance(c.get("name"), str) and isinstance(c.get("id"), int)),
                        key=lambda c: c["id"]):
            if c["name"] not in classes:
                classes.append(c["name"])
                cat_ids.append(c["id"])
            cat_map[c["id"]] = classes.index(c["name"])

        file_split = split_of(f.stem)
        sub = f.stem.split("_", 1)[1] if "_" in f.stem else f.stem
        bases = [root / "images" / sub, root / "images", root / sub, root, f.parent, f.parent / "images"]
        if file_split:
            bases[1:1] = [root / "images" / file_split, root / file_split]
        by_id: dict[Any, Item | None] = {}
        missing: dict[Any, str] = {}
        items = []
        for i, im in enumerate(data.get("images", [])):
            fn = im.get("file_name") if isinstance(im, dict) else None
            if not isinstance(fn, str) or "id" not in im:
                issues.bad(f, f"field 'images[{i}]': needs 'id' and a string 'file_name'", "fix the entry")
                continue
            clean = safe_relpath(fn)
            if clean is None:
                issues.bad(f, f"field 'images[{i}].file_name': {fn!r} leaves the dataset folder",
                           "file names must be relative")
                continue
            path = next((b / clean for b in dict.fromkeys(bases) if (b / clean).is_file()), None)
            if path is not None:
                seen.add(path)
            if path is not None and not path.resolve().is_relative_to(root.resolve()):
                issues.bad(f, f"field 'images[{i}].file_name': {fn!r} links outside the dataset folder")
                continue
            if path is None:
                by_id[im["id"]], missing[im["id"]] = None, fn
                continue
            split = im.get("split") if im.get("split") in SPLITS else file_split
            item = Item(source=path, name=clean, split=split, meta={"coco_id": im["id"]})
            by_id[im["id"]] = item
            items.append(item)

        lost: dict[Any, int] = {}
        for i, a in enumerate(data.get("annotations", [])):
            where = f"annotations[{i}]"
            if not isinstance(a, dict):
                issues.bad(f, f"field '{where}': expected an object")
                continue
            if a.get("image_id") not in by_id:
                issues.orphan(f, f"{where} refers to image id {a.get('image_id')!r}, which 'images' does not list")
                continue
            item = by_id[a["image_id"]]
            if item is None:
                lost[a["image_id"]] = lost.get(a["image_id"], 0) + 1
                continue
            if a.get("category_id") not in cat_map:
                issues.bad(f, f"field '{where}.category_id': {a.get('category_id')!r} is not a category id",
                           "add it to 'categories' or fix the id")
                continue
            self._add_annotation(f, where, a, cat_map[a["category_id"]], item, task, issues)
        for image_id, fn in missing.items():
            issues.orphan(f, f"image {fn!r} (id {image_id!r}) not found; its {lost.get(image_id, 0)} "
                             "annotations were not imported")
        return items

    def _add_annotation(self, f: Path, where: str, a: dict, cls: int, item: Item, task: str,
                        issues: Issues) -> None:
        ann_id = None if a.get("id") is None else str(a["id"])
        score = a.get("score") if _is_num(a.get("score")) else None
        if a.get("iscrowd", 0) not in (0, 1):
            issues.bad(f, f"field '{where}.iscrowd': expected 0 or 1, got {a['iscrowd']!r}")
            return
        iscrowd = bool(a.get("iscrowd", 0))
        seg = a.get("segmentation")
        parts = self._polygons(f, where, seg, issues)
        if parts is None:
            return
        if task == "segmentation" and parts:
            # a mask is kept beside its traced polygons so that export can write it back exactly;
            # its parts are found again by id ("<id>_1"...), so without an id only a one-part mask is kept
            keep = isinstance(seg, dict) and rle_problem(seg) is None and (ann_id is not None or len(parts) == 1)
            rle = {"size": seg["size"], "counts": seg["counts"]} if keep else None
            for k, pts in enumerate(parts):
                pid = ann_id if k == 0 or ann_id is None else f"{ann_id}_{k}"
                item.polygons.append(Polygon(cls, pts, id=pid, score=score, iscrowd=iscrowd,
                                             rle=rle if k == 0 else None))
            return
        bbox = a.get("bbox")
        if bbox is None and parts:
            xs = [x for p in parts for x, _ in p]
            ys = [y for p in parts for _, y in p]
            bbox = [min(xs), min(ys), max(xs) - min(xs), max(ys) - min(ys)]
        if not isinstance(bbox, list) or len(bbox) != 4 or not all(_is_num(v) for v in bbox):
            issues.bad(f, f"field '{where}.bbox': expected [x, y, width, height], got {bbox!r}")
            return
        x, y, w, h = bbox
        item.boxes.append(Box(cls, x, y, x + w, y + h, id=ann_id, score=score, iscrowd=iscrowd))

    def _polygons(self, f: Path, where: str, seg: Any, issues: Issues) -> list | None:
        """The polygons of a ``segmentation`` field ([] when absent), or None after reporting it broken."""
        if not seg:
            return []
        if isinstance(seg, list):
            out = []
            for k, flat in enumerate(seg):
                if (not isinstance(flat, list) or len(flat) < 6 or len(flat) % 2
                        or not all(_is_num(v) for v in flat)):
                    issues.bad(f, f"field '{where}.segmentation[{k}]': expected [x1, y1, x2, y2, ...] "
                                  "with at least 3 points")
                    return None
                out.append(list(zip(flat[0::2], flat[1::2], strict=True)))
            return out
        if isinstance(seg, dict) and "counts" in seg and "size" in seg:
            try:
                return mask_to_polygons(rle_decode(seg))
            except (ValueError, TypeError, IndexError) as exc:
                issues.bad(f, f"field '{where}.segmentation': not a valid RLE mask ({exc})")
                return None
        issues.bad(f, f"field '{where}.segmentation': expected polygons or an RLE object")
        return None

    def write(self, ds: Dataset, dst: Path) -> Path:
        self.check_task(ds, dst)
        dst = prepare_dst(dst)
        cat_ids = ds.meta.get("coco_category_ids")
        if not (isinstance(cat_ids, list) and len(cat_ids) == len(ds.classes) and len(set(cat_ids)) == len(cat_ids)
                and all(isinstance(c, int) for c in cat_ids)):
            cat_ids = list(range(1, len(ds.classes) + 1))
        categories = [{"id": cid, "name": n, "supercategory": ""} for cid, n in zip(cat_ids, ds.classes, strict=True)]
        image_ids = _ids([r.meta.get("coco_id") for r in ds.records])
        shapes = [s for r in ds.records for s in (*r.boxes, *r.polygons)]
        ann_id = {id(s): a for s, a in zip(shapes, _ids([s.id for s in shapes]), strict=True)}
        per_split = bool(ds.records) and all(r.split for r in ds.records)
        groups: dict[str | None, list] = {}
        for rec, image_id in zip(ds.records, image_ids, strict=True):
            groups.setdefault(rec.split if per_split else None, []).append((rec, image_id))
        # a folder per split (images/train/...), as COCO's train2017/: names need only differ within a split
        names = export_names(ds.records, folder=lambda rec: rec.split if per_split else None)
        for split, recs in groups.items():
            images, annotations = [], []
            for rec, image_id in recs:
                name = names[rec.id]
                copy_image(ds, rec, dst / "images" / (split or "") / name)
                entry: dict[str, Any] = {"id": image_id, "file_name": name, "width": rec.width, "height": rec.height}
                if rec.split and not per_split:
                    entry["split"] = rec.split
                images.append(entry)
                masks = {id(p): m for p in rec.polygons if (m := _unchanged_mask(rec, p)) is not None}
                parts = {id(q) for m in masks.values() for q in m[0]}  # written in their mask's annotation
                for s in (*rec.boxes, *rec.polygons):
                    if id(s) in parts and id(s) not in masks:
                        continue
                    check_class(ds, rec, s.cls)
                    mask = masks.get(id(s))
                    b = s if isinstance(s, Box) else s.bbox()
                    if mask is not None:
                        _, b, pixels = mask
                    ann: dict[str, Any] = {"id": ann_id[id(s)], "image_id": image_id,
                                           "category_id": cat_ids[s.cls],
                                           "bbox": [b.x1, b.y1, b.width, b.height], "iscrowd": int(s.iscrowd)}
                    if mask is not None:
                        ann["segmentation"], ann["area"] = s.rle, pixels
                    elif isinstance(s, Polygon):
                        ann["segmentation"] = [[v for p in s.points for v in p]]
                        ann["area"] = s.area
                    else:
                        ann["area"] = b.area
                    if s.score is not None:
                        ann["score"] = s.score
                    annotations.append(ann)
            name = f"instances_{split}.json" if split else "instances.json"
            write_json(dst / "annotations" / name, {
                "info": {"description": "exported by tango"}, "licenses": [], "images": images,
                "annotations": annotations, "categories": categories}, indent=None)
        if not groups:
            write_json(dst / "annotations" / "instances.json", {"images": [], "annotations": [],
                                                                "categories": categories}, indent=None)
        return dst


def _unchanged_mask(rec: ImageRecord, p: Polygon) -> tuple[list[Polygon], Box, int] | None:
    """The polygons traced from ``p.rle``, the mask's box and pixel count while the polygons are
    still as traced, so the mask is written back exactly (holes too); None once a part was edited,
    removed or given another class, or the image size changed: then the polygons are what the user means."""
    if p.rle is None or p.rle["size"] != [rec.height, rec.width]:
        return None
    try:
        mask = rle_decode(p.rle)
    except (ValueError, TypeError, IndexError):
        return None
    traced = mask_to_polygons(mask)
    if not traced:  # an empty mask (edited by hand): the polygon is all there is
        return None
    by_id = {q.id: q for q in rec.polygons}
    parts = [by_id.get(p.id if k == 0 else f"{p.id}_{k}") for k in range(len(traced))]
    if any(q is None or q.cls != p.cls or q.points != pts for q, pts in zip(parts, traced, strict=True)):
        return None
    ys, xs = mask.nonzero()
    return parts, Box(p.cls, xs.min(), ys.min(), xs.max() + 1, ys.max() + 1), int(mask.sum())


def _ids(values: list) -> list[int]:
    """Keep integer-like ids where they are unique; number the rest after the largest."""
    as_int = [int(v) if isinstance(v, int) or (isinstance(v, str) and v.isdigit()) else None for v in values]
    seen: set[int] = set()
    keep = []
    for v in as_int:
        keep.append(v if v is not None and v not in seen else None)
        if v is not None:
            seen.add(v)
    nxt = max(seen, default=0) + 1
    out = []
    for v in keep:
        if v is None:
            v, nxt = nxt, nxt + 1
        out.append(v)
    return out
