"""The model with its pre- and post-processing: what the runner, the server and the smoke test call.

``tango-package.json`` at the package root says which model files and backends the package has;
the export's metadata beside the model says everything about its input and outputs.
``TANGO_MODEL_DIR`` points at another copy of the model folder (a mounted volume) without
rebuilding the image; ``TANGO_BACKEND`` picks another of the package's backends (the host check).
"""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from . import processing
from .backends import load_backend

PACKAGE_ROOT = Path(__file__).resolve().parent.parent


class PackageError(RuntimeError):
    """The package files are missing or inconsistent; the message names the file."""


def read_package(root: Path | None = None) -> tuple[dict[str, Any], Path]:
    root = Path(root or os.environ.get("TANGO_PACKAGE_DIR") or PACKAGE_ROOT)
    path = root / "tango-package.json"
    try:
        return json.loads(path.read_text(encoding="utf-8")), root
    except FileNotFoundError:
        raise PackageError(f"{path} not found: run from the package folder, or set TANGO_PACKAGE_DIR") from None
    except json.JSONDecodeError as exc:
        raise PackageError(f"{path}: not valid JSON ({exc})") from None


class Predictor:
    """``Predictor().predict(image)`` -> a JSON-ready dict; ``infer(x)`` runs a float NCHW batch."""

    def __init__(self, root: str | Path | None = None, backend: str | None = None, threads: int | None = None):
        self.package, self.root = read_package(Path(root) if root else None)
        model_dir = Path(os.environ.get("TANGO_MODEL_DIR") or self.root / self.package["model_dir"])
        meta_path = model_dir / self.package["metadata"]
        try:
            self.meta = json.loads(meta_path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise PackageError(f"{meta_path} not found (the export's metadata file)") from None
        backends = self.package["backends"]
        self.backend_name = backend or os.environ.get("TANGO_BACKEND") or self.package["backend"]
        if self.backend_name not in backends:
            raise PackageError(f"backend {self.backend_name!r} is not in this package (it has {sorted(backends)})")
        entry = backends[self.backend_name]
        self.model_path = model_dir / entry["file"]
        if threads is None and os.environ.get("TANGO_THREADS"):
            threads = int(os.environ["TANGO_THREADS"])
        self.backend = load_backend(entry.get("module", self.backend_name))(self.model_path, self.meta, threads)
        self._lock = None if getattr(self.backend, "thread_safe", False) else threading.Lock()
        shape = list(self.meta["input"]["shape"])
        self.batch = int(shape[0]) if isinstance(shape[0], int) and shape[0] > 0 else 1
        self.dynamic_batch = bool((self.meta["input"].get("dynamic") or {}).get("batch"))
        self.last_infer_s = 0.0

    # --- what the model is ------------------------------------------------------------------------
    @property
    def name(self) -> str:
        return self.package["name"]

    @property
    def task(self) -> str:
        return self.meta.get("task", "classification")

    @property
    def class_names(self) -> list[str]:
        return list(self.meta.get("class_names") or [])

    @property
    def input_name(self) -> str:
        return self.meta["input"].get("name", "images")

    @property
    def input_shape(self) -> list[int]:
        """The float input of the PyTorch model, NCHW (what KServe v2 clients send), whatever
        layout the file itself takes."""
        shape = [int(d) for d in self.meta["input"]["shape"]]
        if self.meta["input"].get("layout") == "NHWC":
            shape = [shape[0], shape[3], shape[1], shape[2]]
        return shape

    @property
    def output_names(self) -> list[str]:
        return [o["name"] for o in self.meta.get("outputs") or []]

    @property
    def channels(self) -> int:
        return processing.input_channels(self.meta)

    # --- running it -------------------------------------------------------------------------------
    def _run(self, x: np.ndarray) -> list[np.ndarray]:
        b = self.backend
        file_input = x if b.raw_pixels else processing.to_file_input(x, b.dtype, b.layout, b.quantization)
        started = time.perf_counter()
        if self._lock is None:
            outs = b.run(file_input)
        else:
            with self._lock:
                outs = b.run(file_input)
        self.last_infer_s = time.perf_counter() - started
        return processing.dequantize(outs, b.output_quantization)

    def infer(self, x: np.ndarray) -> list[np.ndarray]:
        """A float32 NCHW batch (already pre-processed) -> the model's float32 outputs.

        A batch larger than the model's fixed batch is run in chunks (padding the last one).
        """
        if getattr(self.backend, "raw_pixels", False):
            raise PackageError(f"the {self.backend_name} backend takes raw pixels: use predict() with images")
        x = np.asarray(x, np.float32)
        if self.dynamic_batch or len(x) == self.batch:
            return self._run(np.ascontiguousarray(x))
        chunks = []
        for start in range(0, len(x), self.batch):
            part = x[start:start + self.batch]
            n = len(part)
            if n < self.batch:
                part = np.concatenate([part, np.repeat(part[-1:], self.batch - n, axis=0)])
            chunks.append([o[:n] for o in self._run(np.ascontiguousarray(part))])
        return [np.concatenate([c[i] for c in chunks]) for i in range(len(chunks[0]))]

    def predict(self, image: Any, *, top_k: int = 5, conf: float | None = None, iou: float | None = None,
                max_det: int | None = None, keep_masks: bool = False) -> dict[str, Any]:
        """An image (path, bytes, PIL image or HWC uint8 array) -> the prediction as plain data."""
        x, geometry = processing.preprocess(image, self.meta, raw_pixels=self.backend.raw_pixels)
        if len(x) != self.batch and not self.dynamic_batch:
            x = np.repeat(x, self.batch, axis=0)
        outputs = [o[:1] for o in self._run(x)]
        result = processing.postprocess(outputs, self.meta, geometry, top_k=top_k, conf=conf, iou=iou,
                                        max_det=max_det)
        result["inference_ms"] = round(self.last_infer_s * 1000, 3)
        return result if keep_masks else processing.public(result)

    def warmup(self, runs: int = 2) -> None:
        h, w = processing.input_size(self.meta)
        image = np.full((h, w, 3), 114, np.uint8)
        for _ in range(runs):
            self.predict(image)

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "task": self.task, "backend": self.backend_name,
                "model": str(self.model_path.name), "input": self.meta["input"], "outputs": self.meta.get("outputs"),
                "class_names": self.class_names, "target": self.package.get("target"),
                "precision": self.meta.get("precision")}
