"""Matplotlib / PIL pictures of training results: the static forms of the dashboard.

Every function returns PNG bytes and uses matplotlib's object API (no pyplot state), so it is
safe from the training thread and never opens a GUI window.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ._history import TrainingHistory
from ._static import figure_png, new_figure, pil_png

PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
           "#bcbd22", "#17becf"]


def curves_png(history: TrainingHistory, dpi: int = 72) -> bytes:
    """Loss, learning rate and validation metrics side by side (the live plot, frozen)."""
    fig = new_figure(11, 3.0)
    ax_loss, ax_lr, ax_val = fig.subplots(1, 3)
    xs = [b["x"] for b in history.batches]
    if xs:
        ax_loss.plot(xs, [b["loss"] for b in history.batches], label="loss", color=PALETTE[0], lw=1)
        for i, name in enumerate(history.loss_names()):
            ax_loss.plot(xs, [b["losses"].get(name, math.nan) for b in history.batches], label=name,
                         color=PALETTE[(i + 1) % len(PALETTE)], lw=0.8)
        ax_lr.plot(xs, [b["lr"] for b in history.batches], color=PALETTE[2], lw=1)
    rows = history.val_rows()
    for i, name in enumerate(history.metric_names()):
        ax_val.plot([history.val_x(r) for r in rows], [r["metrics"].get(name, math.nan) for r in rows], marker="o",
                    label=name, color=PALETTE[i % len(PALETTE)], lw=1, ms=3)
    for ax, title in ((ax_loss, "train loss"), (ax_lr, "learning rate"), (ax_val, "validation")):
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("epoch", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)
    return figure_png(fig, dpi)


def confusion_png(matrix: Sequence[Sequence[float]], names: Sequence[str], dpi: int = 72) -> bytes:
    """Rows are the true class, columns the predicted one; cells show counts."""
    import numpy as np

    m = np.asarray(matrix, dtype=float)
    if m.ndim != 2 or m.shape[0] != m.shape[1]:
        raise ValueError(f"confusion matrix must be square, got shape {m.shape}")
    n = m.shape[0]
    labels = list(names) + [f"#{i}" for i in range(len(names), n)]
    size = min(9.0, 2.0 + 0.45 * n)
    fig = new_figure(size, size * 0.85)
    ax = fig.add_subplot()
    ax.imshow(m, cmap="Blues")
    if n <= 25:
        top = m.max() or 1.0
        for i in range(n):
            for j in range(n):
                ax.text(j, i, f"{m[i, j]:g}", ha="center", va="center", fontsize=7,
                        color="white" if m[i, j] > top / 2 else "black")
    ax.set_xticks(range(n), labels[:n], rotation=45, ha="right", fontsize=7)
    ax.set_yticks(range(n), labels[:n], fontsize=7)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title("confusion matrix", fontsize=10)
    return figure_png(fig, dpi)


def pr_png(curve: dict[str, Any], names: Sequence[str], dpi: int = 72) -> bytes:
    """Precision against recall per class, with AP in the legend."""
    recall = list(curve["recall"])
    precisions = curve["precision"]
    aps = curve.get("ap") or [None] * len(precisions)
    fig = new_figure(4.5, 3.6)
    ax = fig.add_subplot()
    for i, prec in enumerate(precisions):
        name = names[i] if i < len(names) else f"#{i}"
        label = f"{name} {aps[i]:.3f}" if aps[i] is not None else name
        ax.plot(recall, list(prec), lw=1, label=label, color=PALETTE[i % len(PALETTE)])
    if aps and all(a is not None for a in aps) and aps:
        ax.set_title(f"PR curve (mAP {sum(aps) / len(aps):.3f})", fontsize=10)
    else:
        ax.set_title("PR curve", fontsize=10)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("recall")
    ax.set_ylabel("precision")
    ax.grid(alpha=0.3)
    if len(precisions) <= 12:
        ax.legend(fontsize=7)
    return figure_png(fig, dpi)


def _load_image(sample: dict[str, Any]):
    from PIL import Image

    if sample.get("image") is not None:
        img = sample["image"]
        if not isinstance(img, Image.Image):
            import numpy as np

            arr = np.asarray(img)
            if arr.dtype != np.uint8:
                arr = (np.clip(arr, 0, 1) * 255).astype(np.uint8) if arr.max() <= 1.0 else arr.astype(np.uint8)
            img = Image.fromarray(arr)
        return img.convert("RGB")
    path = Path(sample["file"])
    with Image.open(path) as im:
        return im.convert("RGB")


def samples_png(samples: Sequence[dict[str, Any]], names: Sequence[str], tile: int = 160, cols: int = 4) -> bytes:
    """Sample predictions drawn on their images: the class (green when right, red when wrong)
    for classification, ground-truth boxes (white) and predicted boxes (coloured) for detection."""
    from PIL import Image, ImageDraw

    def name(c):
        return names[int(c)] if c is not None and 0 <= int(c) < len(names) else str(c)

    samples = list(samples)[:16]
    cols = max(1, min(cols, len(samples)))
    rows = max(1, math.ceil(len(samples) / cols))
    sheet = Image.new("RGB", (cols * tile, rows * (tile + 16)), "white")
    for k, sample in enumerate(samples):
        img = _load_image(sample)
        scale = tile / max(img.size)
        img = img.resize((max(1, round(img.width * scale)), max(1, round(img.height * scale))))
        draw = ImageDraw.Draw(img)
        for box in sample.get("boxes") or []:
            c, *xyxy = box[:5]
            draw.rectangle([v * scale for v in xyxy], outline="white", width=1)
        for box in sample.get("pred_boxes") or []:
            c, *xyxy = box[:5]
            colour = PALETTE[int(c) % len(PALETTE)]
            draw.rectangle([v * scale for v in xyxy], outline=colour, width=2)
            score = f" {box[5]:.2f}" if len(box) > 5 else ""
            draw.text((xyxy[0] * scale + 2, xyxy[1] * scale + 1), f"{name(c)}{score}", fill=colour)
        x0, y0 = (k % cols) * tile, (k // cols) * (tile + 16)
        sheet.paste(img, (x0, y0))
        caption_draw = ImageDraw.Draw(sheet)
        if sample.get("pred") is not None:
            right = sample.get("label") is None or int(sample["label"]) == int(sample["pred"])
            score = f" {sample['score']:.2f}" if sample.get("score") is not None else ""
            text = f"{name(sample['pred'])}{score}"
            if not right:
                text += f" (true {name(sample['label'])})"
            caption_draw.text((x0 + 2, y0 + tile + 2), text, fill="#2ca02c" if right else "#d62728")
        elif sample.get("label") is not None:
            caption_draw.text((x0 + 2, y0 + tile + 2), name(sample["label"]), fill="black")
    return pil_png(sheet)
