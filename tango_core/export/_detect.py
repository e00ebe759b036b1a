"""Detection in exports: NMS inside the ONNX graph, and the mAP used to verify detection exports.

A tango detector in eval mode returns ``(B, N, 4 + nc)``: boxes x1, y1, x2, y2 in input pixels,
then per-class scores in [0, 1].  ``with_nms`` appends ONNX ``NonMaxSuppression`` (per class,
per image) so the graph returns ``detections [K, 7]``: batch index, box, score, class.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn as nn

from ._data import Samples

#: what deploy code reads in detection.output_layout
RAW_LAYOUT = "[B, N, 4 + nc]: x1, y1, x2, y2 in input pixels, then per-class scores in [0, 1]"
NMS_LAYOUT = "[K, 7]: batch_index, x1, y1, x2, y2, score, class (input pixels)"
VAL_CONF = 0.001  # mAP counts low-score boxes too, as every detection benchmark does


class _OnnxNms(torch.autograd.Function):
    """torchvision's NMS while tracing, ONNX ``NonMaxSuppression`` in the exported graph."""

    @staticmethod
    def forward(ctx, boxes, scores, max_per_class, iou, conf):  # boxes [B, N, 4], scores [B, C, N]
        # numpy, so that tracing records only the symbolic node below and not the ops computing it
        b_np, s_np = boxes.detach().numpy(), scores.detach().numpy()
        limit, thr, min_score = int(max_per_class.item()), float(iou.item()), float(conf.item())
        rows = []
        for b in range(b_np.shape[0]):
            for cls in range(s_np.shape[1]):
                idx = np.flatnonzero(s_np[b, cls] > min_score)
                idx = idx[np.argsort(-s_np[b, cls, idx], kind="stable")]
                keep: list[int] = []
                while len(idx) and len(keep) < limit:
                    keep.append(int(idx[0]))
                    idx = idx[1:][_iou(b_np[b, idx[0]], b_np[b, idx[1:]]) <= thr]
                rows += [(b, cls, k) for k in keep]
        return torch.tensor(rows, dtype=torch.int64).reshape(-1, 3)

    @staticmethod
    def symbolic(g, boxes, scores, max_per_class, iou, conf):
        return g.op("NonMaxSuppression", boxes, scores, max_per_class, iou, conf, center_point_box_i=0)


class WithNms(nn.Module):
    def __init__(self, model: nn.Module, conf: float, iou: float, max_det: int) -> None:
        super().__init__()
        self.model = model
        self.register_buffer("max_det", torch.tensor([max_det], dtype=torch.int64))
        self.register_buffer("iou", torch.tensor([iou], dtype=torch.float32))
        self.register_buffer("conf", torch.tensor([conf], dtype=torch.float32))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pred = self.model(x)
        boxes, scores = pred[..., :4], pred[..., 4:].transpose(1, 2).contiguous()
        sel = _OnnxNms.apply(boxes, scores, self.max_det, self.iou, self.conf)
        b, c, i = sel[:, 0], sel[:, 1], sel[:, 2]
        picked = boxes[b, i]
        score = scores[b, c, i]
        return torch.cat([b[:, None].float(), picked, score[:, None], c[:, None].float()], 1)


def with_nms(model: nn.Module, source, options: dict[str, Any]) -> nn.Module:
    det = source.detection or {}
    return WithNms(model, float(det.get("conf_threshold", 0.25)), float(det.get("iou_threshold", 0.45)),
                   int(det.get("max_det", 300))).eval()


def postprocess(pred: np.ndarray, conf: float, iou: float, max_det: int) -> list[np.ndarray]:
    """Raw predictions -> per image (k, 6) arrays: x1, y1, x2, y2, score, class (per-class NMS)."""
    from torchvision.ops import batched_nms

    out = []
    for p in torch.from_numpy(np.asarray(pred, np.float32)):
        boxes, scores = p[:, :4], p[:, 4:]
        idx, cls = torch.nonzero(scores > conf, as_tuple=True)
        if idx.numel() == 0:
            out.append(np.zeros((0, 6), np.float32))
            continue
        s = scores[idx, cls]
        keep = batched_nms(boxes[idx], s, cls, iou)[:max_det]
        out.append(torch.cat([boxes[idx][keep], s[keep, None], cls[keep, None].float()], 1).numpy())
    return out


def split_nms_output(det: np.ndarray, batch: int) -> list[np.ndarray]:
    """``detections [K, 7]`` -> per image (k, 6) arrays like :func:`postprocess`."""
    det = np.asarray(det, np.float32).reshape(-1, 7)
    return [det[det[:, 0] == b][:, 1:] for b in range(batch)]


