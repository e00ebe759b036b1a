"""``select_export()``: the target's fastest verified export, measured on the machine that runs it.

A target whose exports run where tango runs (``x86-cpu``: this PC) declares ``select`` in its
catalog file: the candidates (format or ``format:precision``, most preferred first), how much
accuracy / mAP@0.5 a candidate may lose against the PyTorch model on the held-out images
(``max_drop``, 0.01 = one point) and how close to the fastest a more preferred candidate must be
to win (``prefer_within``).  Which row is fastest differs between CPUs (AMX vs AVX-512 BF16)
and between models (a 32-pixel ResNet vs a 128-pixel YOLO), so it is measured, not assumed:
every candidate is exported, verified and timed at batch 1 with :func:`benchmark`, those that
qualify are timed again in interleaved rounds (``retime``), the rule below picks one, and that
one is exported again into the project under its usual name, with the whole comparison in the
``selection`` block of its metadata.  Targets without ``select`` take
their first runtime, as before.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

from .. import events as ev
from .._io import write_json
from ..errors import ConfigError
from ._table import get_format

#: used when a target's ``select`` leaves them out
DEFAULT_MAX_DROP = 0.01
DEFAULT_PREFER_WITHIN = 0.05


def parse_candidate(item: str, where: str = "select.candidates") -> tuple[str, dict[str, Any]]:
    """``"openvino:int8"`` -> ``("openvino", {"precision": "int8"})``; unknown formats and
    precisions are rejected with the known ones."""
    fmt, _, precision = str(item).strip().partition(":")
    spec = get_format(fmt)
    if precision and precision not in spec.precisions:
        raise ConfigError(where, item, f"{fmt} has no precision {precision!r}", f"use one of {list(spec.precisions)}")
    return fmt, ({"precision": precision} if precision and precision != spec.precisions[0] else {})


def row_label(fmt: str, opts: dict[str, Any]) -> str:
    """The benchmark's label of a candidate (``openvino bf16``, ``onnx int8``, ``onnx``)."""
    precision = opts.get("precision") or get_format(fmt).precisions[0]
    return fmt + (f" {precision}" if precision != "fp32" else "")


def choose(rows: list[dict[str, Any]], labels: list[str], *, max_drop: float = DEFAULT_MAX_DROP,
           prefer_within: float = DEFAULT_PREFER_WITHIN) -> tuple[dict[str, Any] | None, dict[str, str]]:
    """Pick among benchmark ``rows`` (``labels``: the candidates, most preferred first).

    A candidate is eligible when it exported, verified and lost at most ``max_drop`` of the
    torch-eager row's metric; the winner is the most preferred eligible candidate whose latency
    is within ``prefer_within`` of the fastest eligible one.  Returns (row or None, label ->
    why each candidate was or was not chosen)."""
    by_label = {r["label"]: r for r in rows}
    eager = by_label.get("torch eager") or {}
    ref = eager.get("metric")
    why: dict[str, str] = {}
    eligible: list[dict[str, Any]] = []
    for label in labels:
        row = by_label.get(label)
        if row is None:
            why[label] = "not measured"
        elif row.get("error"):
            why[label] = f"failed: {row['error']}"
        elif not row.get("verified", False):
            why[label] = "not verified"
        elif ref is not None and row.get("metric") is not None and ref - row["metric"] > max_drop + 1e-9:
            why[label] = f"loses {ref - row['metric']:.4f} of {ref:.4f} (more than max_drop {max_drop})"
        else:
            eligible.append(row)
    if not eligible:
        return None, why
    fastest = min(r["inference_ms"] for r in eligible)
    chosen = next(r for r in eligible if r["inference_ms"] <= (1 + prefer_within) * fastest)
    for r in eligible:
        ratio = r["inference_ms"] / fastest
        why[r["label"]] = ("chosen: " if r is chosen else "eligible: ") + (
            f"{r['inference_ms']:.3f} ms, {ratio:.2f}x the fastest eligible")
    return chosen, why


def target_rule(target: Any) -> dict[str, Any] | None:
    """The target's ``select`` block with defaults filled in, or None without one."""
    rule = getattr(target, "select", None)
    if not rule:
        return None
    return {"by": rule.get("by", "latency"), "candidates": list(rule["candidates"]),
            "max_drop": float(rule.get("max_drop", DEFAULT_MAX_DROP)),
            "prefer_within": float(rule.get("prefer_within", DEFAULT_PREFER_WITHIN))}


def default_label(target_id: str, rows: list[dict[str, Any]] | None = None) -> str | None:
    """The row label ``tango export`` picks for a target: by its ``select`` rule over ``rows`` when it
    has one (None when no candidate is eligible), else its first runtime at that format's default
    precision."""
    from ..targets import get_target

    target = get_target(target_id)
    rule = target_rule(target)
    if rule is None or rows is None:
        fmt = target.runtimes[0]
        return row_label(fmt, {})
    labels = [row_label(*parse_candidate(c)) for c in rule["candidates"]]
    chosen, _ = choose(rows, labels, max_drop=rule["max_drop"], prefer_within=rule["prefer_within"])
    return chosen["label"] if chosen else None


