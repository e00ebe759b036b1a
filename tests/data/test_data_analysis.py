"""analyse(): every problem kind is found and names its file; fix / drop / keep act per kind."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
from data_helpers import png_bytes
from PIL import Image

from tango_core.data import Box, Dataset, Polygon, analyse, import_dataset
from tango_core.data._analysis import KINDS
from tango_core.errors import ConfigError, UnknownNameError

pytestmark = pytest.mark.unit


def _defective(tmp_path) -> Dataset:
    ds = Dataset.create(tmp_path / "d", task="detection", classes=["a", "b"])
    good = png_bytes(40, 20, seed=1)
    ok = ds.add_image(good, name="ok.png")
    ds.add_box(ok.id, Box(0, 0, 0, 20, 10))
    gone = ds.add_image(png_bytes(40, 20, seed=2), name="gone.png")
    ds.add_box(gone.id, Box(0, 1, 1, 5, 5))
    ds.image_path(gone).unlink()
    whole = png_bytes(40, 20, seed=3)
    trunc = ds.add_image(whole[: len(whole) // 2], name="truncated.png", check=False)
    ds.add_box(trunc.id, Box(0, 1, 1, 5, 5))
    resized = ds.add_image(png_bytes(40, 20, seed=4), name="resized.png")
    resized.width = 99
    ds.add_box(resized.id, Box(1, 1, 1, 5, 5))
    # the same pixels encoded differently is still a duplicate
    buf = io.BytesIO()
    Image.open(io.BytesIO(good)).save(buf, "PNG", compress_level=9)
    dup = ds.add_image(buf.getvalue(), name="copy.png")
    ds.add_box(dup.id, Box(0, 0, 0, 20, 10))
    ds.add_image(png_bytes(40, 20, seed=5), name="bare.png")
    shapes = ds.add_image(png_bytes(40, 20, seed=6), name="shapes.png")
    ds.add_box(shapes.id, Box(7, 1, 1, 5, 5, id="unknown"))
    ds.add_box(shapes.id, Box(0, -5, 2, 10, 12, id="left"))
    ds.add_polygon(shapes.id, Polygon(1, [(30, 5), (45, 5), (30, 15)], id="poly-out"))
    ds.add_box(shapes.id, Box(0, 12, 8, 6, 2, id="swapped"))
    ds.add_box(shapes.id, Box(0, 3, 3, 3, 9, id="flat"))
    ds.add_polygon(shapes.id, Polygon(0, [(1, 1), (4, 4)], id="line"))
    ds.save()
    return ds


def test_every_kind_is_found_and_names_its_file(tmp_path):
    ds = _defective(tmp_path)
    report = analyse(ds)
    found = {(p.kind, p.file, p.shape) for p in report.problems}
    assert found == {
        ("missing_image", "images/gone.png", None),
        ("corrupt", "images/truncated.png", None),
        ("size_mismatch", "images/resized.png", None),
        ("duplicate", "images/copy.png", None),
        ("unlabelled", "images/bare.png", None),
        ("unknown_class", "images/shapes.png", "unknown"),
        ("outside", "images/shapes.png", "left"),
        ("outside", "images/shapes.png", "poly-out"),
        ("degenerate", "images/shapes.png", "swapped"),
        ("degenerate", "images/shapes.png", "flat"),
        ("degenerate", "images/shapes.png", "line"),
    }
    assert not report.ok
    assert report.by_kind("duplicate")[0].message == "same pixels as images/ok.png"
    assert "recorded 99 x 20, file is 40 x 20" in report.by_kind("size_mismatch")[0].message
    text = report.summary()
    for kind in report.kinds():
        assert kind in text
    assert "images/truncated.png" in text and "you can fix / drop / keep" in text
    assert report.to_dict()["kinds"]["degenerate"] == 3


def test_apply_fix_drop_keep(tmp_path):
    ds = _defective(tmp_path)
    report = analyse(ds)
    with pytest.raises(ConfigError, match="field 'unlabelled': no decision for 1 problems"):
        report.apply(ds, fix=["size_mismatch", "outside", "degenerate"],
                     drop=["corrupt", "duplicate", "missing_image", "unknown_class"])
    with pytest.raises(ConfigError, match="field 'duplicate': cannot be fixed"):
        report.apply(ds, fix=["duplicate"], keep="*")
    with pytest.raises(UnknownNameError, match="Did you mean 'duplicate'"):
        report.apply(ds, drop=["duplicates"], keep="*")
    done = report.apply(ds, fix=["size_mismatch", "outside", "degenerate"],
                        drop=["corrupt", "duplicate", "missing_image", "unknown_class"], keep=["unlabelled"])
    assert done["degenerate"] == {"action": "fix", "problems": 3, "fixed": 1, "removed_images": 0,
                                  "removed_shapes": 2}
    assert done["duplicate"]["removed_images"] == 1 and done["unlabelled"]["action"] == "keep"
    assert sorted(r.id for r in ds) == ["bare", "ok", "resized", "shapes"]
    assert not (ds.root / "images" / "copy.png").exists() and not (ds.root / "images" / "truncated.png").exists()
    assert ds.get("resized").width == 40
    shapes = ds.get("shapes")
    assert {b.id: b.xyxy for b in shapes.boxes} == {"left": (0, 2, 10, 12), "swapped": (6, 2, 12, 8)}
    assert np.allclose(shapes.polygons[0].points, [(30, 5), (40, 5), (40, 5 + 10 / 3), (30, 15)])

    again = analyse(ds.root)  # saved by apply
    assert again.kinds() == {"unlabelled": 1}
    again.apply(ds, drop="*")
    assert analyse(ds).ok and len(ds) == 3


def test_import_problems_are_reported_and_can_be_dropped(tmp_path):
    src = tmp_path / "y"
    (src / "images").mkdir(parents=True)
    (src / "labels").mkdir()
    (src / "images" / "a.png").write_bytes(png_bytes())
    (src / "labels" / "a.txt").write_text("0 0.5 0.5 0.5 0.5\n0 nope\n")
    (src / "labels" / "lost.txt").write_text("0 0.5 0.5 0.5 0.5\n")
    (src / "dataset.yaml").write_text("train: images\nval: images\nnames: [a]\n")
    ds = import_dataset(src, tmp_path / "ds", errors="collect")
    report = analyse(ds)
    assert report.kinds() == {"orphan_label": 1, "bad_label": 1}
    assert report.by_kind("orphan_label")[0].file.endswith("lost.txt")
    assert "a.txt" in report.by_kind("bad_label")[0].file and "line 2" in report.by_kind("bad_label")[0].message
    report.apply(ds, drop=["bad_label"], keep=["orphan_label"])
    assert analyse(ds.root).kinds() == {"orphan_label": 1}


def _with_leftovers(tmp_path, name):
    src = tmp_path / f"{name}-src"
    (src / "images").mkdir(parents=True)
    for i in range(3):
        (src / "images" / f"{i}.png").write_bytes(png_bytes(seed=i))
    (src / "images" / "IMG_7.heic").write_bytes(b"ftypheic")
    (src / "ann.json").write_text(json.dumps({"images": [{"id": 1, "file_name": "0.png"}],
                                              "categories": [{"id": 1, "name": "a"}], "annotations": []}))
    return import_dataset(src, tmp_path / name)


def test_leftover_files_are_problems_you_decide_on(tmp_path):
    ds = _with_leftovers(tmp_path, "ds")
    report = analyse(ds)
    assert report.kinds() == {"unlisted_image": 2, "unsupported_file": 1, "unlabelled": 3}
    assert [(p.file, p.record) for p in report.by_kind("unlisted_image")] == [("images/1.png", "1"),
                                                                              ("images/2.png", "2")]
    assert report.by_kind("unsupported_file")[0].file.endswith("images/IMG_7.heic")
    text = report.summary()
    assert "unlisted_image (2): an image found at import that the label files do not list" in text
    assert "you can fix / drop / keep" in text and "IMG_7.heic: .heic images are not read by tango" in text
    with pytest.raises(ConfigError, match="field 'unsupported_file': no decision for 1 problems"):
        report.apply(ds, fix=["unlisted_image"], keep=["unlabelled"])
    with pytest.raises(ConfigError, match="field 'unsupported_file': cannot be fixed"):
        report.apply(ds, fix=["unsupported_file"], keep="*")

    done = report.apply(ds, fix=["unlisted_image"], drop=["unsupported_file"], keep=["unlabelled"])
    assert done["unlisted_image"] == {"action": "fix", "problems": 2, "fixed": 2, "removed_images": 0,
                                      "removed_shapes": 0}
    assert len(ds) == 3 and analyse(ds.root).kinds() == {"unlabelled": 3}  # taken in: plain unlabelled images

    dropped = _with_leftovers(tmp_path, "dropped")
    done = analyse(dropped).apply(dropped, drop=["unlisted_image"], keep="*")
    assert done["unlisted_image"]["removed_images"] == 2 and [r.id for r in dropped] == ["0"]
    assert not (dropped.root / "images" / "1.png").exists()
    assert analyse(dropped.root).kinds() == {"unsupported_file": 1, "unlabelled": 1}  # kept: still reported

    removed = _with_leftovers(tmp_path, "removed")
    removed.remove_image("1")  # removing the image by hand settles its problem too
    assert analyse(removed).kinds()["unlisted_image"] == 1 and len(removed.problems) == 2


def test_classification_label_problems(tmp_path):
    ds = Dataset.create(tmp_path / "d", task="classification", classes=["a"])
    ds.add_image(png_bytes(seed=1), name="x")
    ds.add_image(png_bytes(seed=2), name="y")
    ds.set_label("x", 0)
    ds.set_label("y", 3)
    report = analyse(ds)
    assert [(p.kind, p.file) for p in report.problems] == [("unknown_class", "images/y.png")]
    report.apply(ds, drop=["unknown_class"])
    assert ds.get("y").label is None and analyse(ds).kinds() == {"unlabelled": 1}


def test_statistics(tmp_path):
    ds = Dataset.create(tmp_path / "d", task="detection", classes=["a", "b"])
    r1 = ds.add_image(png_bytes(40, 20, seed=1), name="r1", split="train")
    r2 = ds.add_image(png_bytes(40, 20, seed=2), name="r2", split="val")
    ds.add_image(png_bytes(10, 10, seed=3), name="r3")
    ds.add_box(r1.id, Box(0, 0, 0, 20, 10))  # half the width, half the height, aspect 2
    ds.add_box(r2.id, Box(1, 0, 0, 10, 20))  # a quarter of the width, all the height, aspect 0.5
    ds.add_polygon(r2.id, Polygon(1, [(0, 0), (40, 0), (40, 5)]))
    s = analyse(ds).stats
    assert s["images"] == 3 and s["labelled"] == 2
    assert s["splits"] == {"train": 1, "val": 1, "test": 0, "none": 1}
    assert s["class_counts"]["all"] == {"a": 1, "b": 2} and s["class_counts"]["val"] == {"a": 0, "b": 2}
    assert s["image_sizes"]["most_common"] == [[40, 20, 2], [10, 10, 1]]
    sh = s["shapes"]
    assert sh["count"] == 3 and sh["per_image"]["max"] == 2
    assert sh["width"]["min"] == 0.25 and sh["width"]["max"] == 1.0
    assert sh["aspect"]["min"] == 0.5 and sh["aspect"]["max"] == 8.0
    assert np.isclose(sh["area"]["median"], 0.25)


def test_every_kind_is_documented():
    doc = (Path(__file__).resolve().parents[2] / "docs" / "data.md").read_text()
    for kind, (_meaning, actions) in KINDS.items():
        assert f"| `{kind}` |" in doc and "keep" in actions
