"""Target-aware architecture search: accuracy and latency on the target's runtime, two objectives,
a Pareto front to pick from.

>>> result = search(project, trials=24, epochs=2)       # around the project's base model
>>> result.table()                                      # the front: accuracy, latency, size
>>> result.choose(result.front[1].trial, project=project)   # a registered model, saved in the project

**Accuracy** comes from a short training of each candidate (``epochs``, the project's hyp; a YOLO
candidate trains with its base model's recipe), scored by the best weights' top-1 for
classification and mAP@0.5 for detection (``ACCURACY``), not from weight sharing: with the small
budgets a notebook affords (tens of candidates) a supernet would cost as much training as the
candidates themselves, and its inherited weights rank candidates less faithfully than their own
training does; short runs favour nets that learn fast, which is the bias to keep in mind
(docs/autonn.md).

**Latency** is measured when the target's runtime (its first, preferred one) runs here: each
candidate is exported with :func:`tango_core.export.export` (and verified), loaded in that
runtime and timed.  Otherwise it is predicted by a :class:`~._latency.LatencyPredictor` fitted on
measurements: a table measured on the device (``latency_table``), or, without one, candidates
measured here on the nearest runtime that runs here (a stand-in that ranks candidates, marked as
such).  The predictor's error on held-out candidates is reported either way.
"""

from __future__ import annotations

import contextlib
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import events as ev
from ..errors import ConfigError
from . import _study
from ._archs import save_arch, temporary_model
from ._nas_spaces import get_space, space_for
from ._pruning import TrialReporter, is_divergence
from ._space import suggest
from ._storage import open_storage, storage_url
from ._worker import join, spawn

LATENCY_MODES = ("auto", "measure", "predict")
#: the accuracy objective of a search, where it is not the task's fitness: mAP@0.5 for detection
#: (a 1-2 epoch training ranks candidates by whether they find the objects at all; the strict IoU
#: thresholds of mAP@0.5:0.95 are mostly noise that early), mask mAP@0.5 for segmentation
ACCURACY = {"detection": "mAP50", "segmentation": "mask_mAP50"}


@dataclass
class Candidate:
    trial: int
    arch: dict[str, Any]
    accuracy: float
    latency_ms: float
    latency_source: str  # measured | predicted
    params: int
    flops: float
    weights: str | None
    export: str | None
    describe: str = ""
    is_base: bool = False
    features: dict[str, float] = field(default_factory=dict)  # what the latency predictor reads

    @classmethod
    def from_trial(cls, t) -> Candidate:
        a = t.user_attrs
        return cls(t.number, a["arch"], float(t.values[0]), float(t.values[1]), a["latency_source"],
                   int(a["features"]["params"]), float(a["features"]["flops"]), a.get("weights"), a.get("export"),
                   a.get("describe", ""), bool(a.get("is_base")), dict(a["features"]))


@dataclass
class SearchResult:
    study: str
    storage: str
    base: str
    space: str
    target: str
    runtime: str
    objectives: list[str]
    front: list[Candidate]  # the Pareto front, fastest first
    candidates: list[Candidate]  # every completed candidate
    base_candidate: Candidate | None
    predictor_error: dict[str, float] | None = None
    spec: dict[str, Any] = field(default_factory=dict)

    def table(self) -> str:
        head = f"{'trial':>5} {'architecture':24} {self.objectives[0]:>8} {'latency ms':>10} {'params':>10}  source"
        rows = [head]
        for c in self.front:
            mark = " (base)" if c.is_base else ""
            rows.append(f"{c.trial:>5} {c.describe:24} {c.accuracy:>8.4f} {c.latency_ms:>10.4f} {c.params:>10,}  "
                        f"{c.latency_source}{mark}")
        return "\n".join(rows)

    def choose(self, trial: int | Candidate, name: str | None = None, project: Any = None,
               folder: str | os.PathLike | None = None) -> str:
        """Register candidate ``trial`` as a model and save its architecture (in the project's
        ``models/`` folder, or ``folder``) so it registers again in any later process; with a
        project, also make it the project's model.  Returns the model name."""
        cand = trial if isinstance(trial, Candidate) else next((c for c in self.candidates if c.trial == trial), None)
        if cand is None:
            raise ConfigError("choose", "trial", f"{trial!r} is not a completed candidate of study {self.study!r}",
                              f"completed: {[c.trial for c in self.candidates]}")
        name = name or f"{self.base}-nas{cand.trial}"
        if folder is None:
            if project is None:
                raise ConfigError("choose", "folder", "nowhere to save the architecture", "pass project= or folder=")
            folder = project.path("models")
        cfg = {"name": name, "space": self.space, "base": self.base, "task": self.spec["task"], "arch": cand.arch,
               "num_classes": self.spec["num_classes"], "in_channels": self.spec["in_channels"],
               "input_size": self.spec["imgsz"],
               "search": {"study": self.study, "storage": self.storage, "trial": cand.trial, "target": self.target,
                          "runtime": self.runtime, "accuracy": cand.accuracy, "latency_ms": cand.latency_ms,
                          "latency_source": cand.latency_source, "weights": cand.weights}}
        space = get_space(self.space)
        if hasattr(space, "config"):  # YOLO: the full layer config, for the graph viewer
            cfg["config"] = space.config(dict(cand.arch, name=name))
        save_arch(folder, cfg)
        if project is not None:
            project.set(model=name)
            project.mark("nas", "completed", chosen=name, chosen_trial=cand.trial)
        return name


