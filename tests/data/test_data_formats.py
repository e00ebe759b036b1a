"""Readers and writers: round trips through every format, and files written by hand from each spec."""

from __future__ import annotations

import json

import numpy as np
import pytest
from data_helpers import png_bytes

from tango_core.data import (
    FORMATS,
    Box,
    Dataset,
    Polygon,
    convert,
    export_dataset,
    import_dataset,
    make_sample,
)
from tango_core.data._masks import mask_to_polygons, rle_decode, rle_encode
from tango_core.data._transfer import detect_format
from tango_core.errors import DataError, UnknownNameError

pytestmark = pytest.mark.unit


@pytest.fixture(scope="module")
def samples(tmp_path_factory):
    root = tmp_path_factory.mktemp("samples")
    out = {
        "detection": make_sample("shapes", root / "det", n=12, size=40, task="detection", seed=1),
        "segmentation": make_sample("shapes", root / "seg", n=10, size=40, task="segmentation", seed=2),
        "classification": make_sample("shapes", root / "cls", n=12, size=32, task="classification", seed=3),
    }
    det = out["detection"]
    det.records[0].boxes[0].score = 0.75  # predictions carry scores; formats that can keep them must
    det.save()
    return out


def _same(a, b, tol=1e-3):
    """Everything a round trip must keep: classes, ids, file names and bytes, sizes, splits, labels, shapes."""
    assert b.task == a.task and b.classes == a.classes
    assert sorted(r.id for r in b) == sorted(r.id for r in a)
    for ra in a:
        rb = b.get(ra.id)
        assert (rb.file, rb.original_name, rb.width, rb.height, rb.split, rb.label) == \
            (ra.file, ra.original_name, ra.width, ra.height, ra.split, ra.label)
        assert b.image_path(rb).read_bytes() == a.image_path(ra).read_bytes()
        assert len(rb.boxes) == len(ra.boxes) and len(rb.polygons) == len(ra.polygons)
        for x, y in zip(ra.boxes, rb.boxes, strict=True):
            assert x.cls == y.cls and np.allclose(x.xyxy, y.xyxy, atol=tol)
        for x, y in zip(ra.polygons, rb.polygons, strict=True):
            assert x.cls == y.cls and np.allclose(x.points, y.points, atol=tol)


@pytest.mark.parametrize("task,fmt", [("detection", "coco"), ("detection", "yolo"), ("detection", "voc"),
                                      ("detection", "tango"), ("segmentation", "coco"), ("segmentation", "yolo"),
                                      ("segmentation", "tango"), ("classification", "imagefolder"),
                                      ("classification", "tango")])
def test_round_trip_keeps_everything(samples, tmp_path, task, fmt):
    ds = samples[task]
    out = export_dataset(ds, tmp_path / "out", fmt)
    assert detect_format(out) == fmt
    back = import_dataset(out, tmp_path / "back")
    _same(ds, back)
    assert back.problems == []
    if fmt in ("coco", "voc", "tango") and task == "detection":
        assert back.get(ds.records[0].id).boxes[0].score == 0.75
    if fmt in ("coco", "tango"):  # formats with ids keep the shape ids too
        def ids(d):
            return {r.id: [s.id for s in r.boxes + r.polygons] for r in d}

        assert ids(back) == ids(ds)


def _awkward_names(root, task):
    """Names a labelling tool really produces, and one name used in two splits (the store renames it)."""
    ds = Dataset.create(root, task=task, classes=["cat", "dog"])
    for i, (name, split) in enumerate([("IMG (1).png", "train"), ("café.png", "val"), ("写真 2.png", "train"),
                                       ("dup.png", "train"), ("dup.png", "val"), ("Dup.png", "val")]):
        rec = ds.add_image(png_bytes(20, 16, seed=i), name=name, split=split)
        if task == "classification":
            rec.label = i % 2
        else:
            ds.add_box(rec.id, Box(i % 2, 1, 2, 10, 12))
    ds.save()
    return ds


