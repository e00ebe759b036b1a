"""Rockchip NPU: the ``.rknn`` model (built from the ONNX with ``convert_rknn.py`` on an x86-64 host)
run with ``rknn-toolkit-lite2`` on the board.  The conversion folds the normalisation into the
model, so it takes the resized uint8 pixels (NHWC) directly."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from . import RuntimeMissing


class Backend:
    name = "rknn"
    thread_safe = False

    def __init__(self, path: Path, meta: dict[str, Any], threads: int | None = None) -> None:
        try:
            from rknnlite.api import RKNNLite
        except ImportError:
            raise RuntimeMissing("rknn-toolkit-lite2 is not installed: see README (install on the board)") from None
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"{path} does not exist: convert the ONNX with convert_rknn.py on an x86-64 "
                                    "host first (README)")
        self.rknn = RKNNLite(verbose=False)
        if self.rknn.load_rknn(str(path)) != 0:
            raise RuntimeError(f"{path}: rknn-toolkit-lite2 cannot load the model")
        core = os.environ.get("TANGO_RKNN_CORE")  # RK3588 only: 0, 1, 2 or "auto"
        if core is None:
            ret = self.rknn.init_runtime()
        else:
            masks = {"auto": RKNNLite.NPU_CORE_AUTO, "0": RKNNLite.NPU_CORE_0, "1": RKNNLite.NPU_CORE_1,
                     "2": RKNNLite.NPU_CORE_2}
            ret = self.rknn.init_runtime(core_mask=masks[core])
        if ret != 0:
            raise RuntimeError("the NPU runtime did not start (is this a Rockchip board with librknnrt.so?)")
        self.dtype = np.dtype(np.uint8)
        self.layout = "NHWC"
        self.quantization = None
        self.output_quantization = [None] * len(meta.get("outputs") or [])
        self.raw_pixels = True

    def run(self, x: np.ndarray) -> list[np.ndarray]:
        outs = self.rknn.inference(inputs=[x])
        if outs is None:
            raise RuntimeError("the NPU returned no output")
        return [np.asarray(o) for o in outs]
