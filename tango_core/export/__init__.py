"""Export and optimisation for every runtime of the target catalog, each export verified.

>>> result = export("runs/train/best.pt", "onnx", precision="int8", calibration="data/")
>>> runner = load_exported(result.metadata_path)

The format table is ``formats.yaml``; the metadata schema and the verification rules are in
docs/export.md.
"""

from __future__ import annotations

import importlib
import os

# converters print progress bars and C++ logs into notebooks and reports; set these variables
# yourself to see them again
os.environ.setdefault("LITERT_TORCH_SHOW_PROGRESS", "n")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from ._exporter import ExportError, ExportResult, VerificationError, export
from ._runners import load_exported, read_metadata
from ._table import get_format, list_formats

# each format module registers its builder with the table
for _module in ("_torch", "_onnx", "_tf", "_openvino", "_tvm", "_tensorrt", "_vendor"):
    try:
        importlib.import_module(f"{__name__}.{_module}")
    except ModuleNotFoundError as exc:  # a format module still being written is simply absent
        if exc.name != f"{__name__}.{_module}":
            raise


def verify(path, model, data=None, threads: int = 1):
    """Compare an existing export with ``model`` again; see :func:`._verify.verify`."""
    from ._verify import verify as _verify

    return _verify(path, model, data=data, threads=threads)


def benchmark(*args, **kwargs):
    """Export to every format that runs here and time each one; see :mod:`._benchmark`."""
    from ._benchmark import benchmark as _benchmark

    return _benchmark(*args, **kwargs)


def select_export(*args, **kwargs):
    """Export the target's candidates, time each here and keep the fastest; see :mod:`._select`."""
    from ._select import select_export as _select_export

    return _select_export(*args, **kwargs)


__all__ = ["ExportError", "ExportResult", "VerificationError", "benchmark", "export", "get_format",
           "list_formats", "load_exported", "read_metadata", "select_export", "verify"]
