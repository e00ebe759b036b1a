"""Helpers for the data-layer tests: tiny in-memory images."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image


def png_bytes(width: int = 32, height: int = 24, seed: int = 0, mode: str = "RGB") -> bytes:
    """A small noisy PNG; different seeds give different pixels."""
    rng = np.random.default_rng(seed)
    channels = 3 if mode == "RGB" else 1
    arr = rng.integers(0, 255, size=(height, width, channels), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(arr.squeeze() if channels == 1 else arr, mode).save(buf, "PNG")
    return buf.getvalue()
