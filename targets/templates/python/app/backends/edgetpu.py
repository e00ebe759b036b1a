"""Coral Edge TPU: the compiled ``*_edgetpu.tflite`` run through the ``libedgetpu`` delegate.

Compile the INT8 TFLite with ``compile_edgetpu.sh`` (on an x86-64 Linux host) first.  Without a
TPU, run the INT8 TFLite on the CPU with ``--backend litert`` (what the host check does).
"""

from __future__ import annotations

import os
import platform
from pathlib import Path
from typing import Any

from . import RuntimeMissing
from .litert import Backend as LiteRT
from .litert import interpreter_module

_LIBRARY = {"Linux": "libedgetpu.so.1", "Darwin": "libedgetpu.1.dylib", "Windows": "edgetpu.dll"}


class Backend(LiteRT):
    name = "edgetpu"

    def __init__(self, path: Path, meta: dict[str, Any], threads: int | None = None) -> None:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"{path} does not exist: compile the INT8 model with ./compile_edgetpu.sh "
                                    "(edgetpu_compiler) first")
        lite = interpreter_module()
        library = os.environ.get("TANGO_EDGETPU_LIBRARY", _LIBRARY.get(platform.system(), "libedgetpu.so.1"))
        device = os.environ.get("TANGO_EDGETPU_DEVICE")  # e.g. "pci:0" or "usb:0" with several TPUs
        try:
            delegate = lite.load_delegate(library, {"device": device} if device else {})
        except (ValueError, OSError) as exc:
            raise RuntimeMissing(f"the Edge TPU delegate {library} could not be loaded ({exc}); install "
                                 "libedgetpu1-std (see README) and plug in the Coral TPU") from None
        super().__init__(path, meta, threads, delegates=[delegate])
        self.name = "edgetpu"