def _digest(arch: dict[str, Any]) -> str:
    import hashlib
    import json

    return hashlib.sha1(json.dumps(arch, sort_keys=True).encode()).hexdigest()[:10]


def nas_spec(**kw: Any) -> dict[str, Any]:
    return {"kind": "nas", "pruner": "none", "directions": ["maximize", "minimize"], **kw}


def make_objective(spec: dict[str, Any], data: Any, bus: ev.EventBus, threads: int | None = None):
    """The objective of a NAS study: (accuracy after a short training, latency on the target)."""
    from ..engine import Trainer
    from ..models import create_model
    from ..models.weights import read_weights
    from ._latency import PREDICTOR_ATTR, LatencyPredictor, cost_features, measure_latency

    space = get_space(spec["space"])
    runs = Path(spec["runs"])

    def predictor(study) -> LatencyPredictor:
        return LatencyPredictor.from_dict(study.user_attrs[PREDICTOR_ATTR])

    def objective(trial):
        params = suggest(trial, spec["choices"])
        arch = space.arch(spec["model"], params)
        name = trial.study.study_name
        trial.set_user_attr("arch", arch)
        trial.set_user_attr("describe", space.describe(arch))
        bus.emit(ev.TRIAL_START, study=name, trial=trial.number, params=params, arch=arch)
        run_dir, resume = _study.run_dir_for(trial, runs)
        trial.set_user_attr("run_dir", str(run_dir))
        trial_bus = ev.EventBus()
        reporter = TrialReporter(trial, bus, name, prune=False)
        trial_bus.subscribe("*", reporter)
        # named by the architecture: a retry of a lost trial resumes its checkpoint under the same name
        cand = f"{spec['model']}-candidate-{_digest(arch)}"
        cfg = {"name": cand, "space": spec["space"], "base": spec["model"], "task": spec["task"], "arch": arch,
               "num_classes": spec["num_classes"], "in_channels": spec["in_channels"], "input_size": spec["imgsz"]}
        with temporary_model(cand, cfg):
            try:
                result = Trainer(data, cand, epochs=spec["epochs"], hyp=spec["hyp"], run_dir=run_dir, events=trial_bus,
                                 batch_size=spec["batch_size"], imgsz=spec["imgsz"], seed=spec["seed"],
                                 loggers=("csv",), threads=threads, task=spec["task"],
                                 channels=spec["in_channels"], resume=resume or False).fit()
            except Exception as exc:
                if is_divergence(exc):
                    reporter.diverged(reporter.last_epoch or 0, float("nan"))
                raise
            meta = read_weights(result.best)
            model = create_model(cand, num_classes=spec["num_classes"], in_channels=spec["in_channels"])
            feats = cost_features(model, spec["imgsz"], spec["in_channels"])
            trial.set_user_attr("features", feats)
            trial.set_user_attr("weights", str(result.best))
            if result.last is not None:  # the resume state is not needed once the trial is done
                result.last.unlink(missing_ok=True)
            if spec["latency"] == "measure":
                lat = measure_latency(result.best, spec["runtime"], imgsz=spec["imgsz"], out=run_dir / "export",
                                      name="model", task=spec["task"], class_names=list(meta.get("classes") or []),
                                      threads=spec["latency_threads"])
                latency, source = lat.median_ms, "measured"
                trial.set_user_attr("export", str(lat.path))
                trial.set_user_attr("latency_spread_ms", lat.spread_ms)
            else:
                latency, source = float(predictor(trial.study).predict(feats)), "predicted"
        trial.set_user_attr("latency_source", source)
        trial.set_user_attr("latency_ms", latency)
        trial.set_user_attr("metrics", {k: float(v) for k, v in result.metrics.items()})
        accuracy = spec["objectives"][0]
        # the best weights' metrics (what the trainer validated at the end); else the task's fitness
        value = result.metrics[accuracy] if accuracy in result.metrics else result.best_fitness
        return float(value), float(latency)

    return objective