@pytest.mark.parametrize("task,fmt,written,lost", [
    ("detection", "yolo", {"images/train/IMG (1).png", "images/val/café.png", "images/train/写真 2.png",
                           "images/train/dup.png", "images/val/dup.png", "images/val/Dup_2.png"}, {"Dup_2"}),
    ("detection", "coco", {"images/train/IMG (1).png", "images/val/café.png", "images/train/写真 2.png",
                           "images/train/dup.png", "images/val/dup.png", "images/val/Dup_2.png"}, {"Dup_2"}),
    # one JPEGImages/ for every split: the second dup.png keeps its store name
    ("detection", "voc", {"JPEGImages/IMG (1).png", "JPEGImages/café.png", "JPEGImages/写真 2.png",
                          "JPEGImages/dup.png", "JPEGImages/dup_1.png", "JPEGImages/Dup_2.png"}, {"dup_1", "Dup_2"}),
    ("classification", "imagefolder", {"train/cat/IMG (1).png", "val/dog/café.png", "train/cat/写真 2.png",
                                       "train/dog/dup.png", "val/cat/dup.png", "val/dog/Dup.png"}, set()),
    ("detection", "tango", {"images/IMG (1).png", "images/café.png", "images/写真 2.png", "images/dup.png",
                            "images/dup_1.png", "images/Dup_2.png"}, set()),
])
def test_round_trip_keeps_file_names(tmp_path, task, fmt, written, lost):
    ds = _awkward_names(tmp_path / "src", task)
    assert [(r.file, r.original_name) for r in ds][3:] == [("images/dup.png", None), ("images/dup_1.png", "dup.png"),
                                                          ("images/Dup_2.png", "Dup.png")]
    out = export_dataset(ds, tmp_path / "out", fmt)
    images = {p.relative_to(out).as_posix() for p in out.rglob("*.png")}
    assert images == written
    back = import_dataset(out, tmp_path / "back")
    # where two names clash in one export folder (ignoring case) the store name is written: the
    # original is in no file, so the import gives the same store name without it
    assert {r.id for r in back if r.original_name != ds.get(r.id).original_name} == lost
    for rid in lost:
        back.get(rid).original_name = ds.get(rid).original_name
    _same(ds, back)
    assert back.problems == []


def test_round_trip_without_splits_and_twice(samples, tmp_path):
    ds = import_dataset(export_dataset(samples["detection"], tmp_path / "a", "tango"), tmp_path / "store")
    for r in ds:
        r.split = None
    ds.save()
    yolo = export_dataset(ds, tmp_path / "yolo", "yolo")
    coco = convert(yolo, tmp_path / "coco", dst_format="coco")
    again = import_dataset(coco, tmp_path / "again")
    _same(ds, again)
    assert all(r.split is None for r in again)


def test_writers_refuse_what_they_cannot_hold(samples, tmp_path):
    with pytest.raises(DataError, match="does not hold segmentation datasets.*coco, yolo"):
        export_dataset(samples["segmentation"], tmp_path / "voc", "voc")
    with pytest.raises(DataError, match="does not hold classification"):
        export_dataset(samples["classification"], tmp_path / "coco", "coco")
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x.txt").write_text("mine")
    with pytest.raises(DataError, match="not an empty folder"):
        export_dataset(samples["detection"], tmp_path / "full", "yolo")
    with pytest.raises(UnknownNameError, match="Did you mean 'yolo'"):
        export_dataset(samples["detection"], tmp_path / "x", "yolov")
    ds = import_dataset(export_dataset(samples["classification"], tmp_path / "t", "tango"), tmp_path / "c")
    ds.records[0].label = None
    with pytest.raises(DataError, match="1 images have no label"):
        export_dataset(ds, tmp_path / "if", "imagefolder")
    ds.records[0].label, ds.records[1].split = 0, None
    with pytest.raises(DataError, match="1 of 12 images have no split"):
        export_dataset(ds, tmp_path / "if", "imagefolder")


