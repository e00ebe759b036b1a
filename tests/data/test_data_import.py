"""Importing from folders, zip files and uploads, safely: nothing may land or be read outside."""

from __future__ import annotations

import io
import json
import os
import stat
import zipfile

import pytest
from data_helpers import png_bytes

from tango_core.data import export_dataset, import_dataset, make_sample
from tango_core.errors import DataError

pytestmark = pytest.mark.unit


def _zip(entries: dict[str, bytes], symlinks: dict[str, str] | None = None) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in entries.items():
            zf.writestr(name, data)
        for name, target in (symlinks or {}).items():
            info = zipfile.ZipInfo(name)
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            zf.writestr(info, target)
    return buf.getvalue()


def test_import_zip_of_an_exported_dataset(tmp_path):
    ds = make_sample("shapes", tmp_path / "s", n=6, size=32, task="detection")
    out = export_dataset(ds, tmp_path / "yolo", "yolo")
    archive = tmp_path / "wrapped.zip"
    with zipfile.ZipFile(archive, "w") as zf:  # wrapped in one top folder, as zips often are
        for p in sorted(out.rglob("*")):
            if p.is_file():
                zf.write(p, f"my-dataset/{p.relative_to(out).as_posix()}")
    back = import_dataset(archive, tmp_path / "back")
    assert back.classes == ds.classes and len(back) == 6
    assert [len(r.boxes) for r in back] == [len(ds.get(r.id).boxes) for r in back]


@pytest.mark.parametrize("member", ["../evil.png", "a/../../evil.png", "/tmp/evil.png", "C:/evil.png"])
def test_zip_slip_is_refused(tmp_path, member):
    archive = tmp_path / "bad.zip"
    archive.write_bytes(_zip({"ok.png": png_bytes(), member: png_bytes()}))
    with pytest.raises(DataError, match=r"bad.zip: member .* would be written outside the target folder"):
        import_dataset(archive, tmp_path / "work" / "ds")
    assert not (tmp_path / "evil.png").exists() and not (tmp_path / "work" / "evil.png").exists()
    assert not (tmp_path / "work" / "ds").exists()


def test_zip_symlink_is_refused(tmp_path):
    archive = tmp_path / "link.zip"
    archive.write_bytes(_zip({"ok.png": png_bytes()}, symlinks={"secret.png": "/etc/passwd"}))
    with pytest.raises(DataError, match="member 'secret.png' is a symbolic link"):
        import_dataset(archive, tmp_path / "ds")


def test_broken_zip_is_named(tmp_path):
    archive = tmp_path / "broken.zip"
    archive.write_bytes(b"PK\x03\x04 but not really")
    with pytest.raises(DataError, match="broken.zip: not a readable zip file"):
        import_dataset(archive, tmp_path / "ds")


def test_symlink_in_a_folder_pointing_outside_is_refused(tmp_path):
    secret = tmp_path / "secret.png"
    secret.write_bytes(png_bytes(seed=9))
    src = tmp_path / "pics"
    (src / "cats").mkdir(parents=True)
    (src / "cats" / "ok.png").write_bytes(png_bytes())
    os.symlink(secret, src / "cats" / "sneaky.png")
    with pytest.raises(DataError, match="leaves the dataset folder"):
        import_dataset(src, tmp_path / "ds")
    ds = import_dataset(src, tmp_path / "kept", errors="collect")
    assert [r.id for r in ds] == ["ok"] and ds.problems[0]["kind"] == "bad_label"


def test_label_paths_escaping_the_source_are_refused(tmp_path):
    (tmp_path / "secret.png").write_bytes(png_bytes(seed=9))
    src = tmp_path / "coco"
    src.mkdir()
    (src / "a.png").write_bytes(png_bytes())
    (src / "ann.json").write_text(json.dumps({
        "images": [{"id": 1, "file_name": "a.png"}, {"id": 2, "file_name": "../secret.png"}],
        "categories": [{"id": 1, "name": "x"}], "annotations": []}))
    with pytest.raises(DataError, match=r"ann.json: field 'images\[1\].file_name': '../secret.png' leaves"):
        import_dataset(src, tmp_path / "ds")
    yolo = tmp_path / "yolo"
    (yolo / "images").mkdir(parents=True)
    (yolo / "dataset.yaml").write_text("train: /etc\nval: images\nnames: [a]\n")
    with pytest.raises(DataError, match="'/etc' leaves the dataset folder"):
        import_dataset(yolo, tmp_path / "ds2")


