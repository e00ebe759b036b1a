"""TensorFlow SavedModel, TFLite (fp32 / fp16 / dynamic-range / full-integer INT8) and Edge TPU.

All three start from ``torch.export`` via litert-torch, which keeps the PyTorch NCHW input and
needs no ONNX detour (about 20x faster than onnx2tf here).  Quantisation is ai-edge-quantizer's:
fp16 casts the weights, dynamic_int8 quantises weights and lets kernels quantise activations on
the fly, int8 is static full-integer (int8 input and output) calibrated on the user's images.
The SavedModel wraps the lowered StableHLO in an ``XlaCallModule`` op, the route jax2tf uses, so
it runs on TensorFlow (and TF Serving) without onnx2tf or a download.
"""

from __future__ import annotations

import contextlib
import io
import logging
import shutil
import tempfile
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .._io import atomic_write_bytes, atomic_write_text
from ..errors import require
from ._exporter import Artifacts, Context, ExportError
from ._table import builder

_FP16_RECIPE = [{"regex": ".*", "operation": "*", "algorithm_key": "float_casting",
                 "op_config": {"weight_tensor_config": {"num_bits": 16, "dtype": "FLOAT"},
                               "compute_precision": "FLOAT", "explicit_dequantize": True}}]
_INT8_WEIGHTS = {"num_bits": 8, "symmetric": True, "granularity": "CHANNELWISE", "dtype": "INT"}
_DYNAMIC_RECIPE = [{"regex": ".*", "operation": "*", "algorithm_key": "min_max_uniform_quantize",
                    "op_config": {"weight_tensor_config": _INT8_WEIGHTS, "compute_precision": "INTEGER",
                                  "explicit_dequantize": False}}]
_STATIC_RECIPE = [{"regex": ".*", "operation": "*", "algorithm_key": "min_max_uniform_quantize",
                   "op_config": {"activation_tensor_config": {"num_bits": 8, "symmetric": False,
                                                              "granularity": "TENSORWISE", "dtype": "INT"},
                                 "weight_tensor_config": _INT8_WEIGHTS, "compute_precision": "INTEGER",
                                 "explicit_dequantize": False}}]


@contextlib.contextmanager
def _quiet():
    """litert-torch and TensorFlow print progress to stdout and warnings to the log."""
    loggers = [logging.getLogger(n) for n in ("", "absl", "tensorflow")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()), \
                contextlib.redirect_stderr(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)


def _lowering_error(fmt: str, exc: BaseException) -> ExportError:
    from ._onnx import unsupported_op

    return unsupported_op(fmt, exc)


def _tflite_friendly(model: torch.nn.Module, example: torch.Tensor) -> torch.nn.Module:
    """``x ** 2`` -> ``x * x``: LiteRT's converter refuses tfl.pow, which YOLO box decoding needs."""
    try:
        program = torch.export.export(model, (example,))
    except Exception:  # noqa: BLE001  litert-torch reports export errors itself, with the op
        return model
    graph_module = program.module()
    graph = graph_module.graph
    changed = False
    for node in list(graph.nodes):
        if node.op == "call_function" and node.target is torch.ops.aten.pow.Tensor_Scalar and node.args[1] == 2:
            with graph.inserting_before(node):
                square = graph.call_function(torch.ops.aten.mul.Tensor, (node.args[0], node.args[0]))
            node.replace_all_uses_with(square)
            graph.erase_node(node)
            changed = True
    if not changed:
        return model
    graph_module.recompile()
    return graph_module


