"""Detection benchmarks, each against a baseline measured in the same run (ratios in docs/benchmarks.md).

    OMP_NUM_THREADS=1 .venv/bin/python bench/bench_detection.py [--images 200] [--size 320]

1. mAP evaluation: tango's DetectionEvaluator vs pycocotools' COCOeval on the same predictions.
2. NMS: tango's postprocess (thresholds, top-k, per-class batched NMS) vs one torchvision batched_nms call.
3. Augmentation: a training sample (mosaic + affine + HSV + flip) vs letterboxing one image.
4. Inference: the deploy graph (aux removed, fused) vs the training graph in eval mode.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torchvision

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tango_core.detection import DetectionEvaluator, postprocess  # noqa: E402
from tango_core.detection._augment import DetectionAugment, Sample, letterbox  # noqa: E402
from tango_core.detection._hyp import default_hyp  # noqa: E402
from tango_core.models import create_model  # noqa: E402


def best_of(fn, repeat: int = 3) -> float:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def synthetic(images: int, classes: int = 10, seed: int = 0):
    rng = np.random.default_rng(seed)
    gts, dets = [], []
    for _ in range(images):
        n = rng.integers(1, 12)
        xy = rng.uniform(0, 500, (n, 2))
        g = np.column_stack([rng.integers(0, classes, n), xy, xy + rng.uniform(10, 120, (n, 2))])
        d = [[*(row[1:5] + rng.normal(0, 4, 4)), rng.uniform(0, 1), row[0]] for row in g for _ in range(3)]
        for _ in range(60):  # low-score clutter, as a detector at conf 0.001 produces
            p = rng.uniform(0, 500, 2)
            d.append([*p, *(p + rng.uniform(10, 120, 2)), rng.uniform(0, 0.2), rng.integers(0, classes)])
        gts.append(g)
        dets.append(np.array(d))
    return gts, dets


def bench_map(images: int) -> tuple[float, float]:
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    gts, dets = synthetic(images)

    def ours():
        ev = DetectionEvaluator(10)
        ev.update(dets, gts)
        ev.compute()

    anns, results = [], []
    for i, (g, d) in enumerate(zip(gts, dets, strict=True)):
        for r in g:
            anns.append({"id": len(anns) + 1, "image_id": i + 1, "category_id": int(r[0]) + 1, "iscrowd": 0,
                         "bbox": [r[1], r[2], r[3] - r[1], r[4] - r[2]], "area": (r[3] - r[1]) * (r[4] - r[2])})
        for r in d:
            results.append({"image_id": i + 1, "category_id": int(r[5]) + 1, "score": r[4],
                            "bbox": [r[0], r[1], r[2] - r[0], r[3] - r[1]]})
    gt = COCO()
    gt.dataset = {"images": [{"id": i + 1} for i in range(images)], "annotations": anns,
                  "categories": [{"id": c + 1} for c in range(10)]}
    with contextlib.redirect_stdout(io.StringIO()):
        gt.createIndex()

    def reference():
        with contextlib.redirect_stdout(io.StringIO()):
            ev = COCOeval(gt, gt.loadRes(results), "bbox")
            ev.evaluate()
            ev.accumulate()

    return best_of(ours), best_of(reference)


def bench_nms(batch: int = 8, n: int = 8400, nc: int = 80) -> tuple[float, float]:
    g = torch.Generator().manual_seed(0)
    xy = torch.rand(batch, n, 2, generator=g) * 600
    pred = torch.cat([xy, xy + torch.rand(batch, n, 2, generator=g) * 80 + 4,
                      torch.rand(batch, n, nc, generator=g) ** 6], -1)

    def ours():
        postprocess(pred, conf_thres=0.25, iou_thres=0.45)

    def baseline():  # one call per image on the pre-filtered boxes, no bookkeeping
        for p in pred:
            conf, cls = p[:, 4:].max(1)
            keep = conf > 0.25
            torchvision.ops.batched_nms(p[keep, :4], conf[keep], cls[keep], 0.45)

    return best_of(ours, 5), best_of(baseline, 5)


def bench_augment(size: int, samples: int = 32) -> tuple[float, float]:
    rng = np.random.default_rng(0)
    data = []
    for _ in range(16):
        img = rng.integers(0, 255, (int(size * 1.5), size * 2, 3), dtype=np.uint8)  # stored larger than trained
        xy = rng.uniform(0, size * 1.2, (5, 2))
        data.append(Sample(img, np.column_stack([np.zeros(5), xy, xy + 30])))
    aug = DetectionAugment(lambda i: data[i], len(data), size, default_hyp("yolov7"))

    def ours():
        r = np.random.default_rng(1)
        for i in range(samples):
            aug(i % len(data), r)

    def baseline():
        for i in range(samples):
            letterbox(data[i % len(data)], size)

    ours()  # warm-up (OpenCV initialises on first use)

    return best_of(ours) / samples, best_of(baseline) / samples


@torch.inference_mode()
def bench_deploy(name: str, size: int) -> tuple[float, float]:
    torch.manual_seed(0)
    model = create_model(name, num_classes=80).eval()
    fast = model.deploy()
    x = torch.rand(1, 3, size, size)
    model(x), fast(x)  # warm-up
    return best_of(lambda: fast(x), 3), best_of(lambda: model(x), 3)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--images", type=int, default=200)
    ap.add_argument("--size", type=int, default=320)
    ap.add_argument("--models", nargs="+", default=["yolov7", "yolov9-c", "yolov7-tiny", "yolov9-t"],
                    help="models whose forward pass is timed (torch eager, batch 1)")
    ap.add_argument("--only-forward", action="store_true", help="skip the mAP, NMS and augmentation rows")
    args = ap.parse_args()
    rows = []
    for name in args.models:
        ours, ref = bench_deploy(name, args.size)
        rows.append((f"{name} forward {args.size}px, deploy graph", ours, "training graph, eval mode", ref))
    if args.only_forward:
        return _print(rows)
    ours, ref = bench_map(args.images)
    rows.append((f"mAP of {args.images} images x ~80 detections (DetectionEvaluator)", ours,
                 "pycocotools COCOeval evaluate + accumulate", ref))
    ours, ref = bench_nms()
    rows.append(("postprocess: 8 x 8400 predictions, 80 classes", ours, "bare torchvision batched_nms per image", ref))
    ours, ref = bench_augment(args.size)
    rows.append((f"training sample at {args.size}px (mosaic 4/9 + affine + HSV + flip)", ours,
                 "letterbox one image (resize + pad)", ref))
    _print(rows)


def _print(rows) -> None:
    print("| operation | time | baseline | baseline time | ratio |\n|---|---|---|---|---|")
    for op, t, base, tb in rows:
        print(f"| {op} | {t * 1e3:.1f} ms | {base} | {tb * 1e3:.1f} ms | {t / tb:.2f}x |")


if __name__ == "__main__":
    main()
