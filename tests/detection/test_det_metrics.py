"""COCO-style detection metrics: equal to pycocotools and faster-coco-eval on the same predictions."""

from __future__ import annotations

import contextlib
import io

import numpy as np
import pytest

from tango_core.detection import DetectionEvaluator, fitness
from tango_core.detection._metrics import box_iou, match_greedy

NUM_CLASSES = 4  # class 3 has detections but no ground truth; class 2 has ground truth, few detections


def synthetic(seed: int = 0, images: int = 30):
    """Ground truth and noisy detections: jittered true boxes, wrong classes, duplicates, false
    positives, and one image with more than 100 detections of a class (COCO's per-image cut)."""
    rng = np.random.default_rng(seed)
    gts, dets = [], []
    for i in range(images):
        n = rng.integers(0, 7)
        xy = rng.uniform(0, 200, (n, 2))
        wh = rng.uniform(4, 80, (n, 2))
        cls = rng.choice([0, 1, 2], n, p=[0.5, 0.35, 0.15])
        g = np.column_stack([cls, xy, xy + wh]).round(2)
        d = []
        for row in g:
            if rng.random() < 0.85:
                jitter = rng.normal(0, 0.05, 4) * np.r_[row[3] - row[1], row[4] - row[2], row[3] - row[1], row[4] - row[2]]
                c = row[0] if rng.random() < 0.9 else rng.integers(0, NUM_CLASSES)
                if c == 2 and rng.random() < 0.6:
                    continue
                d.append([*(row[1:5] + jitter), rng.uniform(0.05, 1.0), c])
                if rng.random() < 0.2:  # a duplicate of lower score
                    d.append([*(row[1:5] + jitter * 1.5), rng.uniform(0.01, 0.5), c])
        for _ in range(rng.integers(0, 4)):  # false positives, class 3 included
            xy1 = rng.uniform(0, 200, 2)
            d.append([*xy1, *(xy1 + rng.uniform(4, 60, 2)), rng.uniform(0.01, 0.9), rng.integers(0, NUM_CLASSES)])
        if i == 5:  # 130 detections of class 0 in one image
            for _ in range(130):
                xy1 = rng.uniform(0, 200, 2)
                d.append([*xy1, *(xy1 + rng.uniform(4, 60, 2)), rng.uniform(0.0, 1.0), 0])
        d = np.array(d, dtype=float).reshape(-1, 6)
        d[:, :4] = d[:, :4].round(2)
        d[:, 4] = d[:, 4].round(4)
        gts.append(g)
        dets.append(d)
    return gts, dets


def coco_dicts(gts, dets):
    images = [{"id": i + 1, "width": 300, "height": 300} for i in range(len(gts))]
    cats = [{"id": c + 1, "name": str(c)} for c in range(NUM_CLASSES)]
    anns, results = [], []
    for i, g in enumerate(gts):
        for row in g:
            w, h = row[3] - row[1], row[4] - row[2]
            anns.append({"id": len(anns) + 1, "image_id": i + 1, "category_id": int(row[0]) + 1,
                         "bbox": [row[1], row[2], w, h], "area": w * h, "iscrowd": 0})
    for i, d in enumerate(dets):
        for row in d:
            results.append({"image_id": i + 1, "category_id": int(row[5]) + 1,
                            "bbox": [row[0], row[1], row[2] - row[0], row[3] - row[1]], "score": row[4]})
    return {"images": images, "categories": cats, "annotations": anns}, results


def reference(gts, dets, backend: str):
    gt_dict, results = coco_dicts(gts, dets)
    with contextlib.redirect_stdout(io.StringIO()):
        if backend == "pycocotools":
            from pycocotools.coco import COCO
            from pycocotools.cocoeval import COCOeval

            gt = COCO()
            gt.dataset = gt_dict
            gt.createIndex()
            ev = COCOeval(gt, gt.loadRes(results), "bbox")
        else:
            from faster_coco_eval import COCO, COCOeval_faster

            gt = COCO(gt_dict)
            ev = COCOeval_faster(gt, gt.loadRes(results), "bbox")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    prec = np.asarray(ev.eval["precision"])[:, :, :, 0, -1]  # (T, R, K), area all, maxDets 100
    per_class = np.where((prec > -1).all(1), prec.mean(1), -1).T  # (K, T)
    return ev.stats[0], ev.stats[1], per_class


