"""``benchmark()``: export to every format that runs here and compare them in one table.

Each row is a verified export timed at batch 1 with the same thread count in every runtime:
median pre-processing (decode-free: uint8 image -> input tensor, as the metadata says), inference
and post-processing (softmax / top-1, or box decoding + NMS), the file size, accuracy or mAP@0.5
on the validation images, and the speed-up of inference over torch eager.
"""

from __future__ import annotations

import os
import platform
import statistics
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .. import events as ev
from ._exporter import export
from ._table import get_format
from ._verify import held_out

#: rows of the default benchmark: (format, options); INT8 rows need calibration images
DEFAULT_ROWS: list[tuple[str, dict[str, Any]]] = [
    ("torchscript", {}), ("onnx", {}), ("onnx", {"precision": "int8"}), ("openvino", {}),
    ("openvino", {"precision": "fp32"}), ("openvino", {"precision": "int8"}), ("tflite", {}),
    ("tflite", {"precision": "int8"}),
    ("saved_model", {}), ("tvm", {}),
]


@dataclass
class BenchmarkResult:
    rows: list[dict[str, Any]]
    task: str
    threads: int
    imgsz: list[int]
    images: int
    machine: str = field(default_factory=lambda: f"{platform.processor() or platform.machine()}, "
                                                 f"{os.cpu_count()} logical CPUs")

    def row(self, label: str) -> dict[str, Any]:
        return next(r for r in self.rows if r["label"] == label)

    def fastest(self) -> dict[str, Any]:
        ok = [r for r in self.rows if r.get("inference_ms") is not None and r["label"] != "torch eager"]
        return min(ok, key=lambda r: r["inference_ms"])

    def table(self) -> str:
        metric = "top-1 acc" if self.task == "classification" else "mAP@0.5"
        head = (f"| format | precision | size (MB) | {metric} | pre (ms) | inference (ms) | post (ms) | "
                "speed-up vs eager |\n|---|---|---|---|---|---|---|---|")
        lines = [head]
        for r in self.rows:
            if r.get("error"):
                lines.append(f"| {r['label']} | {r['precision']} | | | | failed: {r['error'][:80]} | | |")
                continue
            m = r.get("metric")
            lines.append(f"| {r['label']} | {r['precision']} | {r['size_mb']:.2f} | "
                         f"{'' if m is None else f'{m:.4f}'} | {r['pre_ms']:.3f} | {r['inference_ms']:.3f} | "
                         f"{r['post_ms']:.3f} | {r['speedup']:.1f}x |")
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        return {"task": self.task, "threads": self.threads, "imgsz": self.imgsz, "images": self.images,
                "machine": self.machine, "rows": self.rows}


def _median_ms(fn, runs: int, warmup: int) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return 1000 * statistics.median(times)


def interleaved_ms(fns: dict[str, Any], rounds: int = 7, runs: int = 20, warmup: int = 10) -> dict[str, float]:
    """Latency (ms) of each callable, timed in interleaved rounds (a, b, c, a, b, c, ...): the
    median of each round, and of those the lowest.  A slow spell of the machine (another
    process, a neighbour on the host, frequency changes) only ever adds time, and with rounds
    interleaved every candidate gets its quiet spells, so close rows keep their order better
    than with one median per candidate taken at different times.  Each round re-warms a
    candidate (``warmup`` calls) before its ``runs``: LiteRT's XNNPACK pool needed about ten
    calls after another runtime had run before its times settled (3 warm-up calls: 2.6-3.6 ms
    for YOLOv7-tiny INT8, 10: 1.3 ms)."""
    best: dict[str, float] = {k: float("inf") for k in fns}
    for _ in range(rounds):
        for label, fn in fns.items():
            best[label] = min(best[label], _median_ms(fn, runs, warmup))
    return best


