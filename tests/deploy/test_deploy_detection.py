"""Detection and segmentation packages: letterbox, score threshold, NMS in numpy and masks give
what the PyTorch model plus torchvision's NMS give, in image pixels."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torchvision
from deploy_helpers import TinyDetector, run_runner
from PIL import Image

from tango_core.deploy import deploy
from tango_core.deploy._audit import run_smoke_test
from tango_core.export._preprocess import to_input


def _reference_detections(model, image, meta, conf, iou, max_det):
    """The engine's answer: its pre-processing, the model, torchvision's batched NMS, boxes mapped
    back through the letterbox and clipped to the picture."""
    with Image.open(image) as img:
        x, geo = to_input(img, meta["options"]["imgsz"], meta["preprocess"], 3)
        w, h = img.size
    with torch.inference_mode():
        out = model(torch.from_numpy(x)[None])
    pred = (out[0] if isinstance(out, tuple) else out)[0]
    nc = len(meta["class_names"])
    scores, classes = pred[:, 4:4 + nc].max(1)
    keep = scores >= conf
    boxes, scores, classes = pred[keep, :4], scores[keep], classes[keep]
    kept = torchvision.ops.batched_nms(boxes.double(), scores.double(), classes, iou)[:max_det]
    boxes, scores, classes = boxes[kept].double(), scores[kept], classes[kept]
    (rx, ry), (top, left) = geo["ratio"], geo["pad"]
    boxes[:, [0, 2]] = ((boxes[:, [0, 2]] - left) / rx).clamp(0, w)
    boxes[:, [1, 3]] = ((boxes[:, [1, 3]] - top) / ry).clamp(0, h)
    return boxes.numpy(), scores.numpy(), classes.numpy(), (out[1] if isinstance(out, tuple) else None), x, geo


def test_detection_package_matches_the_engine(detector_export, sample_images, workdir):
    model, export = detector_export
    meta = export.metadata
    assert meta["preprocess"]["resize"] == "letterbox"
    result = deploy(export, target="x86-cpu", out=workdir / "det-pkg", measure=False)
    data = run_runner(result.path, sample_images, out=workdir / "det-out")
    det = meta["detection"]
    total = 0
    for record, image in zip(data["predictions"], sorted(sample_images.iterdir()), strict=True):
        boxes, scores, classes, _, _, _ = _reference_detections(model, image, meta, det["conf_threshold"],
                                                                det["iou_threshold"], det["max_det"])
        got = record["detections"]
        assert len(got) == len(boxes), image.name
        np.testing.assert_allclose([d["box"] for d in got], boxes.reshape(-1, 4), atol=2e-3)
        np.testing.assert_allclose([d["score"] for d in got], scores, atol=1e-5)
        assert [d["class_id"] for d in got] == classes.tolist()
        assert record["image_size"] == list(Image.open(image).size)
        total += len(got)
    assert total > 4  # the comparison is about real boxes
    # the runner's thresholds come from the command line when given
    strict = run_runner(result.path, sample_images, out=workdir / "det-out-strict", extra=("--conf", "0.6"))
    assert sum(len(r["detections"]) for r in strict["predictions"]) < total
    smoke = run_smoke_test(result.path)
    assert smoke.ok, smoke.detail


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # pycocotools and numpy 2
def test_segmentation_package_gives_masks(sample_images, workdir):
    from pycocotools import mask as mask_util

    from tango_core.export import export

    torch.manual_seed(5)
    model = TinyDetector(nc=2, nm=4).eval()
    exp = export(model, "onnx", out=workdir / "exports", name="seg", imgsz=64, task="segmentation",
                 class_names=["cat", "dog"], data=sample_images)
    meta = exp.metadata
    result = deploy(exp, target="x86-cpu", out=workdir / "seg-pkg", measure=False)
    data = run_runner(result.path, sample_images, out=workdir / "seg-out")
    checked = 0
    for record, image in zip(data["predictions"], sorted(sample_images.iterdir()), strict=True):
        boxes, _, _, protos, x, geo = _reference_detections(model, image, meta, 0.25, 0.45, 300)
        got = record["detections"]
        assert len(got) == len(boxes)
        # reference masks in torch: coefficients . prototypes, up-sampled to the input, cropped to the
        # box, the letterbox padding removed, scaled to the picture
        with torch.inference_mode():
            pred = model(torch.from_numpy(x)[None])[0][0]
        for d in got:
            rle = d["mask"]
            ours = mask_util.decode(mask_util.frPyObjects(rle, *rle["size"])).astype(bool)
            assert list(ours.shape) == [record["image_size"][1], record["image_size"][0]]
            checked += 1
        if got:
            top = got[0]
            # the first kept box: find its row in the raw predictions by its score
            scores = pred[:, 4:6].max(1).values.numpy()
            row = int(np.argmin(np.abs(scores - top["score"])))
            coef = pred[row, 6:]
            m = torch.sigmoid(coef @ protos[0].reshape(4, -1)).reshape(1, 1, *protos.shape[2:])
            m = torch.nn.functional.interpolate(m, size=(64, 64), mode="bilinear", align_corners=False)[0, 0]
            b = pred[row, :4].numpy()
            ys, xs = np.mgrid[0:64, 0:64] + 0.5
            inside = (xs >= b[0]) & (xs < b[2]) & (ys >= b[1]) & (ys < b[3])
            m = np.where(inside, m.numpy(), 0.0)
            (top_pad, left_pad), (sh, sw) = geo["pad"], (round(geo["ratio"][1] * geo["size"][0]),
                                                         round(geo["ratio"][0] * geo["size"][1]))
            m = m[top_pad:top_pad + sh, left_pad:left_pad + sw]
            ref = torch.nn.functional.interpolate(torch.from_numpy(m)[None, None].float(),
                                                  size=tuple(geo["size"]), mode="bilinear",
                                                  antialias=True)[0, 0].numpy() > 0.5
            ours = mask_util.decode(mask_util.frPyObjects(top["mask"], *top["mask"]["size"])).astype(bool)
            union = (ref | ours).sum()
            if union:
                assert (ref & ours).sum() / union > 0.9
    assert checked > 0
    assert "instance masks" in (result.path / "README.md").read_text()
    assert json.loads((workdir / "seg-out" / "predictions.json").read_text())["summary"]["task"] == "segmentation"
