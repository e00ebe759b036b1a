"""``export()``: one function drives every row of the format table.

It resolves the model and options, prepares the inference graph, calls the format's builder,
writes the metadata beside the file, and verifies the file in its own runtime.  Builders only
turn a prepared model into files; everything shared (options, metadata, events, verification)
lives here.
"""

from __future__ import annotations

import datetime as _dt
import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from .. import __version__
from .. import events as ev
from .._io import write_json
from ..errors import ConfigError, TangoError
from ._data import Samples, load_samples
from ._source import Source, load_source, prepare
from ._table import BUILDERS, FormatSpec, get_format


class ExportError(TangoError):
    """A format could not be built; ``op`` names the operator the runtime does not support, if any."""

    def __init__(self, fmt: str, problem: str, hint: str = "", op: str | None = None):
        self.format, self.op = fmt, op
        super().__init__(f"export to {fmt} failed: {problem}" + (f" ({hint})" if hint else ""))


class VerificationError(TangoError):
    """The exported file disagrees with the PyTorch model beyond the table's thresholds."""

    def __init__(self, path: Path, verification: dict[str, Any]):
        self.path, self.verification = path, verification
        super().__init__(f"{path}: verification failed: {'; '.join(verification['failures'])} "
                         f"(metrics {verification['metrics']}; see the 'verification' block of "
                         f"{path.name}.tango.json)")


@dataclass
class Artifacts:
    """What a builder made: ``files`` (role -> path; ``model`` is the main file) and what differs
    from the PyTorch model's input / outputs."""

    files: dict[str, Path]
    input: dict[str, Any] = field(default_factory=dict)
    #: per-output changes to the PyTorch outputs' metadata (dtype, quantisation)
    outputs: list[dict[str, Any]] | None = None
    quantization: dict[str, Any] | None = None
    runtime_config: dict[str, Any] | None = None
    notes: list[str] = field(default_factory=list)
    #: which file is run here to verify the export, and with which runtime (default: the model
    #: file with the format's runtime); None when nothing of it runs on this machine
    verify: tuple[str, str] | None = ("model", "")
    #: input and outputs are float16 (a half model), not float32 with fp16 weights inside
    half_io: bool = False
    #: where the export was written when not at ``ctx.path`` (a cross-compiled TVM ``.tar``)
    path: Path | None = None


@dataclass
class Context:
    """Everything a builder needs.  ``calibration()`` loads the INT8 calibration images on demand."""

    spec: FormatSpec
    options: dict[str, Any]
    model: nn.Module
    source: Source
    example: torch.Tensor
    path: Path
    output_names: list[str]
    calibration: Callable[[], Samples]
    notes: list[str] = field(default_factory=list)

    @property
    def precision(self) -> str:
        return self.options.get("precision") or "fp32"

    @property
    def imgsz(self) -> list[int]:
        return self.options["imgsz"]

    def sibling(self, suffix: str) -> Path:
        """A path beside the export (``best`` + ``.onnx``) for intermediate files."""
        base = self.path.name[: -len(self.spec.suffix)] if self.path.name.endswith(self.spec.suffix) else self.path.stem
        return self.path.with_name(base + suffix)


@dataclass
class ExportResult:
    format: str
    path: Path
    metadata_path: Path
    metadata: dict[str, Any]
    time: float
    size_bytes: int

    @property
    def verification(self) -> dict[str, Any] | None:
        return self.metadata.get("verification")

    def __repr__(self) -> str:
        v = self.verification
        state = ("not verified" if v is None or v.get("skipped") else
                 "verified" if v.get("passed") else "FAILED verification")
        return (f"ExportResult({self.format!r}, {str(self.path)!r}, {self.size_bytes / 1e6:.2f} MB, "
                f"{self.time:.1f} s, {state})")


def _size(path: Path) -> int:
    if path.is_dir():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    return path.stat().st_size if path.exists() else 0


