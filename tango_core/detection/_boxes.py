"""Box utilities shared by the losses: formats, IoU / CIoU, padded target batches."""

from __future__ import annotations

import math
from typing import Any

import torch


def xywh2xyxy(b: torch.Tensor) -> torch.Tensor:
    xy, wh = b[..., :2], b[..., 2:4] / 2
    return torch.cat([xy - wh, xy + wh], -1)


def xyxy2xywh(b: torch.Tensor) -> torch.Tensor:
    return torch.cat([(b[..., :2] + b[..., 2:4]) / 2, b[..., 2:4] - b[..., :2]], -1)


def ciou(a: torch.Tensor, b: torch.Tensor, eps: float = 1e-7) -> torch.Tensor:
    """Complete IoU of boxes ``a`` and ``b`` (x1, y1, x2, y2; broadcasting over leading dims):
    IoU minus the normalised centre distance and an aspect-ratio consistency term."""
    ax1, ay1, ax2, ay2 = a.unbind(-1)
    bx1, by1, bx2, by2 = b.unbind(-1)
    w1, h1 = ax2 - ax1, (ay2 - ay1).clamp(min=eps)
    w2, h2 = bx2 - bx1, (by2 - by1).clamp(min=eps)
    inter = (torch.minimum(ax2, bx2) - torch.maximum(ax1, bx1)).clamp(0) * \
            (torch.minimum(ay2, by2) - torch.maximum(ay1, by1)).clamp(0)
    union = w1 * h1 + w2 * h2 - inter + eps
    iou = inter / union
    cw = torch.maximum(ax2, bx2) - torch.minimum(ax1, bx1)
    ch = torch.maximum(ay2, by2) - torch.minimum(ay1, by1)
    c2 = cw ** 2 + ch ** 2 + eps
    rho2 = ((bx1 + bx2 - ax1 - ax2) ** 2 + (by1 + by2 - ay1 - ay2) ** 2) / 4
    v = (4 / math.pi ** 2) * (torch.atan(w2 / h2) - torch.atan(w1 / h1)) ** 2
    with torch.no_grad():
        alpha = v / (v - iou + (1 + eps))
    return iou - (rho2 / c2 + v * alpha)


def box_iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Plain IoU matrix ``(len(a), len(b))`` of x1, y1, x2, y2 boxes."""
    inter = (torch.minimum(a[:, None, 2:], b[None, :, 2:]) - torch.maximum(a[:, None, :2], b[None, :, :2])).clamp(0).prod(2)
    area_a = (a[:, 2:] - a[:, :2]).clamp(0).prod(1)
    area_b = (b[:, 2:] - b[:, :2]).clamp(0).prod(1)
    return inter / (area_a[:, None] + area_b[None, :] - inter + 1e-9)


def pad_targets(targets: list[Any], device: torch.device) -> torch.Tensor:
    """Per-image targets ``(n_i, 5)`` (class, x1, y1, x2, y2) -> ``(B, max n, 5)``, padded with
    rows of class -1."""
    rows = [torch.as_tensor(t, dtype=torch.float32, device=device).reshape(-1, 5) for t in targets]
    m = max((len(r) for r in rows), default=0)
    out = torch.zeros(len(rows), m, 5, device=device)
    out[..., 0] = -1
    for i, r in enumerate(rows):
        out[i, : len(r)] = r
    return out


def flat_targets(targets: list[Any], device: torch.device) -> torch.Tensor:
    """Per-image targets -> ``(n, 6)`` rows (image index, class, x1, y1, x2, y2)."""
    rows = []
    for i, t in enumerate(targets):
        t = torch.as_tensor(t, dtype=torch.float32, device=device).reshape(-1, 5)
        rows.append(torch.cat([torch.full((len(t), 1), float(i), device=device), t], 1))
    return torch.cat(rows) if rows else torch.zeros(0, 6, device=device)
