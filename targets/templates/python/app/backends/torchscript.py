"""TorchScript on CUDA when a GPU is visible, else on the CPU (``TANGO_DEVICE`` overrides)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from . import require


class Backend:
    name = "torchscript"
    thread_safe = True

    def __init__(self, path: Path, meta: dict[str, Any], threads: int | None = None) -> None:
        torch = require("torch", "use the PyTorch base image, or pip install torch")
        self._torch = torch
        if threads:
            torch.set_num_threads(int(threads))
        wanted = os.environ.get("TANGO_DEVICE") or ("cuda" if torch.cuda.is_available() else "cpu")
        self.device = torch.device(wanted)
        self.model = torch.jit.load(str(path), map_location=self.device).eval()
        inp = meta.get("input") or {}
        self.dtype = np.dtype(inp.get("dtype", "float32"))
        self.layout = "NCHW"
        self.quantization = None
        self.output_quantization = [None] * len(meta.get("outputs") or [])
        self.raw_pixels = False

    def _flat(self, out: Any) -> list[np.ndarray]:
        if isinstance(out, self._torch.Tensor):
            return [out.detach().float().cpu().numpy()]
        if isinstance(out, dict):
            out = list(out.values())
        return [a for item in out for a in self._flat(item)]

    def run(self, x: np.ndarray) -> list[np.ndarray]:
        with self._torch.inference_mode():
            return self._flat(self.model(self._torch.from_numpy(x).to(self.device)))