def _default_format(project) -> str:
    if project is None:
        raise ConfigError("export", "format", "no format given and no project to take it from",
                          "pass format='onnx' (tango_core.export.list_formats() lists them) or project=")
    target = project.target()
    return "auto" if target.select else target.runtimes[0]


def _output_meaning(task: str, index: int, nms: bool) -> str:
    if task == "classification":
        return "class scores before softmax"
    if nms:
        return "detections [K, 7]: batch_index, x1, y1, x2, y2, score, class (input pixels)"
    return "raw predictions (decode with detection.output_layout, then NMS)"


def _output_names(task: str, n: int, nms: bool) -> list[str]:
    if task == "classification":
        return ["logits"] if n == 1 else [f"logits_{i}" for i in range(n)]
    if nms:
        return ["detections"]
    return ["predictions"] if n == 1 else [f"predictions_{i}" for i in range(n)]


def _flat(out: Any) -> list[torch.Tensor]:
    if isinstance(out, torch.Tensor):
        return [out]
    if isinstance(out, dict):
        out = list(out.values())
    flat: list[torch.Tensor] = []
    for item in out or []:
        flat.extend(_flat(item))
    return flat


def _stem(model: Any, source: Source, name: str | None) -> str:
    if name:
        if not re.fullmatch(r"[A-Za-z0-9_.\-]+", name):
            raise ConfigError("export", "name", f"{name!r} is not a safe file name", "use letters, digits, '-', '_', '.'")
        return name
    if source.checkpoint:
        return Path(source.checkpoint).stem
    return source.name or "model"


