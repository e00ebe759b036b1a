"""PyTorch weights and TorchScript: the formats that need nothing beyond torch."""

from __future__ import annotations

import warnings

import torch

from .._io import atomic_write_bytes
from ._exporter import Artifacts, Context, ExportError
from ._table import builder


@builder("pytorch")
def build_pytorch(ctx: Context) -> Artifacts:
    from ..models.weights import save_weights

    src = ctx.source
    model = ctx.model.half() if ctx.precision == "fp16" else ctx.model
    notes = []
    if src.name is None:
        notes.append("the module is not in the model registry: rebuild it with your code, then load_weights()")
    try:
        save_weights(model, ctx.path, num_classes=src.num_classes, classes=src.class_names, task=src.task,
                     imgsz=src.imgsz, preprocess=src.preprocess, in_channels=src.in_channels,
                     precision=ctx.precision, **({"detection": src.detection} if src.detection else {}))
    except (TypeError, RuntimeError) as exc:
        raise ExportError("pytorch", str(exc)) from exc
    return Artifacts(files={"model": ctx.path}, notes=notes, half_io=ctx.precision == "fp16")


@builder("torchscript")
def build_torchscript(ctx: Context) -> Artifacts:
    half = ctx.precision == "fp16"
    model = ctx.model.half() if half else ctx.model
    example = ctx.example.half() if half else ctx.example
    try:
        with torch.inference_mode(False), torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # torch.jit is deprecated, still the TorchScript route
            traced = torch.jit.trace(model, example, strict=False, check_trace=False)
            traced = torch.jit.freeze(traced.eval())
    except Exception as exc:  # noqa: BLE001  tracing errors come in many types
        raise ExportError("torchscript", f"{type(exc).__name__}: {str(exc).splitlines()[0][:300]}",
                          "the model's forward must be traceable (no data-dependent Python control flow)") from exc
    import io

    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        torch.jit.save(traced, buf)
    atomic_write_bytes(ctx.path, buf.getvalue())
    return Artifacts(files={"model": ctx.path}, half_io=half)