def select_export(model: Any = None, *, project: Any = None, target: str | None = None,
                  candidates: list[str] | None = None, data: Any = None, calibration: Any = None,
                  out: str | os.PathLike | None = None, threads: int = 1, runs: int = 50, rounds: int = 7,
                  max_drop: float | None = None, prefer_within: float | None = None,
                  events: ev.EventBus | None = None, **options: Any):
    """Export every candidate, verify and time it, and export the chosen one for real.

    ``target``: a target id (default: the project's target); ``candidates`` (default: the
    target's ``select.candidates``, else its runtimes) as ``format`` or ``format:precision``.
    INT8 candidates are left out when no calibration images can be found.  Returns the chosen
    :class:`~tango_core.export.ExportResult`; its metadata's ``selection`` block holds every
    candidate's latency, metric and why it was or was not chosen."""
    from ..targets import get_target
    from ._benchmark import benchmark, retime
    from ._exporter import export, model_or_trained

    tgt = get_target(target) if target else (project.target() if project is not None else get_target("x86-cpu"))
    rule = target_rule(tgt) or {"candidates": list(tgt.runtimes), "max_drop": DEFAULT_MAX_DROP,
                                "prefer_within": DEFAULT_PREFER_WITHIN, "by": "latency"}
    where = f"{tgt.source or tgt.id}: select.candidates"
    if options.get("precision") is not None:
        raise ConfigError("export", "precision", "the measured default picks the precision with the format",
                          "drop precision=, or name a format: export(model, 'onnx', precision='int8')")
    parsed = [parse_candidate(c, where) for c in (candidates or rule["candidates"])]
    max_drop = rule["max_drop"] if max_drop is None else float(max_drop)
    prefer_within = rule["prefer_within"] if prefer_within is None else float(prefer_within)

    model = model_or_trained(model, project)
    dataset = project.path(project.config.dataset) if project is not None and project.config.dataset else None
    data = data if data is not None else dataset
    calibration = calibration if calibration is not None else (dataset if dataset is not None else data)
    skipped = {}
    if calibration is None:
        for fmt, opts in parsed:
            if opts.get("precision") == "int8":
                skipped[row_label(fmt, opts)] = "no calibration images (pass calibration= or use a project dataset)"
        parsed = [(f, o) for f, o in parsed if o.get("precision") != "int8"]
    if not parsed:
        raise ConfigError(where, "candidates", "no candidate left to measure",
                          "give float candidates, or calibration images for the INT8 ones")
    labels = [row_label(f, o) for f, o in parsed]
    if project is not None:
        options["class_names"] = options.get("class_names") or project.config.classes or None
        options["task"] = options.get("task") or project.task
    bench_opts = {k: v for k, v in options.items() if k not in ("class_names", "task")}

    bus = events or (project.events if project is not None else ev.EventBus())
    out_dir = Path(out) if out is not None else (project.path("exports") if project is not None else Path("exports"))
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".select-", dir=out_dir) as scratch:
        result = benchmark(model, parsed, data=data, calibration=calibration, out=scratch, threads=threads,
                           runs=runs, warmup=max(3, runs // 10), events=bus, task=options.get("task"),
                           class_names=options.get("class_names"), **bench_opts)
        # the decision rests on a second, interleaved timing of the candidates that qualify, so
        # that a slow spell during one candidate's turn does not decide it
        qualified = [r["label"] for r in result.rows if r["label"] in labels and not r.get("error")
                     and r.get("verified")]
        if len(qualified) > 1:
            again = retime(result.rows, threads, rounds=rounds, runs=20, warmup=10, labels=qualified)
            for r in result.rows:
                if r["label"] in again:
                    r["first_ms"], r["inference_ms"] = r["inference_ms"], again[r["label"]]
    chosen, why = choose(result.rows, labels, max_drop=max_drop, prefer_within=prefer_within)
    why.update(skipped)
    table = [{k: r.get(k) for k in ("label", "format", "precision", "inference_ms", "first_ms", "metric", "size_mb",
                                    "speedup", "verified", "error")} for r in result.rows]
    if chosen is None:
        raise ConfigError(where, "candidates", "no candidate exported, verified and kept the accuracy: "
                          + "; ".join(f"{k}: {v}" for k, v in why.items()),
                          "install the missing extras, raise max_drop, or export a format by name")
    fmt, opts = next((f, o) for f, o in parsed if row_label(f, o) == chosen["label"])
    final = export(model, fmt, project=project, out=out_dir, data=data, calibration=calibration, threads=threads,
                   events=bus, task=options.get("task"), class_names=options.get("class_names"),
                   **{**bench_opts, **opts})
    selection = {"target": tgt.id, "by": "latency", "chosen": chosen["label"], "max_drop": max_drop,
                 "prefer_within": prefer_within, "threads": threads, "runs": runs, "machine": result.machine,
                 "candidates": labels, "why": why, "rows": table}
    final.metadata["selection"] = selection
    write_json(final.metadata_path, final.metadata)
    if project is not None:
        key = fmt if not opts.get("precision") else f"{fmt}_{opts['precision']}"
        project.mark("export", "completed", selected={"target": tgt.id, "export": key, "label": chosen["label"]})
    bus.emit(ev.EXPORT_SELECTED, target=tgt.id, chosen=chosen["label"], path=str(final.path),
             inference_ms=chosen["inference_ms"], rows=table)
    return final
