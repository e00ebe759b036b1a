"""Run an export in its own runtime on held-out images and compare it with the PyTorch model.

The thresholds are the ``verification`` block of ``formats.yaml``; the result goes into the
export's metadata, and the caller raises :class:`VerificationError` when it did not pass.
"""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
import torch

from ._data import Samples, load_samples, random_samples
from ._source import Source
from ._table import verification_rules


def held_out(data: Any, project: Any, source: Source, limit: int, seed: int = 0) -> Samples | None:
    """Verification images: ``data``, else the project's dataset (val / test split), else None."""
    src = data
    if src is None and project is not None and project.config.dataset:
        src = project.path(project.config.dataset)
    if src is None:
        return None
    return load_samples(src, imgsz=source.imgsz, preprocess=source.preprocess, task=source.task,
                        class_names=source.class_names, channels=source.in_channels, purpose="verification",
                        limit=limit, seed=seed)


def run_batched(fn, images: np.ndarray, batch: int, dynamic: bool) -> list[np.ndarray]:
    """Run ``fn`` over ``images`` in chunks of the export's fixed batch (padding the last chunk)."""
    if dynamic:
        batch = len(images)
    chunks: list[list[np.ndarray]] = []
    for start in range(0, len(images), batch):
        x = images[start:start + batch]
        n = len(x)
        if n < batch:
            x = np.concatenate([x, np.repeat(x[-1:], batch - n, axis=0)])
        chunks.append([o[:n] for o in fn(np.ascontiguousarray(x))])
    return [np.concatenate([c[i] for c in chunks]) for i in range(len(chunks[0]))]


def run_nms_batched(fn, images: np.ndarray, batch: int) -> list[np.ndarray]:
    """Like :func:`run_batched` for a graph ending in NMS: rows ``[K, 7]`` with the batch index first."""
    rows = []
    for start in range(0, len(images), batch):
        x = images[start:start + batch]
        n = len(x)
        if n < batch:
            x = np.concatenate([x, np.repeat(x[-1:], batch - n, axis=0)])
        det = np.asarray(fn(np.ascontiguousarray(x))[0], np.float32).reshape(-1, 7)
        det = det[det[:, 0] < n]
        det[:, 0] += start
        rows.append(det)
    return [np.concatenate(rows)]


def torch_reference(model: torch.nn.Module, threads: int):
    model = copy.deepcopy(model).float().eval()
    torch.set_num_threads(threads)

    def run(x: np.ndarray) -> list[np.ndarray]:
        from ._exporter import _flat

        with torch.inference_mode():
            return [t.float().numpy() for t in _flat(model(torch.from_numpy(x)))]

    return run


def verify_export(result, source: Source, data: Any = None, project: Any = None, threads: int = 1) -> dict[str, Any]:
    from ._runners import load_exported

    meta = result.metadata
    rules = verification_rules()
    with_ = meta.get("verify_with")
    if with_ is None:
        return {"passed": True, "skipped": "nothing of this export runs on this machine", "metrics": {},
                "failures": []}
    samples = held_out(data, project, source, rules["held_out_images"])
    if samples is None:
        samples = random_samples(rules["random_inputs"], [source.in_channels, *source.imgsz])
    runner = load_exported(result.metadata_path, threads=threads, file_role=with_["file"],
                           runtime_name=with_["runtime"], module=source.model)
    batch = meta["input"]["shape"][0]
    dynamic = bool(meta["input"].get("dynamic", {}).get("batch"))
    nms = bool(meta.get("detection") and meta["detection"].get("nms_in_graph"))
    reference = run_batched(torch_reference(source.model, threads), samples.images, batch, dynamic)
    exported = run_nms_batched(runner, samples.images, batch) if nms else \
        run_batched(runner, samples.images, batch, dynamic)
    precision = meta["precision"]
    if meta["format"] == "tensorrt":
        precision = "fp32"  # TensorRT's fp16 / int8 are build flags on the device; the ONNX here is fp32
    if nms:
        from ._detect import compare_detections

        metrics, failures = compare_detections(reference, exported, samples, meta, rules.get(precision, {}))
    else:
        metrics, failures = compare(reference, exported, samples, meta["task"], meta, rules.get(precision, {}),
                                    precision)
    return {
        "passed": not failures, "failures": failures, "reference": "pytorch",
        "verified_file": meta["files"][with_["file"]], "runtime": with_["runtime"],
        "data": samples.description, "images": len(samples), "threads": threads,
        "metrics": metrics, "thresholds": rules.get(precision, {}),
    }


