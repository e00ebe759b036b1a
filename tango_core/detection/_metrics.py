"""Detection metrics computed the COCO way, plus the curves and matrix a dashboard draws.

mAP follows ``pycocotools.cocoeval.COCOeval`` for bounding boxes, area range "all", without
crowd annotations: per image and class the detections are sorted by score (stable) and cut to
``max_det`` (100); at each IoU threshold 0.50:0.05:0.95 each detection takes the unmatched
ground-truth box of highest IoU at or above the threshold; per class, all images' detections are
ranked by score, the precision envelope is sampled at 101 recall points and averaged.  Classes
without ground truth are left out of the means.  A test checks the numbers against pycocotools
and faster-coco-eval.

Precision and recall are reported the way the YOLO repositories report them: at IoU 0.5 and at
the confidence that maximises the mean F1 over classes.  Fitness is ``0.1 mAP@0.5 + 0.9
mAP@0.5:0.95`` as in YOLOv7 / YOLOv9.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

IOU_THRESHOLDS = np.linspace(0.5, 0.95, 10)
RECALL_POINTS = np.linspace(0.0, 1.0, 101)
CONF_POINTS = np.linspace(0.0, 1.0, 201)


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of every box in ``a`` (n, 4) with every box in ``b`` (m, 4), boxes as x1, y1, x2, y2."""
    if len(a) == 0 or len(b) == 0:
        return np.zeros((len(a), len(b)))
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.clip(rb - lt, 0, None).prod(2)
    area_a = (a[:, 2:] - a[:, :2]).clip(0).prod(1)
    area_b = (b[:, 2:] - b[:, :2]).clip(0).prod(1)
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)


