"""YOLOv7's anchor check: anchors re-fitted to the training boxes when they cannot recall them."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tango_core import events as ev
from tango_core.detection._autoanchor import anchor_stats, check_anchors, fit_anchors
from tango_core.detection._hyp import default_hyp
from tango_core.detection._loss import build_loss
from tango_core.engine.trainer import Trainer
from tango_core.models import create_model
from tango_core.models.weights import load_weights, read_weights

DEFAULT = np.array([[10, 13], [16, 30], [33, 23], [30, 61], [62, 45], [59, 119], [116, 90], [156, 198], [373, 326]],
                   dtype=float)


def line_labels(n_images: int = 20, seed: int = 0) -> list[np.ndarray]:
    """Thin horizontal bars, 50-62 px by 3 px: more than 4x off every default anchor."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n_images):
        x1, y1, w = rng.uniform(0, 2), rng.uniform(5, 55), rng.uniform(50, 62)
        out.append(np.array([[0, x1, y1, x1 + w, y1 + 3.0]]))
    return out


def test_bpr_of_the_default_anchors():
    lines = np.array([[56.0, 3.0]] * 5)
    squares = np.array([[40.0, 40.0], [100.0, 90.0], [200.0, 210.0]])
    assert anchor_stats(DEFAULT, lines)["bpr"] == 0.0
    stats = anchor_stats(DEFAULT, squares)
    assert stats["bpr"] == 1.0 and stats["anchors_per_box"] >= 3


def test_fitted_anchors_recall_every_box_sorted_by_area_and_seeded():
    wh = np.concatenate([np.random.default_rng(0).uniform([40, 2.5], [70, 4.0], (60, 2)),
                         np.random.default_rng(1).uniform([8, 8], [12, 12], (60, 2))])
    k = fit_anchors(wh, 9, seed=3)
    assert k.shape == (9, 2) and (np.diff(k.prod(1)) >= 0).all()
    assert anchor_stats(k, wh)["bpr"] == 1.0
    np.testing.assert_array_equal(k, fit_anchors(wh, 9, seed=3))


def test_check_anchors_refits_only_when_recall_is_low():
    model = create_model("yolov7-tiny", num_classes=1)
    head = model.head
    before = head.anchors.clone()
    report = check_anchors(head, line_labels())
    assert report["refitted"] and report["bpr_before"] == 0.0 and report["bpr"] >= 0.98
    assert not torch.equal(head.anchors, before)
    torch.testing.assert_close(head.anchors, torch.tensor(report["anchors"]), atol=0.01, rtol=0)  # reported to 2 decimals
    # the loss uses the head's anchors as they are now
    loss = build_loss(model, default_hyp("yolov7-tiny"), imgsz=64)
    assert torch.equal(loss.anchors, head.anchors)

    fresh = create_model("yolov7-tiny", num_classes=1)
    squares = [np.array([[0, 10, 10, 50, 45]]), np.array([[0, 0, 0, 120, 100]])]
    report = check_anchors(fresh.head, squares)
    assert not report["refitted"] and report["bpr"] == 1.0
    assert torch.equal(fresh.head.anchors, before)


def memory_lines(n: int) -> dict:
    rng = np.random.default_rng(0)
    items = []
    for labels in line_labels(n):
        img = rng.integers(0, 60, (64, 64, 3), dtype=np.uint8)
        x1, y1, x2, y2 = labels[0, 1:].astype(int)
        img[y1:y2 + 1, x1:x2 + 1] = 255
        items.append((img, labels))
    return {"train": items[: n - 4], "val": items[n - 4:], "classes": ["bar"]}


@pytest.mark.slow
def test_training_from_scratch_fits_the_anchors_and_keeps_them(tmp_path):
    data = memory_lines(24)
    summaries = []
    bus = ev.EventBus()
    bus.subscribe(ev.MODEL_SUMMARY, lambda e: summaries.append(e.payload))
    hyp = {"optimizer": "AdamW", "lr0": 0.002, "warmup_epochs": 0}
    result = Trainer(data, "yolov7-tiny", epochs=1, imgsz=64, batch_size=4, hyp=hyp, run_dir=tmp_path / "a",
                     loggers=(), events=bus).fit()
    report = summaries[0]["anchors"]
    assert report["refitted"] and report["bpr_before"] < 0.5 and report["bpr"] >= 0.98
    saved = read_weights(result.best)
    fitted = torch.tensor(report["anchors"])
    anchors = next(v for k, v in saved["state_dict"].items() if k.endswith("anchors"))
    torch.testing.assert_close(anchors, fitted, atol=0.01, rtol=0)
    # in the metadata too, for exports, written as a config writes them (per level: w, h, w, h...)
    assert saved["anchors"] == [[v for wh in level for v in wh] for level in report["anchors"]]
    assert len(saved["anchors"]) == 3 and len(saved["anchors"][0]) == 6

    # an export decodes with the fitted anchors: the ONNX model gives the trained model's boxes
    from tango_core.export import export, load_exported

    exported = export(result.best, "onnx", out=tmp_path / "onnx", imgsz=64)
    assert exported.metadata["detection"]["anchors"] == saved["anchors"]
    model = create_model("yolov7-tiny", num_classes=1)
    load_weights(model, result.best)
    torch.testing.assert_close(model.head.anchors, fitted, atol=0.01, rtol=0)  # the file's, not the config's
    x = np.random.default_rng(0).random((1, 3, 64, 64), dtype=np.float32)
    with torch.no_grad():
        want = model.eval()(torch.from_numpy(x)).numpy()
    got = load_exported(exported.path)(x)[0]
    np.testing.assert_allclose(got[..., :4], want[..., :4], atol=1e-3 * np.abs(want[..., :4]).max())

    # autoanchor 0 keeps the published anchors
    summaries.clear()
    plain = Trainer(data, "yolov7-tiny", epochs=1, imgsz=64, batch_size=4, hyp=dict(hyp, autoanchor=0),
                    run_dir=tmp_path / "b", loggers=(), events=bus).fit()
    assert "anchors" not in summaries[-1]
    published = next(v for k, v in read_weights(plain.best)["state_dict"].items() if k.endswith("anchors"))
    torch.testing.assert_close(published, torch.tensor(DEFAULT, dtype=torch.float32).view(3, 3, 2))
    # a run that starts from weights keeps the file's (here the fitted ones), not the data's
    again = Trainer(data, "yolov7-tiny", epochs=1, imgsz=64, batch_size=4, hyp=hyp, weights=str(plain.best),
                    run_dir=tmp_path / "c", loggers=(), events=bus).fit()
    assert "anchors" not in summaries[-1]
    kept = next(v for k, v in read_weights(again.best)["state_dict"].items() if k.endswith("anchors"))
    torch.testing.assert_close(kept, published)
    again = Trainer(data, "yolov7-tiny", epochs=1, imgsz=64, batch_size=4, hyp=hyp, weights=str(result.best),
                    run_dir=tmp_path / "d", loggers=(), events=bus).fit()
    kept = next(v for k, v in read_weights(again.best)["state_dict"].items() if k.endswith("anchors"))
    torch.testing.assert_close(kept, fitted, atol=0.01, rtol=0)
