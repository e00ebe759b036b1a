"""What HPO and NAS share: the study's settings kept in the storage, the worker loop, the budget
and the trial events.

The settings of a study (data, model, space, epochs, budget...) are stored as the study's
``tango`` user attribute, so a worker on another machine needs only the storage URL and the study
name; the storage stays a plain Optuna storage that optuna-dashboard reads unchanged.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .. import events as ev
from ..errors import ConfigError
from ._storage import WORKER_ATTR, reap_dead_trials, worker_id

SPEC_ATTR = "tango"
SAMPLERS = ("tpe", "gp", "random", "nsga2")
PRUNERS = ("median", "hyperband", "none")


def make_sampler(name: str, seed: int | None, population: int | None = None):
    import optuna

    if name not in SAMPLERS:
        from ..errors import UnknownNameError

        raise UnknownNameError("sampler", name, list(SAMPLERS))
    if name == "nsga2":  # small generations, so that a budget of tens of candidates still evolves
        return optuna.samplers.NSGAIISampler(seed=seed, population_size=population or 8)
    if name == "gp":
        return optuna.samplers.GPSampler(seed=seed, n_startup_trials=4)
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    # multivariate TPE models the interactions (lr0 x momentum x warm-up) that matter here; the
    # constant liar keeps parallel workers from proposing the same point
    return optuna.samplers.TPESampler(seed=seed, n_startup_trials=4, multivariate=True, constant_liar=True)


def make_pruner(name: str, epochs: int):
    import optuna

    if name not in PRUNERS:
        from ..errors import UnknownNameError

        raise UnknownNameError("pruner", name, list(PRUNERS))
    if name == "median":
        # the first epoch says little (warm-up differs from trial to trial), and a median of two
        # trials is noise: compare from the second epoch on, once three trials have finished
        return optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=1 if epochs > 1 else 0)
    if name == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=1, max_resource=max(epochs, 1), reduction_factor=3)
    return optuna.pruners.NopPruner()


def open_study(storage, name: str, spec: dict[str, Any] | None, seed: int | None = None):
    """Load study ``name`` from ``storage``, or create it from ``spec``.  A stored study keeps its
    own settings; a ``spec`` that disagrees with them on what defines the study is an error."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        summary = next(s for s in optuna.get_all_study_summaries(storage, include_best_trial=False)
                       if s.study_name == name)
    except StopIteration:
        summary = None
    if summary is None:
        if spec is None:
            raise ConfigError("study", "name", f"no study {name!r} in the storage",
                              "start it with tango tune / tango search first, or check --study and --storage")
        sampler = make_sampler(spec["sampler"], seed, spec.get("population"))
        study = optuna.create_study(storage=storage, study_name=name, directions=spec["directions"],
                                    sampler=sampler, pruner=make_pruner(spec.get("pruner", "none"), spec["epochs"]),
                                    load_if_exists=True)
        if SPEC_ATTR not in study.user_attrs:  # another worker may have created it a moment ago
            study.set_user_attr(SPEC_ATTR, spec)
        stored = study.user_attrs.get(SPEC_ATTR, spec)
    else:
        stored = summary.user_attrs.get(SPEC_ATTR)
        if stored is None:
            raise ConfigError("study", "name", f"study {name!r} was not made by tango (no '{SPEC_ATTR}' attribute)",
                              "pick another study name")
        study = optuna.load_study(study_name=name, storage=storage,
                                  sampler=make_sampler(stored["sampler"], seed, stored.get("population")),
                                  pruner=make_pruner(stored.get("pruner", "none"), stored["epochs"]))
    if spec is not None:  # what makes trials comparable; the budget and the seed may change
        for key in ("kind", "model", "task", "data", "space", "directions", "epochs", "imgsz", "batch_size", "hyp",
                    "choices", "target", "runtime", "latency"):
            if key in spec and spec[key] != stored.get(key):
                raise ConfigError(f"study {name!r}", key, f"the stored study has {stored.get(key)!r}, "
                                  f"this call gives {spec[key]!r}",
                                  "resume with the same settings, or start a new study (another name)")
    return study, stored