# --- files written by hand from each format's specification --------------------------------------
def test_hand_written_coco(tmp_path):
    src = tmp_path / "coco"
    (src / "images").mkdir(parents=True)
    (src / "images" / "a.png").write_bytes(png_bytes(10, 8, seed=1))
    (src / "images" / "b.png").write_bytes(png_bytes(10, 8, seed=2))
    coco = {
        "images": [{"id": 42, "file_name": "a.png", "width": 10, "height": 8},
                   {"id": 7, "file_name": "b.png", "width": 10, "height": 8}],
        "categories": [{"id": 3, "name": "cat"}, {"id": 1, "name": "dog"}, {"id": 9, "name": "unused"}],
        "annotations": [
            {"id": 100, "image_id": 42, "category_id": 3, "bbox": [1, 2, 3, 4], "iscrowd": 0,
             "segmentation": [[1, 2, 4, 2, 4, 6, 1, 6]]},
            # uncompressed RLE (column-major runs): a 2 x 2 square at x 1..2, y 1..2
            {"id": 101, "image_id": 7, "category_id": 1, "bbox": [1, 1, 2, 2], "iscrowd": 1,
             "segmentation": {"size": [8, 10], "counts": [9, 2, 6, 2, 61]}},
            # compressed RLE from pycocotools: rows 2..5, columns 3..7, with a hole at (x 5, y 3)
            {"id": 102, "image_id": 7, "category_id": 3, "bbox": [3, 2, 5, 4],
             "segmentation": {"size": [8, 10], "counts": "j04400MM13200>"}},
            {"id": 103, "image_id": 7, "category_id": 1, "bbox": [0, 0, 2, 2], "score": 0.5},
        ],
    }
    (src / "annotations").mkdir()
    (src / "annotations" / "instances_val.json").write_text(json.dumps(coco))
    ds = import_dataset(src, tmp_path / "ds")
    assert ds.task == "segmentation" and ds.classes == ["dog", "cat", "unused"]  # sorted by category id
    assert ds.meta["coco_category_ids"] == [1, 3, 9]
    a, b = ds.get("a"), ds.get("b")
    assert a.meta["coco_id"] == 42 and b.meta["coco_id"] == 7 and a.split == b.split == "val"
    assert a.polygons == [Polygon(1, [(1, 2), (4, 2), (4, 6), (1, 6)], id="100")]
    crowd_rle, holed_rle = coco["annotations"][1]["segmentation"], coco["annotations"][2]["segmentation"]
    assert b.polygons[0] == Polygon(0, [(1, 1), (3, 1), (3, 3), (1, 3)], id="101", iscrowd=True, rle=crowd_rle)
    # the hole is filled in the polygon; the mask itself is kept beside it
    assert b.polygons[1] == Polygon(1, [(3, 2), (8, 2), (8, 6), (3, 6)], id="102", rle=holed_rle)
    assert b.boxes == [Box(0, 0, 0, 2, 2, id="103", score=0.5)]  # no segmentation: stays a box

    det = import_dataset(src, tmp_path / "det", task="detection")
    assert det.get("a").boxes == [Box(1, 1, 2, 4, 6, id="100")] and det.get("a").polygons == []
    assert [bx.iscrowd for bx in det.get("b").boxes] == [True, False, False]

    out = export_dataset(ds, tmp_path / "out", "coco")
    written = json.loads((out / "annotations" / "instances_val.json").read_text())
    assert [c["id"] for c in written["categories"]] == [1, 3, 9]
    assert sorted(i["id"] for i in written["images"]) == [7, 42]
    assert sorted(a["id"] for a in written["annotations"]) == [100, 101, 102, 103]
    ann = next(a for a in written["annotations"] if a["id"] == 100)
    assert ann["category_id"] == 3 and ann["bbox"] == [1, 2, 3, 4] and ann["area"] == 12


