"""Import, export and convert: folders, zip files and uploaded files in; any writable format out.

Everything that comes in is checked to stay inside its folder: zip members with absolute
paths, ``..`` or symlinks are refused, and so are label files that point outside the source.
"""

from __future__ import annotations

import os
import shutil
import stat
import tempfile
import zipfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from ..errors import ConfigError, DataError
from ._dataset import Dataset
from ._images import safe_relpath
from .formats import FORMATS, Issues, build

UploadedFile = dict[str, Any]  # ipywidgets.FileUpload value entries: {"name": ..., "content": bytes}


def detect_format(src: str | os.PathLike) -> str:
    """The first registered format whose layout ``src`` matches."""
    src = Path(src)
    for name in FORMATS.names():
        if FORMATS.get(name).detect(src):
            return name
    raise DataError(src, "no known dataset layout found",
                    f"expected one of: {', '.join(FORMATS.names())}; pass format= to choose one")


def safe_extract(archive: str | os.PathLike, dest: str | os.PathLike) -> Path:
    """Extract a zip into ``dest``, refusing members that would land outside it or are symlinks."""
    archive, dest = Path(archive), Path(dest)
    try:
        zf = zipfile.ZipFile(archive)
    except (zipfile.BadZipFile, OSError) as exc:
        raise DataError(archive, f"not a readable zip file ({exc})") from None
    with zf:
        for info in zf.infolist():
            mode = info.external_attr >> 16
            if stat.S_ISLNK(mode):
                raise DataError(archive, f"member {info.filename!r} is a symbolic link", "zip the files themselves")
            if safe_relpath(info.filename) is None and info.filename.strip("/") not in ("", "."):
                raise DataError(archive, f"member {info.filename!r} would be written outside the target folder",
                                "the archive is unsafe (zip-slip); re-create it with relative paths")
        dest.mkdir(parents=True, exist_ok=True)
        for info in zf.infolist():
            rel = safe_relpath(info.filename)
            if rel is None or rel.split("/")[0] == "__MACOSX":
                continue
            target = dest / rel
            if info.is_dir():
                target.mkdir(parents=True, exist_ok=True)
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            with zf.open(info) as src, open(target, "wb") as out:
                shutil.copyfileobj(src, out)
    return dest


def _single_root(folder: Path) -> Path:
    """Zips often wrap everything in one folder: step into it."""
    entries = [p for p in folder.iterdir() if not p.name.startswith(".") and p.name != "__MACOSX"]
    return entries[0] if len(entries) == 1 and entries[0].is_dir() else folder


def _write_uploads(files: Iterable[UploadedFile], folder: Path) -> tuple[Path, str]:
    """The uploads written to a folder: (the dataset root, how to show the folder's paths to the user)."""
    files = list(files)
    for i, f in enumerate(files):
        if not isinstance(f, dict) or "name" not in f or "content" not in f:
            raise DataError(f"upload[{i}]", "expected a dict with 'name' and 'content' (ipywidgets FileUpload)")
    if len(files) == 1 and str(files[0]["name"]).lower().endswith(".zip"):
        archive = folder / "upload.zip"
        archive.write_bytes(bytes(files[0]["content"]))
        return _single_root(safe_extract(archive, folder / "unzipped")), f"{files[0]['name']}/"
    root = folder / "uploaded"
    for f in files:
        rel = safe_relpath(str(f["name"]))
        if rel is None:
            raise DataError(str(f["name"]), "uploaded file name leaves the upload folder", "rename the file")
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(bytes(f["content"]))
    return root, ""


def _shown_as(tmp: Path, shown: str):
    """Paths in the temporary unpacking folder as the user knows them (``data.zip/labels/a.txt``, the
    uploaded name): problems and errors must name a file the user has, not one that is gone."""
    prefixes = [f"{tmp / sub}/" for sub in ("unzipped", "uploaded")]

    def show(text: str) -> str:
        for prefix in prefixes:
            text = text.replace(prefix, shown)
        return text

    return show


def import_dataset(src: str | os.PathLike | list[UploadedFile] | tuple, dest: str | os.PathLike,
                   format: str = "auto", task: str | None = None, errors: str = "raise") -> Dataset:
    """Read ``src`` (a folder, a .zip, or uploaded files) into a new store at ``dest``.

    ``format="auto"`` detects the layout.  ``errors="raise"`` stops at the first broken label
    file with a :class:`DataError` naming file and line; ``"collect"`` imports the rest and keeps
    each broken line as a problem that :func:`analyse` reports.
    """
    issues = Issues(errors)
    with tempfile.TemporaryDirectory(prefix="tango-import-") as tmp:
        shown = ""
        if isinstance(src, (list, tuple)):
            root, shown = _write_uploads(src, Path(tmp))
        else:
            root = Path(src)
            if not root.exists():
                raise DataError(root, "not found", "give a dataset folder, a .zip, or uploaded files")
            if root.is_file() and root.suffix.lower() == ".zip":
                root, shown = _single_root(safe_extract(root, Path(tmp) / "unzipped")), f"{root}/"
        show = _shown_as(Path(tmp), shown)
        name = detect_format(root) if format == "auto" else format
        fmt = FORMATS.get(name)
        try:
            parsed = fmt.read(root, issues, task=task)
        except DataError as exc:
            raise DataError(show(exc.path), show(exc.problem), exc.hint) from None
        except ConfigError as exc:
            raise ConfigError(show(exc.source), exc.field, show(exc.problem), exc.hint) from None
        for entry in parsed.problems:
            entry.update({k: show(entry[k]) for k in ("file", "message") if isinstance(entry.get(k), str)})
        return build(parsed, Path(dest), task=task)


def export_dataset(ds: Dataset | str | os.PathLike, dst: str | os.PathLike, format: str) -> Path:
    """Write a dataset (or the store at a path) to ``dst`` in ``format``; returns ``dst``."""
    ds = ds if isinstance(ds, Dataset) else Dataset.load(ds)
    return FORMATS.get(format).write(ds, Path(dst))


def convert(src: str | os.PathLike, dst: str | os.PathLike, src_format: str = "auto", dst_format: str = "coco",
            task: str | None = None, errors: str = "raise") -> Path:
    """One call from one format to another (through a temporary store)."""
    FORMATS.get(dst_format)  # an unknown name fails before any work
    with tempfile.TemporaryDirectory(prefix="tango-convert-") as tmp:
        ds = import_dataset(src, Path(tmp) / "store", format=src_format, task=task, errors=errors)
        return export_dataset(ds, dst, dst_format)
