"""The detection / segmentation predictor: YOLO weights tango saved -> boxes (and outlines) in the
pixels of the original images.

The detection weights come from a real one-epoch training (the trainer's best.pt, with the
metadata it writes); the segmentation weights from a built model saved with ``save_weights`` and
the same metadata.  An untrained model scores everything near its class prior, so the tests ask
for every box above a tiny confidence: what they check is the geometry, not the accuracy.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from tango_core.data import Box, Polygon, make_sample
from tango_core.data._masks import mask_to_polygons, polygon_mask
from tango_core.detection import Detection, DetectionPredictor, non_max_suppression, process_masks
from tango_core.detection import scale_boxes as scale_to_image
from tango_core.detection._augment import Sample, letterbox
from tango_core.detection._predict import simplify_polygon
from tango_core.errors import DataError
from tango_core.models import create_model
from tango_core.models.weights import read_weights, save_weights

IMGSZ = 64
CONF = 0.0005


@pytest.fixture(scope="module")
def det_weights(tmp_path_factory):
    from tango_core.engine.trainer import Trainer

    root = tmp_path_factory.mktemp("predict")
    ds = make_sample("shapes", root / "data", n=10, size=IMGSZ, task="detection", max_shapes=2, seed=0)
    result = Trainer(ds, "yolov9-t", epochs=1, imgsz=IMGSZ, batch_size=8, run_dir=root / "run", loggers=(),
                     seed=0).fit()
    return result.best


@pytest.fixture(scope="module")
def seg_weights(det_weights, tmp_path_factory):
    meta = {k: v for k, v in read_weights(det_weights).items() if k not in ("state_dict", "format", "version",
                                                                             "model", "num_classes")}
    torch.manual_seed(0)
    model = create_model("yolov9-t-seg", num_classes=len(meta["classes"]))
    for branch in model.head.main.coef:  # untrained masks are empty; a coefficient bias makes some regions
        torch.nn.init.constant_(branch[-1].bias, 3.0)
    meta.update(task="segmentation", postprocess=dict(meta["postprocess"], recipe="yolov9-t-seg"))
    return save_weights(model, tmp_path_factory.mktemp("seg") / "seg.pt", **meta)


def _scene(w: int, h: int, seed: int = 0) -> np.ndarray:
    """A grey image with a few coloured rectangles (something for the model to respond to)."""
    rng = np.random.default_rng(seed)
    img = np.full((h, w, 3), 40, dtype=np.uint8)
    for _ in range(3):
        x, y = int(rng.integers(0, w - 12)), int(rng.integers(0, h - 12))
        img[y:y + int(rng.integers(8, 20)), x:x + int(rng.integers(8, 20))] = rng.integers(80, 255, 3)
    return img


def _by_hand(predictor: DetectionPredictor, image: np.ndarray) -> np.ndarray:
    """The model and NMS run by hand on the letterboxed image; boxes mapped back with scale_boxes."""
    boxed = letterbox(Sample(image), IMGSZ).image
    x = torch.from_numpy(boxed).permute(2, 0, 1)[None].float() / 255
    with torch.no_grad():
        out = predictor.model(x)
    pred = out[0] if isinstance(out, tuple) else out
    det = non_max_suppression(pred, CONF, predictor.iou, max_det=300, num_classes=len(predictor.classes))[0]
    det[:, :4] = scale_to_image(det[:, :4], (IMGSZ, IMGSZ), image.shape[:2])
    return det[:, :6].double().numpy()


def test_boxes_match_the_model_and_nms_run_by_hand_in_original_pixels(det_weights, tmp_path):
    predictor = DetectionPredictor(det_weights, conf=CONF)
    assert predictor.task == "detection" and predictor.classes[:2] == ["circle", "square"]
    assert predictor.iou == 0.7  # the trainer's postprocess block for YOLOv9
    files = []
    for i, (w, h) in enumerate([(100, 60), (48, 90), (64, 64)]):  # wide, tall (both enlarged / shrunk), square
        Image.fromarray(_scene(w, h, i)).save(tmp_path / f"im{i}.png")
        files.append(tmp_path / f"im{i}.png")
    results = predictor(tmp_path, batch_size=1)                       # a folder: its images, sorted
    assert [r.source for r in results] == [str(f) for f in files]
    for f, r in zip(files, results, strict=True):
        image = np.asarray(Image.open(f).convert("RGB"))
        h, w = image.shape[:2]
        assert r.size == (w, h)
        expected = _by_hand(predictor, image)
        got = r.as_array()
        assert len(got) == len(expected) > 0
        np.testing.assert_allclose(got[:, :4], expected[:, :4], atol=0.011)  # boxes rounded to 0.01 px
        np.testing.assert_allclose(got[:, 4], expected[:, 4], rtol=1e-5)
        assert (got[:, 5] == expected[:, 5]).all()
        assert (got[:, [0, 2]] >= 0).all() and (got[:, [0, 2]] <= w).all()
        assert (got[:, [1, 3]] >= 0).all() and (got[:, [1, 3]] <= h).all()
        assert all(d.name == predictor.classes[d.cls] for d in r.detections)


def test_an_image_twice_as_large_gets_boxes_twice_as_large(det_weights):
    """The 2x pixel-doubled image letterboxes to exactly the same input, so every box must scale by 2:
    the mapping back to image pixels, checked without the code that computes it."""
    small = _scene(64, 40, 3)                                         # padded 12 px top and bottom
    large = small.repeat(2, 0).repeat(2, 1)                           # 128 x 80
    predictor = DetectionPredictor(det_weights, conf=CONF)
    a, b = predictor([small, large], batch_size=1)
    assert a.source is None and a.size == (64, 40) and b.size == (128, 80)
    assert len(a.detections) == len(b.detections) > 0
    np.testing.assert_allclose(b.as_array()[:, :4], 2 * a.as_array()[:, :4], atol=0.021)
    np.testing.assert_allclose(b.as_array()[:, 4:], a.as_array()[:, 4:], rtol=1e-5)


def test_thresholds_limits_and_conversion_to_store_shapes(det_weights):
    image = _scene(80, 60, 5)
    many = DetectionPredictor(det_weights, conf=CONF)([image])[0].detections
    few = DetectionPredictor(det_weights, conf=CONF, max_det=2)([image])[0].detections
    assert len(few) == 2 and [d.score for d in few] == [d.score for d in many[:2]]
    assert DetectionPredictor(det_weights)([image])[0].detections == []  # the weights' own 0.25: nothing yet
    one = DetectionPredictor(det_weights, conf=CONF, agnostic=True)([image])[0].detections
    assert len(one) <= len(many)
    d = many[0]
    box = d.to_box()
    assert isinstance(box, Box) and box.xyxy == d.box and box.cls == d.cls and box.score == d.score
    poly = d.to_polygon(cls=0)                                        # box-only weights: the rectangle
    x1, y1, x2, y2 = d.box
    assert isinstance(poly, Polygon) and poly.cls == 0 and poly.points == [(x1, y1), (x2, y1), (x2, y2), (x1, y2)]


def test_segmentation_outlines_are_in_original_pixels(seg_weights):
    small = _scene(64, 48, 7)
    large = small.repeat(2, 0).repeat(2, 1)
    predictor = DetectionPredictor(seg_weights, conf=CONF, max_det=20)
    assert predictor.task == "segmentation"
    a, b = predictor([small, large], batch_size=1)
    assert len(a.detections) == len(b.detections) > 0
    outlined = 0
    for da, db in zip(a.detections, b.detections, strict=True):
        assert (da.polygon is None) == (db.polygon is None)
        if da.polygon is None:
            continue
        outlined += 1
        pa, pb = np.array(da.polygon), np.array(db.polygon)
        assert len(pa) >= 3 and pa.shape == pb.shape
        np.testing.assert_allclose(pb, 2 * pa, atol=0.021)
        x1, y1, x2, y2 = da.box                                       # the mask is cut to its box
        assert (pa[:, 0] >= np.floor(x1) - 1).all() and (pa[:, 0] <= np.ceil(x2) + 1).all()
        assert (pa[:, 1] >= np.floor(y1) - 1).all() and (pa[:, 1] <= np.ceil(y2) + 1).all()
        assert (pa[:, 0] <= 64).all() and (pa[:, 1] <= 48).all() and (pa >= 0).all()
        assert da.to_polygon().points == [tuple(p) for p in da.polygon]
    assert outlined
    # the outline is the model's own mask: by hand, the mask of the best detection at the input size
    boxed = letterbox(Sample(small), IMGSZ).image                    # 64 x 48: 8 px of padding top and bottom
    with torch.no_grad():
        pred, protos = predictor.model(torch.from_numpy(boxed).permute(2, 0, 1)[None].float() / 255)
    det = non_max_suppression(pred, CONF, predictor.iou, max_det=20, num_classes=len(predictor.classes))[0]
    mask = process_masks(protos[0], det[:1, 6:], det[:1, :4], (IMGSZ, IMGSZ))[0].numpy()
    largest = max(mask_to_polygons(mask), key=lambda q: abs(Polygon(0, q).area))
    by_hand = polygon_mask(largest, IMGSZ, IMGSZ)
    ours = polygon_mask([(x, y + 8) for x, y in a.detections[0].polygon], IMGSZ, IMGSZ)
    assert (by_hand & ours).sum() / (by_hand | ours).sum() > 0.7


def test_simplify_keeps_the_corners_that_matter():
    square = np.zeros((20, 20), dtype=bool)
    square[4:12, 5:15] = True
    (outline,) = mask_to_polygons(square)
    assert sorted(map(tuple, simplify_polygon(np.array(outline), 1.0))) == [(5, 4), (5, 12), (15, 4), (15, 12)]
    t = np.linspace(0, 2 * np.pi, 200, endpoint=False)
    circle = np.stack([30 + 20 * np.cos(t), 30 + 20 * np.sin(t)], 1)
    (stairs,) = mask_to_polygons(polygon_mask(circle.tolist(), 60, 60))
    simple = simplify_polygon(np.array(stairs), 1.0)
    assert 8 <= len(simple) < len(stairs) / 3
    # every vertex dropped lies within the tolerance of the simplified outline
    ring = np.concatenate([simple, simple[:1]])
    for p in np.array(stairs):
        d = min(_segment_distance(p, ring[k], ring[k + 1]) for k in range(len(simple)))
        assert d <= 1.0 + 1e-9


def _segment_distance(p, a, b) -> float:
    ab = b - a
    t = 0.0 if not ab.any() else float(np.clip(np.dot(p - a, ab) / np.dot(ab, ab), 0, 1))
    return float(np.hypot(*(p - (a + t * ab))))


def test_classification_weights_are_refused_with_the_predictor_to_use(tmp_path):
    model = create_model("resnet-cifar20", num_classes=2)
    path = save_weights(model, tmp_path / "cls.pt", task="classification", classes=["a", "b"], imgsz=32,
                        in_channels=3)
    with pytest.raises(DataError, match="tango_core.engine.Predictor"):
        DetectionPredictor(path)
    bare = save_weights(create_model("yolov9-t", num_classes=2), tmp_path / "bare.pt")
    with pytest.raises(DataError, match="has no classes, imgsz metadata"):
        DetectionPredictor(bare)


def test_detection_is_a_plain_record():
    d = Detection(1, "b", 0.5, (1.0, 2.0, 3.0, 4.0))
    assert d.polygon is None and d.to_box().xyxy == (1.0, 2.0, 3.0, 4.0)
