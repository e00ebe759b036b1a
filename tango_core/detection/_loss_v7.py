"""The YOLOv7 loss: anchor-based, with OTA (SimOTA) label assignment and aux-OTA for the auxiliary head.

Candidates: for each ground-truth box and level, the anchors whose shape ratio to the box is
below ``anchor_t``, at the box centre's cell and its two nearest neighbour cells (the lead head,
offset 0.5) or all four neighbours (the auxiliary head's coarser candidates, offset 1.0).  OTA
then picks, per box, its ``k`` cheapest candidates, ``k`` being the sum of its 10 best IoUs
(at least 1), the cost being ``BCE(sqrt(cls * obj), one-hot) + 3 (-log IoU)``; a candidate wanted
by several boxes goes to the cheapest.  The auxiliary head is lead-guided: its five-cell
candidates are matched on the lead head's predictions, not its own.  Losses: ``1 - CIoU`` on positives, BCE objectness on all
anchors (target: the positive's IoU; level weights 4, 1, 0.4 or 4, 1, 0.25, 0.06), BCE class
on positives; gains scaled by ``3 / levels``, ``classes / 80`` and ``(imgsz / 640)^2`` as the
reference training script does; the auxiliary head counts a quarter; the total is multiplied by
the batch size.

``loss_ota: 0`` (a switch of the reference's hyper-parameter files: its train.py then uses the plain
``ComputeLoss``) skips OTA: every candidate above is a positive, a dozen or more per box instead of
the few OTA keeps; on a short CPU run it reached the mAP that OTA ends at three times sooner
(docs/benchmarks.md).  The auxiliary head's positives are then its five-cell candidates.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from ..errors import ConfigError
from ._boxes import box_iou, ciou, flat_targets, xywh2xyxy, xyxy2xywh

_OFFSETS = torch.tensor([[0, 0], [1, 0], [0, 1], [-1, 0], [0, -1]], dtype=torch.float32)


class V7Loss:
    """Loss of YOLOv7 heads (IDetect, IAuxDetect); ``loss(outputs, targets)`` with the model's
    train-mode dict and per-image ``(n, 5)`` targets (class, x1, y1, x2, y2 in input pixels)."""

    def __init__(self, head: Any, hyp: dict[str, Any], imgsz: int = 640) -> None:
        main = getattr(head, "main", head)
        self.nc, self.na, self.nl = main.nc, main.na, main.nl
        self._main = main  # its anchors are read at each call: fitted to the data or loaded after this
        self.strides = main.stride.detach().cpu()
        self.balance = {3: [4.0, 1.0, 0.4]}.get(self.nl, [4.0, 1.0, 0.25, 0.06, 0.02])
        scale = 3.0 / self.nl
        self.gain_box = hyp["box"] * scale
        self.gain_cls = hyp["cls"] * self.nc / 80 * scale
        self.gain_obj = hyp["obj"] * (imgsz / 640) ** 2 * scale
        self.anchor_t = hyp["anchor_t"]
        self.aux_weight = 0.25
        ota = hyp.get("loss_ota", 1)
        if ota not in (0, 1):
            raise ConfigError("hyp", "loss_ota", f"{ota!r} is neither 0 nor 1",
                              "use 1 (OTA assignment, the published recipes) or 0 (every candidate is a positive)")
        self.ota = bool(ota)

    @property
    def anchors(self) -> torch.Tensor:
        """``(nl, na, 2)`` anchors in pixels, the head's current ones."""
        return self._main.anchors.detach()

    # --- assignment ------------------------------------------------------------------------------
    def _candidates(self, levels: list[torch.Tensor], tgt: torch.Tensor, offset: float):
        """Per level: image, anchor, cell row / column of each candidate, its target row index and
        its anchor (grid units)."""
        out = []
        device = tgt.device
        nt = len(tgt)
        for i, p in enumerate(levels):
            ny, nx = p.shape[2:4]
            s = float(self.strides[i])
            anchors = (self.anchors[i] / s).to(device)
            if nt == 0:
                out.append(tuple(torch.zeros(0, dtype=torch.long, device=device) for _ in range(5)) + (anchors[:0],))
                continue
            xywh = xyxy2xywh(tgt[:, 2:6]) / s  # grid units
            ratio = xywh[None, :, 2:4] / anchors[:, None]  # (na, nt, 2)
            ok = torch.maximum(ratio, 1 / ratio).amax(2) < self.anchor_t  # (na, nt)
            a_idx, t_idx = ok.nonzero(as_tuple=True)
            gxy = xywh[t_idx, :2]
            inv = torch.tensor([nx, ny], device=device, dtype=gxy.dtype) - gxy
            left, top = ((gxy % 1 < offset) & (gxy > 1)).T
            right, bottom = ((inv % 1 < offset) & (inv > 1)).T
            use = torch.stack([torch.ones_like(left), left, top, right, bottom])  # (5, n): cell, neighbours
            off = (_OFFSETS.to(device) * offset)[:, None].expand(5, len(gxy), 2)[use]
            a_idx, t_idx, gxy = (x[None].expand(5, *x.shape)[use] for x in (a_idx, t_idx, gxy))
            gij = (gxy - off).long()
            gi, gj = gij[:, 0].clamp(0, nx - 1), gij[:, 1].clamp(0, ny - 1)
            b = tgt[t_idx, 0].long()
            out.append((b, a_idx, gj, gi, t_idx, anchors[a_idx]))
        return out

    @torch.no_grad()
    def _ota(self, levels: list[torch.Tensor], tgt: torch.Tensor, offset: float):
        """OTA-matched positives per level: (image, anchor, row, column, target row, anchor wh)."""
        cands = self._candidates(levels, tgt, offset)
        matched = [[] for _ in levels]
        for img in tgt[:, 0].unique().tolist():
            t_rows = (tgt[:, 0] == img).nonzero(as_tuple=True)[0]
            boxes, cls_p, obj_p, info = [], [], [], []
            for i, (b, a, gj, gi, _, anc) in enumerate(cands):
                sel = b == img
                if not sel.any():
                    continue
                b_, a_, gj_, gi_, anc_ = b[sel], a[sel], gj[sel], gi[sel], anc[sel]
                p = levels[i][b_, a_, gj_, gi_].float()
                s = float(self.strides[i])
                xy = (p[:, :2].sigmoid() * 2 - 0.5 + torch.stack([gi_, gj_], 1)) * s
                wh = (p[:, 2:4].sigmoid() * 2) ** 2 * anc_ * s
                boxes.append(xywh2xyxy(torch.cat([xy, wh], 1)))
                cls_p.append(p[:, 5:])
                obj_p.append(p[:, 4:5])
                info.append(torch.stack([torch.full_like(b_, i), b_, a_, gj_, gi_], 1))
            if not boxes:
                continue
            boxes, cls_p, obj_p, info = torch.cat(boxes), torch.cat(cls_p), torch.cat(obj_p), torch.cat(info)
            gt = tgt[t_rows]
            iou = box_iou(gt[:, 2:6], boxes)  # (G, C)
            dynamic_k = iou.topk(min(10, iou.shape[1]), 1).values.sum(1).int().clamp(min=1)
            y = (cls_p.sigmoid() * obj_p.sigmoid()).sqrt()[None].expand(len(gt), -1, -1)
            onehot = F.one_hot(gt[:, 1].long(), self.nc).float()[:, None].expand_as(y)
            cls_cost = F.binary_cross_entropy(y.clamp(1e-7, 1 - 1e-7), onehot, reduction="none").sum(-1)
            cost = cls_cost + 3.0 * -torch.log(iou + 1e-8)
            match = torch.zeros_like(cost)
            for g in range(len(gt)):
                match[g, cost[g].topk(int(dynamic_k[g]), largest=False).indices] = 1.0
            multi = match.sum(0) > 1
            if multi.any():
                match[:, multi] = 0.0
                match[cost[:, multi].argmin(0), multi.nonzero(as_tuple=True)[0]] = 1.0
            fg = match.sum(0) > 0
            rows = torch.cat([info[fg][:, 1:], t_rows[match[:, fg].argmax(0)][:, None]], 1)
            level = info[fg][:, 0]
            for i in range(len(levels)):
                matched[i].append(rows[level == i])
        empty = torch.zeros(0, 5, dtype=torch.long, device=tgt.device)
        return [torch.cat(rows) if rows else empty for rows in matched]

    # --- loss ------------------------------------------------------------------------------------
    def _branch(self, levels: list[torch.Tensor], tgt: torch.Tensor, offset: float,
                assign_from: list[torch.Tensor] | None = None):
        """Losses of one head; its positives are matched on ``assign_from`` (default: its own outputs)."""
        lbox = lobj = lcls = levels[0].new_zeros(())
        if self.ota:
            matched = self._ota([x.detach() for x in (assign_from or levels)], tgt, offset)
        else:  # loss_ota 0: every candidate is a positive (the reference's ComputeLoss)
            matched = [torch.stack([b, a, gj, gi, t], 1) for b, a, gj, gi, t, _ in self._candidates(levels, tgt, offset)]
        for i, (p, rows) in enumerate(zip(levels, matched, strict=True)):
            tobj = torch.zeros_like(p[..., 0])
            if len(rows):
                b, a, gj, gi, t = rows.unbind(1)
                s = float(self.strides[i])
                ps = p[b, a, gj, gi]
                anchors = (self.anchors[i] / s).to(p.device)[a]
                pxy = ps[:, :2].sigmoid() * 2 - 0.5
                pwh = (ps[:, 2:4].sigmoid() * 2) ** 2 * anchors
                grid = torch.stack([gi, gj], 1).to(p.dtype)
                target = xyxy2xywh(tgt[t, 2:6]) / s
                target = torch.cat([target[:, :2] - grid, target[:, 2:]], 1)
                iou = ciou(xywh2xyxy(torch.cat([pxy, pwh], 1)), xywh2xyxy(target))
                lbox = lbox + (1 - iou).mean()
                tobj[b, a, gj, gi] = iou.detach().clamp(0).to(tobj.dtype)
                if self.nc > 1:
                    onehot = F.one_hot(tgt[t, 1].long(), self.nc).to(ps.dtype)
                    lcls = lcls + F.binary_cross_entropy_with_logits(ps[:, 5:], onehot)
            lobj = lobj + F.binary_cross_entropy_with_logits(p[..., 4], tobj) * self.balance[i]
        return lbox, lobj, lcls

    def __call__(self, outputs: dict[str, Any], targets: list[Any]) -> tuple[torch.Tensor, dict[str, float]]:
        outputs = {k: [x.float() for x in v] for k, v in outputs.items()}  # whatever the autocast dtype
        main = outputs["main"]
        tgt = flat_targets(targets, main[0].device)
        bs = main[0].shape[0]
        lbox, lobj, lcls = self._branch(main, tgt, 0.5)
        if "aux" in outputs:
            # lead-guided (coarse-to-fine) assignment, as published: the auxiliary head's positives
            # come from OTA on the *lead* head's predictions over the wider five-cell candidates
            abox, aobj, acls = self._branch(outputs["aux"], tgt, 1.0, assign_from=main)
            lbox, lobj, lcls = lbox + self.aux_weight * abox, lobj + self.aux_weight * aobj, lcls + self.aux_weight * acls
        lbox, lobj, lcls = lbox * self.gain_box, lobj * self.gain_obj, lcls * self.gain_cls
        parts = {"box": float(lbox.detach()), "obj": float(lobj.detach()), "cls": float(lcls.detach())}
        return (lbox + lobj + lcls) * bs, parts