@pytest.mark.parametrize("backend", ["pycocotools", "faster-coco-eval"])
def test_map_equals_the_coco_reference(backend):
    gts, dets = synthetic()
    ev = DetectionEvaluator(NUM_CLASSES)
    ev.update(dets, [g for g in gts])
    out = ev.compute()
    ap_all, ap50, per_class = reference(gts, dets, backend)
    assert 0.1 < ap_all < 0.9  # a meaningful case: neither trivial nor empty
    assert out["metrics"]["mAP50-95"] == pytest.approx(ap_all, abs=1e-9)
    assert out["metrics"]["mAP50"] == pytest.approx(ap50, abs=1e-9)
    np.testing.assert_allclose(np.array(out["ap"]), per_class, atol=1e-9)
    assert out["ap"][3] == [-1] * 10  # no ground truth: left out, as COCO does
    assert out["per_class"][3]["ap50"] is None and out["per_class"][3]["predictions"] > 0


def test_map_equals_the_reference_on_other_draws():
    for seed in (1, 2):
        gts, dets = synthetic(seed, images=12)
        ev = DetectionEvaluator(NUM_CLASSES)
        for g, d in zip(gts, dets, strict=True):  # one image per update works the same
            ev.update([d], [g])
        ap_all, ap50, _ = reference(gts, dets, "pycocotools")
        m = ev.compute()["metrics"]
        assert m["mAP50-95"] == pytest.approx(ap_all, abs=1e-9) and m["mAP50"] == pytest.approx(ap50, abs=1e-9)


def test_perfect_and_empty_predictions():
    gts, _ = synthetic(3, images=8)
    perfect = [np.column_stack([g[:, 1:5], np.ones(len(g)), g[:, 0]]) for g in gts]
    ev = DetectionEvaluator(NUM_CLASSES)
    ev.update(perfect, gts)
    out = ev.compute()
    assert out["metrics"]["mAP50-95"] == pytest.approx(1.0) and out["metrics"]["precision"] == pytest.approx(1.0)
    assert out["metrics"]["recall"] == pytest.approx(1.0) and out["metrics"]["fitness"] == pytest.approx(1.0)
    cm = np.array(out["confusion_matrix"])
    assert cm[:NUM_CLASSES, :NUM_CLASSES].trace() == sum(len(g) for g in gts) and cm[:, -1].sum() == 0
    ev = DetectionEvaluator(NUM_CLASSES)
    ev.update([np.zeros((0, 6)) for _ in gts], gts)
    out = ev.compute()
    assert out["metrics"]["mAP50"] == 0.0 and out["metrics"]["recall"] == 0.0
    assert np.array(out["confusion_matrix"])[:, -1].sum() == sum(len(g) for g in gts)  # all missed


def test_confusion_matrix_counts_confusions_misses_and_false_alarms():
    ev = DetectionEvaluator(3)
    target = np.array([[0, 0, 0, 10, 10], [1, 20, 20, 30, 30], [2, 40, 40, 50, 50]], dtype=float)
    det = np.array([[0, 0, 10, 10, 0.9, 0],        # right
                    [20, 20, 30, 30, 0.8, 2],      # class 1 taken for class 2
                    [60, 60, 70, 70, 0.7, 1],      # a false alarm
                    [40, 40, 50, 50, 0.1, 2]],     # below the confusion threshold: class 2 missed
                   dtype=float)
    ev.update([det], [target])
    cm = np.array(ev.compute()["confusion_matrix"])  # [true, predicted]
    assert cm[0, 0] == 1 and cm[1, 2] == 1 and cm[3, 1] == 1 and cm[2, 3] == 1
    assert cm.sum() == 4


def test_curves_and_fitness_for_a_dashboard():
    gts, dets = synthetic(4, images=10)
    ev = DetectionEvaluator(NUM_CLASSES, names=["a", "b", "c", "d"])
    ev.update(dets, gts)
    out = ev.compute()
    pr = np.array(out["pr_curve"]["precision"])
    assert pr.shape == (NUM_CLASSES, 101) and np.all(np.diff(pr, axis=1) <= 1e-12)  # an envelope
    f1 = np.array(out["conf_curves"]["f1"])
    assert f1.shape == (NUM_CLASSES, 201) and out["confusion_labels"][-1] == "background"
    m = out["metrics"]
    assert m["fitness"] == pytest.approx(0.1 * m["mAP50"] + 0.9 * m["mAP50-95"]) == fitness(m)
    assert out["per_class"][0]["name"] == "a" and out["per_class"][0]["images"] > 0