def _iou(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    x1 = np.maximum(box[0], boxes[:, 0])
    y1 = np.maximum(box[1], boxes[:, 1])
    x2 = np.minimum(box[2], boxes[:, 2])
    y2 = np.minimum(box[3], boxes[:, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    area = (box[2] - box[0]) * (box[3] - box[1])
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    return inter / np.maximum(area + areas - inter, 1e-9)


def mean_ap(dets: list[np.ndarray], gts: list[np.ndarray], iou_thr: float = 0.5) -> float | None:
    """COCO-style (101-point) mAP at one IoU threshold over the classes that have ground truth.

    ``dets``: per image (k, 6) x1, y1, x2, y2, score, class; ``gts``: per image (m, 5) class, x1,
    y1, x2, y2.  None when there is no ground truth at all.
    """
    classes = sorted({int(c) for g in gts for c in g[:, 0]})
    if not classes:
        return None
    aps = []
    for cls in classes:
        gt_boxes = [g[g[:, 0] == cls][:, 1:5] for g in gts]
        n_gt = sum(len(g) for g in gt_boxes)
        preds = [(d[j, 4], i, d[j, :4]) for i, d in enumerate(dets) for j in np.flatnonzero(d[:, 5] == cls)]
        preds.sort(key=lambda p: -p[0])
        used = [np.zeros(len(g), bool) for g in gt_boxes]
        tp = np.zeros(len(preds))
        for k, (_, img, box) in enumerate(preds):
            g = gt_boxes[img]
            if len(g):
                ious = _iou(box, g)
                ious[used[img]] = -1
                j = int(np.argmax(ious))
                if ious[j] >= iou_thr:
                    used[img][j] = True
                    tp[k] = 1
        ctp = np.cumsum(tp)
        recall = ctp / n_gt
        precision = ctp / np.arange(1, len(tp) + 1)
        envelope = np.maximum.accumulate(precision[::-1])[::-1] if len(precision) else precision
        points = np.linspace(0, 1, 101)
        idx = np.searchsorted(recall, points, side="left")
        aps.append(float(np.mean([envelope[i] if i < len(envelope) else 0.0 for i in idx])))
    return float(np.mean(aps))


def _thresholds(meta: dict[str, Any]) -> tuple[float, float, int]:
    det = meta.get("detection") or {}
    return float(det.get("conf_threshold", 0.25)), float(det.get("iou_threshold", 0.45)), int(det.get("max_det", 300))


def map_of_raw(outputs: list[np.ndarray], samples: Samples, meta: dict[str, Any]) -> float | None:
    _, iou, max_det = _thresholds(meta)
    return mean_ap(postprocess(outputs[0], VAL_CONF, iou, max_det), samples.labels)


def agreement(reference: list[np.ndarray], exported: list[np.ndarray], meta: dict[str, Any]) -> float | None:
    """mAP@0.5 of the export's boxes against PyTorch's confident boxes taken as ground truth."""
    conf, iou, max_det = _thresholds(meta)
    truth = [np.concatenate([d[:, 5:6], d[:, :4]], 1) for d in postprocess(reference[0], conf, iou, max_det)]
    return mean_ap(postprocess(exported[0], VAL_CONF, iou, max_det), truth)


def compare_detections(reference: list[np.ndarray], exported: list[np.ndarray], samples: Samples,
                       meta: dict[str, Any], rule: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """Verification of an export with NMS in its graph: its boxes against PyTorch's + torchvision NMS."""
    conf, iou, max_det = _thresholds(meta)
    batch = len(samples)
    ref = postprocess(reference[0], conf, iou, max_det)
    got = split_nms_output(exported[0], batch)
    metrics: dict[str, Any] = {"reference_boxes": int(sum(len(r) for r in ref)),
                               "boxes": int(sum(len(g) for g in got))}
    truth = [np.concatenate([d[:, 5:6], d[:, :4]], 1) for d in ref]
    metrics["agreement_map50"] = mean_ap(got, truth)
    failures = []
    if metrics["agreement_map50"] is None:
        if metrics["boxes"]:
            failures.append(f"PyTorch finds no box above {conf} but the export finds {metrics['boxes']}")
    elif metrics["agreement_map50"] < rule.get("detection_agreement", 0.9):
        failures.append(f"the export's boxes match PyTorch's with mAP@0.5 {metrics['agreement_map50']:.3f} "
                        f"< {rule.get('detection_agreement', 0.9)}")
    return metrics, failures