def _coco_with_masks(tmp_path):
    src = tmp_path / "masks"
    (src / "images").mkdir(parents=True)
    (src / "images" / "b.png").write_bytes(png_bytes(10, 8, seed=2))
    two_parts = np.zeros((8, 10), bool)
    two_parts[1:3, 1:3] = two_parts[5:7, 6:9] = True
    coco = {"images": [{"id": 7, "file_name": "b.png", "width": 10, "height": 8}],
            "categories": [{"id": 1, "name": "people"}],
            "annotations": [
                {"id": 1, "image_id": 7, "category_id": 1, "bbox": [1, 1, 8, 6], "iscrowd": 1, "area": 10,
                 "segmentation": rle_encode(two_parts, compress=False)},  # a crowd: two regions, count list
                {"id": 2, "image_id": 7, "category_id": 1, "bbox": [3, 2, 5, 4], "iscrowd": 0, "area": 19,
                 "segmentation": {"size": [8, 10], "counts": "j04400MM13200>"}},  # a hole at (5, 3)
                {"id": 3, "image_id": 7, "category_id": 1, "bbox": [0, 0, 2, 2], "iscrowd": 1}]}
    (src / "annotations").mkdir()
    (src / "annotations" / "instances.json").write_text(json.dumps(coco))
    return src, coco


def _annotations(folder):
    return {a["id"]: a for a in json.loads((folder / "annotations" / "instances.json").read_text())["annotations"]}


def test_coco_masks_and_iscrowd_round_trip_exactly(tmp_path):
    src, coco = _coco_with_masks(tmp_path)
    ds = import_dataset(src, tmp_path / "ds")
    rec = ds.get("b")
    assert [(p.id, p.iscrowd, p.rle is not None) for p in rec.polygons] == [("1", True, True), ("1_1", True, False),
                                                                             ("2", False, True)]
    assert rec.boxes == [Box(0, 0, 0, 2, 2, id="3", iscrowd=True)]
    written = _annotations(export_dataset(ds, tmp_path / "out", "coco"))
    for ann in coco["annotations"]:  # the masks (holes, count lists, two parts in one) and iscrowd come back
        out = written[ann["id"]]
        assert (out["iscrowd"], out.get("segmentation"), out["bbox"], out["area"]) == \
            (ann["iscrowd"], ann.get("segmentation"), ann["bbox"], ann.get("area", 4))
    assert sorted(written) == [1, 2, 3]  # the second part of the crowd is in annotation 1, not its own
    rec.polygons.reverse()  # whatever the order of the parts in the store
    assert _annotations(export_dataset(ds, tmp_path / "reordered", "coco")) == written
    rec.polygons.reverse()
    again = import_dataset(tmp_path / "out", tmp_path / "again")  # and through the store once more
    assert again.get("b").polygons == rec.polygons and again.get("b").boxes == rec.boxes


def test_coco_mask_edited_in_the_store_is_written_as_polygons(tmp_path):
    src, coco = _coco_with_masks(tmp_path)
    ds = import_dataset(src, tmp_path / "ds")
    rec = ds.get("b")
    rec.polygons[2].points[0] = (2.5, 1.5)  # the labeler moves a vertex in place
    ds.remove_shape("b", "1_1")  # and removes part of the crowd
    ds.save()
    written = _annotations(export_dataset(ds, tmp_path / "out", "coco"))
    assert written[1]["segmentation"] == [[1, 1, 3, 1, 3, 3, 1, 3]] and written[1]["iscrowd"] == 1
    assert written[2]["segmentation"][0][:2] == [2.5, 1.5] and written[2]["iscrowd"] == 0
    assert written[1]["area"] == 4 and written[2]["bbox"][:2] == [2.5, 1.5]
    back = import_dataset(tmp_path / "out", tmp_path / "back")
    assert [(p.id, p.iscrowd, p.rle) for p in back.get("b").polygons] == [("1", True, None), ("2", False, None)]


