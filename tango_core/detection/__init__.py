"""Object detection around the YOLO models: post-processing (decoding, NMS), COCO-style metrics,
augmentation (mosaic, affine, HSV, flips, mixup) and the losses of YOLOv7 and YOLOv9.

>>> preds = model.eval()(images)                       # (B, N, 4 + nc)
>>> dets = postprocess(preds, conf_thres=0.25, iou_thres=0.45)   # per image (n, 6)
>>> ev = DetectionEvaluator(num_classes); ev.update(dets, targets); ev.compute()["metrics"]
>>> DetectionPredictor("best.pt")(["a.jpg"])[0].detections  # boxes (and outlines) in image pixels

docs/detection.md describes the formats and the choices.
"""

from __future__ import annotations

from ._metrics import DetectionEvaluator, box_iou, fitness
from ._nms import decode, non_max_suppression, postprocess, process_masks, scale_boxes
from ._predict import Detection, DetectionPredictor, DetectionResult

__all__ = ["Detection", "DetectionEvaluator", "DetectionPredictor", "DetectionResult", "box_iou", "decode", "fitness",
           "non_max_suppression", "postprocess", "process_masks", "scale_boxes"]
