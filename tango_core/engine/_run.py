"""``train()``: the entry point the notebooks, the widgets and the CLI call.

Given a :class:`~tango_core.project.Project`, it reads the project's dataset, classes, model,
hyper-parameters, learning type and weights, marks the ``training`` stage running / completed /
failed, and writes the run under ``<project>/runs/train/<n>``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from .trainer import Trainer, TrainResult, next_run_dir


def train(data: Any = None, model: str | None = None, **kwargs: Any) -> TrainResult:
    """Train a model and return best / last paths, metrics and history (see :class:`Trainer`)."""
    from ..project import Project

    if isinstance(data, Project):
        return _train_project(data, model, **kwargs)
    return Trainer(data, model or "resnet-cifar20", **kwargs).fit()


def _project_path(project, value: str | None) -> Path | None:
    if not value:
        return None
    path = Path(value)
    return path if path.is_absolute() else project.root / path


def _train_project(project, model: str | None, **kwargs: Any) -> TrainResult:
    cfg, source = project.config, str(project.config_path)
    data = _project_path(project, cfg.dataset)
    if data is None:
        raise ConfigError(source, "project.dataset", "no dataset yet", "import or label a dataset, then set it with "
                                                                      "project.set(dataset='data')")
    from ..data import load_dataset

    dataset = load_dataset(data)
    if not model and not cfg.model:
        from ..selection import recommend

        model = recommend(cfg.task, max(len(dataset.classes), 1), target=cfg.target).model
    model = model or cfg.model
    hyp = kwargs.pop("hyp", None)
    if hyp is not None and not isinstance(hyp, dict):
        from .._io import read_yaml

        hyp = read_yaml(hyp)
    kwargs["hyp"] = {**cfg.hyp, **(hyp or {})}
    kwargs.setdefault("learning_type", cfg.learning_type)
    previous = project.stages["training"].info.get("best_model")
    weights = kwargs.pop("weights", None) or _project_path(project, cfg.weights)
    if weights is None and kwargs["learning_type"] == "incremental" and previous:
        weights = previous  # the stored best of the last training is the model to beat
    kwargs["weights"] = str(weights) if weights else None
    kwargs.setdefault("events", project.events)
    if kwargs.get("resume") is True and "run_dir" not in kwargs:
        run = project.stages["training"].info.get("run_dir")
        if not run:
            raise ConfigError(source, "stages.training.info.run_dir", "no earlier training run to resume")
        kwargs["run_dir"] = Path(run)
    kwargs.setdefault("run_dir", next_run_dir(project.path("runs", "train")))
    # under torchrun every process runs this; the project file is rank 0's to write (the trainer
    # gives every rank rank 0's run folder)
    main = int(os.environ.get("RANK", "0")) == 0
    if main:
        project.mark("training", "running", run_dir=str(kwargs["run_dir"]), model=model)
    try:
        result = Trainer(dataset, model, **kwargs).fit()
    except BaseException as exc:
        if main:
            project.mark("training", "failed", error=f"{type(exc).__name__}: {exc}")
        raise
    if not main:
        return result
    if cfg.classes != dataset.classes or cfg.model != model:
        project.set(classes=list(dataset.classes), model=model)
    project.mark("training", "completed", best_model=str(result.best), best_fitness=result.best_fitness,
                 metrics=result.metrics, epochs_run=result.epochs_run, kept=result.kept)
    return result
