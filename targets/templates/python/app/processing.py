"""Pre- and post-processing of the exported model, in numpy and Pillow only.

Everything the model needs around it is read from the export's metadata file (``*.tango.json``):
the input size, resize mode, normalisation and layout; what each output means; the detection
thresholds.  This file is the same in every package (server, runner, device), so a fix here
fixes every target.  It must stay free of torch and tango: the package installs only its runtime,
numpy and Pillow.
"""

from __future__ import annotations

import io
import math
import os
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, UnidentifiedImageError

_RESAMPLE = {"nearest": Image.NEAREST, "bilinear": Image.BILINEAR, "bicubic": Image.BICUBIC}
#: images larger than this are refused before decoding (a small file can decode to gigabytes)
MAX_PIXELS = int(os.environ.get("TANGO_MAX_PIXELS", 40_000_000))


#: "squash" (the exporter's name) and "resize" both stretch to the input size; "letterbox" pads
RESIZE_MODES = ("squash", "resize", "letterbox")


class BadImage(ValueError):
    """The bytes or file are not a decodable image; the message says why."""


# --- images ---------------------------------------------------------------------------------------
def load_image(source: Any, channels: int = 3) -> Image.Image:
    """A path, bytes, a PIL image or an HWC uint8 array -> a decoded RGB (or L) PIL image."""
    if isinstance(source, Image.Image):
        img = source
    elif isinstance(source, np.ndarray):
        if source.dtype != np.uint8 or source.ndim not in (2, 3):
            raise BadImage(f"an image array must be uint8 HxW or HxWxC, got {source.dtype} {source.shape}")
        img = Image.fromarray(source)
    else:
        where = "the uploaded data" if isinstance(source, (bytes, bytearray)) else str(source)
        try:
            fp = io.BytesIO(source) if isinstance(source, (bytes, bytearray)) else open(source, "rb")
        except OSError as exc:
            raise BadImage(f"{where}: cannot be opened ({exc.strerror or exc})") from None
        try:
            with fp:
                img = Image.open(fp)
                if img.width * img.height > MAX_PIXELS:
                    raise BadImage(f"{where}: {img.width}x{img.height} is larger than the limit of {MAX_PIXELS} "
                                   "pixels (TANGO_MAX_PIXELS)")
                img.load()
        except BadImage:
            raise
        except UnidentifiedImageError:
            raise BadImage(f"{where}: not an image Pillow can read (JPEG, PNG, BMP, WebP, TIFF, GIF...)") from None
        except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
            raise BadImage(f"{where}: the image is corrupt or truncated ({type(exc).__name__}: {exc})") from None
    return img.convert("L" if channels == 1 else "RGB")


def letterbox_geometry(src_hw: tuple[int, int], dst_hw: tuple[int, int]) -> tuple[int, int, int, int]:
    """(new_h, new_w, top, left): ``src`` scaled into ``dst`` keeping its aspect ratio, centred."""
    ratio = min(dst_hw[0] / src_hw[0], dst_hw[1] / src_hw[1])
    new_h, new_w = round(src_hw[0] * ratio), round(src_hw[1] * ratio)
    return new_h, new_w, (dst_hw[0] - new_h) // 2, (dst_hw[1] - new_w) // 2