# --- data and run folders ------------------------------------------------------------------------
def resolve_data(data: Any) -> tuple[Any, str, Any]:
    """(what the trainer takes, how the study records it, the project or None)."""
    from ..project import Project

    if isinstance(data, Project):
        if not data.config.dataset:
            raise ConfigError(str(data.config_path), "project.dataset", "no dataset yet",
                              "import or label a dataset first, then set it with project.set(dataset=...)")
        path = Path(data.config.dataset)
        path = path if path.is_absolute() else data.root / path
        return path, str(path.resolve()), data
    if isinstance(data, (str, os.PathLike)):
        return data, str(Path(data).resolve()), None
    if hasattr(data, "root") and hasattr(data, "records"):
        return data, str(Path(data.root).resolve()), None
    if isinstance(data, dict):
        return data, "<memory>", None
    raise ConfigError("tune", "data", f"cannot train on {type(data).__name__}",
                      "pass a Project, a dataset (or its folder), or {'train': ..., 'val': ..., 'classes': ...}")


def run_dir_for(trial, runs: Path) -> tuple[Path, str | None]:
    """A retried trial continues its lost predecessor's training from its last checkpoint."""
    for number in reversed(trial.user_attrs.get("retry_of", [])):
        last = runs / f"trial_{number}" / "weights" / "last.pt"
        if last.is_file():
            return last.parent.parent, str(last)
    return runs / f"trial_{trial.number}", None


# --- budget -------------------------------------------------------------------------------------
def budget_used(study) -> int:
    """Trials that count against the budget: finished, running or waiting, and failed ones that
    were not queued again (a retry replaces the trial it repeats)."""
    from optuna.trial import TrialState

    trials = study.get_trials(deepcopy=False)
    retried = {t.user_attrs["retry_of"][-1] for t in trials if t.user_attrs.get("retry_of")}
    return sum(1 for t in trials if t.state != TrialState.FAIL or t.number not in retried)


def waiting(study) -> int:
    from optuna.trial import TrialState

    return len(study.get_trials(deepcopy=False, states=(TrialState.WAITING,)))


def summarise(trial) -> dict[str, Any]:
    values = trial.values
    return {"trial": trial.number, "values": list(values) if values is not None else None,
            "params": dict(trial.params), "state": trial.state.name.lower(),
            "user_attrs": dict(trial.user_attrs)}


# --- the worker loop ----------------------------------------------------------------------------
def run_worker(study, spec: dict[str, Any], objective: Callable, bus: ev.EventBus, *,
               trials: int | None, timeout_s: float | None, catch: tuple[type[BaseException], ...] = (),
               poll_s: float = 1.0) -> int:
    """Run trials of ``study`` until ``trials`` count against the budget (all workers together),
    ``timeout_s`` passes, or nothing is left to do; returns how many this worker ran."""
    import optuna

    from ._storage import BudgetLock

    deadline = time.time() + timeout_s if timeout_s else None
    study_name = study.study_name
    ran = 0
    lock = BudgetLock(study)

    def wrapped(trial: optuna.Trial):
        lock.release()  # this worker's trial exists (popped or made): the others may look at the budget
        _first_heartbeat(study, trial)
        trial.set_user_attr(WORKER_ATTR, worker_id())
        return objective(trial)

    def finished(study_, frozen) -> None:
        values = frozen.values if frozen.state == optuna.trial.TrialState.COMPLETE else None
        bus.emit(ev.TRIAL_COMPLETE, study=study_name, trial=frozen.number, values=values,
                 params=dict(frozen.params), state=frozen.state.name.lower(),
                 user_attrs=dict(frozen.user_attrs))

    while True:
        reap_dead_trials(study)
        _fail_stale(study)
        if deadline is not None and time.time() >= deadline:
            break
        if trials is None and deadline is None:
            raise ConfigError("tune", "budget", "no budget: neither trials nor a time limit",
                              "pass trials=N and/or timeout_min=M")
        if trials is not None:
            # the check and the taking of a trial are one step for all workers (a lock in the
            # storage): two workers that found one trial left, or one queued retry, would each
            # have taken one, and the study would have run more than its budget
            lock.acquire()
            if budget_used(study) >= trials and not waiting(study):
                lock.release()
                # a trial still running elsewhere may belong to a dead worker: its retry will need
                # a worker, so stay until every trial has finished (or gone stale and been queued
                # again) where a dead worker can be told: by heartbeat, or by process id here
                if not _resolvable_running(study):
                    break
                time.sleep(poll_s)
                continue
            # past the budget only a queued trial (a retry) is left, and study.ask() pops it first
        try:
            study.optimize(wrapped, n_trials=1, catch=catch, callbacks=[finished], gc_after_trial=True)
        finally:
            lock.release()  # when the trial failed before its objective ran
        ran += 1
    return ran


