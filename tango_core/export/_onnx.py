"""ONNX: the graph itself, fp16, and INT8 by ONNX Runtime's static QDQ quantisation.

:func:`write_onnx` is shared by the formats built from ONNX (OpenVINO, TVM, TensorRT, RKNN).
INT8 is static QDQ (uint8 activations, per-channel int8 weights) after ``quant_pre_process``,
calibrated on the user's images: on this CPU dynamic quantisation (ConvInteger) is slower than
fp32, static QDQ is faster, and u8s8 kernels are about 3x faster than s8s8 ones.
"""

from __future__ import annotations

import contextlib
import io
import re
import tempfile
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import require
from ._exporter import Artifacts, Context, ExportError
from ._table import builder

_OP = re.compile(r"(aten(?:::|\.)[A-Za-z0-9_]+|tfl\.[A-Za-z0-9_]+)")


def unsupported_op(fmt: str, exc: BaseException) -> ExportError:
    """An ExportError naming the operator the exporter choked on, when its message names one."""
    text = str(exc)
    match = _OP.search(text)
    op = (match.group(1) if match.group(1).startswith("tfl.") else match.group(1).replace(".", "::")) \
        if match else None
    if op is not None:
        return ExportError(fmt, f"the model uses {op}, which the {fmt} exporter does not support",
                           "replace that operation in the model, or pick another format", op=op)
    first = text.strip().splitlines()[0][:300] if text.strip() else type(exc).__name__
    return ExportError(fmt, f"{type(exc).__name__}: {first}")


def write_onnx(ctx: Context, path: Path, *, opset: int | None = None, dynamic: bool | None = None,
               simplify: bool | None = None, dynamo: bool | None = None, nms: bool | None = None,
               fmt: str | None = None, half: bool = False) -> Path:
    """The ONNX of the prepared model, fp32 or (``half``) fp16 (options default to the export's)."""
    require("onnx", "export", "exporting to ONNX")
    o = ctx.options
    opset = opset or o.get("opset") or 17
    dynamic = o.get("dynamic", False) if dynamic is None else dynamic
    simplify = o.get("simplify", True) if simplify is None else simplify
    dynamo = o.get("dynamo", False) if dynamo is None else dynamo
    nms = o.get("nms", False) if nms is None else nms
    fmt = fmt or ctx.spec.name
    model = ctx.model
    names = list(ctx.output_names)
    if nms:
        from ._detect import with_nms

        model = with_nms(ctx.model, ctx.source, ctx.options)
        names = ["detections"]
    path.parent.mkdir(parents=True, exist_ok=True)
    example = ctx.example
    if half:
        import copy

        model, example = copy.deepcopy(model).half(), example.half()
    kwargs: dict[str, Any] = {"input_names": ["images"], "output_names": names, "opset_version": opset}
    if dynamo:
        kwargs["opset_version"] = max(opset, 18)  # the dynamo exporter's lowest; it converts down noisily
        if dynamic:
            batch, h, w = (torch.export.Dim(n, min=1, max=4096) for n in ("batch", "height", "width"))
            kwargs["dynamic_shapes"] = ({0: batch, 2: h, 3: w},)
        kwargs.update(dynamo=True, verbose=False, optimize=True)
    else:
        if dynamic:
            axes = {"images": {0: "batch", 2: "height", 3: "width"}}
            axes.update({n: {0: "batch"} for n in names if not nms})
            kwargs["dynamic_axes"] = axes
        kwargs.update(dynamo=False, do_constant_folding=True)
    import onnx

    with tempfile.TemporaryDirectory(dir=path.parent, prefix=".onnx-") as tmpdir:
        tmp = Path(tmpdir) / "model.onnx"  # the dynamo exporter may write external data beside it
        try:
            with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
                warnings.simplefilter("ignore")
                torch.onnx.export(model, (example,), str(tmp), **kwargs)
        except Exception as exc:  # noqa: BLE001  exporter errors come in many types
            raise unsupported_op(fmt, exc) from exc
        proto = onnx.load(str(tmp))
    if simplify:
        slim = require("onnxslim", "export", "simplifying ONNX graphs")
        try:
            proto = slim.slim(proto)
        except Exception as exc:  # noqa: BLE001  a graph onnxslim cannot handle stays as exported
            ctx.notes.append(f"onnxslim skipped ({type(exc).__name__}: {str(exc)[:120]})")
    tmp = path.with_name(f".{path.name}.tmp")
    onnx.save(proto, str(tmp))
    tmp.replace(path)
    return path


