"""TVM: the export's ONNX through the Relax frontend, compiled with LLVM for this CPU or for ARM.

Untuned TVM is slow on CPU (its default schedules are naive); ``tune=True`` runs MetaSchedule
for at most ``tune_budget_s`` seconds and keeps its log in a cache folder keyed by the graph and
the target, so a second export of the same model reuses the log instead of tuning again.
"""

from __future__ import annotations

import contextlib
import hashlib
import inspect
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

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


#: part of the tuning-log key: logs written by another way of extracting tasks are not mixed in
TUNING_VERSION = "tango-tvm-tuning-2"
#: tasks that differ only around the same anchor block (a convolution with or without a residual
#: add) share one tuning task and one record
MODULE_EQUALITY = "anchor-block"


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


@contextlib.contextmanager
def _quick_getmodule():
    """Memoise ``inspect.getmodule`` for frames while TVM parses its TVMScript libraries.

    MetaSchedule imports ``tvm.s_tir.tensor_intrin`` (about 250 TVMScript functions) on first use;
    each function's decorator calls ``inspect.stack()``, which for every ``<frozen importlib>`` frame
    scans all of ``sys.modules``.  In a process that has imported torch and the exporters that
    import took 100-190 s here; memoised per file name it takes a few seconds.
    """
    original = inspect.getmodule
    memo: dict[str, Any] = {}

    def getmodule(obj, _filename=None):
        if _filename is not None and (inspect.isframe(obj) or inspect.iscode(obj)):
            if _filename not in memo:
                memo[_filename] = original(obj, _filename)
            return memo[_filename]
        return original(obj, _filename)

    inspect.getmodule = getmodule
    try:
        yield
    finally:
        inspect.getmodule = original