def test_store_refuses_a_broken_mask_or_crowd_flag(tmp_path):
    src, _ = _coco_with_masks(tmp_path)
    ds = import_dataset(src, tmp_path / "ds")
    raw = json.loads(ds.store_path.read_text())
    raw["images"][0]["polygons"][0]["rle"] = {"size": [8], "counts": "x"}
    ds.store_path.write_text(json.dumps(raw))
    with pytest.raises(DataError, match=r"field 'images\[0\].polygons\[0\].rle': size: expected \[height, width\]"):
        import_dataset(ds.root, tmp_path / "copy")
    raw["images"][0]["polygons"][0].pop("rle")
    raw["images"][0]["boxes"][0]["iscrowd"] = "yes"
    ds.store_path.write_text(json.dumps(raw))
    with pytest.raises(DataError, match=r"field 'images\[0\].boxes\[0\].iscrowd': expected true or false"):
        import_dataset(ds.root, tmp_path / "copy")
    (src / "annotations" / "instances.json").write_text(json.dumps({
        "images": [{"id": 7, "file_name": "b.png"}], "categories": [{"id": 1, "name": "x"}],
        "annotations": [{"id": 1, "image_id": 7, "category_id": 1, "bbox": [0, 0, 2, 2], "iscrowd": 2}]}))
    with pytest.raises(DataError, match=r"instances.json: field 'annotations\[0\].iscrowd': expected 0 or 1, got 2"):
        import_dataset(src, tmp_path / "bad")


def test_rle_codec_and_exact_tracing():
    rng = np.random.default_rng(0)
    for _ in range(30):
        h, w = rng.integers(1, 20, 2)
        m = rng.random((h, w)) < 0.5
        assert (rle_decode(rle_encode(m)) == m).all() and (rle_decode(rle_encode(m, compress=False)) == m).all()
    m = np.zeros((12, 12), bool)
    m[2:5, 2:9] = m[5:10, 6:9] = m[10, 1] = True  # an L shape and a lone pixel
    polys = mask_to_polygons(m)
    assert sorted(len(p) for p in polys) == [4, 6]
    back = np.zeros_like(m)
    for p in polys:
        back |= Polygon(0, p).mask(12, 12)
    assert (back == m).all()
    with pytest.raises(ValueError, match="sum to"):
        rle_decode({"size": [2, 2], "counts": [1, 1]})


def test_hand_written_yolo(tmp_path):
    src = tmp_path / "yolo"
    for split in ("train", "val"):
        (src / "images" / split).mkdir(parents=True)
        (src / "labels" / split).mkdir(parents=True)
    (src / "images" / "train" / "a.png").write_bytes(png_bytes(100, 50, seed=1))
    (src / "images" / "val" / "b.png").write_bytes(png_bytes(100, 50, seed=2))
    (src / "images" / "val" / "empty.png").write_bytes(png_bytes(100, 50, seed=3))
    (src / "labels" / "train" / "a.txt").write_text("1 0.5 0.5 0.2 0.4\n\n0 0.1 0.1 0.3 0.1 0.3 0.5\n")
    (src / "labels" / "val" / "b.txt").write_text("0 0.25 0.5 0.5 1.0\n")
    (src / "labels" / "val" / "ghost.txt").write_text("0 0.5 0.5 0.1 0.1\n")  # no image: an orphan
    (src / "data.yaml").write_text("path: .\ntrain: images/train\nval: images/val\nnames:\n  0: circle\n  1: square\n")
    ds = import_dataset(src, tmp_path / "ds")
    assert ds.task == "segmentation" and ds.classes == ["circle", "square"]
    a, b, empty = ds.get("a"), ds.get("b"), ds.get("empty")
    assert (a.split, b.split, empty.split) == ("train", "val", "val")
    assert np.allclose(a.boxes[0].xyxy, (40, 15, 60, 35)) and a.boxes[0].cls == 1
    assert np.allclose(a.polygons[0].points, [(10, 5), (30, 5), (30, 25)])
    assert np.allclose(b.boxes[0].xyxy, (0, 0, 50, 50)) and not empty.is_labelled
    assert [(p["kind"], p["file"].endswith("ghost.txt")) for p in ds.problems] == [("orphan_label", True)]
    det = import_dataset(src, tmp_path / "det", task="detection")
    assert det.get("a").polygons == [] and np.allclose(det.get("a").boxes[1].xyxy, (10, 5, 30, 25))


