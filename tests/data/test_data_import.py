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