def resize(img: Image.Image, size_hw: tuple[int, int], spec: dict[str, Any]) -> tuple[np.ndarray, dict[str, Any]]:
    """Resize (stretch) or letterbox to the model's input size -> an HWC uint8 array and the geometry.

    Geometry maps input pixels back to image pixels: ``x_img = (x_in - left) / ratio_x``.
    """
    h, w = size_hw
    resample = _RESAMPLE.get(spec.get("interpolation", "bilinear"), Image.BILINEAR)
    mode = spec.get("resize", "squash")
    if mode not in RESIZE_MODES:
        raise ValueError(f"preprocess.resize {mode!r} in the metadata is not one of {RESIZE_MODES}")
    if mode == "letterbox":
        new_h, new_w, top, left = letterbox_geometry((img.height, img.width), (h, w))
        scaled = img.resize((new_w, new_h), resample) if (new_w, new_h) != img.size else img
        fill = int(spec.get("pad_value", 114))
        canvas = Image.new(img.mode, (w, h), fill if img.mode == "L" else (fill,) * 3)
        canvas.paste(scaled, (left, top))
        arr = np.asarray(canvas)
        ratio = (new_w / img.width, new_h / img.height)
    else:
        arr = np.asarray(img.resize((w, h), resample) if img.size != (w, h) else img)
        ratio, top, left, new_h, new_w = (w / img.width, h / img.height), 0, 0, h, w
    geometry = {"ratio": ratio, "pad": (top, left), "scaled": (new_h, new_w), "size": (img.height, img.width),
                "input": (h, w)}
    return arr, geometry


def normalise(hwc_uint8: np.ndarray, spec: dict[str, Any]) -> np.ndarray:
    """``(uint8 * scale - mean) / std`` -> CHW float32 (the PyTorch model's input)."""
    arr = hwc_uint8.astype(np.float32)
    if arr.ndim == 2:
        arr = arr[:, :, None]
    if spec.get("color") == "BGR" and arr.shape[2] == 3:  # a model trained on OpenCV's channel order
        arr = arr[:, :, ::-1]
    arr *= np.float32(spec.get("scale", 1 / 255))
    c = arr.shape[2]
    mean = np.asarray(spec.get("mean", [0.0] * c), np.float32)[:c]
    std = np.asarray(spec.get("std", [1.0] * c), np.float32)[:c]
    arr = (arr - mean) / std
    return np.ascontiguousarray(arr.transpose(2, 0, 1))


def preprocess(image: Any, meta: dict[str, Any], raw_pixels: bool = False) -> tuple[np.ndarray, dict[str, Any]]:
    """An image -> a batch of one in the model's input (NCHW float32) and the geometry.

    ``raw_pixels``: the model normalises inside (RKNN): return NHWC uint8 pixels instead.
    """
    size = input_size(meta)
    img = load_image(image, input_channels(meta))
    arr, geometry = resize(img, size, meta.get("preprocess") or {})
    if raw_pixels:
        return (arr[None, :, :, None] if arr.ndim == 2 else arr[None]).copy(), geometry
    return normalise(arr, meta.get("preprocess") or {})[None], geometry


def input_channels(meta: dict[str, Any]) -> int:
    inp = meta["input"]
    return int(inp["shape"][3] if inp.get("layout", "NCHW") == "NHWC" else inp["shape"][1])


def input_size(meta: dict[str, Any]) -> tuple[int, int]:
    inp = meta["input"]
    shape = inp["shape"]
    if inp.get("layout", "NCHW") == "NHWC":
        return int(shape[1]), int(shape[2])
    return int(shape[2]), int(shape[3])


# --- between the float model input and the file's own input --------------------------------------------
def to_file_input(x: np.ndarray, dtype: Any, layout: str = "NCHW",
                  quantization: dict[str, float] | None = None) -> np.ndarray:
    """Float32 NCHW -> what the file takes: float16, int8 / uint8 with its scale and zero point, NHWC."""
    x = np.asarray(x, np.float32)
    if layout == "NHWC":
        x = x.transpose(0, 2, 3, 1)
    dtype = np.dtype(dtype)
    if quantization and dtype.kind in "iu":
        info = np.iinfo(dtype)
        x = np.clip(np.round(x / quantization["scale"] + quantization["zero_point"]), info.min, info.max)
    return np.ascontiguousarray(x.astype(dtype))


def dequantize(outputs: list[np.ndarray], quantizations: list[dict[str, float] | None]) -> list[np.ndarray]:
    result = []
    for i, out in enumerate(outputs):
        out = np.asarray(out)
        q = quantizations[i] if i < len(quantizations) else None
        if q:
            out = (out.astype(np.float32) - q["zero_point"]) * q["scale"]
        result.append(out.astype(np.float32, copy=False))
    return result