def tolerated_errors() -> tuple[type[Exception], ...]:
    """A candidate the target's runtime cannot take (an unsupported operator, a failed
    verification) is recorded as a failed trial and the search goes on."""
    from ..export import ExportError, VerificationError

    return (ExportError, VerificationError)


def search(data: Any = None, model: str | None = None, *, trials: int | None = 24, timeout_min: float | None = None,
           epochs: int = 2, batch_size: int | str = "auto", imgsz: int | None = None, space: str | None = None,
           hyp: dict[str, Any] | None = None, target: str | None = None, latency: str = "auto",
           latency_table: Any = None, calibration: int = 8, latency_threads: int = 1, sampler: str = "nsga2",
           population: int | None = None, storage: Any = None, study: str | None = None, workers: int = 1,
           seed: int = 0, events: ev.EventBus | None = None, threads: int | None = None,
           enqueue: list[dict[str, Any]] | None = None) -> SearchResult:
    """Search architectures around ``model`` (the project's base model by default) for accuracy
    and latency on ``target`` (the project's).  ``latency``: auto (measure when the target's
    runtime runs here, else predict) | measure | predict.  ``sampler``: nsga2 (default) | tpe |
    random.  The base model itself is trial 0; ``enqueue``: choices to try next.  A candidate the
    target's runtime cannot take fails alone.  See the module docstring for how accuracy and
    latency are obtained."""
    from ..models import model_info
    from ..targets import get_target
    from ._latency import runtime_for

    train_data, data_id, project = _study.resolve_data(data)
    model = model or (project.config.model if project is not None else None)
    if not model:
        raise ConfigError("search", "model", "no base model", "pass model='resnet-cifar20' or pick one in the project")
    info = model_info(model)
    if info.get("searched"):
        model = info["base"]  # searching around a found model searches its base's space
        info = model_info(model)
    nas_space = get_space(space) if space else space_for(model)
    if latency not in LATENCY_MODES:
        raise ConfigError("search", "latency", f"{latency!r} is not a mode", f"use one of {list(LATENCY_MODES)}")
    tgt = get_target(target or (project.config.target if project is not None else "x86-cpu"))
    runnable, runtimes = runtime_for(tgt)
    primary = runtimes[0]
    mode = latency if latency != "auto" else ("measure" if runnable == primary else "predict")
    if mode == "measure" and runnable != primary:
        raise ConfigError("search", "latency", f"{tgt.id}'s runtime {primary!r} does not run on this machine",
                          "use latency='predict' (with a latency_table measured on the device)")
    classes = project.config.classes if project is not None and project.config.classes else None
    num_classes, in_channels, size = _data_shape(train_data, classes, imgsz or info["input_size"])
    fixed = {**(project.config.hyp if project is not None else {}), **(hyp or {})}
    default_space = space is None or space_for_or_none(model) == nas_space.name
    name = study or (f"nas-{model}-{tgt.id}" if default_space else f"nas-{model}-{nas_space.name}-{tgt.id}")
    root = project.root if project is not None else Path(".")
    choices = nas_space.params(model)
    spec = nas_spec(model=model, task=info["task"], data=data_id, space=nas_space.name, choices=choices,
                    hyp=fixed, epochs=epochs, batch_size=batch_size, imgsz=size, seed=seed, sampler=sampler,
                    population=population or max(4, min(16, (trials or 24) // 3)),
                    runs=str((root / "runs" / "nas" / name).resolve()), trials=trials, target=tgt.id,
                    runtime=primary, proxy_runtime=runnable or "onnx", latency=mode, latency_threads=latency_threads,
                    num_classes=num_classes, in_channels=in_channels,
                    objectives=[accuracy_name(info["task"]), "latency_ms"])
    bus = events or (project.events if project is not None else ev.EventBus())
    url = storage_url(storage, project)
    optuna_study, spec = _study.open_study(open_storage(url), name, spec, seed=seed)
    if not optuna_study.get_trials(deepcopy=False):
        optuna_study.enqueue_trial(nas_space.base_params(model), user_attrs={"is_base": True}, skip_if_exists=True)
    for params in enqueue or []:
        unknown = sorted(set(params) - set(spec["choices"]))
        if unknown:
            raise ConfigError("search", f"enqueue.{unknown[0]}", "is not a choice of the space",
                              f"choices of {spec['space']}: {sorted(spec['choices'])}")
        optuna_study.enqueue_trial(params, skip_if_exists=True)
    if mode == "predict":
        from ._latency import calibrate

        calibrate(optuna_study, spec, latency_table, calibration, seed)

    with (project.stage("nas", study=name, storage=url, target=tgt.id) if project is not None
          else contextlib.nullcontext()):
        procs = [spawn(url, name, trials=trials, timeout_min=timeout_min, threads=threads, seed_offset=i + 1)
                 for i in range(workers - 1)]
        try:
            _study.run_worker(optuna_study, spec, make_objective(spec, train_data, bus, threads), bus, trials=trials,
                              timeout_s=timeout_min * 60 if timeout_min else None, catch=tolerated_errors())
        finally:
            join(procs)
        result = _result(optuna_study, url, spec, bus)
        if project is not None:
            project.stages["nas"].info.update(front=[c.trial for c in result.front],
                                              predictor_error=result.predictor_error)
    return result


def load_result(study: str, storage: Any = None, project: Any = None) -> SearchResult:
    """The result of a stored search (finished, or still running elsewhere), to pick from again."""
    url = storage_url(storage, project)
    optuna_study, spec = _study.open_study(open_storage(url), study, None)
    if spec.get("kind") != "nas":
        raise ConfigError(f"study {study!r}", "kind", f"is a {spec.get('kind')} study, not an architecture search")
    return _result(optuna_study, url, spec, ev.EventBus())


def space_for_or_none(model: str) -> str | None:
    try:
        return space_for(model).name
    except ConfigError:
        return None


def accuracy_name(task: str) -> str:
    """The accuracy objective of a search on ``task``: ``ACCURACY``'s, else the task's fitness."""
    if task in ACCURACY:
        return ACCURACY[task]
    from ..engine import get_task

    return get_task(task).fitness_name


def _data_shape(data: Any, classes: list[str] | None, imgsz: int) -> tuple[int, int, int]:
    """Class count and channels of the training data, without loading the images."""
    if isinstance(data, dict):
        images = data["train"][0]
        return len(data["classes"]), int(images.shape[1]), int(images.shape[-1])
    from PIL import Image

    from ..data import load_dataset

    ds = data if hasattr(data, "records") else load_dataset(data)
    gray = True
    for rec in ds.records:  # as the trainer's loader decides: one channel only when every image is gray
        with Image.open(ds.image_path(rec)) as img:  # reads the header only
            if img.mode not in ("1", "L", "LA", "I", "I;16", "F"):
                gray = False
                break
    return len(classes or ds.classes), 1 if gray else 3, imgsz


def _result(study, url: str, spec: dict[str, Any], bus: ev.EventBus) -> SearchResult:
    from optuna.trial import TrialState

    done = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)) if "features" in t.user_attrs]
    cands = [Candidate.from_trial(t) for t in done]
    front_numbers = {t.number for t in study.best_trials}
    front = sorted((c for c in cands if c.trial in front_numbers), key=lambda c: (c.latency_ms, -c.accuracy))
    base = next((c for c in cands if c.is_base), None)
    bus.emit(ev.STUDY_END, study=study.study_name, best=[_study.summarise(t) for t in study.best_trials], storage=url,
             objectives=spec["objectives"])
    from ._latency import PREDICTOR_ATTR

    pred = study.user_attrs.get(PREDICTOR_ATTR)
    error = pred["error"] if pred else _measured_error(cands, spec)
    return SearchResult(study.study_name, url, spec["model"], spec["space"], spec["target"], spec["runtime"],
                        spec["objectives"], front, cands, base, error, spec)


def _measured_error(cands: list[Candidate], spec: dict[str, Any]) -> dict[str, float] | None:
    """With measured latencies, how well a predictor fitted on them would have done (held out)."""
    from ._latency import LatencyPredictor

    measured = [c for c in cands if c.latency_source == "measured"]
    if len(measured) < 4:
        return None
    error = LatencyPredictor().fit_and_evaluate([c.features for c in measured], [c.latency_ms for c in measured],
                                                seed=spec["seed"])
    return error if not math.isnan(error["mape"]) else None