def test_hand_written_voc(tmp_path):
    src = tmp_path / "voc"
    for d in ("Annotations", "JPEGImages", "ImageSets/Main"):
        (src / d).mkdir(parents=True)
    (src / "JPEGImages" / "000001.png").write_bytes(png_bytes(30, 20, seed=1))
    (src / "JPEGImages" / "000002.png").write_bytes(png_bytes(30, 20, seed=2))  # no XML: unlabelled
    (src / "Annotations" / "000001.xml").write_text("""<annotation>
  <folder>VOC2007</folder><filename>000001.png</filename>
  <size><width>30</width><height>20</height><depth>3</depth></size>
  <object><name>dog</name><pose>Left</pose><truncated>0</truncated><difficult>0</difficult>
    <bndbox><xmin>1</xmin><ymin>1</ymin><xmax>10</xmax><ymax>20</ymax></bndbox></object>
  <object><name>cat</name><bndbox><xmin>5.5</xmin><ymin>3</ymin><xmax>30</xmax><ymax>12</ymax></bndbox></object>
</annotation>""")
    (src / "ImageSets" / "Main" / "train.txt").write_text("000001\n")
    ds = import_dataset(src, tmp_path / "ds")
    assert ds.task == "detection" and ds.classes == ["cat", "dog"]  # no labels.txt: sorted names
    rec = ds.get("000001")
    assert rec.split == "train" and [b.xyxy for b in rec.boxes] == [(0, 0, 10, 20), (4.5, 2, 30, 12)]
    assert [b.cls for b in rec.boxes] == [1, 0] and not ds.get("000002").is_labelled
    out = export_dataset(ds, tmp_path / "out", "voc")
    xml = (out / "Annotations" / "000001.xml").read_text()
    assert "<xmin>1</xmin>" in xml and "<xmin>5.5</xmin>" in xml and "<name>dog</name>" in xml
    assert (out / "labels.txt").read_text() == "cat\ndog\n"


def test_hand_written_imagefolder(tmp_path):
    src = tmp_path / "folders"
    (src / "train" / "cat").mkdir(parents=True)
    (src / "train" / "dog").mkdir(parents=True)
    (src / "val" / "dog").mkdir(parents=True)
    (src / "val" / "emu").mkdir(parents=True)  # an empty class is still a class
    (src / "train" / "cat" / "1.png").write_bytes(png_bytes(seed=1))
    (src / "train" / "dog" / "1.png").write_bytes(png_bytes(seed=2))
    (src / "val" / "dog" / "2.png").write_bytes(png_bytes(seed=3))
    (src / "train" / "loose.png").write_bytes(png_bytes(seed=4))
    ds = import_dataset(src, tmp_path / "ds")
    assert ds.task == "classification" and ds.classes == ["cat", "dog", "emu"]
    assert {r.id: (r.label, r.split) for r in ds} == {"loose": (None, "train"), "1": (0, "train"),
                                                      "1_1": (1, "train"), "2": (1, "val")}
    flat = tmp_path / "flat"
    (flat / "b").mkdir(parents=True)
    (flat / "a").mkdir()
    (flat / "b" / "x.png").write_bytes(png_bytes(seed=5))
    ds2 = import_dataset(flat, tmp_path / "ds2")
    assert ds2.classes == ["a", "b"] and ds2.records[0].label == 1 and ds2.records[0].split is None


