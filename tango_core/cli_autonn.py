"""`tango tune` and `tango search`: hyper-parameter and architecture search on the command line.

Both run the same functions as the notebooks (tango_core.autonn.tune / search).  ``--join``
makes this process one more worker of a study that runs elsewhere (same ``--storage`` and
``--study``), on this machine or another.
"""

from __future__ import annotations

import json
from pathlib import Path

import typer

app = typer.Typer(add_completion=False)


def _source(path: Path):
    """A project folder (it has tango.yaml) or a dataset folder."""
    from .project import CONFIG_NAME, Project

    return Project.open(path) if (path / CONFIG_NAME).is_file() else path


def _hyp(items: list[str]) -> dict:
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise typer.BadParameter(f"{item!r} is not KEY=VALUE", param_hint="--hyp")
        try:
            out[key.strip()] = json.loads(value)
        except json.JSONDecodeError:
            out[key.strip()] = value.strip()
    return out


def _batch(value: str):
    return value if value == "auto" else int(value)


def _progress(bus) -> None:
    from . import events as ev

    def show(e) -> None:
        p = e.payload
        values = "" if p["values"] is None else " ".join(f"{v:.4g}" for v in p["values"])
        typer.echo(f"trial {p['trial']:>3} {p['state']:9s} {values:20s} {json.dumps(p['params'], default=str)}")

    bus.subscribe(ev.TRIAL_COMPLETE, show)


def _join(storage: str | None, study: str | None, trials, timeout_min, threads) -> None:
    from .autonn._worker import work
    from .events import EventBus

    if not storage or not study:
        raise typer.BadParameter("--join needs --storage and --study (the study to join)", param_hint="--join")
    bus = EventBus()
    _progress(bus)
    ran = work(storage, study, trials=trials, timeout_min=timeout_min, threads=threads, bus=bus, wait_s=60)
    typer.echo(f"this worker ran {ran} trial(s) of {study}")


@app.command()
def tune(path: Path = typer.Argument(Path("."), help="project folder, or a dataset folder"),
         model: str | None = typer.Option(None, help="model (default: the project's)"),
         trials: int | None = typer.Option(20, help="trials of the whole study (all workers)"),
         timeout_min: float | None = typer.Option(None, help="stop starting trials after this many minutes"),
         epochs: int = typer.Option(5, help="training epochs per trial"),
         batch_size: str = typer.Option("auto", help="'auto' or an integer"),
         imgsz: int | None = typer.Option(None, help="training image size (default: the model's)"),
         space: Path | None = typer.Option(None, help="a YAML search space (default: hpo_spaces.yaml)"),
         hyp: list[str] = typer.Option([], "--hyp", help="KEY=VALUE fixed in every trial (repeatable)"),
         sampler: str = typer.Option("tpe", help="tpe | gp | random"),
         pruner: str = typer.Option("median", help="median | hyperband | none"),
         storage: str | None = typer.Option(None, help="study storage: a URL (postgresql://…) or a .db/.log file"),
         study: str | None = typer.Option(None, help="study name (default: hpo-<model>)"),
         workers: int = typer.Option(1, help="worker processes on this machine"),
         retrain: bool = typer.Option(True, help="retrain the final model with the best hyp"),
         retrain_epochs: int | None = typer.Option(None, help="epochs of the final training"),
         threads: int | None = typer.Option(None, help="CPU threads per worker"),
         seed: int = 0,
         join: bool = typer.Option(False, help="join the study --study in --storage as one more worker")) -> None:
    """Search training hyper-parameters (Bayesian, with pruning); write the best to the project."""
    if join:
        return _join(storage, study, trials, timeout_min, threads)
    from .autonn import tune as _tune
    from .events import EventBus

    source = _source(path)
    bus = getattr(source, "events", None) or EventBus()
    _progress(bus)
    result = _tune(source, model, trials=trials, timeout_min=timeout_min, epochs=epochs, batch_size=_batch(batch_size),
                   imgsz=imgsz, space=space, hyp=_hyp(hyp) or None, sampler=sampler, pruner=pruner, storage=storage,
                   study=study, workers=workers, retrain=retrain, retrain_epochs=retrain_epochs, seed=seed,
                   events=bus, threads=threads)
    typer.echo(f"best trial {result.best_trial}: fitness {result.best_value:.4g} "
               f"(the defaults gave {result.default_value if result.default_value is None else f'{result.default_value:.4g}'})")
    typer.echo(f"best hyp written to {result.hyp_path}")
    if result.retrained is not None:
        typer.echo(f"final model: {result.retrained.best} (fitness {result.retrained.best_fitness:.4g})")
    typer.echo(f"study {result.study} in {result.storage} (optuna-dashboard {result.storage})")


