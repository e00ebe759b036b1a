"""The packages' pre- and post-processing (numpy + Pillow only) agree with the engine's and with
the reference implementations (torchvision NMS, pycocotools RLE)."""

from __future__ import annotations

import importlib.util
import io

import numpy as np
import pytest
import torch
import torchvision
from PIL import Image

from tango_core.deploy._table import find_template
from tango_core.export._preprocess import to_input

pytestmark = pytest.mark.unit


@pytest.fixture(scope="module")
def P():
    spec = importlib.util.spec_from_file_location("package_processing", find_template("python/app/processing.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _picture(h, w, mode="RGB", seed=0):
    arr = np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)
    return Image.fromarray(arr).convert(mode)


def _meta(h, w, resize, channels=3):
    spec = {"resize": resize, "interpolation": "bilinear", "pad_value": 114, "scale": 1 / 255,
            "mean": [0.485, 0.456, 0.406][:channels], "std": [0.229, 0.224, 0.225][:channels]}
    return {"input": {"shape": [1, channels, h, w], "layout": "NCHW"}, "preprocess": spec}


@pytest.mark.parametrize("resize", ["squash", "letterbox"])
@pytest.mark.parametrize("size, mode", [((45, 70), "RGB"), ((64, 40), "L"), ((32, 32), "RGB"), ((17, 90), "RGB")])
def test_preprocess_is_the_engines(P, resize, size, mode):
    channels = 1 if mode == "L" else 3
    meta = _meta(32, 48, resize, channels)
    img = _picture(*size, mode)
    x, geo = P.preprocess(img, meta)
    ref, ref_geo = to_input(img, [32, 48], meta["preprocess"], channels)
    assert x.shape == (1, channels, 32, 48) and x.dtype == np.float32
    np.testing.assert_array_equal(x[0], ref)
    assert geo["pad"] == tuple(ref_geo["pad"]) and np.allclose(geo["ratio"], ref_geo["ratio"])


def test_letterbox_geometry_maps_boxes_back(P):
    meta = _meta(64, 64, "letterbox")
    _, geo = P.preprocess(_picture(40, 100), meta)
    image_box = np.array([[10.0, 5.0, 60.0, 30.0]])
    (rx, ry), (top, left) = geo["ratio"], geo["pad"]
    input_box = image_box * [rx, ry, rx, ry] + [left, top, left, top]
    np.testing.assert_allclose(P.to_image_boxes(input_box, geo), image_box, atol=1e-9)
    assert top > 0 and left == 0  # a wide picture is padded above and below


def test_unknown_resize_mode_is_refused(P):
    with pytest.raises(ValueError, match="center_crop"):
        P.preprocess(_picture(10, 10), _meta(8, 8, "center_crop"))


def _random_boxes(n, seed):
    rng = np.random.default_rng(seed)
    xy = rng.uniform(0, 100, (n, 2))
    wh = rng.uniform(5, 40, (n, 2))
    return np.concatenate([xy, xy + wh], 1), rng.uniform(0, 1, n), rng.integers(0, 3, n)


@pytest.mark.parametrize("seed", range(4))
def test_nms_matches_torchvision(P, seed):
    boxes, scores, classes = _random_boxes(200, seed)
    for iou in (0.3, 0.5, 0.7):
        ours = P.nms(boxes, scores, iou)
        ref = torchvision.ops.nms(torch.from_numpy(boxes), torch.from_numpy(scores), iou).numpy()
        np.testing.assert_array_equal(ours, ref)
        ours = P.batched_nms(boxes, scores, classes, iou)
        ref = torchvision.ops.batched_nms(torch.from_numpy(boxes), torch.from_numpy(scores),
                                          torch.from_numpy(classes), iou).numpy()
        np.testing.assert_array_equal(ours, ref)


def test_detect_thresholds_and_in_graph_rows(P):
    geo = {"ratio": (0.5, 0.5), "pad": (0, 0), "size": (200, 200), "scaled": (100, 100), "input": (100, 100)}
    meta = {"task": "detection", "class_names": ["a", "b"], "num_classes": 2,
            "detection": {"conf_threshold": 0.5, "iou_threshold": 0.5, "max_det": 10, "nms_in_graph": True}}
    rows = np.array([[0, 10, 10, 20, 20, 0.9, 1], [0, 10, 10, 20, 20, 0.4, 0], [1, 0, 0, 5, 5, 0.99, 0]], np.float32)
    out = P.detect([rows], meta, geo)
    assert [d["label"] for d in out["detections"]] == ["b"]  # low score and other batch item dropped
    assert out["detections"][0]["box"] == [20.0, 20.0, 40.0, 40.0]  # back to image pixels


def test_classify_softmax_and_top_k(P):
    logits = np.array([1.0, 3.0, -2.0, 0.5], np.float32)
    out = P.classify(logits, ["a", "b", "c", "d"], top_k=2)
    probs = torch.softmax(torch.tensor(logits, dtype=torch.float64), 0).numpy()
    np.testing.assert_allclose(out["probabilities"], probs, rtol=1e-6)
    assert [t["label"] for t in out["top_k"]] == ["b", "a"] and out["label"] == "b"
    assert P.classify(probs, ["a", "b", "c", "d"], probabilities=True)["probabilities"] == pytest.approx(list(probs))


def test_masks_are_coco_rle(P):
    from pycocotools import mask as mask_util
    rng = np.random.default_rng(1)
    for shape in ((7, 5), (30, 41)):
        mask = rng.uniform(size=shape) > 0.6
        mask[0, 0] = True  # a run of ones first: counts start with a zero-length run
        rle = P.mask_to_rle(mask)
        np.testing.assert_array_equal(P.rle_to_mask(rle), mask)
        decoded = mask_util.decode(mask_util.frPyObjects(rle, *shape))
        np.testing.assert_array_equal(decoded.astype(bool), mask)


def test_quantised_input_round_trip(P):
    x = np.random.default_rng(0).uniform(-2, 2, (1, 3, 4, 4)).astype(np.float32)
    q = {"scale": 0.02, "zero_point": -5}
    file_input = P.to_file_input(x, np.int8, "NHWC", q)
    assert file_input.dtype == np.int8 and file_input.shape == (1, 4, 4, 3)
    back = (file_input.astype(np.float32) - q["zero_point"]) * q["scale"]
    np.testing.assert_allclose(back.transpose(0, 3, 1, 2), x, atol=q["scale"] / 2 + 1e-6)


def test_bad_images_raise_with_a_reason(P, monkeypatch):
    with pytest.raises(P.BadImage, match="not an image"):
        P.load_image(b"definitely not an image")
    buf = io.BytesIO()
    _picture(50, 50).save(buf, "PNG")
    with pytest.raises(P.BadImage, match="corrupt or truncated"):
        P.load_image(buf.getvalue()[:200])
    monkeypatch.setattr(P, "MAX_PIXELS", 100)
    with pytest.raises(P.BadImage, match="larger than the limit"):
        P.load_image(buf.getvalue())
    with pytest.raises(P.BadImage, match="cannot be opened"):
        P.load_image("/nonexistent/picture.png")