def test_imagefolder_tree_comes_back_with_its_names(tmp_path):
    # cameras number every folder from 1: the same name in two class folders is the rule, not a corner case
    src = tmp_path / "folders"
    files = ["train/cat/1.png", "train/dog/1.png", "train/dog/IMG (1).png", "val/cat/café.png", "val/dog/1.png",
             "val/dog/sub folder/x y.png"]
    for i, f in enumerate(files):
        (src / f).parent.mkdir(parents=True, exist_ok=True)
        (src / f).write_bytes(png_bytes(seed=i))
    ds = import_dataset(src, tmp_path / "ds")
    assert [(r.file, r.original_name) for r in ds] == [
        ("images/1.png", None), ("images/1_1.png", "1.png"), ("images/IMG (1).png", None),
        ("images/café.png", None), ("images/1_2.png", "1.png"), ("images/sub folder/x y.png", None)]
    out = export_dataset(ds, tmp_path / "out", "imagefolder")
    assert {p.relative_to(out).as_posix() for p in out.rglob("*.png")} == set(files)
    for f in files:
        assert (out / f).read_bytes() == (src / f).read_bytes()


def test_plain_images_import_unlabelled(tmp_path):
    (tmp_path / "pics").mkdir()
    for i in range(3):
        (tmp_path / "pics" / f"{i}.jpg").write_bytes(png_bytes(seed=i))
    ds = import_dataset(tmp_path / "pics", tmp_path / "ds", task="detection")
    assert ds.task == "detection" and len(ds) == 3 and not any(r.is_labelled for r in ds)
    assert FORMATS.meta("images")["writable"] is False


# --- broken label files: DataError naming file and line / field, or kept as problems ---------------
def _yolo_with(tmp_path, line):
    src = tmp_path / "y"
    (src / "images").mkdir(parents=True)
    (src / "labels").mkdir()
    (src / "images" / "a.png").write_bytes(png_bytes())
    (src / "labels" / "a.txt").write_text(f"0 0.5 0.5 0.1 0.1\n{line}\n")
    (src / "dataset.yaml").write_text("train: images\nval: images\nnames: [a, b]\n")
    return src


@pytest.mark.parametrize("line,message", [
    ("0 0.5 0.5 0.1", r"a.txt: line 2: expected 'class x_center"),
    ("x 0.5 0.5 0.1 0.1", r"a.txt: line 2: expected numbers"),
    ("1.5 0.5 0.5 0.1 0.1", r"a.txt: line 2: class id '1.5' is not a non-negative integer"),
    ("2 0.5 0.5 0.1 0.1", r"a.txt: line 2: class id 2 is out of range \(there are 2 classes\)"),
])
def test_broken_yolo_lines(tmp_path, line, message):
    src = _yolo_with(tmp_path, line)
    with pytest.raises(DataError, match=message):
        import_dataset(src, tmp_path / "ds")
    ds = import_dataset(src, tmp_path / "kept", errors="collect")
    assert len(ds.get("a").boxes) == 1
    assert [p["kind"] for p in ds.problems] == ["bad_label"] and "line 2" in ds.problems[0]["message"]