def _tune(mod, target, work_dir: Path, budget_s: float, trials: int, log: list[str],
          skip: frozenset[str] = frozenset()) -> dict[str, Any]:
    """MetaSchedule within a wall-clock budget, every candidate built and timed in this process.

    What a short budget went on before (2-core machine): MetaSchedule's LocalBuilder starts a fresh
    pool of worker processes for every batch and each worker imports TVM first, so a batch of 8
    took about 2 minutes to build; the evolutionary search's default population (512) cost over a
    minute per batch; and importing ``tvm.s_tir.tensor_intrin`` took 100 s in a process that has
    imported torch (see :func:`_quick_getmodule`).  Here

    * the builder calls LocalBuilder's own build function in this process and keeps the module in
      memory, and the runner times it in this process (no tar, no link, no worker process);
    * the population is scaled to the budget per task (:func:`_population`);
    * tasks are deduplicated by their anchor block (a convolution with or without a residual add
      is one task; ResNet-CIFAR-20 has 11 instead of 14), the most expensive (FLOPs x uses) first;
    * after every task has had one batch, a task below 2 % of the weighted latency stops, so the
      rest of the budget goes round the big ones; when the budget is spent every task stops (the
      round-robin scheduler looks after every batch, so the budget holds to one batch);
    * ``skip``: tasks an earlier run of the same log stopped that way are not tuned again.

    Returns what happened: tasks, candidates measured, seconds, why it stopped.
    """
    import logging
    import math

    import tvm
    from tvm.ir.utils import derived_object
    from tvm.s_tir import meta_schedule as ms
    from tvm.s_tir.meta_schedule.builder.local_builder import default_build
    from tvm.s_tir.meta_schedule.runner.local_runner import LocalRunnerFuture
    from tvm.s_tir.meta_schedule.runner.utils import alloc_argument_common, run_evaluator_common

    started = time.monotonic()
    deadline = started + budget_s
    if "tvm.s_tir.tensor_intrin" not in sys.modules:
        with _quick_getmodule():
            import tvm.s_tir.tensor_intrin  # noqa: F401  what every TuneContext and build imports
    cores = max(1, int(target.attrs.get("num-cores", os.cpu_count() or 1)))
    extracted = [t for t in ms.relax_integration.extract_tasks(mod, target, module_equality=MODULE_EQUALITY)
                 if t.task_name not in skip]
    if not extracted:
        return {"tasks": 0, "measured": 0, "failed": 0, "seconds": 0.0, "stopped": "finished",
                "population": 0, "dropped": [], "untuned": []}
    # most expensive first: if the budget ends within the first round, the cheap tasks are left
    cost = [t.weight * max(1.0, float(tvm.s_tir.analysis.estimate_tir_flops(t.dispatched[0]))) for t in extracted]
    extracted = [extracted[i] for i in sorted(range(len(extracted)), key=lambda i: -cost[i])]
    population = _population(budget_s, len(extracted))
    strategy = ms.search_strategy.EvolutionarySearch(
        population_size=population, init_min_unmeasured=max(16, population // 2),
        genetic_num_iters=2)
    ms_logger = logging.getLogger("tvm.s_tir.meta_schedule")
    if ms_logger.level == logging.NOTSET:  # the console gets warnings; the whole log is in work_dir/logs
        ms_logger.setLevel(logging.WARNING)
    with _own_handlers_only(ms_logger):
        contexts, weights = ms.relax_integration.extracted_tasks_to_tune_contexts(
            extracted, str(work_dir), strategy=strategy, num_threads=cores, seed=0)
    modules: dict[str, Any] = {}  # artifact key -> built module, dropped once timed
    stats: dict[str, Any] = {"measured": 0, "failed": 0, "skipped": 0, "stopped": None, "dropped": []}
    best: dict[int, float] = {}  # task -> best measured seconds
    visited: set[int] = set()

    @derived_object
    class _Builder(ms.builder.PyBuilder):
        """LocalBuilder's build function, run here; the module stays in memory under a key."""

        def build(self, build_inputs):
            results = []
            for inp in build_inputs:
                if time.monotonic() > deadline:  # the batch that crossed the deadline: time no more of it
                    stats["skipped"] += 1
                    results.append(ms.builder.BuilderResult(None, "tuning budget spent"))
                    continue
                try:
                    key = f"tango-in-memory/{len(modules)}-{id(inp)}"
                    modules[key] = default_build(inp.mod, inp.target, None)
                    results.append(ms.builder.BuilderResult(key, None))
                except Exception as exc:  # noqa: BLE001  a bad candidate is a failed build, as in LocalBuilder
                    results.append(ms.builder.BuilderResult(None, f"build failed: {exc}"))
            return results

    config = ms.runner.EvaluatorConfig(number=3, repeat=1, min_repeat_ms=20, enable_cpu_cache_flush=False)
    random_fill = tvm.get_global_func("tvm.contrib.random.random_fill_for_measure")

    def fill(tensor) -> None:
        """Random floats, as MetaSchedule's runner; zeros for integers: random ones (~1e9) used as
        a gather's index (YOLO's ``p[..., 4]``, a ``take`` task) read far outside the tensor and
        crash the process, where LocalRunner's worker process only loses that candidate."""
        if str(tensor.dtype).startswith(("int", "uint", "bool")):
            tensor.copyfrom(np.zeros(tuple(tensor.shape), dtype=str(tensor.dtype)))
        else:
            random_fill(tensor)

    @derived_object
    class _Runner(ms.runner.PyRunner):
        """LocalRunner's timing, run here on the module the builder kept."""

        def run(self, runner_inputs):
            futures = []
            for inp in runner_inputs:
                try:
                    device = tvm.runtime.device(str(inp.device_type), 0)
                    args = alloc_argument_common(fill, device, [a.as_json() for a in inp.args_info], 1)
                    costs = run_evaluator_common(modules[str(inp.artifact_path)], device, config, args)
                    futures.append(LocalRunnerFuture(res=costs))
                except Exception as exc:  # noqa: BLE001
                    futures.append(LocalRunnerFuture(error_message=f"run failed: {exc}"))
            return futures

    @derived_object
    class _Budget(ms.measure_callback.PyMeasureCallback):
        """Records the timed candidates and drops their modules; stops every task once the budget
        is spent and, once every task has had a batch, those below 2 % of the weighted latency."""

        def apply(self, task_scheduler, task_id, measure_candidates, builder_results, runner_results):
            # what AddToDatabase does, less the candidates skipped for the budget: a failure is
            # recorded as 1e10 s, and those were never built
            database, ctx = task_scheduler.database_, task_scheduler.tasks_[task_id].ctx
            workload = database.commit_workload(ctx.mod)
            for cand, built, ran in zip(measure_candidates, builder_results, runner_results, strict=True):
                if built.artifact_path is not None:
                    modules.pop(str(built.artifact_path), None)
                if built.error_msg != "tuning budget spent":
                    database.commit_tuning_record(ms.database.TuningRecord(
                        cand.sch.trace, workload, list(ran.run_secs) if ran.run_secs else [1e10], ctx.target,
                        cand.args_info))
            secs = [sum(r.run_secs) / len(r.run_secs) for r in runner_results if r.error_msg is None and r.run_secs]
            skipped = sum(1 for b in builder_results if b.error_msg == "tuning budget spent")
            stats["measured"] += len(secs)
            stats["failed"] += len(runner_results) - len(secs) - skipped
            visited.add(task_id)
            if secs:
                best[task_id] = min(best.get(task_id, math.inf), *(float(s) for s in secs))
            records = task_scheduler.tasks_
            alive = [i for i, task in enumerate(records) if not task.is_terminated]
            if time.monotonic() > deadline:
                stats["stopped"] = "budget"
                for i in alive:
                    task_scheduler.terminate_task(i)
            elif len(visited) == len(records) and len(alive) > 1:
                total = sum(weights[i] * best[i] for i in best)
                for i in alive:
                    if i in best and weights[i] * best[i] < 0.02 * total:
                        stats["dropped"].append(contexts[i].task_name)
                        task_scheduler.terminate_task(i)

    # time candidates on as many threads as the target has (a runner loaded earlier may have set 1)
    from ._runners import tvm_threadpool

    tvm_threadpool(tvm, cores)
    try:
        ms.tune_tasks(
            tasks=contexts, task_weights=weights, work_dir=str(work_dir), max_trials_global=trials,
            max_trials_per_task=trials, num_trials_per_iter=16, builder=_Builder(), runner=_Runner(),
            database="json", cost_model=ms.cost_model.XGBModel(num_tuning_cores=cores),
            measure_callbacks=[_Budget(), ms.measure_callback.UpdateCostModel()],
            task_scheduler="round-robin", module_equality=MODULE_EQUALITY)
    finally:
        modules.clear()
    seconds = time.monotonic() - started
    if stats["stopped"] is None:  # every task ran out of candidates, or the trials were used up
        stats["stopped"] = "trials" if stats["measured"] + stats["failed"] >= trials else "finished"
    untuned = [contexts[i].task_name for i in range(len(contexts)) if i not in best]
    log.append(f"tuned {len(contexts)} tasks for {seconds:.0f} s (budget {budget_s:.0f} s): {stats['measured']} "
               f"candidates measured" + (f"; no measured schedule for {', '.join(untuned)}" if untuned else ""))
    return {"tasks": len(contexts), "measured": stats["measured"], "failed": stats["failed"],
            "seconds": round(seconds, 1), "stopped": stats["stopped"], "population": population,
            "dropped": stats["dropped"], "untuned": untuned}


#: the largest population: MetaSchedule's default (512, 4 genetic rounds) cost over a minute of
#: search per batch of 16 on two cores, so a 1,800 s budget measured only 436 candidates and ended
#: slower (3.7x ONNX Runtime) than a 600 s one with 224 (2.5x)
MAX_POPULATION = 128


def _population(budget_s: float, n_tasks: int) -> int:
    """Evolutionary-search population for a budget: a short budget spread over many tasks gets 32-64,
    a long one :data:`MAX_POPULATION`; on a small CPU candidates measured buy more than search."""
    per_task = budget_s / max(1, n_tasks)
    return int(min(MAX_POPULATION, max(32, 16 * round(per_task / 4))))


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
            key = hashlib.sha256(TUNING_VERSION.encode() + onnx_path.read_bytes()
                                 + json.dumps(spec, sort_keys=True).encode()).hexdigest()[:16]
            work_dir = cache_root(opts.get("tuning_cache")) / key
            tuning = _tuned_log(mod, target, work_dir, opts["tune_budget_s"], opts["tune_trials"], notes)
            from tvm.s_tir import meta_schedule as ms

            with target, ms.database.JSONDatabase(work_dir=str(work_dir), module_equality=MODULE_EQUALITY):
                mod = relax.transform.MetaScheduleApplyDatabase()(mod)
            tuning["key"] = key
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


@contextlib.contextmanager
def _own_handlers_only(logger):
    """MetaSchedule rebuilds its loggers with ``logging.config.dictConfig`` from the names of the
    handlers its logger has: a handler someone else added (pytest's log capture, a notebook's
    logging set-up) has no name there and the rebuild fails (``'NoneType' object has no attribute
    'format'``).  Those handlers are taken off for the rebuild and put back after it."""
    foreign = [h for h in logger.handlers if not (h.get_name() or "").startswith(logger.name)]
    for handler in foreign:
        logger.removeHandler(handler)
    try:
        yield
    finally:
        for handler in foreign:
            logger.addHandler(handler)


def _tuned_log(mod, target, work_dir: Path, budget_s: float, trials: int, notes: list[str]) -> dict[str, Any]:
    """Tune into ``work_dir`` unless the log there already had this budget (or these trials).

    ``tango_tuning.json`` beside MetaSchedule's database keeps the budget granted so far: an export
    with the same or a smaller budget reuses the log without tuning, a bigger budget tunes for the
    difference, starting from the records already there.
    """
    state_file = work_dir / "tango_tuning.json"
    state = read_json(state_file) if state_file.is_file() else {}
    granted = float(state.get("budget_s", state.get("seconds", 0.0)))
    if state and (state.get("trials", 0) >= trials or granted >= budget_s or state.get("finished")):
        notes.append(f"reused the tuning log in {work_dir} ({state.get('trials', 0)} records from "
                     f"{state.get('seconds', 0):.0f} s of tuning); not tuned again")
        return {"log": str(work_dir), "reused": True, **state, "run": None}
    work_dir.mkdir(parents=True, exist_ok=True)
    run = _tune(mod, target, work_dir, budget_s - granted, max(1, trials - int(state.get("trials", 0))), notes,
                skip=frozenset(state.get("dropped", [])))
    state = {"trials": _records(work_dir), "seconds": round(float(state.get("seconds", 0.0)) + run["seconds"], 1),
             "budget_s": float(budget_s), "finished": run["stopped"] == "finished",
             "runs": int(state.get("runs", 0)) + 1, "dropped": sorted({*state.get("dropped", []), *run["dropped"]})}
    write_json(state_file, state)
    return {"log": str(work_dir), "reused": False, **state, "run": run}


def _records(work_dir: Path) -> int:
    """Measured candidates in a MetaSchedule JSON database (one per line)."""
    path = work_dir / "database_tuning_record.json"
    return sum(1 for line in path.read_text().splitlines() if line.strip()) if path.is_file() else 0


def _onnx_op(exc: BaseException) -> str | None:
    import re

    match = re.search(r"not supported[^:]*:\s*\{?'?([A-Za-z0-9_]+)", str(exc))
    return match.group(1) if match else None