def test_greedy_matching_prefers_the_best_free_box():
    ious = np.array([[0.9, 0.6], [0.8, 0.55]])
    tp = match_greedy(ious, np.array([0.5, 0.7]))
    assert tp.tolist() == [[True, True], [True, False]]  # second detection takes the other box at 0.5 only
    assert box_iou(np.array([[0, 0, 2, 2.0]]), np.array([[1, 1, 3, 3.0]]))[0, 0] == pytest.approx(1 / 7)


def test_bad_input_is_reported():
    ev = DetectionEvaluator(2)
    with pytest.raises(ValueError, match="class 5 outside 0..1"):
        ev.update([np.array([[0, 0, 1, 1, 0.5, 5]])], [np.zeros((0, 5))])
    with pytest.raises(ValueError, match="2 detection sets for 1"):
        ev.update([np.zeros((0, 6))] * 2, [np.zeros((0, 5))])


def _disc(h: int, w: int, cx: float, cy: float, r: float) -> np.ndarray:
    ys, xs = np.mgrid[0:h, 0:w] + 0.5
    return (xs - cx) ** 2 + (ys - cy) ** 2 <= r * r


def test_mask_ap_equals_pycocotools_segm():
    from pycocotools import mask as mask_utils
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    rng = np.random.default_rng(11)
    h = w = 48
    gts, dets, gt_masks, det_masks = [], [], [], []
    for _ in range(12):
        g_rows, d_rows, gm, dm = [], [], [], []
        for _ in range(int(rng.integers(1, 4))):
            c, cx, cy, r = int(rng.integers(0, 2)), *rng.uniform(10, 38, 2), rng.uniform(4, 10)
            m = _disc(h, w, cx, cy, r)
            g_rows.append([c, cx - r, cy - r, cx + r, cy + r])
            gm.append(m)
            for _ in range(int(rng.integers(0, 3))):  # predictions: shifted, resized discs
                (dx, dy), dr = rng.normal(0, 2, 2), rng.normal(0, 1.5)
                pm = _disc(h, w, cx + dx, cy + dy, max(r + dr, 2))
                d_rows.append([cx - r, cy - r, cx + r, cy + r, round(float(rng.uniform(0.05, 1)), 4),
                               c if rng.random() < 0.9 else 1 - c])
                dm.append(pm)
        gts.append(np.array(g_rows, dtype=float))
        dets.append(np.array(d_rows, dtype=float).reshape(-1, 6))
        gt_masks.append(np.array(gm).reshape(-1, h, w))
        det_masks.append(np.array(dm).reshape(-1, h, w))
    ev = DetectionEvaluator(2)
    ev.update(dets, gts, det_masks, gt_masks)
    ours = ev.compute()["metrics"]

    def rle(m):
        out = mask_utils.encode(np.asfortranarray(m.astype(np.uint8)))
        out["counts"] = out["counts"].decode()
        return out

    anns, results = [], []
    for i in range(len(gts)):
        for row, m in zip(gts[i], gt_masks[i], strict=True):
            anns.append({"id": len(anns) + 1, "image_id": i + 1, "category_id": int(row[0]) + 1, "iscrowd": 0,
                         "segmentation": rle(m), "area": float(m.sum()), "bbox": list(mask_utils.toBbox(rle(m)))})
        for row, m in zip(dets[i], det_masks[i], strict=True):
            results.append({"image_id": i + 1, "category_id": int(row[5]) + 1, "segmentation": rle(m),
                            "score": row[4]})
    gt = COCO()
    gt.dataset = {"images": [{"id": i + 1, "height": h, "width": w} for i in range(len(gts))],
                  "annotations": anns, "categories": [{"id": 1}, {"id": 2}]}
    with contextlib.redirect_stdout(io.StringIO()):
        gt.createIndex()
        ref = COCOeval(gt, gt.loadRes(results), "segm")
        ref.evaluate()
        ref.accumulate()
        ref.summarize()
    assert 0.1 < ref.stats[0] < 0.95
    assert ours["mAP50-95"] == pytest.approx(ref.stats[0], abs=1e-9)
    assert ours["mAP50"] == pytest.approx(ref.stats[1], abs=1e-9)
    with pytest.raises(ValueError, match="both det_masks and gt_masks"):
        ev.update(dets, gts, det_masks=det_masks)