def export(model: nn.Module | str | os.PathLike | None = None, format: str | None = None, *,
           project: Any = None, out: str | os.PathLike | None = None, name: str | None = None,
           data: Any = None, calibration: Any = None, task: str | None = None,
           class_names: list[str] | None = None, preprocess: dict[str, Any] | None = None,
           detection: dict[str, Any] | None = None, events: ev.EventBus | None = None,
           threads: int = 1, **options: Any) -> ExportResult:
    """Export ``model`` to ``format`` and verify it.

    ``model``: an ``nn.Module``, a weights file or a registered model name; by default the
    project's trained weights.  ``format``: a row of the format table (``list_formats()``); by
    default the project's target's default (measured, see below, or its first runtime).  ``data``: held-out images for
    verification; ``calibration``: images for INT8 (both default to the project's dataset:
    ``val`` / ``test`` and ``train`` splits).  ``options``: the format's options (``imgsz``,
    ``precision``, ``opset``...); unknown ones are rejected with a suggestion.  ``format="auto"``
    (the default for a target with a ``select`` rule, such as ``x86-cpu``) exports every candidate
    of the target, verifies and times each here and keeps the fastest (``select_export``).
    """
    fmt = format or _default_format(project)
    if fmt == "auto":
        from ._select import select_export

        return select_export(model, project=project, out=out, data=data, calibration=calibration, events=events,
                             threads=threads, task=task, class_names=class_names, **options)
    bus = events or (project.events if project is not None else ev.EventBus())
    spec = get_format(fmt)
    opts = spec.validate(options)
    if spec.extra:
        _require_extra(spec)

    model = model_or_trained(model, project)
    if project is not None:
        class_names = class_names or (project.config.classes or None)
        task = task or project.task
    source = load_source(model, task=task, class_names=class_names, imgsz=opts.get("imgsz"),
                         preprocess=preprocess, detection=_detection_overrides(opts, detection))
    if source.imgsz is None:
        raise ConfigError("export", "imgsz", "the model does not say its input size", "pass imgsz=<int or [h, w]>")
    opts["imgsz"] = source.imgsz
    if opts.get("nms") and source.task != "detection":
        raise ConfigError("export", "nms", "NMS in the graph is for detection models", "drop nms=True")

    out_dir = Path(out) if out is not None else (project.path("exports") if project is not None else Path("exports"))
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = _stem(model, source, name)
    if opts.get("precision") not in (None, spec.precisions[0]):
        stem = f"{stem}_{opts['precision']}"
    if opts.get("nms"):
        stem = f"{stem}_nms"
    path = out_dir / f"{stem}{spec.suffix}"

    prepared, notes = prepare(source, fuse=opts.get("fuse", False), reparameterize=opts.get("reparameterize", False))
    batch = opts.get("batch", 1)
    example = torch.zeros(batch, source.in_channels, *source.imgsz)
    with torch.inference_mode():
        outs = _flat(prepared(example))
    nms = bool(opts.get("nms"))
    names = _output_names(source.task, len(outs), nms)
    out_specs = [{"name": n, "shape": list(o.shape), "dtype": "float32",
                  "meaning": _output_meaning(source.task, i, nms), "quantization": None}
                 for i, (n, o) in enumerate(zip(names, outs, strict=True))]
    if nms:
        out_specs = [{"name": "detections", "shape": [-1, 7], "dtype": "float32",
                      "meaning": _output_meaning(source.task, 0, True), "quantization": None}]

    cache: dict[str, Samples] = {}

    def calibration_samples() -> Samples:
        if "samples" not in cache:
            cache["samples"] = _calibration(calibration, data, project, source, opts)
        return cache["samples"]

    ctx = Context(spec=spec, options=opts, model=prepared, source=source, example=example, path=path,
                  output_names=names, calibration=calibration_samples, notes=list(notes))
    bus.emit(ev.EXPORT_START, format=fmt, options=dict(opts), path=str(path))
    started = time.perf_counter()
    artifacts = BUILDERS.get(fmt)(ctx)
    elapsed = time.perf_counter() - started
    path = ctx.path = artifacts.path or path
    size = _size(path)
    meta = _metadata(ctx, artifacts, out_specs, project, elapsed, size, calibration_samples if "samples" in cache
                     else None)
    meta_path = _meta_path(path)
    write_json(meta_path, meta)
    bus.emit(ev.EXPORT_END, format=fmt, path=str(path), size_bytes=size, time=elapsed,
             metadata=str(meta_path), notes=meta["notes"])
    result = ExportResult(fmt, path, meta_path, meta, elapsed, size)

    if opts.get("verify", True):
        from ._verify import verify_export

        # held-out images: given, else the project's dataset, else the calibration source's val split
        held = data if data is not None else (None if project is not None and project.config.dataset
                                              else _held_out_from(calibration))
        verification = verify_export(result, source, data=held, project=project, threads=threads)
        meta["verification"] = verification
        write_json(meta_path, meta)
        bus.emit(ev.VERIFY_END, format=fmt, passed=verification["passed"], metrics=verification["metrics"],
                 path=str(path))
        if not verification["passed"]:
            raise VerificationError(path, verification)
    if project is not None:
        exports = dict(project.stages["export"].info.get("exports") or {})
        default = opts.get("precision") in (None, spec.precisions[0])
        exports[fmt if default else f"{fmt}_{opts['precision']}"] = os.path.relpath(meta_path, project.root)
        project.mark("export", "completed", exports=exports)
    return result


def model_or_trained(model: Any, project: Any) -> Any:
    """``model``, else the project's trained weights; an error saying what to do without either."""
    if model is None:
        model = project.trained_weights() if project is not None else None
        if model is None:
            raise ConfigError("export", "model", "no model given and the project has no trained weights",
                              "train first, or pass a model / weights file")
    return model


def _held_out_from(calibration: Any) -> Any:
    """A calibration source that has splits (a dataset) or files also holds held-out images."""
    if isinstance(calibration, (str, os.PathLike)) and Path(calibration).is_dir():
        return calibration
    if hasattr(calibration, "records_of"):
        return calibration
    return None


def _meta_path(path: Path) -> Path:
    return path.with_name(path.name + ".tango.json")