def test_uploaded_files(tmp_path):
    # ipywidgets.FileUpload gives dicts with 'name' and 'content' (a memoryview)
    files = [{"name": f"photo{i}.png", "type": "image/png", "content": memoryview(png_bytes(seed=i))}
             for i in range(3)]
    ds = import_dataset(files, tmp_path / "ds", task="detection")
    assert sorted(r.id for r in ds) == ["photo0", "photo1", "photo2"] and ds.task == "detection"
    assert ds.image_path("photo1").read_bytes() == png_bytes(seed=1)

    sample = make_sample("shapes", tmp_path / "s", n=4, size=32, task="segmentation")
    coco = export_dataset(sample, tmp_path / "coco", "coco")
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for p in coco.rglob("*"):
            if p.is_file():
                zf.write(p, p.relative_to(coco).as_posix())
    ds2 = import_dataset([{"name": "coco.zip", "content": buf.getvalue()}], tmp_path / "ds2")
    assert ds2.task == "segmentation" and len(ds2) == 4

    with pytest.raises(DataError, match="leaves the upload folder"):
        import_dataset([{"name": "../x.png", "content": png_bytes()}], tmp_path / "ds3")
    with pytest.raises(DataError, match="upload\\[0\\]: expected a dict"):
        import_dataset([b"raw"], tmp_path / "ds4")


