"""Image file helpers: sniffing sizes, checking that a file decodes, safe names under ``images/``."""

from __future__ import annotations

import hashlib
import io
import os
import posixpath
import re
import unicodedata
from pathlib import Path

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")
#: pictures tango does not decode (convert them first): reported as such instead of "not an image"
UNREAD_IMAGE_SUFFIXES = (".heic", ".heif", ".avif", ".jxl", ".jp2", ".svg", ".psd", ".raw", ".dng", ".cr2",
                         ".nef", ".arw", ".ico")
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


# What some file system cannot hold in a name: control characters, path separators and Windows'
# reserved characters.  Everything else (unicode letters, spaces, parentheses...) is a fine name.
_UNSAFE_CHARS = re.compile(r'[\x00-\x1f\x7f<>:"|?*\\]')
_MAX_NAME_BYTES = 255
_DEVICE_NAMES = {"con", "prn", "aux", "nul", *(f"com{i}" for i in range(1, 10)), *(f"lpt{i}" for i in range(1, 10))}


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
    """``name`` (a posix relative path) made safe on every OS, changing as little as possible.

    Only what some file system cannot hold becomes ``_``: control characters, ``\\`` and Windows'
    ``<>:"|?*``, a leading dot (it would hide the file), trailing dots and spaces (Windows drops
    them) and Windows device names (``CON``, ``nul.png``).  Unicode, spaces and ``()`` stay.
    """
    return "/".join(_clean_part(part) for part in name.split("/"))


def _clean_part(part: str) -> str:
    part = _UNSAFE_CHARS.sub("_", part)
    if part.startswith("."):
        part = "_" + part[1:]
    kept = part.rstrip(". ")
    part = kept + "_" * (len(part) - len(kept))
    if part.split(".")[0].lower() in _DEVICE_NAMES:
        part = "_" + part
    if len(part.encode()) > _MAX_NAME_BYTES:  # most file systems stop at 255 bytes a name
        stem, suffix = os.path.splitext(part)
        part = stem.encode()[: _MAX_NAME_BYTES - len(suffix.encode())].decode(errors="ignore") + suffix
    return part or "_"


def name_key(name: str) -> str:
    """What two names must differ in to be two files everywhere: macOS and Windows ignore case,
    and macOS also unicode normalisation (``café`` typed or decomposed)."""
    return unicodedata.normalize("NFC", name).casefold()