def retime(rows: list[dict[str, Any]], threads: int, rounds: int = 7, runs: int = 20, warmup: int = 10,
           labels: list[str] | None = None, module: Any = None) -> dict[str, float]:
    """Time the exports of benchmark ``rows`` (those with a ``path``; ``labels`` to pick some) again,
    interleaved, with every runner loaded at once; label -> median ms."""
    from ._runners import load_exported

    fns: dict[str, Any] = {}
    for r in rows:
        if r.get("error") or not r.get("path") or (labels is not None and r["label"] not in labels):
            continue
        try:
            runner = load_exported(f"{r['path']}.tango.json", threads=threads, module=module)
            shape = [1, *runner.meta["input"]["shape"][1:]]
            x = runner.to_file_input(np.zeros(shape, np.float32))
        except Exception:  # noqa: BLE001  a row that cannot be reloaded keeps its first timing
            continue
        fns[r["label"]] = lambda f=runner, a=x: f.run_raw(a)
    return interleaved_ms(fns, rounds=rounds, runs=runs, warmup=warmup)


def _postprocess(task: str, meta: dict[str, Any]):
    if task == "classification":
        def post(outs: list[np.ndarray]) -> Any:
            z = outs[0] - outs[0].max(1, keepdims=True)
            p = np.exp(z)
            p /= p.sum(1, keepdims=True)
            return p.argmax(1), p.max(1)
        return post
    from ._detect import postprocess, split_nms_output

    det = meta.get("detection") or {}
    if det.get("nms_in_graph"):
        return lambda outs: split_nms_output(outs[0], 1)
    return lambda outs: postprocess(outs[0], float(det.get("conf_threshold", 0.25)),
                                    float(det.get("iou_threshold", 0.45)), int(det.get("max_det", 300)))


def _quality(task: str, outputs: list[np.ndarray], samples, meta: dict[str, Any]) -> float | None:
    if samples.labels is None:
        return None
    if task == "classification":
        return float((outputs[0].argmax(1) == samples.labels).mean())
    from ._detect import VAL_CONF, mean_ap, postprocess, split_nms_output

    det = meta.get("detection") or {}
    if det.get("nms_in_graph"):
        return mean_ap(split_nms_output(outputs[0], len(samples)), samples.labels)
    return mean_ap(postprocess(outputs[0], VAL_CONF, float(det.get("iou_threshold", 0.45)),
                               int(det.get("max_det", 300))), samples.labels)


def _pixels(samples, spec: dict[str, Any]) -> np.ndarray:
    from ._vendor import to_uint8

    return to_uint8(samples.images[:1], spec)[0]