# --- classification -------------------------------------------------------------------------------
def softmax(x: np.ndarray, axis: int = -1) -> np.ndarray:
    z = x - x.max(axis=axis, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=axis, keepdims=True)


def classify(logits: np.ndarray, class_names: list[str], top_k: int = 5, probabilities: bool = False) -> dict:
    scores = np.asarray(logits, np.float32).reshape(-1)
    probs = scores if probabilities else softmax(scores.astype(np.float64)).astype(np.float32)
    k = max(1, min(int(top_k), probs.size))
    order = np.argsort(-probs, kind="stable")[:k]
    top = [{"class_id": int(i), "label": _label(class_names, int(i)), "score": float(probs[i])} for i in order]
    return {"task": "classification", "label": top[0]["label"], "class_id": top[0]["class_id"],
            "score": top[0]["score"], "top_k": top, "probabilities": [float(p) for p in probs]}


def _label(names: list[str], i: int) -> str:
    return names[i] if 0 <= i < len(names) else str(i)


# --- detection ------------------------------------------------------------------------------------
def box_iou(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """IoU of one xyxy box with each of ``boxes``."""
    x1 = np.maximum(box[0], boxes[:, 0])
    y1 = np.maximum(box[1], boxes[:, 1])
    x2 = np.minimum(box[2], boxes[:, 2])
    y2 = np.minimum(box[3], boxes[:, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    area = (box[2] - box[0]) * (box[3] - box[1])
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    return inter / np.maximum(area + areas - inter, 1e-9)


def nms(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float) -> np.ndarray:
    """Greedy non-maximum suppression; indices of the kept boxes, best first."""
    order = np.argsort(-scores, kind="stable")
    keep = []
    while order.size:
        i = order[0]
        keep.append(i)
        if order.size == 1:
            break
        ious = box_iou(boxes[i], boxes[order[1:]])
        order = order[1:][ious <= iou_threshold]
    return np.asarray(keep, dtype=np.int64)


def batched_nms(boxes: np.ndarray, scores: np.ndarray, classes: np.ndarray, iou_threshold: float) -> np.ndarray:
    """Per-class NMS in one pass: boxes of different classes are moved apart so they never overlap."""
    if boxes.size == 0:
        return np.zeros(0, dtype=np.int64)
    offset = classes.astype(np.float64)[:, None] * (float(np.abs(boxes).max()) + 1.0)
    return nms(boxes.astype(np.float64) + offset, scores, iou_threshold)


def to_image_boxes(boxes: np.ndarray, geometry: dict[str, Any]) -> np.ndarray:
    """Input-pixel xyxy boxes -> image-pixel boxes, clipped to the image."""
    (rx, ry), (top, left) = geometry["ratio"], geometry["pad"]
    h, w = geometry["size"]
    out = boxes.astype(np.float64).copy()
    out[:, [0, 2]] = ((out[:, [0, 2]] - left) / rx).clip(0, w)
    out[:, [1, 3]] = ((out[:, [1, 3]] - top) / ry).clip(0, h)
    return out


def xywh_to_xyxy(b: np.ndarray) -> np.ndarray:
    return np.stack([b[:, 0] - b[:, 2] / 2, b[:, 1] - b[:, 3] / 2, b[:, 0] + b[:, 2] / 2, b[:, 1] + b[:, 3] / 2], 1)


def detect(outputs: list[np.ndarray], meta: dict[str, Any], geometry: dict[str, Any], conf: float | None = None,
           iou: float | None = None, max_det: int | None = None) -> dict:
    """Decoded predictions ``(1, N, 4 + nc [+ nm])`` (or in-graph NMS ``(K, 7)``) -> detections.

    For segmentation the prototypes ``(1, nm, h, w)`` come as a second output; each kept box gets
    a mask as COCO run-length encoding in image pixels.
    """
    det = meta.get("detection") or {}
    conf = det.get("conf_threshold", 0.25) if conf is None else conf
    iou = det.get("iou_threshold", 0.45) if iou is None else iou
    max_det = int(det.get("max_det", 300) if max_det is None else max_det)
    names = meta.get("class_names") or []
    protos = next((o for o in outputs if o.ndim == 4), None)
    coefs = None
    if det.get("nms_in_graph"):
        rows = np.asarray(outputs[0], np.float32).reshape(-1, 7)
        rows = rows[(rows[:, 0] == 0) & (rows[:, 5] >= conf)]
        rows = rows[np.argsort(-rows[:, 5], kind="stable")][:max_det]
        boxes, scores, classes = rows[:, 1:5], rows[:, 5], rows[:, 6].astype(np.int64)
    else:
        pred = next(o for o in outputs if o.ndim == 3)[0].astype(np.float32)
        nc = int(meta.get("num_classes") or len(names))
        boxes = pred[:, :4]
        if det.get("box_format", "xyxy") == "xywh":
            boxes = xywh_to_xyxy(boxes)
        class_scores = pred[:, 4:4 + nc]
        classes = class_scores.argmax(1)
        scores = class_scores[np.arange(len(pred)), classes]
        keep = scores >= conf
        boxes, scores, classes = boxes[keep], scores[keep], classes[keep]
        if protos is not None:
            coefs = pred[keep, 4 + nc:]
        if scores.size > 30000:  # NMS is quadratic: keep the best candidates only
            top = np.argsort(-scores, kind="stable")[:30000]
            boxes, scores, classes = boxes[top], scores[top], classes[top]
            coefs = coefs[top] if coefs is not None else None
        kept = batched_nms(boxes, scores, classes, iou)[:max_det]
        boxes, scores, classes = boxes[kept], scores[kept], classes[kept]
        coefs = coefs[kept] if coefs is not None else None
    image_boxes = to_image_boxes(boxes, geometry) if len(boxes) else np.zeros((0, 4))
    detections = [{"box": [round(float(v), 3) for v in b], "score": float(s), "class_id": int(c),
                   "label": _label(names, int(c))} for b, s, c in zip(image_boxes, scores, classes)]
    result = {"task": meta.get("task", "detection"), "detections": detections,
              "image_size": [int(geometry["size"][1]), int(geometry["size"][0])]}
    if protos is not None and coefs is not None:
        masks = instance_masks(protos[0], coefs, boxes, geometry)
        for d, m in zip(detections, masks):
            d["mask"] = mask_to_rle(m)
        result["_masks"] = masks  # for drawing; dropped before JSON
    return result


# --- segmentation ---------------------------------------------------------------------------------
def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def _resize_float(a: np.ndarray, size_wh: tuple[int, int]) -> np.ndarray:
    return np.asarray(Image.fromarray(a.astype(np.float32), mode="F").resize(size_wh, Image.BILINEAR))


def instance_masks(protos: np.ndarray, coefs: np.ndarray, boxes: np.ndarray, geometry: dict[str, Any],
                   threshold: float = 0.5) -> list[np.ndarray]:
    """Mask = sigmoid(coefficients . prototypes), cropped to its box, scaled to image pixels."""
    nm, ph, pw = protos.shape
    h_in, w_in = geometry["input"]
    top, left = geometry["pad"]
    new_h, new_w = geometry["scaled"]
    img_h, img_w = geometry["size"]
    flat = _sigmoid(coefs.astype(np.float32) @ protos.reshape(nm, -1).astype(np.float32)).reshape(-1, ph, pw)
    ys = (np.arange(h_in) + 0.5)[:, None]
    xs = (np.arange(w_in) + 0.5)[None, :]
    masks = []
    for m, b in zip(flat, boxes):
        full = _resize_float(m, (w_in, h_in))
        inside = (xs >= b[0]) & (xs < b[2]) & (ys >= b[1]) & (ys < b[3])
        full = np.where(inside, full, 0.0)[top:top + new_h, left:left + new_w]
        masks.append(_resize_float(full, (img_w, img_h)) > threshold)
    return masks


def mask_to_rle(mask: np.ndarray) -> dict[str, Any]:
    """COCO uncompressed RLE (column-major runs, starting with a run of zeros)."""
    flat = np.asarray(mask, bool).reshape(-1, order="F")
    changes = np.flatnonzero(np.diff(flat.astype(np.int8))) + 1
    bounds = np.concatenate([[0], changes, [flat.size]])
    counts = np.diff(bounds).tolist()
    if flat.size and flat[0]:
        counts = [0] + counts
    return {"size": [int(mask.shape[0]), int(mask.shape[1])], "counts": [int(c) for c in counts]}


def rle_to_mask(rle: dict[str, Any]) -> np.ndarray:
    h, w = rle["size"]
    values = np.zeros(h * w, dtype=bool)
    pos, val = 0, False
    for c in rle["counts"]:
        values[pos:pos + c] = val
        pos, val = pos + c, not val
    return values.reshape((h, w), order="F")


# --- one call for every task ------------------------------------------------------------------------
def postprocess(outputs: list[np.ndarray], meta: dict[str, Any], geometry: dict[str, Any], *, top_k: int = 5,
                conf: float | None = None, iou: float | None = None, max_det: int | None = None) -> dict:
    task = meta.get("task", "classification")
    if task == "classification":
        meaning = ((meta.get("outputs") or [{}])[0].get("meaning") or "").lower()
        probs = "probabilit" in meaning or "after softmax" in meaning
        return classify(outputs[0][0] if outputs[0].ndim > 1 else outputs[0], meta.get("class_names") or [],
                        top_k, probabilities=probs)
    if task in ("detection", "segmentation"):
        return detect(outputs, meta, geometry, conf, iou, max_det)
    raise ValueError(f"task {task!r} in the metadata is not one this package knows (classification, detection, "
                     "segmentation)")


def public(result: dict) -> dict:
    """The result without the private arrays kept for drawing (what goes to JSON)."""
    return {k: v for k, v in result.items() if not k.startswith("_")}


# --- drawing --------------------------------------------------------------------------------------
def _colour(i: int) -> tuple[int, int, int]:
    # golden-angle hues: neighbouring class ids get clearly different colours
    hue = (i * 0.618033988749895) % 1.0
    r, g, b = (abs(math.sin(math.pi * (hue + k / 3))) for k in range(3))
    return int(255 * r), int(255 * g), int(255 * b)


def draw(image: Any, result: dict, channels: int = 3) -> Image.Image:
    """The image with the prediction drawn on it (label for classification; boxes and masks)."""
    img = load_image(image, channels).convert("RGB")
    if result.get("task") == "classification":
        pen = ImageDraw.Draw(img)
        text = f"{result['label']} {result['score']:.2f}"
        pen.rectangle([0, 0, 7 * len(text) + 6, 14], fill=(0, 0, 0))
        pen.text((3, 1), text, fill=(255, 255, 255))
        return img
    masks = result.get("_masks") or []
    if masks:
        overlay = np.asarray(img).astype(np.float32)
        for d, m in zip(result["detections"], masks):
            overlay[m] = overlay[m] * 0.5 + np.asarray(_colour(d["class_id"]), np.float32) * 0.5
        img = Image.fromarray(overlay.astype(np.uint8))
    pen = ImageDraw.Draw(img)
    for d in result.get("detections", []):
        colour = _colour(d["class_id"])
        x1, y1, x2, y2 = d["box"]
        pen.rectangle([x1, y1, x2, y2], outline=colour, width=2)
        pen.text((x1 + 2, max(0, y1 - 11)), f"{d['label']} {d['score']:.2f}", fill=colour)
    return img


IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".gif")
VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv")


def is_image(path: str | Path) -> bool:
    return Path(path).suffix.lower() in IMAGE_SUFFIXES


def is_video(path: str | Path) -> bool:
    return Path(path).suffix.lower() in VIDEO_SUFFIXES