def compare(reference: list[np.ndarray], exported: list[np.ndarray], samples: Samples, task: str,
            meta: dict[str, Any], rule: dict[str, Any], precision: str) -> tuple[dict[str, Any], list[str]]:
    if len(reference) != len(exported):
        return {}, [f"the export has {len(exported)} outputs, PyTorch {len(reference)}"]
    metrics: dict[str, Any] = {}
    failures: list[str] = []
    diffs, scales = [], []
    for ref, out in zip(reference, exported, strict=True):
        if ref.shape != out.shape:
            return {}, [f"output shape {list(out.shape)} differs from PyTorch's {list(ref.shape)}"]
        diffs.append(float(np.abs(ref.astype(np.float64) - out).max()))
        scales.append(max(1.0, float(np.abs(ref).max())))
    metrics["max_abs_diff"] = max(diffs)
    scale = max(scales)
    metrics["output_scale"] = scale
    close = "max_abs_diff" in rule and metrics["max_abs_diff"] <= rule["max_abs_diff"] * scale

    if task == "classification":
        ref_top, out_top = reference[0].argmax(1), exported[0].argmax(1)
        metrics["top1_agreement"] = float((ref_top == out_top).mean())
        if "max_abs_diff" in rule and reference[0].shape[1] > 1:
            # Two logits closer than twice the precision's own tolerance may swap without any defect
            # (a barely trained model on random inputs is full of such ties): agreement is judged on
            # the images PyTorch decides by more than that margin.
            top2 = np.sort(reference[0], axis=1)[:, -2:]
            decided = (top2[:, 1] - top2[:, 0]) > 2 * rule["max_abs_diff"] * scale
            metrics["near_ties"] = int((~decided).sum())
            metrics["top1_agreement_decided"] = (float((ref_top[decided] == out_top[decided]).mean())
                                                 if decided.any() else None)
        labels = samples.labels if isinstance(samples.labels, np.ndarray) else None
        if labels is not None:
            known = labels >= 0
            if known.any():
                metrics["reference_accuracy"] = float((ref_top[known] == labels[known]).mean())
                metrics["accuracy"] = float((out_top[known] == labels[known]).mean())
                metrics["labelled_images"] = int(known.sum())
    elif task == "detection":
        from ._detect import agreement, map_of_raw

        if isinstance(samples.labels, list):
            metrics["reference_map50"] = map_of_raw(reference, samples, meta)
            metrics["map50"] = map_of_raw(exported, samples, meta)
        if precision != "fp32":
            metrics["agreement_map50"] = agreement(reference, exported, meta)

    if precision == "fp32":
        if not close:
            failures.append(f"max abs difference {metrics['max_abs_diff']:.3g} > {rule['max_abs_diff']:g} x {scale:.3g}")
        return metrics, failures
    if close:  # numerically indistinguishable from PyTorch: nothing more to check
        return metrics, failures
    failures += _quality_failures(metrics, rule, rules_min_images())
    return metrics, failures


def rules_min_images() -> int:
    return int(verification_rules().get("min_images_allowed", 1))


def accuracy_allowance(max_drop: float, images: int, min_images: int | None = None) -> float:
    """The accuracy drop allowed on ``images`` labelled images: ``max_drop``, but never fewer
    than ``min_images_allowed`` images of the split."""
    return max(max_drop, (rules_min_images() if min_images is None else min_images) / images)


def _quality_failures(metrics: dict[str, Any], rule: dict[str, Any], min_images: int) -> list[str]:
    failures = []
    if "accuracy" in metrics and "max_accuracy_drop" in rule:
        n = metrics["labelled_images"]
        allowed = accuracy_allowance(rule["max_accuracy_drop"], n, min_images)
        drop = metrics["reference_accuracy"] - metrics["accuracy"]
        metrics["accuracy_drop"] = drop
        if drop > allowed + 1e-9:
            failures.append(f"accuracy {metrics['accuracy']:.4f} is {drop:.4f} below PyTorch's "
                            f"{metrics['reference_accuracy']:.4f} (allowed {allowed:.4f} on {n} images)")
    elif metrics.get("map50") is not None and "max_map_drop" in rule:
        drop = metrics["reference_map50"] - metrics["map50"]
        metrics["map50_drop"] = drop
        if drop > rule["max_map_drop"]:
            failures.append(f"mAP@0.5 {metrics['map50']:.4f} is {drop:.4f} below PyTorch's {metrics['reference_map50']:.4f}")
    elif "agreement_map50" in metrics and "detection_agreement" in rule:
        value = metrics["agreement_map50"]
        if value is None:
            failures.append("PyTorch finds no confident box on the held-out images, so the boxes cannot be "
                            "compared: pass labelled images (data=) of the objects the model detects")
        elif value < rule["detection_agreement"]:
            failures.append(f"the export's boxes match PyTorch's with mAP@0.5 {value:.3f} < {rule['detection_agreement']}")
    elif "top1_agreement" in metrics and "top1_agreement" in rule:
        decided = metrics.get("top1_agreement_decided", metrics["top1_agreement"])
        if "top1_agreement_decided" in metrics and decided is None:
            failures.append(f"all {metrics['near_ties']} images are near-ties for PyTorch (top-1 margin within the "
                            "precision's tolerance), so top-1 agreement cannot be judged: pass labelled images (data=)")
        elif decided < rule["top1_agreement"]:
            which = "" if "near_ties" not in metrics else \
                f" (images PyTorch decides by more than the tolerance; {metrics['near_ties']} near-ties left out)"
            failures.append(f"top-1 agreement with PyTorch {decided:.3f} < {rule['top1_agreement']}{which}")
    else:
        failures.append("no labelled images to measure the quality of a reduced-precision export: pass data=")
    return failures


def verify(path, model, data: Any = None, threads: int = 1) -> dict[str, Any]:
    """Verify an existing export against ``model`` again (after editing the file, or on new images);
    the result replaces the metadata's ``verification`` block.  Raises VerificationError on failure."""
    from pathlib import Path

    from .._io import write_json
    from ._exporter import ExportResult, VerificationError
    from ._runners import read_metadata
    from ._source import load_source

    meta, folder = read_metadata(path)
    meta_path = Path(path) if str(path).endswith(".tango.json") else Path(f"{path}.tango.json")
    source = load_source(model, task=meta["task"], class_names=meta["class_names"], imgsz=meta["options"]["imgsz"],
                         preprocess=meta["preprocess"], detection=meta.get("detection"))
    export_path = meta_path.with_name(meta_path.name[: -len(".tango.json")])
    result = ExportResult(meta["format"], export_path, meta_path, meta, meta.get("export_time_s", 0.0),
                          meta.get("size_bytes", 0))
    verification = verify_export(result, source, data=data, threads=threads)
    meta["verification"] = verification
    write_json(meta_path, meta)
    if not verification["passed"]:
        raise VerificationError(export_path, verification)
    return verification