def benchmark(model: Any, rows: list[tuple[str, dict[str, Any]]] | None = None, *, data: Any = None,
              calibration: Any = None, out: str | os.PathLike = "runs/benchmark", threads: int = 2,
              runs: int = 100, warmup: int = 10, project: Any = None, events: ev.EventBus | None = None,
              **options: Any) -> BenchmarkResult:
    """Export ``model`` to each row's format (default :data:`DEFAULT_ROWS`, INT8 rows only with
    calibration images) and time it.  ``options`` (``imgsz``...) apply to every export; a row
    that fails to export or verify is reported in the table, not raised."""
    from ._data import random_samples
    from ._runners import load_exported
    from ._source import load_source
    from ._verify import run_batched, run_nms_batched, torch_reference

    _pin_tensorflow_threads(threads)
    if rows is None:
        rows = [r for r in DEFAULT_ROWS if calibration is not None or data is not None or project is not None
                or r[1].get("precision") != "int8"]
    source = load_source(model, task=options.get("task"), class_names=options.get("class_names"),
                         imgsz=get_format("onnx").validate({"imgsz": options["imgsz"]})["imgsz"]
                         if options.get("imgsz") else None)
    if source.imgsz is None:
        from ..errors import ConfigError

        raise ConfigError("benchmark", "imgsz", "the model does not say its input size", "pass imgsz=")
    samples = held_out(data, project, source, limit=10_000)
    if samples is None:
        samples = random_samples(8, [source.in_channels, *source.imgsz])
    task = source.task
    pixels = _pixels(samples, source.preprocess)
    from ._preprocess import to_input

    def pre() -> np.ndarray:
        return to_input(pixels, source.imgsz, source.preprocess, source.in_channels)[0][None]

    pre_ms = _median_ms(pre, runs, warmup)
    x = samples.images[:1]
    eager = torch_reference(source.model, threads)
    eager_ms = _median_ms(lambda: eager(x), runs, warmup)
    eager_post = _postprocess(task, {"detection": source.detection})
    eager_out = eager(x)
    result_rows = [{
        "label": "torch eager", "format": "pytorch", "precision": "fp32",
        "size_mb": sum(p.numel() * p.element_size() for p in source.model.parameters()) / 1e6,
        "metric": _quality(task, run_batched(eager, samples.images, 1, False), samples,
                           {"detection": source.detection}),
        "pre_ms": pre_ms, "inference_ms": eager_ms, "post_ms": _median_ms(lambda: eager_post(eager_out), runs, warmup),
        "speedup": 1.0}]
    bus = events or ev.EventBus()
    for fmt, row_opts in rows:
        opts = {**options, **row_opts}
        precision = opts.get("precision") or get_format(fmt).precisions[0]
        label = fmt + (f" {precision}" if precision != "fp32" else "") + (" tuned" if opts.get("tune") else "")
        row: dict[str, Any] = {"label": label, "format": fmt, "precision": precision}
        try:
            exp = export(model, fmt, out=out, data=data,
                         calibration=calibration, project=project, threads=threads, events=bus,
                         name="bench_tuned" if opts.get("tune") else "bench", **opts)
            runner = load_exported(exp.metadata_path, threads=threads, module=source.model)
            nms = bool(exp.metadata.get("detection") and exp.metadata["detection"].get("nms_in_graph"))
            full = run_nms_batched(runner, samples.images, 1) if nms else run_batched(runner, samples.images, 1, False)
            file_x = runner.to_file_input(x)
            outs = runner(x)
            post = _postprocess(task, exp.metadata)
            inf_ms = _median_ms(lambda r=runner, f=file_x: r.run_raw(f), runs, warmup)
            row.update(size_mb=exp.size_bytes / 1e6, metric=_quality(task, full, samples, exp.metadata),
                       pre_ms=pre_ms, inference_ms=inf_ms, post_ms=_median_ms(lambda p=post, o=outs: p(o), runs, warmup),
                       speedup=eager_ms / inf_ms, path=str(exp.path), verified=exp.verification["passed"],
                       notes=exp.metadata["notes"])
        except Exception as exc:  # noqa: BLE001  one failing runtime must not hide the others
            row["error"] = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
        result_rows.append(row)
        bus.emit(ev.BENCHMARK_ROW, **{k: row.get(k) for k in ("label", "format", "precision", "size_mb", "metric",
                                                             "pre_ms", "inference_ms", "post_ms", "speedup",
                                                             "error")})
    return BenchmarkResult(result_rows, task, threads, source.imgsz, len(samples))


def _pin_tensorflow_threads(threads: int) -> None:
    """TensorFlow fixes its thread pools at first use: set them before any export touches it."""
    from ..errors import MissingExtraError
    from ._runners import import_tensorflow

    try:
        tf = import_tensorflow("pinning TensorFlow's threads")
    except MissingExtraError:
        return
    try:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(1)
    except RuntimeError:
        pass


def default_row(target_id: str = "x86-cpu", rows: list[dict[str, Any]] | None = None) -> str | None:
    """The row label of what ``tango export`` picks for a target: by its ``select`` rule applied
    to ``rows`` (a benchmark's rows) when it has one, else its first runtime at that format's
    default precision."""
    from ._select import default_label

    return default_label(target_id, rows)

