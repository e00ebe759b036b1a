"""TVM: the export's ONNX through the Relax frontend, compiled with LLVM for this CPU or for ARM.

Untuned TVM is slow on CPU (its default schedules are naive); ``tune=True`` runs MetaSchedule
for at most ``tune_budget_s`` seconds and keeps its log in a cache folder keyed by the graph and
the target, so a second export of the same model reuses the log instead of tuning again.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from .._io import read_json, write_json
from ..errors import require
from ._exporter import Artifacts, Context, ExportError
from ._onnx import write_onnx
from ._table import builder

#: cross-compilation targets (LLVM triples); "native" asks LLVM for this CPU
ARCH_TARGETS: dict[str, dict[str, Any]] = {
    "x86_64": {"kind": "llvm", "mtriple": "x86_64-linux-gnu"},
    "aarch64": {"kind": "llvm", "mtriple": "aarch64-linux-gnu", "mattr": ["+neon"]},
    "armv7l": {"kind": "llvm", "mtriple": "armv7l-linux-gnueabihf", "mattr": ["+neon"]},
}


def target_spec(arch: str, cores: int) -> dict[str, Any]:
    tvm = require("tvm", "tvm", "compiling with TVM")
    if arch == "native":
        return {"kind": "llvm", "mcpu": tvm.target.codegen.llvm_get_system_cpu(), "num-cores": cores}
    return dict(ARCH_TARGETS[arch], **{"num-cores": cores})


def cache_root(option: str | None) -> Path:
    if option:
        return Path(option)
    base = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    return base / "tango" / "tvm"


def _tune(mod, target, work_dir: Path, budget_s: float, trials: int, log: list[str]) -> None:
    """MetaSchedule with a wall-clock budget: a measure callback stops every task when it runs out."""
    from tvm.ir.utils import derived_object
    from tvm.s_tir import meta_schedule as ms

    deadline = time.monotonic() + budget_s

    @derived_object
    class _Budget(ms.measure_callback.PyMeasureCallback):
        def apply(self, task_scheduler, task_id, measure_candidates, builder_results, runner_results):
            if time.monotonic() > deadline:
                for i, task in enumerate(task_scheduler.tasks_):
                    if not task.is_terminated:
                        task_scheduler.terminate_task(i)

    started = time.monotonic()
    tasks = ms.relax_integration.extract_tasks(mod, target)
    per_task = max(8, trials // max(1, len(tasks)))
    ms.relax_integration.tune_relax(
        mod, params={}, target=target, work_dir=str(work_dir), max_trials_global=trials,
        max_trials_per_task=per_task, num_trials_per_iter=8,
        # round-robin, not the gradient scheduler: the latter visits every task once before it
        # looks at terminations, which would overrun a short budget by a batch per task
        task_scheduler="round-robin",
        measure_callbacks=[*ms.MeasureCallback.create("default"), _Budget()],
        # generous timeouts: a worker process imports TVM first, which takes tens of seconds on a
        # busy machine, and the default 30 s would time out every candidate
        builder=ms.builder.LocalBuilder(max_workers=max(1, (os.cpu_count() or 2) - 1), timeout_sec=120),
        runner=ms.runner.LocalRunner(timeout_sec=120, evaluator_config=ms.runner.EvaluatorConfig(
            number=3, repeat=1, min_repeat_ms=20)))
    log.append(f"tuned {len(tasks)} tasks for {time.monotonic() - started:.0f} s (budget {budget_s:.0f} s)")


@builder("tvm")
def build_tvm(ctx: Context) -> Artifacts:
    tvm = require("tvm", "tvm", "compiling with TVM")
    onnx = require("onnx", "export", "reading the ONNX that TVM compiles")
    from tvm import relax
    from tvm.relax.frontend.onnx import from_onnx

    opts = ctx.options
    arch = opts.get("arch", "native")
    cross = arch != "native"
    stem = ctx.path.name[: -len(ctx.spec.suffix)]
    path = ctx.path.with_name(f"{stem}_{arch}.tar") if cross else ctx.path
    notes: list[str] = []
    with tempfile.TemporaryDirectory(dir=ctx.path.parent, prefix=".tvm-") as tmp:
        onnx_path = write_onnx(ctx, Path(tmp) / "model.onnx", dynamic=False, dynamo=False, nms=False)
        graph = onnx.load(str(onnx_path))
        try:
            mod = from_onnx(graph, shape_dict={"images": list(ctx.example.shape)}, keep_params_in_input=False)
        except Exception as exc:  # noqa: BLE001  the frontend names unsupported ONNX ops in its message
            raise ExportError("tvm", f"the Relax ONNX frontend failed: {str(exc).splitlines()[0][:300]}",
                              "pick another format, or replace the operation", op=_onnx_op(exc)) from exc
        spec = target_spec(arch, cores=max(1, os.cpu_count() or 1))
        target = tvm.target.Target(spec)
        with target:
            mod = tvm.transform.Sequential([relax.transform.DecomposeOpsForInference(),
                                            relax.transform.CanonicalizeBindings(),
                                            relax.get_pipeline("zero")])(mod)
        tuning = None
        if opts.get("tune"):
            if cross:
                raise ExportError("tvm", "tuning measures candidates on this CPU, so it cannot tune for "
                                         f"{arch}", "tune on the device with TVM's RPC runner, or drop tune")
            key = hashlib.sha256(onnx_path.read_bytes() + json.dumps(spec, sort_keys=True).encode()).hexdigest()[:16]
            work_dir = cache_root(opts.get("tuning_cache")) / key
            state_file = work_dir / "tango_tuning.json"
            state = read_json(state_file) if state_file.is_file() else {"trials": 0, "seconds": 0.0}
            if state["trials"] >= opts["tune_trials"] or state["seconds"] >= opts["tune_budget_s"]:
                # the budget given before is spent (or the trials done): reuse the log as it is
                notes.append(f"reused the tuning log in {work_dir}")
            else:
                work_dir.mkdir(parents=True, exist_ok=True)
                started = time.monotonic()
                _tune(mod, target, work_dir, opts["tune_budget_s"] - state["seconds"], opts["tune_trials"], notes)
                state = {"trials": _records(work_dir), "seconds": state["seconds"] + time.monotonic() - started}
                write_json(state_file, state)
            with target:
                mod = relax.transform.MetaScheduleApplyDatabase(str(work_dir))(mod)
            tuning = {"log": str(work_dir), **state}
        try:
            executable = tvm.compile(mod, target=target)
        except Exception as exc:  # noqa: BLE001
            raise ExportError("tvm", f"compilation failed: {str(exc).splitlines()[0][:300]}") from exc
        out = Path(tmp) / path.name
        executable.export_library(str(out))  # .tar: object files, linked on the device
        shutil.move(str(out), str(path))
    if cross:
        notes.append(f"cross-compiled for {arch}: link and run it on the device (tvm.runtime.load_module on the .tar "
                     "needs a C compiler there); not verified here")
    return Artifacts(files={"model": path}, notes=notes, path=path, verify=None if cross else ("model", ""),
                     runtime_config={"target": spec, "tuning": tuning})


def _records(work_dir: Path) -> int:
    """Measured candidates in a MetaSchedule JSON database (one per line)."""
    path = work_dir / "database_tuning_record.json"
    return sum(1 for line in path.read_text().splitlines() if line.strip()) if path.is_file() else 0


def _onnx_op(exc: BaseException) -> str | None:
    import re

    match = re.search(r"not supported[^:]*:\s*\{?'?([A-Za-z0-9_]+)", str(exc))
    return match.group(1) if match else None
