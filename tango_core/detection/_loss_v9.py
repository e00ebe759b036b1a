"""The YOLOv9 loss: task-aligned assignment, BCE classification, CIoU and distribution focal loss.

Per branch (the main head, and the auxiliary head of programmable gradient information with
weight ``aux_weight``): every anchor point whose centre lies in a ground-truth box is a candidate
for it; the ``topk`` candidates of highest alignment ``score^alpha * CIoU^beta`` become its
positives (an anchor claimed by several boxes keeps the one it overlaps most); class targets are
the alignment normalised per box to its best CIoU.  Losses: BCE over all anchors, ``1 - CIoU`` and
DFL over positives, each weighted by the target score and divided by the target score sum; gains
``box``, ``cls``, ``dfl`` from the recipe; the total is multiplied by the batch size as in the
reference.  Segmentation adds a mask loss (BCE of prototype masks inside each box, per box area).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from ..models.yolo._heads import anchor_points
from ._boxes import ciou, pad_targets


class TaskAlignedAssigner:
    def __init__(self, topk: int = 10, num_classes: int = 80, alpha: float = 0.5, beta: float = 6.0,
                 eps: float = 1e-9) -> None:
        self.topk, self.nc, self.alpha, self.beta, self.eps = topk, num_classes, alpha, beta, eps

    @torch.no_grad()
    def __call__(self, pd_scores: torch.Tensor, pd_boxes: torch.Tensor, points: torch.Tensor,
                 gt_labels: torch.Tensor, gt_boxes: torch.Tensor, mask_gt: torch.Tensor):
        """Scores ``(B, N, C)`` (probabilities), boxes ``(B, N, 4)`` and points ``(N, 2)`` in pixels;
        ground truth ``(B, M, 1)`` labels, ``(B, M, 4)`` boxes, ``(B, M, 1)`` validity.
        Returns target labels ``(B, N)``, boxes ``(B, N, 4)``, scores ``(B, N, C)``, foreground
        mask ``(B, N)`` and the index of each anchor's box ``(B, N)``."""
        b, n, _ = pd_scores.shape
        m = gt_boxes.shape[1]
        if m == 0:
            z = torch.zeros(b, n, device=pd_scores.device)
            return z.long(), torch.zeros_like(pd_boxes), torch.zeros_like(pd_scores), z.bool(), z.long()
        lt = points[None, None] - gt_boxes[:, :, None, :2]
        rb = gt_boxes[:, :, None, 2:] - points[None, None]
        in_gts = torch.cat([lt, rb], -1).amin(-1) > self.eps  # (B, M, N)
        valid = in_gts & mask_gt.bool()
        labels = gt_labels.long().squeeze(-1).clamp(min=0)  # (B, M)
        scores = pd_scores.gather(2, labels[:, None, :].expand(b, n, m)).transpose(1, 2)  # (B, M, N)
        overlaps = ciou(gt_boxes[:, :, None, :], pd_boxes[:, None, :, :]).clamp(0)
        overlaps = torch.where(valid, overlaps, torch.zeros_like(overlaps))
        align = torch.where(valid, scores.pow(self.alpha) * overlaps.pow(self.beta), torch.zeros_like(overlaps))
        top = align.topk(min(self.topk, n), dim=-1).indices  # (B, M, k)
        mask_top = torch.zeros_like(align, dtype=torch.bool).scatter_(-1, top, True)
        mask_pos = mask_top & valid
        # an anchor claimed by several boxes keeps the one it overlaps most
        claimed = mask_pos.sum(1)  # (B, N)
        if (claimed > 1).any():
            best = F.one_hot(overlaps.argmax(1), m).transpose(1, 2).bool()  # (B, M, N)
            mask_pos = torch.where((claimed > 1)[:, None, :], best & valid, mask_pos)
        fg = mask_pos.any(1)
        gt_idx = mask_pos.float().argmax(1)  # (B, N)
        batch = torch.arange(b, device=gt_idx.device)[:, None]
        target_labels = labels[batch, gt_idx]
        target_boxes = gt_boxes[batch, gt_idx]
        target_scores = F.one_hot(target_labels, self.nc).float() * fg[..., None]
        align = align * mask_pos
        norm = align * (overlaps * mask_pos).amax(-1, keepdim=True) / (align.amax(-1, keepdim=True) + self.eps)
        target_scores = target_scores * norm.amax(1)[..., None]
        return target_labels, target_boxes, target_scores, fg, gt_idx