def _require_extra(spec: FormatSpec) -> None:
    from ..errors import require

    modules = {"export": ["onnx", "onnxruntime"], "tflite": ["litert_torch", "ai_edge_litert"],
               "tensorflow": ["litert_torch", "tensorflow"], "openvino": ["openvino"], "tvm": ["tvm", "onnx"]}
    for module in modules.get(spec.extra, []):
        if module == "tensorflow":
            import torch._dynamo  # noqa: F401  before TensorFlow, see _runners.import_tensorflow
        require(module, spec.extra, f"exporting to {spec.name}")


def _detection_overrides(opts: dict[str, Any], given: dict[str, Any] | None) -> dict[str, Any]:
    out = {k: opts[k] for k in ("conf_threshold", "iou_threshold", "max_det") if opts.get(k) is not None}
    out["nms_in_graph"] = bool(opts.get("nms"))
    out.update(given or {})
    return out


def _calibration(calibration: Any, data: Any, project: Any, source: Source, opts: dict[str, Any]) -> Samples:
    src = calibration
    if src is None and project is not None and project.config.dataset:
        src = project.path(project.config.dataset)
    if src is None:
        src = data
    if src is None:
        raise ConfigError("export", "calibration", "INT8 needs calibration images and none were given",
                          "pass calibration=<dataset folder, image folder or array>, or export from a project "
                          "with a dataset")
    return load_samples(src, imgsz=source.imgsz, preprocess=source.preprocess, task=source.task,
                        class_names=source.class_names, channels=source.in_channels, purpose="calibration",
                        limit=opts.get("calibration_images", 32))


def _metadata(ctx: Context, art: Artifacts, out_specs: list[dict[str, Any]], project: Any, elapsed: float,
              size: int, calib: Callable[[], Samples] | None) -> dict[str, Any]:
    src, opts = ctx.source, ctx.options
    folder = ctx.path.parent
    files = {role: os.path.relpath(p, folder) for role, p in art.files.items()}
    shape = list(ctx.example.shape)
    io_dtype = "float16" if art.half_io else "float32"
    inp = {"name": "images", "shape": shape, "dtype": io_dtype,
           "layout": "NCHW", "color": "L" if src.in_channels == 1 else "RGB",
           "dynamic": {"batch": bool(opts.get("dynamic")), "size": bool(opts.get("dynamic"))}, "quantization": None}
    inp.update(art.input)
    outputs = [dict(o, dtype=io_dtype) for o in out_specs]
    for spec, patch in zip(outputs, art.outputs or [], strict=False):
        spec.update(patch)
    quant = art.quantization
    if quant is not None and calib is not None:
        samples = calib()
        quant = {**quant, "calibration_images": len(samples), "calibration_source": samples.description}
    detection = None
    if src.task == "detection" and src.detection is not None:
        from ._detect import NMS_LAYOUT, RAW_LAYOUT

        detection = dict(src.detection, box_format="xyxy",
                         output_layout=NMS_LAYOUT if opts.get("nms") else RAW_LAYOUT)
    return {
        "schema": "tango.export", "schema_version": 1, "tango_version": __version__,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "format": ctx.spec.name, "runtime": ctx.spec.runtime, "files": files,
        "task": src.task, "model": src.name, "class_names": src.class_names, "num_classes": src.num_classes,
        "input": inp, "preprocess": src.preprocess, "outputs": outputs, "detection": detection,
        "precision": ctx.precision, "quantization": quant, "runtime_config": art.runtime_config,
        "options": {k: v for k, v in opts.items()}, "source": src.describe(),
        "target": project.config.target if project is not None else None,
        "export_time_s": round(elapsed, 3), "size_bytes": size,
        "notes": [*ctx.notes, *art.notes], "verification": None,
        "verify_with": None if art.verify is None else {"file": art.verify[0],
                                                        "runtime": art.verify[1] or ctx.spec.runtime},
    }

