"""Detection exports: YOLOv7-tiny at 64 x 64, NMS in the graph, INT8 with float box decoding, mAP."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tango_core.export import export, load_exported
from tango_core.export._detect import mean_ap, postprocess, split_nms_output

SIZE = 64
LOW_CONF = 0.002  # an untrained detector's scores are small: keep enough boxes to compare


@pytest.fixture(scope="module")
def yolo():
    from tango_core.models import create_model

    torch.manual_seed(0)
    return create_model("yolov7-tiny", num_classes=5).eval()


@pytest.fixture(scope="module")
def shapes(tmp_path_factory):
    from tango_core.data import make_sample

    return make_sample("shapes", tmp_path_factory.mktemp("shapes") / "ds", n=20, size=SIZE, seed=0)


@pytest.fixture(scope="module")
def spread_yolo(yolo):
    """The detector with its prediction convs scaled up: an untrained head's scores tie to ~1e-6, and
    NMS may keep either of two tied boxes; spread scores make the kept set well defined."""
    import copy

    model = copy.deepcopy(yolo)
    torch.manual_seed(1)
    with torch.no_grad():
        for conv in model.head.modules():
            if isinstance(conv, torch.nn.Conv2d):
                conv.weight.mul_(40)
                conv.bias.add_(torch.randn_like(conv.bias))
    return model.eval()


def _pred(model, x):
    with torch.no_grad():
        return model(torch.from_numpy(x)).numpy()


@pytest.mark.slow
def test_yolo_onnx_round_trip_and_metadata(yolo, shapes, tmp_path):
    result = export(yolo, "onnx", out=tmp_path, imgsz=SIZE, data=shapes, class_names=list(shapes.classes))
    meta = result.metadata
    det = meta["detection"]
    assert det["strides"] == [8, 16, 32] and len(det["anchors"]) == 3 and det["box_format"] == "xyxy"
    assert meta["preprocess"]["resize"] == "letterbox" and meta["preprocess"]["pad_value"] == 114
    assert meta["outputs"][0]["shape"][2] == 4 + 5
    assert any("re-parameterised" in n for n in meta["notes"])  # auxiliary head and RepConv merged
    v = meta["verification"]
    assert v["passed"] and "reference_map50" in v["metrics"] and "'val'" in v["data"]
    x = np.random.default_rng(0).random((1, 3, SIZE, SIZE), dtype=np.float32)
    out = load_exported(result.path)(x)[0]
    np.testing.assert_allclose(out, _pred(yolo, x), atol=1e-3 * np.abs(out).max())


@pytest.mark.slow
def test_nms_in_the_graph_matches_torchvision(spread_yolo, tmp_path):
    yolo = spread_yolo
    result = export(yolo, "onnx", out=tmp_path, imgsz=SIZE, nms=True, conf_threshold=0.005, iou_threshold=0.5)
    assert result.path.name.endswith("_nms.onnx")
    assert result.metadata["outputs"][0]["name"] == "detections"
    assert result.metadata["detection"]["nms_in_graph"] is True
    x = np.random.default_rng(1).random((1, 3, SIZE, SIZE), dtype=np.float32)
    got = split_nms_output(load_exported(result.path)(x)[0], 1)[0]
    want = postprocess(_pred(yolo, x), 0.005, 0.5, 300)[0]
    assert len(want) >= 10 and len(got) == len(want)

    def key(d):  # scores of an untrained head tie to ~1e-6: sort on rounded values
        r = np.round(d, 3)
        return d[np.lexsort((r[:, 1], r[:, 0], np.round(d[:, 4], 4), r[:, 5]))]

    np.testing.assert_allclose(key(got), key(want), atol=1e-3)


@pytest.mark.slow
def test_yolo_int8_keeps_box_decoding_in_float(yolo, shapes, tmp_path):
    import onnx

    result = export(yolo, "onnx", out=tmp_path, imgsz=SIZE, precision="int8", calibration=shapes,
                    calibration_images=8, conf_threshold=LOW_CONF, class_names=list(shapes.classes))
    assert result.metadata["verification"]["passed"]
    graph = onnx.load(str(result.path)).graph
    last_ops = [n.op_type for n in graph.node[-4:]]
    assert "DequantizeLinear" not in last_ops and "QuantizeLinear" not in last_ops
    assert sum(n.op_type == "QuantizeLinear" for n in graph.node) > 20


def test_mean_ap_matches_pycocotools():
    """mAP@0.5 (101-point, COCO's) against pycocotools on random boxes with near-duplicates."""
    pytest.importorskip("pycocotools")
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    rng = np.random.default_rng(0)
    gts, dets, images, annotations, results = [], [], [], [], []
    for img in range(12):
        n = int(rng.integers(1, 6))
        xy = rng.uniform(0, 80, (n, 2))
        wh = rng.uniform(8, 40, (n, 2))
        cls = rng.integers(0, 3, n)
        g = np.concatenate([cls[:, None], xy, xy + wh], 1).astype(np.float32)
        keep = rng.random(n) < 0.8  # some objects missed
        jitter = rng.normal(0, 3, (n, 4))
        d_boxes = g[keep, 1:] + jitter[keep]
        d_cls = np.where(rng.random(keep.sum()) < 0.9, g[keep, 0], (g[keep, 0] + 1) % 3)
        false = rng.uniform(0, 100, (2, 2))
        d_boxes = np.concatenate([d_boxes, np.concatenate([false, false + 15], 1)])
        d_cls = np.concatenate([d_cls, rng.integers(0, 3, 2)])
        scores = rng.uniform(0.05, 1, len(d_boxes))
        d = np.concatenate([d_boxes, scores[:, None], d_cls[:, None]], 1).astype(np.float32)
        gts.append(g)
        dets.append(d)
        images.append({"id": img, "width": 128, "height": 128})
        for row in g:
            annotations.append({"id": len(annotations) + 1, "image_id": img, "category_id": int(row[0]),
                                "bbox": [float(row[1]), float(row[2]), float(row[3] - row[1]), float(row[4] - row[2])],
                                "area": float((row[3] - row[1]) * (row[4] - row[2])), "iscrowd": 0})
        for row in d:
            results.append({"image_id": img, "category_id": int(row[5]), "score": float(row[4]),
                            "bbox": [float(row[0]), float(row[1]), float(row[2] - row[0]), float(row[3] - row[1])]})
    coco = COCO()
    coco.dataset = {"images": images, "annotations": annotations, "categories": [{"id": i} for i in range(3)]}
    coco.createIndex()
    ev = COCOeval(coco, coco.loadRes(results), "bbox")
    ev.params.iouThrs = np.array([0.5])
    ev.params.areaRng, ev.params.areaRngLbl = [[0, 1e10]], ["all"]
    ev.params.maxDets = [100]
    import contextlib
    import io

    with contextlib.redirect_stdout(io.StringIO()):
        ev.evaluate()
        ev.accumulate()
    precision = ev.eval["precision"][0, :, :, 0, 0]  # [recall points, classes]
    expected = float(np.mean([precision[:, c][precision[:, c] > -1].mean() for c in range(3)]))
    assert mean_ap(dets, gts) == pytest.approx(expected, abs=1e-6)
    assert mean_ap([g[:, [1, 2, 3, 4, 0, 0]] * [1, 1, 1, 1, 0, 1] + [0, 0, 0, 0, 1, 0] for g in gts], gts) == 1.0