def mask_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of every mask in ``a`` (n, H, W) with every mask in ``b`` (m, H, W), boolean."""
    if len(a) == 0 or len(b) == 0:
        return np.zeros((len(a), len(b)))
    fa = a.reshape(len(a), -1).astype(np.float32)
    fb = b.reshape(len(b), -1).astype(np.float32)
    inter = fa @ fb.T
    union = fa.sum(1)[:, None] + fb.sum(1)[None, :] - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)


def match_greedy(ious: np.ndarray, thresholds: np.ndarray = IOU_THRESHOLDS) -> np.ndarray:
    """COCO matching of score-sorted detections to ground truth: ``(D, T)`` true-positive flags.

    Each detection, best first, takes the still unmatched ground-truth box of highest IoU that is at
    least the threshold (on ties the later box, as COCOeval's loop does)."""
    d, g = ious.shape
    tp = np.zeros((d, len(thresholds)), dtype=bool)
    if d == 0 or g == 0:
        return tp
    taken = np.zeros((len(thresholds), g), dtype=bool)
    limit = np.minimum(thresholds, 1 - 1e-10)[:, None]
    for i in range(d):
        cand = np.where((ious[i][None, :] >= limit) & ~taken, ious[i][None, :], -1.0)  # (T, G)
        best = g - 1 - cand[:, ::-1].argmax(1)  # last index of the maximum
        hit = cand[np.arange(len(thresholds)), best] >= 0
        tp[i] = hit
        taken[np.nonzero(hit)[0], best[hit]] = True
    return tp


@dataclass
class _ClassRecords:
    scores: list[np.ndarray] = field(default_factory=list)
    tp: list[np.ndarray] = field(default_factory=list)
    n_gt: int = 0
    images: int = 0  # images with ground truth of the class


class DetectionEvaluator:
    """Accumulates detections and ground truth image by image; :meth:`compute` gives the metrics.

    ``update(detections, targets)``: per image, detections ``(n, 6)`` (x1, y1, x2, y2, score,
    class; extra columns are ignored) and targets ``(m, 5)`` (class, x1, y1, x2, y2), in the
    same pixel coordinates.  Tensors or arrays.

    Mask AP (COCO "segm"): pass ``det_masks`` and ``gt_masks`` too, per image ``(n, H, W)`` boolean
    masks in the order of the rows; matching then uses mask IoU (the confusion matrix stays on boxes).
    """

    def __init__(self, num_classes: int, names: list[str] | None = None, max_det: int = 100,
                 confusion_conf: float = 0.25, confusion_iou: float = 0.45) -> None:
        if num_classes < 1:
            raise ValueError(f"num_classes must be at least 1, got {num_classes}")
        self.nc = num_classes
        self.names = list(names) if names is not None else [str(i) for i in range(num_classes)]
        self.max_det = max_det
        self.confusion_conf, self.confusion_iou = confusion_conf, confusion_iou
        self._classes = [_ClassRecords() for _ in range(num_classes)]
        # rows: true class, columns: predicted class (the project's convention); index nc: background
        self.confusion = np.zeros((num_classes + 1, num_classes + 1), dtype=np.int64)
        self.images = 0

    def update(self, detections: list[Any], targets: list[Any], det_masks: list[Any] | None = None,
               gt_masks: list[Any] | None = None) -> None:
        if len(detections) != len(targets):
            raise ValueError(f"{len(detections)} detection sets for {len(targets)} target sets")
        if (det_masks is None) != (gt_masks is None):
            raise ValueError("mask AP needs both det_masks and gt_masks")
        for i, (det, tgt) in enumerate(zip(detections, targets, strict=True)):
            masks = None if det_masks is None else (_masks(det_masks[i]), _masks(gt_masks[i]))
            self._add_image(_array(det, 6), _array(tgt, 5), masks)

    def _add_image(self, det: np.ndarray, tgt: np.ndarray, masks: tuple[np.ndarray, np.ndarray] | None = None
                   ) -> None:
        self.images += 1
        det_cls = det[:, 5].astype(int)
        tgt_cls = tgt[:, 0].astype(int)
        for arr, what in ((det_cls, "detection"), (tgt_cls, "target")):
            if len(arr) and (arr.min() < 0 or arr.max() >= self.nc):
                raise ValueError(f"{what} class {int(arr.max())} outside 0..{self.nc - 1}")
        if masks is not None and (len(masks[0]) != len(det) or len(masks[1]) != len(tgt)):
            raise ValueError(f"{len(masks[0])} / {len(masks[1])} masks for {len(det)} detections / {len(tgt)} targets")
        for c in np.union1d(det_cls, tgt_cls):
            d_sel, g_sel = det_cls == c, tgt_cls == c
            d = det[d_sel]
            g = tgt[g_sel, 1:5]
            order = np.argsort(-d[:, 4], kind="mergesort")[: self.max_det]
            d = d[order]
            rec = self._classes[c]
            rec.n_gt += len(g)
            rec.images += len(g) > 0
            rec.scores.append(d[:, 4])
            ious = box_iou(d[:, :4], g) if masks is None else mask_iou(masks[0][d_sel][order], masks[1][g_sel])
            rec.tp.append(match_greedy(ious))
        self._update_confusion(det, tgt)

    def _update_confusion(self, det: np.ndarray, tgt: np.ndarray) -> None:
        det = det[det[:, 4] > self.confusion_conf]
        bg = self.nc
        ious = box_iou(tgt[:, 1:5], det[:, :4])  # (G, D)
        gi, di = np.nonzero(ious > self.confusion_iou)
        if len(gi):
            order = np.argsort(-ious[gi, di], kind="mergesort")
            gi, di = gi[order], di[order]
            _, first = np.unique(di, return_index=True)  # each detection once, its best ground truth
            gi, di = gi[np.sort(first)], di[np.sort(first)]
            _, first = np.unique(gi, return_index=True)  # each ground truth once
            gi, di = gi[np.sort(first)], di[np.sort(first)]
        matched_g, matched_d = set(gi.tolist()), set(di.tolist())
        for g, d in zip(gi, di, strict=True):
            self.confusion[int(tgt[g, 0]), int(det[d, 5])] += 1
        for g in range(len(tgt)):
            if g not in matched_g:  # missed: predicted background
                self.confusion[int(tgt[g, 0]), bg] += 1
        for d in range(len(det)):
            if d not in matched_d:  # false alarm: true background
                self.confusion[bg, int(det[d, 5])] += 1

    def compute(self) -> dict[str, Any]:
        """Overall and per-class metrics, curves and the confusion matrix (plain Python data)."""
        k, t = self.nc, len(IOU_THRESHOLDS)
        ap = np.full((k, t), np.nan)
        prec_curve = np.zeros((k, len(RECALL_POINTS)))  # interpolated precision at IoU 0.5
        p_conf = np.zeros((k, len(CONF_POINTS)))
        r_conf = np.zeros((k, len(CONF_POINTS)))
        n_gt = np.array([c.n_gt for c in self._classes])
        n_pred = np.zeros(k, dtype=int)
        for c, rec in enumerate(self._classes):
            scores = np.concatenate(rec.scores) if rec.scores else np.zeros(0)
            tp = np.concatenate(rec.tp) if rec.tp else np.zeros((0, t), dtype=bool)
            n_pred[c] = len(scores)
            if rec.n_gt == 0:
                continue
            order = np.argsort(-scores, kind="mergesort")
            scores, tp = scores[order], tp[order]
            tpc = np.cumsum(tp, 0).astype(float)
            fpc = np.cumsum(~tp, 0).astype(float)
            recall = tpc / rec.n_gt
            precision = tpc / (tpc + fpc + np.spacing(1))
            for j in range(t):
                q = _interpolated_precision(recall[:, j], precision[:, j])
                ap[c, j] = q.mean()
                if j == 0:
                    prec_curve[c] = q
            if len(scores):  # precision / recall as functions of the confidence threshold, IoU 0.5
                r_conf[c] = np.interp(-CONF_POINTS, -scores, recall[:, 0], left=0)
                p_conf[c] = np.interp(-CONF_POINTS, -scores, precision[:, 0], left=1)
        present = n_gt > 0
        f1 = 2 * p_conf * r_conf / (p_conf + r_conf + 1e-16)
        best = int(f1[present].mean(0).argmax()) if present.any() else 0
        p, r = p_conf[:, best], r_conf[:, best]
        ap50, ap5095 = ap[:, 0], ap.mean(1)

        def mean(x: np.ndarray) -> float:
            return float(np.mean(x[present])) if present.any() else 0.0

        metrics = {"precision": mean(p), "recall": mean(r), "mAP50": mean(ap50), "mAP50-95": mean(ap5095)}
        metrics["fitness"] = fitness(metrics)
        per_class = [
            {"class": c, "name": self.names[c], "images": self._classes[c].images, "targets": int(n_gt[c]), "predictions": int(n_pred[c]),
             "precision": float(p[c]) if present[c] else None, "recall": float(r[c]) if present[c] else None,
             "ap50": float(ap50[c]) if present[c] else None, "ap50-95": float(ap5095[c]) if present[c] else None}
            for c in range(k)]
        return {
            "metrics": metrics,
            "per_class": per_class,
            "ap": np.where(np.isnan(ap), -1, ap).tolist(),  # (classes, IoU thresholds), -1: no ground truth
            "iou_thresholds": IOU_THRESHOLDS.tolist(),
            "pr_curve": {"recall": RECALL_POINTS.tolist(), "precision": prec_curve.tolist()},
            "conf_curves": {"confidence": CONF_POINTS.tolist(), "precision": p_conf.tolist(),
                            "recall": r_conf.tolist(), "f1": f1.tolist(), "best_confidence": float(CONF_POINTS[best])},
            "confusion_matrix": self.confusion.tolist(),  # rows: true, columns: predicted; last: background
            "confusion_labels": self.names + ["background"],
            "images": self.images,
        }


def _interpolated_precision(recall: np.ndarray, precision: np.ndarray) -> np.ndarray:
    """COCO's 101-point interpolated precision of one ranked list."""
    q = np.zeros(len(RECALL_POINTS))
    if len(recall) == 0:
        return q
    envelope = np.maximum.accumulate(precision[::-1])[::-1]
    idx = np.searchsorted(recall, RECALL_POINTS, side="left")
    valid = idx < len(recall)
    q[valid] = envelope[idx[valid]]
    return q


def fitness(metrics: dict[str, float]) -> float:
    """YOLOv7 / YOLOv9 model selection: ``0.1 mAP@0.5 + 0.9 mAP@0.5:0.95``."""
    return 0.1 * metrics["mAP50"] + 0.9 * metrics["mAP50-95"]


def _masks(x: Any) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    return np.asarray(x).astype(bool)


def _array(x: Any, width: int) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().float().cpu().numpy()
    x = np.asarray(x, dtype=np.float64)
    if x.size == 0:
        return np.zeros((0, width))
    if x.ndim != 2 or x.shape[1] < width:
        raise ValueError(f"expected rows of at least {width} values, got shape {x.shape}")
    return x[:, :width]
