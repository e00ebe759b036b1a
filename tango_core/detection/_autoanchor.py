"""Anchors that fit the data: YOLOv7's check before training (``autoanchor`` in its recipes).

A box counts as recallable by an anchor when neither its width nor its height differs from the
anchor's by more than ``anchor_t`` (4) times, the rule the loss uses to pick candidates.  The best
possible recall (BPR) is the share of training boxes recallable by at least one anchor.  Before
training, with the boxes at their training size (each image's boxes scaled by a random 0.9-1.1,
as the reference does), a BPR under 0.98 makes the anchors re-fitted: k-means on the boxes'
whitened widths and heights, then 1,000 generations of random multiplicative mutations that keep
a candidate set when it raises the fitness (the mean best ratio of the recallable boxes).  The new
anchors replace the old only when their BPR is higher; sorted by area, the smallest go to the
finest level.  Everything is seeded, so a resumed or restarted run fits the same anchors.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

BPR_THRESHOLD = 0.98
GENERATIONS = 1000
MIN_SIDE = 2.0  # pixels: boxes narrower than this are left out of the fit


def box_sizes(labels: Sequence[np.ndarray], rng: np.random.Generator | None = None) -> np.ndarray:
    """``(n, 2)`` widths and heights of every box of ``labels`` (per image ``(m, 5)``: class, x1,
    y1, x2, y2 in training pixels), each image's scaled by a random 0.9-1.1 when ``rng`` is given."""
    sizes = []
    for lab in labels:
        lab = np.asarray(lab, dtype=np.float64).reshape(-1, 5)
        wh = lab[:, 3:5] - lab[:, 1:3]
        sizes.append(wh * (rng.uniform(0.9, 1.1) if rng is not None else 1.0))
    return np.concatenate(sizes) if sizes else np.zeros((0, 2))


def _ratios(anchors: np.ndarray, wh: np.ndarray) -> np.ndarray:
    """``(n, k)``: for each box and anchor, the worse of the width and height ratios (<= 1)."""
    r = wh[:, None, :] / anchors[None, :, :]
    return np.minimum(r, 1 / r).min(2)


def anchor_stats(anchors: np.ndarray, wh: np.ndarray, anchor_t: float = 4.0) -> dict[str, float]:
    """Best possible recall and anchors per box within ``anchor_t`` of ``anchors`` (``(k, 2)`` pixels)."""
    if not len(wh):
        return {"bpr": 1.0, "anchors_per_box": 0.0}
    x = _ratios(np.asarray(anchors, dtype=np.float64).reshape(-1, 2), wh)
    return {"bpr": float((x.max(1) > 1 / anchor_t).mean()), "anchors_per_box": float((x > 1 / anchor_t).sum(1).mean())}


def _fitness(anchors: np.ndarray, wh: np.ndarray, anchor_t: float) -> float:
    best = _ratios(anchors, wh).max(1)
    return float((best * (best > 1 / anchor_t)).mean())


def _sq_dist(points: np.ndarray, centres: np.ndarray) -> np.ndarray:
    """``(n, k)`` squared distances of each point to each centre."""
    return ((points[:, None] - centres[None]) ** 2).sum(2)


def _kmeans(points: np.ndarray, k: int, rng: np.random.Generator, iters: int = 30) -> np.ndarray:
    """Lloyd's k-means from a k-means++ start; an empty cluster takes the farthest point."""
    c = points[rng.integers(len(points))][None]
    for _ in range(1, k):
        d = _sq_dist(points, c).min(1)
        pick = rng.choice(len(points), p=d / d.sum()) if d.sum() > 0 else rng.integers(len(points))
        c = np.concatenate([c, points[pick][None]])
    for _ in range(iters):
        dist = _sq_dist(points, c)
        assign = dist.argmin(1)
        for j in range(k):
            members = points[assign == j]
            c[j] = members.mean(0) if len(members) else points[dist.min(1).argmax()]
    return c


def _fittable(wh: np.ndarray) -> np.ndarray:
    """The boxes an anchor fit uses: at least ``MIN_SIDE`` pixels on one side."""
    return wh[(wh >= MIN_SIDE).any(1)]


def fit_anchors(wh: np.ndarray, n: int, anchor_t: float = 4.0, generations: int = GENERATIONS,
                seed: int = 0) -> np.ndarray:
    """``n`` anchors ``(n, 2)`` in pixels, sorted by area, fitted to the box sizes ``wh``."""
    wh = _fittable(wh)
    if len(wh) < n:
        raise ValueError(f"{len(wh)} boxes cannot fit {n} anchors")
    rng = np.random.default_rng(seed)
    sigma = wh.std(0)
    sigma[sigma == 0] = 1.0
    k = _kmeans(wh / sigma, n, rng) * sigma
    best = _fitness(k, wh, anchor_t)
    for _ in range(generations):
        v = np.ones_like(k)
        while (v == 1).all():  # mutate until something changes
            v = ((rng.random(k.shape) < 0.9) * rng.random() * rng.standard_normal(k.shape) * 0.1 + 1).clip(0.3, 3.0)
        trial = (k * v).clip(min=MIN_SIDE)
        f = _fitness(trial, wh, anchor_t)
        if f > best:
            best, k = f, trial
    return k[np.argsort(k.prod(1))]


def check_anchors(head: Any, labels: Sequence[np.ndarray], anchor_t: float = 4.0, seed: int = 0) -> dict[str, Any]:
    """Re-fit the anchors of ``head`` (an anchor-based YOLO head, anchors ``(nl, na, 2)`` in pixels)
    to the training boxes when their best possible recall is under 0.98; returns what was done."""
    rng = np.random.default_rng(seed)
    wh = box_sizes(labels, rng)
    old = head.anchors.detach().cpu().double().numpy().reshape(-1, 2)
    before = anchor_stats(old, wh, anchor_t)
    report: dict[str, Any] = {"boxes": len(wh), "bpr": before["bpr"], "anchors_per_box": before["anchors_per_box"],
                              "refitted": False, "anchors": np.round(old, 2).reshape(head.anchors.shape).tolist()}
    if before["bpr"] >= BPR_THRESHOLD or len(_fittable(wh)) < len(old):
        return report
    new = fit_anchors(wh, len(old), anchor_t, seed=seed)
    after = anchor_stats(new, wh, anchor_t)
    report["bpr_refitted"] = after["bpr"]
    if after["bpr"] > before["bpr"]:
        with torch.no_grad():
            head.anchors.copy_(torch.as_tensor(new, dtype=head.anchors.dtype).view_as(head.anchors))
        report.update(refitted=True, bpr=after["bpr"], bpr_before=before["bpr"],
                      anchors_per_box=after["anchors_per_box"],
                      anchors=np.round(new, 2).reshape(head.anchors.shape).tolist())
    return report