def test_broken_voc_and_coco_files(tmp_path):
    voc = tmp_path / "voc"
    (voc / "Annotations").mkdir(parents=True)
    (voc / "JPEGImages").mkdir()
    (voc / "JPEGImages" / "a.png").write_bytes(png_bytes())
    (voc / "Annotations" / "a.xml").write_text("<annotation>\n<object><name>x</name>\n</annotation>")
    with pytest.raises(DataError, match=r"a.xml: malformed XML at line 3"):
        import_dataset(voc, tmp_path / "v1")
    (voc / "Annotations" / "a.xml").write_text(
        "<annotation><object><name>x</name><bndbox><xmin>1</xmin><ymin>1</ymin><xmax>oops</xmax>"
        "<ymax>5</ymax></bndbox></object></annotation>")
    with pytest.raises(DataError, match=r"a.xml: field 'object\[0\].bndbox.xmax': expected a number"):
        import_dataset(voc, tmp_path / "v2")
    (voc / "labels.txt").write_text("cat\n")
    (voc / "Annotations" / "a.xml").write_text(
        "<annotation><object><name>dog</name><bndbox><xmin>1</xmin><ymin>1</ymin><xmax>4</xmax>"
        "<ymax>5</ymax></bndbox></object></annotation>")
    with pytest.raises(DataError, match=r"field 'object\[0\].name': class 'dog' is not in the class list"):
        import_dataset(voc, tmp_path / "v3")

    coco = tmp_path / "coco"
    coco.mkdir()
    (coco / "a.png").write_bytes(png_bytes())
    (coco / "ann.json").write_text('{"images": [{"id": 1, "file_name": "a.png"}], "annotations": [\n  {"id": 1,,}]}')
    with pytest.raises(DataError, match=r"ann.json: not valid JSON at line 2"):
        import_dataset(coco, tmp_path / "c1", format="coco")
    (coco / "ann.json").write_text(json.dumps({
        "images": [{"id": 1, "file_name": "a.png"}], "categories": [{"id": 1, "name": "a"}],
        "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [0, 0, 2, 2]},
                        {"id": 2, "image_id": 1, "category_id": 5, "bbox": [0, 0, 2, 2]},
                        {"id": 3, "image_id": 99, "category_id": 1, "bbox": [0, 0, 2, 2]}]}))
    with pytest.raises(DataError, match=r"ann.json: field 'annotations\[1\].category_id': 5 is not a category id"):
        import_dataset(coco, tmp_path / "c2")
    ds = import_dataset(coco, tmp_path / "c3", errors="collect")
    assert [p["kind"] for p in ds.problems] == ["bad_label", "orphan_label"]
    assert "image id 99" in ds.problems[1]["message"] and len(ds.get("a").boxes) == 1


def test_detection_reports_what_it_looked_for(tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("hi")
    with pytest.raises(DataError, match="no known dataset layout found.*coco, yolo"):
        import_dataset(tmp_path / "empty", tmp_path / "ds")
    with pytest.raises(DataError, match="not found"):
        import_dataset(tmp_path / "nowhere", tmp_path / "ds")


def test_flat_yolo_upload_and_foreign_yaml_path(tmp_path):
    # labelling tools often export a.png + a.txt + classes.txt side by side; uploads arrive like that
    files = [{"name": "a.png", "content": png_bytes(20, 10, seed=1)},
             {"name": "a.txt", "content": b"1 0.5 0.5 0.5 0.5\n"},
             {"name": "b.png", "content": png_bytes(20, 10, seed=2)},
             {"name": "stray.txt", "content": b"0 0.5 0.5 0.1 0.1\n"},
             {"name": "classes.txt", "content": b"cat\ndog\n"}]
    ds = import_dataset(files, tmp_path / "ds")
    assert ds.classes == ["cat", "dog"] and ds.task == "detection"
    assert ds.get("a").boxes[0].xyxy == (5, 2.5, 15, 7.5) and not ds.get("b").is_labelled
    assert [(p["kind"], p["file"].endswith("stray.txt")) for p in ds.problems] == [("orphan_label", True)]

    src = tmp_path / "y"
    (src / "images").mkdir(parents=True)
    (src / "images" / "a.png").write_bytes(png_bytes())
    (tmp_path / "elsewhere" / "images").mkdir(parents=True)
    (tmp_path / "elsewhere" / "images" / "other.png").write_bytes(png_bytes(seed=3))
    (src / "data.yaml").write_text("path: ../elsewhere\ntrain: images\nval: images\nnames: [x]\n")
    assert [r.id for r in import_dataset(src, tmp_path / "ds2")] == ["a"]  # the set beside the yaml