def _heartbeat_s(study) -> int | None:
    getter = getattr(study._storage, "get_heartbeat_interval", None)
    return getter() if getter else None


def _first_heartbeat(study, trial) -> None:
    """Beat once before the objective starts: Optuna's heartbeat thread records its first beat
    asynchronously, and a trial whose worker dies before any beat would never be found stale."""
    if _heartbeat_s(study):
        study._storage.record_heartbeat(trial._trial_id)


def _resolvable_running(study) -> bool:
    """Whether running trials remain whose end (or worker's death) this worker will notice."""
    from optuna.trial import TrialState

    trials = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
    if not trials:
        return False
    if _heartbeat_s(study):
        return True
    host = worker_id()["host"]
    return any((t.user_attrs.get(WORKER_ATTR) or {}).get("host") == host for t in trials)


def _fail_stale(study) -> None:
    import warnings

    import optuna

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        optuna.storages.fail_stale_trials(study)


def best_summary(study) -> Any:
    """STUDY_END's ``best``: the best trial (one objective) or the Pareto front (several)."""
    try:
        best = study.best_trials
    except ValueError:
        return None
    if len(study.directions) == 1:
        return summarise(best[0]) if best else None
    return [summarise(t) for t in best]


def finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)


def study_events(study_name: str, storage: Any = None) -> list[ev.Event]:
    """The trial events of a stored study, in trial order, as the workers emitted them: replay
    them into a view (``StudyView.from_events``) to watch a study that runs elsewhere."""
    import optuna
    from optuna.trial import TrialState

    from ._storage import storage_url

    study = optuna.load_study(study_name=study_name, storage=storage_url(storage))
    out: list[ev.Event] = []

    def add(name: str, **payload: Any) -> None:
        out.append(ev.Event(name, payload))

    for t in study.get_trials(deepcopy=False):
        if t.state == TrialState.WAITING:
            continue
        add(ev.TRIAL_START, study=study_name, trial=t.number, params=dict(t.params))
        for step, value in sorted(t.intermediate_values.items()):
            add(ev.TRIAL_REPORT, study=study_name, trial=t.number, step=step, value=value)
        if t.state == TrialState.PRUNED:
            last = max(t.intermediate_values, default=0)
            add(ev.TRIAL_PRUNED, study=study_name, trial=t.number, step=last)
        if t.state != TrialState.RUNNING:
            add(ev.TRIAL_COMPLETE, study=study_name, trial=t.number, params=dict(t.params),
                values=t.values if t.state == TrialState.COMPLETE else None, state=t.state.name.lower(),
                user_attrs=dict(t.user_attrs))
    trials = study.get_trials(deepcopy=False)
    if trials and all(t.state.is_finished() for t in trials):
        add(ev.STUDY_END, study=study_name, best=best_summary(study))
    return out
