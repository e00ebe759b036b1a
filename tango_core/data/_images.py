"""Image file helpers: sniffing sizes, checking that a file decodes, safe names under ``images/``."""

from __future__ import annotations

import hashlib
import io
import os
import posixpath
import re
from pathlib import Path

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")
_SUFFIX_OF_FORMAT = {"PNG": ".png", "JPEG": ".jpg", "BMP": ".bmp", "GIF": ".gif", "TIFF": ".tif", "WEBP": ".webp"}


def is_image_name(name: str | os.PathLike) -> bool:
    return str(name).lower().endswith(IMAGE_SUFFIXES)


def header_size(data: bytes | Path) -> tuple[int, int] | None:
    """(width, height) from the header alone, or None when the file is not an image PIL knows."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data) if isinstance(data, bytes) else data) as img:
            return int(img.width), int(img.height)
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError):
        return None


def decode(data: bytes | Path):
    """Fully decode an image (catches truncated files that a header read misses); returns (image, error)."""
    from PIL import Image

    try:
        img = Image.open(io.BytesIO(data) if isinstance(data, bytes) else data)
        img.load()
        return img, None
    except Exception as exc:  # PIL raises OSError, SyntaxError, ValueError, struct.error... on bad files
        return None, f"{type(exc).__name__}: {exc}"


def pixel_hash(img) -> str:
    """Hash of the decoded pixels, so one picture saved twice (PNG and re-encoded PNG) counts as a duplicate."""
    h = hashlib.sha1(f"{img.mode}:{img.width}x{img.height}:".encode())
    h.update(img.tobytes())
    return h.hexdigest()


def suffix_for(data: bytes) -> str:
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as img:
            return _SUFFIX_OF_FORMAT.get(img.format or "", ".png")
    except Exception:
        return ".png"


_BAD_CHARS = re.compile(r"[^A-Za-z0-9._\-/ ]")


def safe_relpath(name: str) -> str | None:
    """A posix relative path that stays inside its folder, or None when ``name`` tries to escape it."""
    name = str(name).replace("\\", "/")
    if name.startswith("/") or re.match(r"^[A-Za-z]:", name):
        return None
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if not parts or any(p == ".." for p in parts):
        return None
    return posixpath.join(*parts)


def clean_name(name: str) -> str:
    """A file name safe on every OS (keeps sub-folders)."""
    return "/".join(_BAD_CHARS.sub("_", part) for part in name.split("/"))
