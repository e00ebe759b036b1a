"""TensorFlow Lite / LiteRT flatbuffers with the LiteRT interpreter (``ai-edge-litert``), or the older
``tflite-runtime`` where that is what the device has."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ..processing import input_channels
from . import RuntimeMissing


def interpreter_module():
    try:
        from ai_edge_litert import interpreter
    except ImportError:
        try:
            from tflite_runtime import interpreter
        except ImportError:
            raise RuntimeMissing("neither ai-edge-litert nor tflite-runtime is installed; "
                                 "pip install -r requirements.txt") from None
    return interpreter


def quantization(detail: dict[str, Any]) -> dict[str, float] | None:
    scale, zero_point = detail.get("quantization", (0.0, 0))
    return {"scale": float(scale), "zero_point": int(zero_point)} if scale else None


class Backend:
    name = "litert"
    thread_safe = False  # an interpreter holds its tensors: one call at a time

    def __init__(self, path: Path, meta: dict[str, Any], threads: int | None = None,
                 delegates: list[Any] | None = None) -> None:
        lite = interpreter_module()
        self.interpreter = lite.Interpreter(model_path=str(path), num_threads=threads or None,
                                            experimental_delegates=delegates)
        self.interpreter.allocate_tensors()
        self.input = self.interpreter.get_input_details()[0]
        outs = self.interpreter.get_output_details()
        # the exporter lists outputs in name order; keep that order so output i means the same thing
        self.outputs = [outs[i] for i in sorted(range(len(outs)), key=lambda i: outs[i]["name"])]
        self.dtype = np.dtype(self.input["dtype"])
        shape = list(self.input["shape"])
        channels = input_channels(meta)
        self.layout = "NHWC" if len(shape) == 4 and shape[3] == channels and shape[1] != channels else "NCHW"
        self.quantization = quantization(self.input) if self.dtype.kind in "iu" else None
        self.output_quantization = [quantization(o) if np.dtype(o["dtype"]).kind in "iu" else None
                                    for o in self.outputs]
        self.raw_pixels = False

    def run(self, x: np.ndarray) -> list[np.ndarray]:
        self.interpreter.set_tensor(self.input["index"], x)
        self.interpreter.invoke()
        return [self.interpreter.get_tensor(o["index"]) for o in self.outputs]
