"""ONNX Runtime: CPU everywhere, CUDA / TensorRT execution providers where onnxruntime-gpu is installed."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from . import require

_DTYPES = {"tensor(float)": np.float32, "tensor(float16)": np.float16, "tensor(uint8)": np.uint8,
           "tensor(int8)": np.int8}


class Backend:
    name = "onnxruntime"
    thread_safe = True  # InferenceSession.run may be called from several threads

    def __init__(self, path: Path, meta: dict[str, Any], threads: int | None = None) -> None:
        ort = require("onnxruntime", "pip install -r requirements.txt (onnxruntime)")
        opts = ort.SessionOptions()
        if threads:
            opts.intra_op_num_threads, opts.inter_op_num_threads = int(threads), 1
        opts.log_severity_level = 3
        wanted = [p for p in os.environ.get("TANGO_ORT_PROVIDERS", "").split(",") if p] or \
            ["CUDAExecutionProvider", "CPUExecutionProvider"]
        providers = [p for p in wanted if p in ort.get_available_providers()] or ["CPUExecutionProvider"]
        self.session = ort.InferenceSession(str(path), opts, providers=providers)
        first = self.session.get_inputs()[0]
        self.input_name = first.name
        self.dtype = np.dtype(_DTYPES.get(first.type, np.float32))
        shape = [d if isinstance(d, int) else -1 for d in first.shape]
        # an ONNX built for another runtime (the RKNN / TensorRT source) is plain float NCHW
        self.layout = "NHWC" if len(shape) == 4 and shape[3] in (1, 3) and shape[1] not in (1, 3) else "NCHW"
        quant = (meta.get("input") or {}).get("quantization")
        self.quantization = quant if self.dtype.kind in "iu" else None
        self.output_quantization = [o.get("quantization") for o in meta.get("outputs") or []]
        self.raw_pixels = False
        self.providers = self.session.get_providers()

    def run(self, x: np.ndarray) -> list[np.ndarray]:
        return self.session.run(None, {self.input_name: x})
