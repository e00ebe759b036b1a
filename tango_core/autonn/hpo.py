"""Hyper-parameter optimisation: a Bayesian search (TPE by default) over the training
hyper-parameters, with bad trials pruned from the engine's per-epoch events.

>>> result = tune(project, trials=20, epochs=5)        # writes the best hyp to the project, retrains
>>> result.best_hyp, result.retrained.best

Each trial is one short training (:class:`tango_core.engine.Trainer`) whose best validation
fitness is the objective.  The study lives in an Optuna storage (SQLite in the project by
default), so calling ``tune`` again resumes it, and any number of workers on other machines join
it with ``tango tune --storage postgresql://… --study NAME --join``.
"""

from __future__ import annotations

import contextlib
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import events as ev
from .._io import write_yaml
from ..errors import ConfigError
from . import _study
from ._pruning import TrialReporter, is_divergence
from ._space import clip_into, load_space, suggest
from ._storage import open_storage, storage_url
from ._worker import join, spawn


@dataclass
class TuneResult:
    study: str
    storage: str
    best_trial: int | None
    best_value: float | None
    best_params: dict[str, Any]
    best_hyp: dict[str, Any]  # the full training hyp: fixed values plus the best trial's
    trials: list[dict[str, Any]]  # every trial: number, state, values, params
    skipped: list[str] = field(default_factory=list)  # space names the model's training does not use
    hyp_path: Path | None = None
    retrained: Any = None  # the TrainResult of the final training with best_hyp
    default_value: float | None = None  # the fitness of the default hyp (trial 0: the engine's, the recipe's)


def _known_hyp(model: str) -> dict[str, Any]:
    """Every hyper-parameter the training of ``model`` uses, with its value when not set: the
    engine's, and its task's own (a YOLO model's recipe: loss gains, mosaic, mixup...)."""
    from ..engine._hyp import load_hyp

    return load_hyp({}, model=model)


def _space_model(model: str, info: dict[str, Any]) -> str:
    """The name the spaces' ``task:pattern`` sections are matched against: a searched
    architecture's base model (its hyper-parameters are its base's)."""
    return str(info["base"]) if info.get("searched") and info.get("base") else model


def hpo_spec(*, model: str, task: str, data: str, space: dict, hyp: dict, epochs: int, batch_size: Any,
             imgsz: int | None, seed: int, sampler: str, pruner: str, runs: str, trials: int | None) -> dict[str, Any]:
    return {"kind": "hpo", "model": model, "task": task, "data": data, "space": space, "hyp": hyp,
            "epochs": epochs, "batch_size": batch_size, "imgsz": imgsz, "seed": seed, "sampler": sampler,
            "pruner": pruner, "runs": runs, "trials": trials, "directions": ["maximize"], "objectives": ["fitness"]}


def make_objective(spec: dict[str, Any], data: Any, bus: ev.EventBus, threads: int | None = None,
                   keep_weights: bool = False):
    """The objective of an HPO study: one training per trial, its best fitness the value."""
    from ..engine import Trainer

    runs = Path(spec["runs"])

    def objective(trial) -> float:
        params = suggest(trial, spec["space"])
        hyp = {**spec["hyp"], **params}
        name = trial.study.study_name
        bus.emit(ev.TRIAL_START, study=name, trial=trial.number, params=params)
        trial_bus = ev.EventBus()
        reporter = TrialReporter(trial, bus, name, prune=spec["pruner"] != "none")
        trial_bus.subscribe("*", reporter)
        run_dir, resume = _study.run_dir_for(trial, runs)
        trial.set_user_attr("run_dir", str(run_dir))
        try:
            trainer = Trainer(data, spec["model"], epochs=spec["epochs"], hyp=hyp,
                              run_dir=run_dir, events=trial_bus, batch_size=spec["batch_size"], imgsz=spec["imgsz"],
                              seed=spec["seed"], loggers=("csv",), threads=threads, task=spec["task"],
                              resume=resume or False)
            result = trainer.fit()
        except Exception as exc:
            if is_divergence(exc):
                reporter.diverged(reporter.last_epoch or 0, float("nan"))
            raise
        trial.set_user_attr("metrics", {k: float(v) for k, v in result.metrics.items()})
        trial.set_user_attr("best_epoch", result.best_epoch)
        if not keep_weights:
            shutil.rmtree(run_dir / "weights", ignore_errors=True)
        return float(result.best_fitness)

    return objective


