"""The annotation store: records, shapes, classes, splits and the atomic dataset.json."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from data_helpers import png_bytes

from tango_core.data import Box, Dataset, Polygon, load_dataset
from tango_core.errors import DataError, UnknownNameError

pytestmark = pytest.mark.unit


def test_create_add_save_load_round_trip(tmp_path):
    ds = Dataset.create(tmp_path / "d", task="detection", classes=["cat", "dog"])
    rec = ds.add_image(png_bytes(40, 30), name="pets/a.png", split="train")
    assert (rec.id, rec.file, rec.width, rec.height, rec.split) == ("pets/a", "images/pets/a.png", 40, 30, "train")
    assert ds.image_path(rec).read_bytes() == png_bytes(40, 30)
    b = ds.add_box(rec.id, Box(1, 2.5, 3, 20, 25, score=0.9))
    p = ds.add_polygon(rec.id, Polygon(0, [(1, 1), (9, 1), (5, 8)]))
    assert b.id and p.id and b.id != p.id
    ds.meta["note"] = "kept"
    ds.save()

    again = load_dataset(tmp_path / "d")
    assert again.to_dict() == ds.to_dict()
    r = again.get("pets/a")
    assert r.boxes == [Box(1, 2.5, 3, 20, 25, id=b.id, score=0.9)]
    assert r.polygons[0].points == [(1, 1), (9, 1), (5, 8)] and r.polygons[0].score is None
    assert again.meta == {"note": "kept"} and len(again) == 1


def test_add_image_from_path_names_are_unique_and_checked(tmp_path):
    src = tmp_path / "x.png"
    src.write_bytes(png_bytes())
    ds = Dataset.create(tmp_path / "d", task="classification", classes=["a"])
    r1, r2 = ds.add_image(src), ds.add_image(src)
    assert (r1.id, r2.id) == ("x", "x_1") and r2.file == "images/x_1.png"
    r3 = ds.add_image(png_bytes())  # bytes without a name: the suffix comes from the content
    assert r3.file.endswith(".png")
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not an image at all")
    with pytest.raises(DataError, match="bad.png.*not a readable image"):
        ds.add_image(bad)
    with pytest.raises(DataError, match="leaves the dataset folder"):
        ds.add_image(png_bytes(), name="../../evil.png")
    with pytest.raises(DataError, match="leaves the dataset folder"):
        ds.add_image(png_bytes(), name="/etc/evil.png")
    assert not (tmp_path / "evil.png").exists()


def test_add_image_keeps_safe_names_and_records_changed_ones(tmp_path):
    ds = Dataset.create(tmp_path / "d", task="detection", classes=["a"])
    # unicode letters, spaces and parentheses are fine file names everywhere: kept as they are
    for name in ("IMG (1).png", "café.png", "日本 語/写真 1.png", "it's [v2] + more.png"):
        rec = ds.add_image(png_bytes(), name=name)
        assert (rec.file, rec.original_name) == (f"images/{name}", None)
        assert ds.image_path(rec).read_bytes() == png_bytes()
    assert ds.get("日本 語/写真 1").id == "日本 語/写真 1"
    # what some OS cannot hold changes, and the name asked for is recorded
    for name, stored in (("12:30 <b>?.png", "12_30 _b__.png"), (".hidden.png", "_hidden.png"),
                         ("tab\there.png", "tab_here.png"), ("CON.png", "_CON.png"), ("dots..png.", "dots..png_")):
        rec = ds.add_image(png_bytes(), name=name)
        assert (rec.file, rec.original_name) == (f"images/{stored}", name)
    # a taken name gets _1: the same id, or one that shares a file on macOS / Windows (case, suffix)
    for name, stored in (("IMG (1).png", "IMG (1)_1.png"), ("img (1).PNG", "img (1)_2.PNG"),
                         ("cafe\u0301.png", "cafe\u0301_1.png"), ("café.jpg", "café_2.jpg")):
        rec = ds.add_image(png_bytes(), name=name)
        assert (rec.file, rec.original_name) == (f"images/{stored}", name)
    ds.remove_image("café_2")
    assert ds.add_image(png_bytes(), name="CAFÉ.jpg").file == "images/CAFÉ_2.jpg"  # a removed name is free again
    ds.save()
    again = load_dataset(ds.root)
    assert again.to_dict() == ds.to_dict() and again.get("IMG (1)_1").original_name == "IMG (1).png"

    raw = json.loads(ds.store_path.read_text())
    raw["images"][0]["original_name"] = "../../escape.png"  # exports write this name: it must stay inside
    ds.store_path.write_text(json.dumps(raw))
    with pytest.raises(DataError, match=r"field 'images\[0\].original_name': expected a plain relative path"):
        load_dataset(ds.root)


def test_shapes_update_and_remove_by_index_or_id(tmp_path):
    ds = Dataset.create(tmp_path / "d", task="detection", classes=["a", "b"])
    rec = ds.add_image(png_bytes(), name="i")
    b0 = ds.add_box(rec.id, Box(0, 0, 0, 5, 5))
    b1 = ds.add_box(rec.id, Box(1, 1, 1, 6, 6))
    new = ds.update_shape(rec.id, 0, Box(1, 2, 2, 7, 7))
    assert new.id == b0.id and rec.boxes[0].xyxy == (2, 2, 7, 7)
    ds.update_shape(rec.id, b1.id, Box(0, 3, 3, 4, 4, id="keep-me"))
    assert rec.boxes[1].id == "keep-me"
    with pytest.raises(TypeError):
        ds.update_shape(rec.id, "keep-me", Polygon(0, [(0, 0), (1, 0), (1, 1)]))
    assert ds.remove_shape(rec.id, "keep-me").xyxy == (3, 3, 4, 4)
    assert ds.remove_shape(rec.id, 0).id == b0.id and rec.boxes == []
    with pytest.raises(DataError, match="no index 0"):
        ds.remove_shape(rec.id, 0)
    with pytest.raises(DataError, match="no shape with id 'nope'"):
        ds.remove_shape(rec.id, "nope")
    with pytest.raises(UnknownNameError, match="Did you mean 'i'"):
        ds.get("ii")


def test_classes_add_rename_remove_reindex(tmp_path):
    ds = Dataset.create(tmp_path / "d", task="detection", classes=["a", "b", "c"])
    rec = ds.add_image(png_bytes(), name="i")
    ds.add_box(rec.id, Box(1, 0, 0, 5, 5))
    ds.add_box(rec.id, Box(2, 0, 0, 5, 5))
    assert ds.add_class("d") == 3
    with pytest.raises(DataError, match="exists already"):
        ds.add_class("a")
    ds.rename_class("c", "cc")
    assert ds.classes == ["a", "b", "cc", "d"]
    with pytest.raises(DataError, match="'b' is used by 1 annotations"):
        ds.remove_class("b")
    assert ds.remove_class("a") == 0
    assert [b.cls for b in rec.boxes] == [0, 1] and ds.classes == ["b", "cc", "d"]
    assert ds.remove_class("b", drop_annotations=True) == 1
    assert [b.cls for b in rec.boxes] == [0] and ds.class_counts() == {"cc": 1, "d": 0}


def test_classification_labels_and_counts(tmp_path):
    ds = Dataset.create(tmp_path / "d", task="classification", classes=["a", "b"])
    for i in range(3):
        ds.add_image(png_bytes(seed=i), name=f"{i}.png")
    ds.set_label("0", "b")
    ds.set_label("1", 0)
    ds.set_label("2", 1)
    assert ds.class_counts() == {"a": 1, "b": 2}
    ds.remove_class("a", drop_annotations=True)
    assert [r.label for r in ds] == [0, None, 0]


def _classification(tmp_path, per_class=(20, 10, 5)):
    ds = Dataset.create(tmp_path / "d", task="classification", classes=[f"c{i}" for i in range(len(per_class))])
    data = png_bytes(8, 8)
    for c, n in enumerate(per_class):
        for i in range(n):
            ds.add_image(data, name=f"c{c}_{i}.png", split=None, check=False)
            ds.set_label(f"c{c}_{i}", c)
    return ds


def test_split_is_deterministic_stratified_and_order_free(tmp_path):
    ds = _classification(tmp_path)
    counts = ds.split(val=0.2, test=0.2, seed=3)
    assert counts == {"train": 21, "val": 7, "test": 7}
    first = {r.id: r.split for r in ds}
    for c, n in enumerate((20, 10, 5)):  # every class keeps the proportions
        got = [r.split for r in ds if r.label == c]
        assert got.count("val") == round(n * 0.2) and got.count("test") == round(n * 0.2)
    ds.records.reverse()
    ds.split(val=0.2, test=0.2, seed=3)
    assert {r.id: r.split for r in ds} == first
    ds.split(val=0.2, test=0.2, seed=4)
    assert {r.id: r.split for r in ds} != first
    assert len(ds.records_of("val")) == 7
    with pytest.raises(ValueError):
        ds.split(val=0.6, test=0.5)


def test_broken_store_names_file_and_field(tmp_path):
    ds = Dataset.create(tmp_path / "d", task="detection", classes=["a"])
    rec = ds.add_image(png_bytes(), name="i")
    ds.add_box(rec.id, Box(0, 0, 0, 5, 5))
    ds.save()
    raw = json.loads(ds.store_path.read_text())
    raw["images"][0]["boxes"][0]["bbox"] = [0, 0, "x", 5]
    ds.store_path.write_text(json.dumps(raw))
    with pytest.raises(DataError, match=r"dataset.json: field 'images\[0\].boxes\[0\].bbox\[2\]'"):
        load_dataset(tmp_path / "d")
    raw["images"][0]["boxes"][0]["bbox"] = [0, 0, 5, 5]
    raw["task"] = "detect"
    ds.store_path.write_text(json.dumps(raw))
    with pytest.raises(DataError, match="field 'task'.*use one of"):
        load_dataset(tmp_path / "d")
    ds.store_path.write_text('{"format": "tango-dataset", ')
    with pytest.raises(DataError, match="dataset.json: not valid JSON at line 1"):
        load_dataset(tmp_path / "d")
    with pytest.raises(DataError, match="a dataset exists here already"):
        Dataset.create(tmp_path / "d", task="detection")


def test_save_keeps_old_store_when_replace_fails(tmp_path, monkeypatch):
    ds = Dataset.create(tmp_path / "d", task="classification", classes=["a"])
    ds.add_image(png_bytes(), name="i")
    ds.save()
    before = ds.store_path.read_text()
    ds.add_class("b")

    def crash(*args, **kw):
        raise OSError("disk on fire")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError, match="disk on fire"):
        ds.save()
    monkeypatch.undo()
    assert ds.store_path.read_text() == before
    assert [p.name for p in ds.root.iterdir() if p.name.endswith(".tmp")] == []


@pytest.mark.slow
def test_store_survives_sigkill_during_saves(tmp_path):
    """A process killed at an arbitrary moment while saving leaves a complete, loadable store."""
    ds = Dataset.create(tmp_path / "d", task="detection", classes=["a"])
    rec = ds.add_image(png_bytes(), name="i")
    for i in range(3000):
        ds.add_box(rec.id, Box(0, i, i, i + 1, i + 1))
    ds.save()
    script = textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(Path(__file__).resolve().parents[2])!r})
        from tango_core.data import load_dataset, Box
        ds = load_dataset({str(tmp_path / "d")!r})
        print("ready", flush=True)
        n = 0
        while True:
            n += 1
            ds.records[0].boxes.append(Box(0, n, n, n + 2, n + 2))
            ds.save()
    """)
    for delay in (0.05, 0.2, 0.4):
        proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE)
        assert proc.stdout.readline().strip() == b"ready"
        time.sleep(delay)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        loaded = load_dataset(tmp_path / "d")
        assert len(loaded.records[0].boxes) >= 3000