# --- nothing is skipped silently: every file the reader does not take is a problem ---------------------
def test_coco_images_the_json_does_not_list_are_imported_and_reported(tmp_path):
    src = tmp_path / "coco"
    (src / "images" / "train").mkdir(parents=True)
    (src / "annotations").mkdir()
    for i, name in enumerate(["train/a.png", "train/extra.png", "loose.png"]):
        (src / "images" / name).write_bytes(png_bytes(seed=i))
    (src / "images" / "train" / "photo.heic").write_bytes(b"ftypheic")
    (src / "notes.txt").write_text("remember to label extra.png")
    (src / ".DS_Store").write_bytes(b"\0")  # what file managers leave is not data
    (src / "annotations" / "instances_train.json").write_text(json.dumps({
        "images": [{"id": 1, "file_name": "a.png"}], "categories": [{"id": 1, "name": "x"}],
        "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [0, 0, 4, 4]}]}))
    ds = import_dataset(src, tmp_path / "ds")  # not errors: the import goes through
    assert {r.id: (r.split, r.is_labelled) for r in ds} == {"a": ("train", True), "extra": ("train", False),
                                                            "loose": (None, False)}
    unlisted = [p for p in ds.problems if p["kind"] == "unlisted_image"]
    assert [(p["file"], p["record"]) for p in unlisted] == [("images/loose.png", "loose"), ("images/extra.png", "extra")]
    assert unlisted[1]["message"] == ("images/train/extra.png is not listed in annotations/instances_train.json; "
                                      "imported without labels (fix: take it in as it is, or drop it)")
    unsupported = {p["file"]: p["message"] for p in ds.problems if p["kind"] == "unsupported_file"}
    assert unsupported == {
        str(src / "images" / "train" / "photo.heic"):
            ".heic images are not read by tango; not imported (convert them to PNG or JPEG)",
        str(src / "notes.txt"): "not an image or a file the coco format reads; not imported (drop this if nothing "
                                "is missing)"}


def test_imagefolder_stray_files_are_reported_not_ignored(tmp_path):
    src = tmp_path / "folders"
    for d in ("train/cat", "train/dog", "val/cat"):
        (src / d).mkdir(parents=True)
    (src / "train" / "cat" / "1.png").write_bytes(png_bytes(seed=1))
    (src / "train" / "dog" / "2.png").write_bytes(png_bytes(seed=2))
    (src / "val" / "cat" / "3.png").write_bytes(png_bytes(seed=3))
    (src / "loose.png").write_bytes(png_bytes(seed=4))  # beside the split folders: unlabelled, no split
    (src / "train" / "cat" / "IMG_0001.HEIC").write_bytes(b"ftypheic")
    (src / "train" / "cat" / "Thumbs.db").write_bytes(b"\0")
    (src / "train" / "dog" / "README").write_text("dogs")
    for i in range(5):  # a folder of stray files is one problem, not five
        (src / "val" / "cat" / f"note{i}.txt").write_text("x")
    (src / "classes.txt").write_text("cat\ndog\n")
    ds = import_dataset(src, tmp_path / "ds")
    assert {r.id: (r.label, r.split) for r in ds} == {"loose": (None, None), "1": (0, "train"), "2": (1, "train"),
                                                      "3": (0, "val")}
    found = {p["file"]: p["message"] for p in ds.problems}
    assert all(p["kind"] == "unsupported_file" for p in ds.problems)
    assert found == {
        str(src / "train" / "cat" / "IMG_0001.HEIC"): ".heic images are not read by tango; not imported "
                                                      "(convert them to PNG or JPEG)",
        str(src / "train" / "dog" / "README"): "not an image or a file the imagefolder format reads; not imported "
                                               "(drop this if nothing is missing)",
        str(src / "val" / "cat" / "*.txt"): "5 files (note0.txt, note1.txt, note2.txt, ...): not an image or a file "
                                            "the imagefolder format reads; not imported (drop this if nothing is missing)"}
    (tmp_path / "heic").mkdir()
    (tmp_path / "heic" / "a.heic").write_bytes(b"x")
    with pytest.raises(DataError, match="images need a .png"):  # a folder of only unreadable files
        import_dataset(tmp_path / "heic", tmp_path / "ds2", format="images")


def test_yolo_voc_and_store_leftovers(tmp_path):
    yolo = tmp_path / "yolo"
    for d in ("images/train", "images/test", "labels/train", "labels/test"):
        (yolo / d).mkdir(parents=True)
    (yolo / "images" / "train" / "a.png").write_bytes(png_bytes(seed=1))
    (yolo / "images" / "test" / "t.png").write_bytes(png_bytes(seed=2))  # the yaml lists no test split
    (yolo / "labels" / "train" / "a.txt").write_text("0 0.5 0.5 0.2 0.2\n")
    (yolo / "labels" / "train.cache").write_bytes(b"ultralytics")
    (yolo / "data.yaml").write_text("train: images/train\nval: images/train\nnames: [x]\n")
    ds = import_dataset(yolo, tmp_path / "y")
    assert ds.get("t").split == "test" and not ds.get("t").is_labelled
    assert [(p["kind"], p["file"]) for p in ds.problems] == [
        ("unsupported_file", str(yolo / "labels" / "train.cache")), ("unlisted_image", "images/t.png")]
    assert "images/test/t.png is in no image folder or list that data.yaml names" in ds.problems[1]["message"]

    voc = tmp_path / "voc"
    for d in ("Annotations", "JPEGImages", "SegmentationClass"):
        (voc / d).mkdir(parents=True)
    (voc / "JPEGImages" / "1.png").write_bytes(png_bytes(seed=1))
    (voc / "SegmentationClass" / "1.png").write_bytes(png_bytes(seed=2))  # masks are images, but not photos
    (voc / "SegmentationClass" / "2.png").write_bytes(png_bytes(seed=3))
    (voc / "Annotations" / "1.xml").write_text("<annotation><filename>1.png</filename></annotation>")
    (voc / "Annotations" / "1.json").write_text("{}")
    ds = import_dataset(voc, tmp_path / "v")
    assert [r.id for r in ds] == ["1"]
    assert {p["file"]: p["message"] for p in ds.problems} == {
        str(voc / "Annotations" / "1.json"): "not an image or a file the voc format reads; not imported "
                                             "(drop this if nothing is missing)",
        str(voc / "SegmentationClass" / "*.png"): "2 files (1.png, 2.png): an image outside JPEGImages/, where VOC "
                                                  "keeps its photos (segmentation masks are not read); not imported"}

    store = make_sample("shapes", tmp_path / "s", n=2, size=32, task="detection")
    (store.root / "images" / "stray.png").write_bytes(png_bytes(seed=7))  # a file no record names
    back = import_dataset(store.root, tmp_path / "back")
    assert [(p["kind"], p["file"], p["record"]) for p in back.problems] == [
        ("unlisted_image", "images/stray.png", "stray")]
    assert "images/stray.png is not in dataset.json" in back.problems[0]["message"]
    again = import_dataset(back.root, tmp_path / "again")  # a store's problems follow their image
    assert again.problems == back.problems


def test_problems_in_a_zip_or_upload_name_the_file_the_user_has(tmp_path):
    archive = tmp_path / "pets.zip"
    archive.write_bytes(_zip({"pets/images/a.png": png_bytes(), "pets/labels/a.txt": b"0 0.5 0.5 0.2 0.2\n",
                              "pets/labels/b.txt": b"0 0.5 0.5 0.2 0.2\n", "pets/notes.md": b"todo",
                              "pets/dataset.yaml": b"train: images\nval: images\nnames: [cat]\n"}))
    ds = import_dataset(archive, tmp_path / "ds")
    assert sorted((p["kind"], p["file"]) for p in ds.problems) == [
        ("orphan_label", f"{archive}/pets/labels/b.txt"), ("unsupported_file", f"{archive}/pets/notes.md")]
    broken = tmp_path / "broken.zip"
    broken.write_bytes(_zip({"images/a.png": png_bytes(), "labels/a.txt": b"7 0.5 0.5 0.2 0.2\n",
                             "dataset.yaml": b"train: images\nval: images\nnames: [cat]\n"}))
    with pytest.raises(DataError, match=f"^{broken}/labels/a.txt: line 1: class id 7 is out of range"):
        import_dataset(broken, tmp_path / "ds2")
    files = [{"name": "a.png", "content": png_bytes()}, {"name": "IMG_2.HEIC", "content": b"ftypheic"}]
    ds = import_dataset(files, tmp_path / "ds3")
    assert [(p["kind"], p["file"]) for p in ds.problems] == [("unsupported_file", "IMG_2.HEIC")]