def float_tflite(ctx: Context, path: Path, channels_last: bool = False) -> Path:
    """The fp32 .tflite of the prepared model (NCHW input unless ``channels_last``)."""
    litert_torch = require("litert_torch", "tflite", "exporting to TFLite")
    model, example = _tflite_friendly(ctx.model, ctx.example), ctx.example
    if channels_last:
        model = litert_torch.to_channel_last_io(model, args=[0])
        example = example.permute(0, 2, 3, 1).contiguous()
    try:
        with _quiet():
            edge = litert_torch.convert(model, (example,))  # ctx.model is in eval mode already
            with tempfile.TemporaryDirectory(dir=path.parent, prefix=".tflite-") as tmp:
                edge.export(str(Path(tmp) / "model.tflite"))
                atomic_write_bytes(path, (Path(tmp) / "model.tflite").read_bytes())
    except Exception as exc:  # noqa: BLE001  lowering errors come in many types
        raise _lowering_error(ctx.spec.name, exc) from exc
    return path


def _tail_tensors(path: Path) -> list[str]:
    """Output tensors of the ops after the last convolution (a detector's box decoding)."""
    lite = require("ai_edge_litert.interpreter", "tflite", "reading TFLite models")
    interp = lite.Interpreter(model_path=str(path))
    ops = interp._get_ops_details()  # noqa: SLF001  the op list has no public accessor
    convs = [o["index"] for o in ops if o["op_name"] in ("CONV_2D", "DEPTHWISE_CONV_2D", "TRANSPOSE_CONV")]
    if not convs:
        return []
    names = {t["index"]: t["name"] for t in interp.get_tensor_details()}
    return [names[i] for o in ops if o["index"] > max(convs) for i in o["outputs"] if i in names]


def quantize_tflite(float_path: Path, out: Path, precision: str, images: np.ndarray | None, layout: str,
                    float_tail: bool = False) -> Path:
    """``float_tail``: leave the ops after the last convolution in float (see ``_onnx.tail_nodes``)."""
    import re

    aeq = require("ai_edge_quantizer.quantizer", "tflite", "quantising TFLite models")
    recipe = list({"fp16": _FP16_RECIPE, "dynamic_int8": _DYNAMIC_RECIPE, "int8": _STATIC_RECIPE}[precision])
    if float_tail and precision != "fp16":
        # an op's scope is its output tensor names, each followed by ';'
        recipe += [{"regex": f"(^|;){re.escape(name)};", "operation": "*", "algorithm_key": "no_quantize"}
                   for name in _tail_tensors(float_path)]
    with _quiet():
        q = aeq.Quantizer(str(float_path), recipe)
        calibration = None
        if q.need_calibration:
            from ai_edge_quantizer.utils import tfl_interpreter_utils as tiu

            name = _signature_input(float_path)
            x = images.transpose(0, 2, 3, 1) if layout == "NHWC" else images
            data = {tiu.DEFAULT_SIGNATURE_KEY: [{name: np.ascontiguousarray(x[i:i + 1], np.float32)}
                                                for i in range(len(x))]}
            calibration = q.calibrate(data, num_threads=1)
        result = q.quantize(calibration, enable_progress_report=False)
    atomic_write_bytes(out, bytes(result.quantized_model))
    return out


def _signature_input(path: Path) -> str:
    lite = require("ai_edge_litert.interpreter", "tflite", "reading TFLite models")
    interp = lite.Interpreter(model_path=str(path))
    sig = interp.get_signature_list()
    return next(iter(sig.values()))["inputs"][0]


