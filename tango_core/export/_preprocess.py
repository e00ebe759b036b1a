"""Image -> input tensor exactly as the metadata's ``preprocess`` block describes it.

Deploy code reimplements these few lines on the device; keeping them here, small and pure numpy
+ PIL, lets the benchmark time the same pre-processing and the tests check both agree.
"""

from __future__ import annotations

from typing import Any

import numpy as np

_INTERPOLATION = {"nearest": 0, "bilinear": 2, "bicubic": 3}


def letterbox_geometry(src_hw: tuple[int, int], dst_hw: tuple[int, int]) -> tuple[float, int, int, int, int]:
    """Scale and (top, left) padding that fit ``src`` inside ``dst`` keeping the aspect ratio."""
    ratio = min(dst_hw[0] / src_hw[0], dst_hw[1] / src_hw[1])
    new_h, new_w = round(src_hw[0] * ratio), round(src_hw[1] * ratio)
    top, left = (dst_hw[0] - new_h) // 2, (dst_hw[1] - new_w) // 2
    return ratio, new_h, new_w, top, left


def to_input(image: Any, imgsz: list[int], spec: dict[str, Any], channels: int = 3) -> tuple[np.ndarray, dict[str, Any]]:
    """A PIL image or an HWC uint8 array -> a CHW float32 array and the geometry used.

    The geometry (``ratio``, ``pad`` as (top, left)) maps boxes from image pixels to input pixels:
    ``x_in = x_img * ratio_x + left``.
    """
    from PIL import Image

    img = image if isinstance(image, Image.Image) else Image.fromarray(np.asarray(image))
    img = img.convert("L" if channels == 1 else "RGB")
    h, w = imgsz
    resample = _INTERPOLATION.get(spec.get("interpolation", "bilinear"), 2)
    if spec.get("resize", "resize") == "letterbox":
        ratio, new_h, new_w, top, left = letterbox_geometry((img.height, img.width), (h, w))
        resized = img.resize((new_w, new_h), resample) if (new_w, new_h) != img.size else img
        fill = int(spec.get("pad_value", 114))
        canvas = Image.new(img.mode, (w, h), fill if channels == 1 else (fill,) * 3)
        canvas.paste(resized, (left, top))
        arr = np.asarray(canvas)
        geometry = {"ratio": (new_w / img.width, new_h / img.height), "pad": (top, left), "size": (img.height, img.width)}
    else:
        arr = np.asarray(img.resize((w, h), resample) if img.size != (w, h) else img)
        geometry = {"ratio": (w / img.width, h / img.height), "pad": (0, 0), "size": (img.height, img.width)}
    return normalise(arr, spec), geometry


def normalise(hwc_uint8: np.ndarray, spec: dict[str, Any]) -> np.ndarray:
    arr = hwc_uint8.astype(np.float32)
    if arr.ndim == 2:
        arr = arr[:, :, None]
    arr *= np.float32(spec.get("scale", 1 / 255))
    c = arr.shape[2]
    mean = np.asarray(spec.get("mean", [0.0] * c), np.float32)[:c]
    std = np.asarray(spec.get("std", [1.0] * c), np.float32)[:c]
    arr = (arr - mean) / std
    return np.ascontiguousarray(arr.transpose(2, 0, 1))