def _dfl(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Distribution focal loss: cross-entropy to the two bins around each target distance."""
    left = target.long()
    wl = left + 1 - target
    n = pred.shape[-1]
    ce = lambda t: F.cross_entropy(pred.reshape(-1, n), t.reshape(-1), reduction="none").view(t.shape)  # noqa: E731
    return (ce(left) * wl + ce(left + 1) * (1 - wl)).mean(-1, keepdim=True)


class V9Loss:
    """Loss of YOLOv9 heads (DDetect, DualDDetect, Segment, DualSegment); ``loss(outputs, targets)``.

    ``outputs`` is the model's train-mode dict; ``targets`` a list per image of ``(n, 5)`` rows
    (class, x1, y1, x2, y2 in input pixels), plus ``masks`` for segmentation: per image a
    ``(n, H, W)`` tensor of instance masks at the input size.
    """

    def __init__(self, head: Any, hyp: dict[str, Any]) -> None:
        main = getattr(head, "main", head)
        det = getattr(main, "detect", main)
        self.nc, self.reg_max = det.nc, det.reg_max
        self.strides = main.stride.detach().cpu()
        self.hyp = hyp
        self.assigner = TaskAlignedAssigner(int(hyp.get("tal_topk", 10)), self.nc, float(hyp.get("tal_alpha", 0.5)),
                                            float(hyp.get("tal_beta", 6.0)))

    def _branch(self, levels: list[torch.Tensor], gt: torch.Tensor) -> tuple[torch.Tensor, ...]:
        b = levels[0].shape[0]
        # (B, N, 4R + C) in float32 whatever the autocast dtype: coordinates need the precision
        flat = torch.cat([x.float().view(b, x.shape[1], -1) for x in levels], 2).transpose(1, 2)
        pred_dist, pred_scores = flat.split((4 * self.reg_max, self.nc), -1)
        points, stride = anchor_points([x.shape[2:] for x in levels], self.strides.to(flat.device),
                                       flat.device, flat.dtype)
        prob = pred_dist.view(b, -1, 4, self.reg_max).softmax(-1)
        dist = (prob * torch.arange(self.reg_max, device=flat.device, dtype=flat.dtype)).sum(-1)
        pred_boxes = torch.cat([points - dist[..., :2], points + dist[..., 2:]], -1)  # grid units
        labels, boxes = gt[..., :1], gt[..., 1:5]
        mask_gt = (labels >= 0).float()
        _, t_boxes, t_scores, fg, gt_idx = self.assigner(
            pred_scores.detach().sigmoid(), pred_boxes.detach() * stride, points * stride, labels, boxes, mask_gt)
        t_boxes = t_boxes / stride
        score_sum = t_scores.sum().clamp(min=1)
        lcls = F.binary_cross_entropy_with_logits(pred_scores, t_scores.to(pred_scores.dtype), reduction="none").sum() / score_sum
        lbox = ldfl = flat.new_zeros(())
        if fg.any():
            weight = t_scores.sum(-1)[fg][:, None]
            iou = ciou(pred_boxes[fg], t_boxes[fg])[:, None]
            lbox = ((1 - iou) * weight).sum() / score_sum
            ltrb = torch.cat([points - t_boxes[..., :2], t_boxes[..., 2:] - points], -1).clamp(0, self.reg_max - 1.01)
            ldfl = (_dfl(pred_dist[fg].view(-1, 4, self.reg_max), ltrb[fg]) * weight).sum() / score_sum
        return lbox, lcls, ldfl, fg, gt_idx, t_boxes * stride

    def _mask_loss(self, coef: torch.Tensor, proto: torch.Tensor, fg: torch.Tensor, gt_idx: torch.Tensor,
                   boxes_px: torch.Tensor, masks: list[torch.Tensor], img_hw: tuple[int, int]) -> torch.Tensor:
        """BCE of each positive anchor's mask (its coefficients times the prototypes) against the
        mask of its box, inside the box, divided by the box area."""
        total = proto.new_zeros(())
        ph, pw = proto.shape[2:]
        sy, sx = ph / img_hw[0], pw / img_hw[1]
        ys = torch.arange(ph, device=proto.device, dtype=proto.dtype)[None, :, None] + 0.5
        xs = torch.arange(pw, device=proto.device, dtype=proto.dtype)[None, None, :] + 0.5
        count = 0
        for i in range(proto.shape[0]):
            if not fg[i].any() or masks[i] is None or len(masks[i]) == 0:
                continue
            gt_m = F.interpolate(masks[i][None].float(), size=(ph, pw), mode="bilinear", align_corners=False)[0]
            target = gt_m[gt_idx[i][fg[i]]].gt(0.5).float()
            pred = torch.einsum("nc,chw->nhw", coef[i].transpose(0, 1)[fg[i]], proto[i])
            box = boxes_px[i][fg[i]] * torch.tensor([sx, sy, sx, sy], device=proto.device)
            inside = ((xs >= box[:, 0, None, None]) & (xs < box[:, 2, None, None])
                      & (ys >= box[:, 1, None, None]) & (ys < box[:, 3, None, None])).float()
            area = ((box[:, 2] - box[:, 0]) * (box[:, 3] - box[:, 1])).clamp(min=1)
            bce = F.binary_cross_entropy_with_logits(pred, target, reduction="none")
            total = total + ((bce * inside).sum((1, 2)) / area).sum()
            count += int(fg[i].sum())
        return total / max(count, 1)

    def __call__(self, outputs: dict[str, Any], targets: list[Any], masks: list[torch.Tensor] | None = None,
                 img_hw: tuple[int, int] | None = None) -> tuple[torch.Tensor, dict[str, float]]:
        device = outputs["main"][0].device
        gt = pad_targets(targets, device)
        bs = len(targets)
        h = self.hyp
        aux_w = float(h.get("aux_weight", 0.25))
        parts = {"box": 0.0, "cls": 0.0, "dfl": 0.0}
        total = outputs["main"][0].new_zeros(())
        branches = [("main", "mask_coef", "proto", 1.0)]
        if "aux" in outputs:
            branches.append(("aux", "aux_mask_coef", "aux_proto", aux_w))
        for key, coef_key, proto_key, w in branches:
            lbox, lcls, ldfl, fg, gt_idx, boxes_px = self._branch(outputs[key], gt)
            terms = {"box": lbox * h["box"], "cls": lcls * h["cls"], "dfl": ldfl * h["dfl"]}
            if coef_key in outputs and masks is not None:
                hw = img_hw or tuple(s * int(self.strides[0]) for s in outputs[key][0].shape[2:])
                lseg = self._mask_loss(outputs[coef_key].float(), outputs[proto_key].float(), fg, gt_idx, boxes_px,
                                       masks, hw)
                terms["seg"] = lseg * h["box"]
            for k, v in terms.items():
                total = total + w * v
                parts[k] = parts.get(k, 0.0) + w * float(v.detach())
        return total * bs, parts