def io_details(path: Path) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Input patch and per-output quantisation of a .tflite, for the metadata."""
    lite = require("ai_edge_litert.interpreter", "tflite", "reading TFLite models")
    interp = lite.Interpreter(model_path=str(path))
    inp = interp.get_input_details()[0]
    outs = sorted(interp.get_output_details(), key=lambda d: d["name"])

    def quant(d):
        scale, zero = d["quantization"]
        return {"scale": float(scale), "zero_point": int(zero)} if scale else None

    patch = {"dtype": np.dtype(inp["dtype"]).name, "quantization": quant(inp), "name": inp["name"]}
    return patch, [{"dtype": np.dtype(d["dtype"]).name, "quantization": quant(d)} for d in outs]


def _tflite_artifacts(ctx: Context, path: Path, role_files: dict[str, Path], layout: str) -> Artifacts:
    patch, outs = io_details(path)
    patch["layout"] = layout
    if layout == "NHWC":
        n, c, h, w = ctx.example.shape
        patch["shape"] = [n, h, w, c]
    outputs = [{"dtype": o["dtype"], "quantization": o["quantization"]} for o in outs]
    quant = None
    if ctx.precision in ("dynamic_int8", "int8"):
        quant = {"method": {"int8": "ai-edge-quantizer static full-integer (int8 input/output), per-channel weights",
                            "dynamic_int8": "ai-edge-quantizer dynamic range: int8 weights, activations "
                                            "quantised at run time"}[ctx.precision]}
    return Artifacts(files=role_files, input=patch, outputs=outputs, quantization=quant)


@builder("tflite")
def build_tflite(ctx: Context) -> Artifacts:
    if ctx.precision == "fp32":
        float_tflite(ctx, ctx.path)
    else:
        tmp = float_tflite(ctx, ctx.sibling(".fp32.tflite.tmp"))
        try:
            images = ctx.calibration().images if ctx.precision == "int8" else None
            quantize_tflite(tmp, ctx.path, ctx.precision, images, "NCHW",
                            float_tail=ctx.source.task == "detection")
        finally:
            tmp.unlink(missing_ok=True)
    return _tflite_artifacts(ctx, ctx.path, {"model": ctx.path}, "NCHW")


@builder("edgetpu")
def build_edgetpu(ctx: Context) -> Artifacts:
    folder = ctx.path
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    stem = folder.name[: -len(ctx.spec.suffix)]
    float_path = float_tflite(ctx, folder / f".{stem}.fp32.tflite", channels_last=True)
    int8 = folder / f"{stem}_int8.tflite"
    try:
        quantize_tflite(float_path, int8, "int8", ctx.calibration().images, "NHWC",
                        float_tail=ctx.source.task == "detection")
    finally:
        float_path.unlink(missing_ok=True)
    compiled = f"{stem}_int8_edgetpu.tflite"
    script = folder / "compile_edgetpu.sh"
    from ._templates import render

    atomic_write_text(script, render("compile_edgetpu.sh", model=int8.name, compiled=compiled))
    script.chmod(0o755)
    art = _tflite_artifacts(ctx, int8, {"model": folder / compiled, "tflite": int8, "compile_script": script},
                            "NHWC")
    art.verify = ("tflite", "litert")
    art.notes.append("the Edge TPU compiler does not run here: run compile_edgetpu.sh on an x86-64 Linux host; "
                     "the INT8 TFLite it compiles is verified here on the CPU")
    return art


@builder("saved_model")
def build_saved_model(ctx: Context) -> Artifacts:
    from ._runners import import_tensorflow

    tf = import_tensorflow("writing a TensorFlow SavedModel")
    require("litert_torch", "tensorflow", "lowering the model to StableHLO for TensorFlow")
    from litert_torch.backend import export as lowering

    folder = ctx.path
    try:
        with _quiet():
            program = torch.export.export(ctx.model.eval(), (ctx.example,))
            lowered = lowering.exported_program_to_mlir(program)
            fn = lowered.tf_function
            concrete = fn.get_concrete_function()
            module = tf.Module()
            module.serve = fn
            module.weights = list(concrete.variables)  # tracked, so the SavedModel keeps them
            tmp = folder.with_name(f".{folder.name}.tmp")
            shutil.rmtree(tmp, ignore_errors=True)
            tf.saved_model.save(module, str(tmp), signatures={"serving_default": concrete})
    except Exception as exc:  # noqa: BLE001  lowering errors come in many types
        raise _lowering_error("saved_model", exc) from exc
    shutil.rmtree(folder, ignore_errors=True)
    tmp.replace(folder)
    return Artifacts(files={"model": folder}, input={"name": "args_0"},
                     notes=["StableHLO in XlaCallModule (TensorFlow >= 2.12 runs it on CPU and GPU)"])
