"""Helpers of the deploy tests: a tiny detector, the engine's reference predictions, and running a
generated package the way a user does."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
from PIL import Image

CLASSES = ["cat", "dog", "bird"]


class TinyDetector(nn.Module):
    """Decoded boxes in input pixels and per-class sigmoid scores, ``(B, N, 4 + nc [+ nm])``, as the
    YOLO heads give in eval mode; with ``nm`` mask coefficients it also returns prototypes."""

    def __init__(self, nc: int = 2, nm: int = 0, stride: int = 8) -> None:
        super().__init__()
        self.nc, self.nm, self.s = nc, nm, stride
        self.body = nn.Sequential(nn.Conv2d(3, 8, 3, 2, 1), nn.ReLU(), nn.Conv2d(8, 16, 3, 2, 1), nn.ReLU(),
                                  nn.Conv2d(16, 16, 3, 2, 1), nn.ReLU())
        self.head = nn.Conv2d(16, 4 + nc + nm, 1)
        if nm:
            self.proto = nn.Sequential(nn.Conv2d(3, 8, 3, 2, 1), nn.ReLU(), nn.Conv2d(8, nm, 3, 2, 1))
        self.register_buffer("stride", torch.tensor([float(stride)]))

    def forward(self, x):
        f = self.head(self.body(x))
        _, _, gh, gw = f.shape
        gy, gx = torch.meshgrid(torch.arange(gh, dtype=x.dtype), torch.arange(gw, dtype=x.dtype), indexing="ij")
        cx = (f[:, 0].sigmoid() + gx) * self.s
        cy = (f[:, 1].sigmoid() + gy) * self.s
        w = f[:, 2].clamp(-3, 3).exp() * self.s * 1.5
        h = f[:, 3].clamp(-3, 3).exp() * self.s * 1.5
        boxes = torch.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], 1)
        out = torch.cat([boxes, f[:, 4:4 + self.nc].sigmoid(), f[:, 4 + self.nc:]], 1).flatten(2).transpose(1, 2)
        return (out, self.proto(x)) if self.nm else out


def engine_probabilities(model: nn.Module, image: Path, meta: dict) -> np.ndarray:
    """What the engine predicts: its own pre-processing (tango_core.export) and the PyTorch model."""
    from tango_core.export._preprocess import to_input

    channels = meta["input"]["shape"][1] if meta["input"].get("layout", "NCHW") == "NCHW" else meta["input"]["shape"][3]
    with Image.open(image) as img:
        x, _ = to_input(img, meta["options"]["imgsz"], meta["preprocess"], channels)
    with torch.inference_mode():
        logits = model(torch.from_numpy(x)[None])
    return torch.softmax(logits.double(), 1)[0].numpy()


def clean_env(**extra: str) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "TANGO_BACKEND", "TANGO_MODEL_DIR")}
    env.update(OMP_NUM_THREADS="1", PYTHONDONTWRITEBYTECODE="1", **extra)
    return env


def run_runner(package: Path, *sources, out: Path, backend: str | None = None, extra: tuple = ()) -> dict:
    """``python -m app.predict`` in the package, as a user runs it; its predictions.json."""
    cmd = [sys.executable, "-m", "app.predict", *map(str, sources), "--out", str(out), *extra]
    if backend:
        cmd += ["--backend", backend]
    proc = subprocess.run(cmd, cwd=package, env=clean_env(), capture_output=True, text=True, timeout=600)
    assert proc.returncode in (0, 1), proc.stderr[-3000:]
    return json.loads((out / "predictions.json").read_text())