def tune(data: Any = None, model: str | None = None, *, trials: int | None = 20, timeout_min: float | None = None,
         epochs: int = 5, batch_size: int | str = "auto", imgsz: int | None = None, space: Any = None,
         hyp: dict[str, Any] | None = None, sampler: str = "tpe", pruner: str = "median", storage: Any = None,
         study: str | None = None, workers: int = 1, retrain: bool = True, retrain_epochs: int | None = None,
         seed: int = 0, events: ev.EventBus | None = None, threads: int | None = None, task: str | None = None,
         keep_weights: bool = False, enqueue_defaults: bool = True,
         enqueue: list[dict[str, Any]] | None = None) -> TuneResult:
    """Search the training hyper-parameters of ``model`` on ``data`` (a Project, a dataset or its
    folder, or in-memory tensors).

    ``trials`` / ``timeout_min``: the budget (trials of the whole study, minutes of this call).
    ``space``: None (``hpo_spaces.yaml`` for the task and model family), a mapping or a YAML
    file; its names are those the model's training uses (the engine's, and a YOLO model's recipe:
    box, cls, obj / dfl, mosaic...).  ``hyp``: fixed hyper-parameters every trial uses (e.g.
    ``{"fliplr": 0}`` for digits).  ``sampler``: tpe | gp | random; ``pruner``: median |
    hyperband | none.  ``enqueue``: settings to try first (after the defaults the model trains
    with, trial 0, unless ``enqueue_defaults=False``).  ``workers``: processes on
    this machine (more machines join with ``tango tune --join``).  With a Project, the best hyp
    is written to it (stage ``hpo``) and, with ``retrain``, the final model is trained with it
    (stage ``training``).
    """
    from ..models import model_info

    train_data, data_id, project = _study.resolve_data(data)
    model = model or (project.config.model if project is not None else None)
    if not model:
        raise ConfigError("tune", "model", "no model given", "pass model='resnet-cifar20' or pick one in the project")
    info = model_info(model)
    task = task or info["task"]
    if workers < 1:
        raise ConfigError("tune", "workers", f"{workers} must be at least 1")
    if workers > 1 and data_id == "<memory>":
        raise ConfigError("tune", "workers", "worker processes cannot share in-memory data",
                          "save the dataset to a folder, or use workers=1")
    full, source = load_space(space, task, _space_model(model, info))
    known = _known_hyp(model)
    skipped = [k for k in full if k not in known]
    if space is not None and skipped:  # a name your own space gives must be one the training uses
        from ..errors import UnknownNameError

        raise UnknownNameError(f"hyper-parameter (in {source})", skipped[0], list(known))
    unknown = [k for k in (hyp or {}) if k not in known]
    if unknown:
        from ..errors import UnknownNameError

        raise UnknownNameError("hyper-parameter (in hyp)", unknown[0], list(known))
    searched = {k: v for k, v in full.items() if k in known and k not in (hyp or {})}
    if not searched:
        raise ConfigError(source, "<space>", "nothing left to search", "the fixed hyp covers every name in the space")
    # the project's hyp holds an earlier search's best values: the searched names are the trials'
    # to set, so running the same call again resumes the same study
    fixed = {k: v for k, v in {**(project.config.hyp if project is not None else {}), **(hyp or {})}.items()
             if k not in searched}
    name = study or f"hpo-{model}"
    root = project.root if project is not None else Path(".")
    runs = (root / "runs" / "hpo" / name).resolve()
    spec = hpo_spec(model=model, task=task, data=data_id, space=searched, hyp=fixed, epochs=epochs,
                    batch_size=batch_size, imgsz=imgsz, seed=seed, sampler=sampler, pruner=pruner, runs=str(runs),
                    trials=trials)
    bus = events or (project.events if project is not None else ev.EventBus())
    url = storage_url(storage, project)
    st = open_storage(url)
    optuna_study, spec = _study.open_study(st, name, spec, seed=seed)
    if enqueue_defaults and not optuna_study.get_trials(deepcopy=False):
        # the defaults are trial 0 (the engine's, and the model's recipe where it has one, as the
        # trainer fills them in): the search is measured against them and never ends worse
        from ..engine._hyp import load_hyp

        defaults = clip_into(spec["space"], load_hyp(fixed, model=model))
        optuna_study.enqueue_trial(defaults, user_attrs={"defaults": True}, skip_if_exists=True)
    for params in enqueue or []:
        unknown = [k for k in params if k not in spec["space"]]
        if unknown:
            raise ConfigError("tune", f"enqueue.{unknown[0]}", "is not in the search space",
                              f"searched: {sorted(spec['space'])}")
        optuna_study.enqueue_trial(params, skip_if_exists=True)

    if trials is not None and spec.get("trials") != trials:  # a larger budget continues the study
        spec = {**spec, "trials": trials}
        optuna_study.set_user_attr(_study.SPEC_ATTR, spec)
    stage = project.stage("hpo", study=name, storage=url) if project is not None else contextlib.nullcontext()
    with stage:
        procs = [spawn(url, name, trials=trials, timeout_min=timeout_min, threads=threads, seed_offset=i + 1)
                 for i in range(workers - 1)]
        try:
            _study.run_worker(optuna_study, spec, make_objective(spec, train_data, bus, threads, keep_weights), bus,
                              trials=trials, timeout_s=timeout_min * 60 if timeout_min else None)
        finally:
            join(procs)
        result = _result(optuna_study, url, spec, skipped, bus)
        if result.best_trial is None:
            raise ConfigError("tune", "trials", "no trial completed", "raise the budget, or see the trials' errors")
        result.hyp_path = write_yaml(runs / "hyp_best.yaml", result.best_hyp)
        if project is not None:
            project.set(hyp=result.best_hyp)
            project.stages["hpo"].info.update(best_trial=result.best_trial, best_value=result.best_value,
                                              best_params=result.best_params, hyp_file=str(result.hyp_path),
                                              default_value=result.default_value)
    if retrain:
        from ..engine import train

        n = retrain_epochs or epochs
        if project is not None:
            result.retrained = train(project, model, epochs=n, batch_size=batch_size, imgsz=imgsz, seed=seed,
                                     events=bus, threads=threads)
        else:
            result.retrained = train(train_data, model, epochs=n, hyp=result.best_hyp, batch_size=batch_size,
                                     imgsz=imgsz, seed=seed, events=bus, threads=threads, task=task,
                                     run_dir=runs / "final")
    return result


def _result(study, url: str, spec: dict[str, Any], skipped: list[str], bus: ev.EventBus) -> TuneResult:
    from optuna.trial import TrialState

    trials = [_study.summarise(t) for t in study.get_trials(deepcopy=False)]
    best = _study.best_summary(study)
    bus.emit(ev.STUDY_END, study=study.study_name, best=best, storage=url)
    defaults = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
                if t.user_attrs.get("defaults")]
    params = dict(best["params"]) if best else {}
    return TuneResult(study.study_name, url, best["trial"] if best else None,
                      best["values"][0] if best else None, params, {**spec["hyp"], **params}, trials, skipped,
                      default_value=defaults[0].value if defaults else None)