@app.command()
def search(path: Path = typer.Argument(Path("."), help="project folder, or a dataset folder"),
           model: str | None = typer.Option(None, help="base model (default: the project's)"),
           target: str | None = typer.Option(None, help="target id (default: the project's)"),
           trials: int | None = typer.Option(24, help="candidates of the whole study"),
           timeout_min: float | None = typer.Option(None, help="stop starting candidates after this many minutes"),
           epochs: int = typer.Option(2, help="training epochs per candidate"),
           batch_size: str = typer.Option("auto", help="'auto' or an integer"),
           imgsz: int | None = typer.Option(None, help="training image size (default: the model's)"),
           space: str | None = typer.Option(None, help="NAS space (default: the one for the base model)"),
           hyp: list[str] = typer.Option([], "--hyp", help="KEY=VALUE training hyp (repeatable)"),
           latency: str = typer.Option("auto", help="auto | measure | predict"),
           latency_table: Path | None = typer.Option(None, help="YAML of latencies measured on the device"),
           sampler: str = typer.Option("nsga2", help="nsga2 | tpe | random"),
           storage: str | None = typer.Option(None, help="study storage: a URL or a .db/.log file"),
           study: str | None = typer.Option(None, help="study name (default: nas-<model>-<target>)"),
           workers: int = typer.Option(1, help="worker processes on this machine"),
           threads: int | None = typer.Option(None, help="CPU threads per worker"),
           choose: int | None = typer.Option(None, help="register this trial of the (finished) study as a model"),
           name: str | None = typer.Option(None, help="with --choose: the model name"),
           seed: int = 0,
           join: bool = typer.Option(False, help="join the study --study in --storage as one more worker")) -> None:
    """Search architectures for accuracy and latency on the target; print the Pareto front."""
    if join:
        return _join(storage, study, trials, timeout_min, threads)
    from .autonn import search as _search
    from .autonn.nas import load_result
    from .events import EventBus

    source = _source(path)
    project = source if not isinstance(source, Path) else None
    if choose is not None:
        if not study:
            raise typer.BadParameter("--choose needs --study (the search to choose from)", param_hint="--choose")
        result = load_result(study, storage, project)
        chosen = result.choose(choose, name=name, project=project, folder=None if project else Path("models"))
        typer.echo(f"registered {chosen}" + (f"; the project's model is now {chosen}" if project else ""))
        return
    bus = getattr(source, "events", None) or EventBus()
    _progress(bus)
    result = _search(source, model, trials=trials, timeout_min=timeout_min, epochs=epochs,
                     batch_size=_batch(batch_size), imgsz=imgsz, space=space, hyp=_hyp(hyp) or None, target=target,
                     latency=latency, latency_table=latency_table, sampler=sampler, storage=storage, study=study,
                     workers=workers, seed=seed, events=bus, threads=threads)
    typer.echo(f"Pareto front ({result.objectives[0]} vs latency on {result.target}, {result.runtime}):")
    typer.echo(result.table())
    if result.predictor_error:
        e = result.predictor_error
        typer.echo(f"latency predictor: {e['mape']:.1%} mean error on {e['held_out']} held-out candidates")
    typer.echo(f"pick one: tango search {path} --study {result.study} --choose <trial>")