class _Reader:
    """onnxruntime's CalibrationDataReader protocol over pre-processed images, one at a time."""

    def __init__(self, images: np.ndarray, batch: int, name: str = "images") -> None:
        self._batches = [images[i:i + batch] for i in range(0, len(images) - batch + 1, batch)] or [images[:batch]]
        self._name = name
        self._i = 0

    def get_next(self) -> dict[str, np.ndarray] | None:
        if self._i >= len(self._batches):
            return None
        self._i += 1
        return {self._name: np.ascontiguousarray(self._batches[self._i - 1], np.float32)}

    def rewind(self) -> None:
        self._i = 0


def tail_nodes(path: Path) -> list[str]:
    """Nodes after the last convolutions (a detector's box decoding): they stay in float.

    Boxes in pixels and scores in [0, 1] share one output tensor; one INT8 scale for both would
    round every score to zero, the classic loss of quantised YOLO heads.
    """
    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph
    producer = {o: n for n in graph.node for o in n.output}
    ancestors: set[str] = set()
    stack = [n for n in graph.node if n.op_type == "Conv"]
    while stack:
        node = stack.pop()
        if node.name in ancestors:
            continue
        ancestors.add(node.name)
        stack.extend(producer[i] for i in node.input if i in producer)
    return [n.name for n in graph.node if n.name not in ancestors]


def quantize_qdq(fp32: Path, out: Path, images: np.ndarray, batch: int, symmetric_activations: bool = False,
                 keep_tail_float: bool = False, float_ops: tuple[str, ...] = ()) -> Path:
    """Static INT8 QDQ, per-channel weights; ``symmetric_activations`` for TensorRT's explicit mode,
    ``keep_tail_float`` for detectors (see :func:`tail_nodes`), ``float_ops``: op types left in float."""
    require("onnxruntime", "export", "INT8 quantisation of ONNX models")
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    pre = out.with_name(f".{out.stem}.pre.onnx")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            quant_pre_process(str(fp32), str(pre), skip_symbolic_shape=True)
            exclude = tail_nodes(pre) if keep_tail_float else []
            if float_ops:
                import onnx

                exclude += [n.name for n in onnx.load(str(pre), load_external_data=False).graph.node
                            if n.op_type in float_ops]
            quantize_static(str(pre), str(out), _Reader(images, batch), quant_format=QuantFormat.QDQ,
                            nodes_to_exclude=exclude,
                            # uint8 activations: on x86 ORT's u8s8 kernels are ~3x faster than s8s8 here
                            per_channel=True, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                            calibrate_method=CalibrationMethod.MinMax,
                            extra_options={"ActivationSymmetric": symmetric_activations})
    finally:
        pre.unlink(missing_ok=True)
    return out


@builder("onnx")
def build_onnx(ctx: Context) -> Artifacts:
    if ctx.precision in ("fp32", "fp16"):
        # fp16 is exported from the half model: weights, activations and input in float16
        write_onnx(ctx, ctx.path, half=ctx.precision == "fp16")
        return Artifacts(files={"model": ctx.path}, half_io=ctx.precision == "fp16")
    fp32 = write_onnx(ctx, ctx.path.with_name(f".{ctx.path.stem}.fp32.onnx"))
    try:
        samples = ctx.calibration()
        quantize_qdq(fp32, ctx.path, samples.images, ctx.example.shape[0],
                     keep_tail_float=ctx.source.task == "detection")
        return Artifacts(files={"model": ctx.path},
                         quantization={"method": "onnxruntime static QDQ, per-channel weights, MinMax"})
    finally:
        fp32.unlink(missing_ok=True)

