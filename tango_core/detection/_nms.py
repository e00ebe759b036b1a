"""Post-processing of YOLO predictions: decoding, batched non-maximum suppression, box scaling.

Predictions (what a YOLO model returns in eval mode, and what its ONNX / TFLite exports return)
are ``(B, N, 4 + nc [+ nm])``: boxes x1, y1, x2, y2 in input pixels, per-class scores in [0, 1],
then mask coefficients for segmentation models.  Detections are one ``(n, 6 [+ nm])`` tensor
per image: x1, y1, x2, y2, score, class [, mask coefficients], best first.
"""

from __future__ import annotations

from typing import Any

import torch
import torchvision

from ..models.yolo._heads import Head, decode_anchor_based, decode_anchor_free


def decode(raw: dict[str, Any] | list[torch.Tensor], head: Head) -> torch.Tensor:
    """Decode a head's raw (training-mode) output into predictions ``(B, N, 4 + nc [+ nm])``.

    ``raw`` is the dict a model returns in train mode (its ``main`` entry is decoded) or the list
    of per-level tensors; ``head`` is ``model.head`` (it knows anchors, strides and the class count).
    """
    levels = raw["main"] if isinstance(raw, dict) else raw
    main = getattr(head, "main", head)
    strides = main.stride
    if getattr(main, "anchor_free", True):
        det_head = getattr(main, "detect", main)  # Segment keeps its detection branches in .detect
        pred = decode_anchor_free(levels, strides, det_head.nc, det_head.reg_max)
    else:
        pred = decode_anchor_based(levels, main.anchors, strides)
    if isinstance(raw, dict) and "mask_coef" in raw:
        pred = torch.cat([pred, raw["mask_coef"].transpose(1, 2)], -1)
    return pred


@torch.no_grad()
def non_max_suppression(pred: torch.Tensor | tuple, conf_thres: float = 0.25, iou_thres: float = 0.45,
                        max_det: int = 300, num_classes: int | None = None, classes: list[int] | None = None,
                        agnostic: bool = False, multi_label: bool = False, max_candidates: int = 30000
                        ) -> list[torch.Tensor]:
    """Per-image detections ``(n, 6 [+ nm])`` from predictions ``(B, N, 4 + nc [+ nm])``.

    ``num_classes`` is needed only when the predictions carry mask coefficients (it tells where
    the scores end).  ``multi_label`` keeps every class above ``conf_thres`` for a box (what
    mAP evaluation uses); otherwise each box keeps its best class.  Suppression is per class
    (``torchvision.ops.batched_nms``) unless ``agnostic``.
    """
    if isinstance(pred, (tuple, list)):  # a segmentation model's (predictions, protos)
        pred = pred[0]
    if not 0 <= conf_thres <= 1 or not 0 <= iou_thres <= 1:
        raise ValueError(f"conf_thres and iou_thres must be in [0, 1], got {conf_thres} and {iou_thres}")
    nc = num_classes if num_classes is not None else pred.shape[-1] - 4
    out = []
    for p in pred:
        boxes, scores, extra = p[:, :4], p[:, 4:4 + nc], p[:, 4 + nc:]
        if multi_label:
            i, j = (scores > conf_thres).nonzero(as_tuple=True)
            det = torch.cat([boxes[i], scores[i, j, None], j[:, None].to(p.dtype), extra[i]], 1)
        else:
            conf, j = scores.max(1, keepdim=True)
            keep = conf.view(-1) > conf_thres
            det = torch.cat([boxes, conf, j.to(p.dtype), extra], 1)[keep]
        if classes is not None:
            det = det[(det[:, 5:6] == torch.tensor(classes, device=det.device, dtype=det.dtype)).any(1)]
        if det.shape[0] > max_candidates:
            det = det[det[:, 4].topk(max_candidates).indices]
        if det.shape[0]:
            groups = torch.zeros_like(det[:, 5]) if agnostic else det[:, 5]
            keep = torchvision.ops.batched_nms(det[:, :4].float(), det[:, 4].float(), groups.long(), iou_thres)
            det = det[keep[:max_det]]
        out.append(det)
    return out


def postprocess(output: Any, conf_thres: float = 0.25, iou_thres: float = 0.45, max_det: int = 300,
                **kw: Any) -> list[torch.Tensor]:
    """:func:`non_max_suppression` on a model's eval output (detection or segmentation)."""
    if isinstance(output, (tuple, list)):
        pred, protos = output
        nm = protos.shape[1]
        return non_max_suppression(pred, conf_thres, iou_thres, max_det, num_classes=pred.shape[-1] - 4 - nm, **kw)
    return non_max_suppression(output, conf_thres, iou_thres, max_det, **kw)


def letterbox_params(src_hw: tuple[int, int], dst_hw: tuple[int, int]) -> tuple[float, tuple[float, float]]:
    """Scale and (left, top) padding that fit an image of ``src_hw`` into ``dst_hw`` keeping its
    aspect ratio, centred (the letterbox of the YOLO repositories)."""
    gain = min(dst_hw[0] / src_hw[0], dst_hw[1] / src_hw[1])
    pad_w = (dst_hw[1] - round(src_hw[1] * gain)) / 2
    pad_h = (dst_hw[0] - round(src_hw[0] * gain)) / 2
    return gain, (pad_w, pad_h)


def scale_boxes(boxes: torch.Tensor, model_hw: tuple[int, int], image_hw: tuple[int, int],
                gain_pad: tuple[float, tuple[float, float]] | None = None) -> torch.Tensor:
    """Boxes from the model's letterboxed input back to the original image, clipped to it."""
    gain, (pad_w, pad_h) = gain_pad or letterbox_params(image_hw, model_hw)
    out = boxes.clone()
    out[..., [0, 2]] = (out[..., [0, 2]] - pad_w) / gain
    out[..., [1, 3]] = (out[..., [1, 3]] - pad_h) / gain
    return clip_boxes(out, image_hw)


def clip_boxes(boxes: torch.Tensor, hw: tuple[int, int]) -> torch.Tensor:
    boxes[..., [0, 2]] = boxes[..., [0, 2]].clamp(0, hw[1])
    boxes[..., [1, 3]] = boxes[..., [1, 3]].clamp(0, hw[0])
    return boxes


def process_masks(protos: torch.Tensor, coefs: torch.Tensor, boxes: torch.Tensor, shape: tuple[int, int],
                  threshold: float = 0.5) -> torch.Tensor:
    """Instance masks ``(n, H, W)`` (bool) at the input size ``shape`` from one image's prototypes
    ``(nm, h, w)``, its detections' coefficients ``(n, nm)`` and boxes ``(n, 4)``: a sigmoid of the
    coefficient-weighted prototypes, up-sampled, cut to each box."""
    nm, h, w = protos.shape
    if coefs.shape[0] == 0:  # no detections (an untrained model, a high threshold): no masks
        return torch.zeros((0, *shape), dtype=torch.bool, device=protos.device)
    masks = (coefs @ protos.float().view(nm, -1)).sigmoid().view(-1, h, w)
    masks = torch.nn.functional.interpolate(masks[None], size=shape, mode="bilinear", align_corners=False)[0]
    ys = torch.arange(shape[0], device=masks.device, dtype=boxes.dtype)[None, :, None]
    xs = torch.arange(shape[1], device=masks.device, dtype=boxes.dtype)[None, None, :]
    x1, y1, x2, y2 = (boxes[:, i, None, None] for i in range(4))
    inside = (xs >= x1) & (xs < x2) & (ys >= y1) & (ys < y2)
    return (masks > threshold) & inside
