"""Small, learnable data for engine tests (imported by tests and by the subprocess of the kill test)."""

from __future__ import annotations

import torch

CLASSES = ["top-left", "top-right", "bottom-left", "bottom-right"]


def quadrant_data(n_train: int = 96, n_val: int = 32, size: int = 16, channels: int = 3, seed: int = 0,
                  classes: int = 4) -> dict:
    """Noise with one bright quadrant; the quadrant is the class.  A small CNN learns it in a few epochs."""
    g = torch.Generator().manual_seed(seed)

    def make(n: int) -> tuple[torch.Tensor, torch.Tensor]:
        y = torch.arange(n) % classes
        x = torch.randint(0, 90, (n, channels, size, size), generator=g, dtype=torch.uint8)
        h = size // 2
        for q in range(classes):
            r, c = divmod(q, 2)
            x[y == q, :, r * h:(r + 1) * h, c * h:(c + 1) * h] += 150
        return x, y

    return {"train": make(n_train), "val": make(n_val), "classes": CLASSES[:classes]}


def make_image_dataset(root, n_per_class: int = 6, size: int = 16, classes: int = 3, val: float = 0.34):
    """A tango Dataset on disk with PNG files, built through the data layer's public API."""
    import io

    from PIL import Image

    from tango_core.data import Dataset

    data = quadrant_data(n_train=n_per_class * classes, n_val=0, size=size, classes=classes)
    ds = Dataset.create(root, task="classification", classes=data["classes"][:classes])
    x, y = data["train"]
    for i in range(len(y)):
        buf = io.BytesIO()
        Image.fromarray(x[i].permute(1, 2, 0).numpy()).save(buf, "PNG")
        rec = ds.add_image(buf.getvalue(), name=f"img_{i:03d}.png")
        ds.set_label(rec.id, int(y[i]))
    ds.split(val=val, seed=0)
    ds.save()
    return ds
