"""``tango train`` and ``tango predict``: thin commands over tango_core.engine.

Data-parallel training: ``tango train ... --nproc-per-node N`` starts the same command under
``torchrun`` with N processes on this machine; ``torchrun ... -m tango_core.cli train ...`` runs it
directly (several machines too).  The trainer finds torchrun's environment and trains with DDP.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import typer

from .errors import ConfigError

app = typer.Typer(add_completion=False, no_args_is_help=True)


def _value(text: str):
    import yaml

    return yaml.safe_load(text)


def _resume_arg(resume: str | None):
    if resume is None:
        return False
    if resume == "last":
        return True
    path = Path(resume)
    return str(path / "weights" / "last.pt") if path.is_dir() else str(path)


def _command_line(ctx: typer.Context, drop: tuple[str, ...]) -> list[str]:
    """The arguments that give ``ctx.params`` again (without the ``drop`` parameters)."""
    args: list[str] = []
    for param in ctx.command.params:
        value = ctx.params.get(param.name)
        argument = param.param_type_name == "argument"
        if param.name in drop or value is None or (not argument and value == param.default):
            continue
        if argument:
            args += [str(v) for v in value] if isinstance(value, (list, tuple)) else [str(value)]
        elif param.is_flag:
            args.append(param.opts[0] if value else param.secondary_opts[0])
        elif param.multiple:
            for v in value:
                args += [param.opts[0], str(v)]
        else:
            args += [param.opts[0], str(value)]
    return args


def _torchrun(nproc: str, args: list[str]) -> int:
    """Run ``tango train args`` under torchrun with ``nproc`` processes on this machine."""
    import shlex

    from .engine._ddp import torchrun_command

    cmd = torchrun_command(["-m", "tango_core.cli", "train", *args], nproc_per_node=nproc)
    typer.echo(f"running: {cmd}", err=True)
    env = dict(os.environ)
    if nproc.isdigit():  # torchrun's default is one thread per process; share the CPUs out instead
        env.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // int(nproc))))
    return subprocess.call(shlex.split(cmd), env=env)


@app.command()
def train(
    ctx: typer.Context,
    data: Path | None = typer.Argument(None, help="a dataset folder (with dataset.json) or a project folder"),
    project: Path | None = typer.Option(None, help="project folder: uses its dataset, model, hyp, learning type"),
    model: str | None = typer.Option(None, help="a registered model (tango models), e.g. resnet-cifar20"),
    epochs: int = typer.Option(30, help="number of epochs"),
    batch_size: str = typer.Option("auto", help="'auto' (measured to fit memory) or an integer"),
    imgsz: int | None = typer.Option(None, help="training image size (default: the model's)"),
    hyp: Path | None = typer.Option(None, help="a YAML file of hyper-parameters"),
    set_: list[str] = typer.Option([], "--set", help="hyper-parameter NAME=VALUE (repeatable)"),
    run_dir: Path | None = typer.Option(None, help="run folder (default: runs/train/<n>)"),
    resume: str | None = typer.Option(None, help="a last.pt, a run folder, or 'last' (the project's last run)"),
    device: str = typer.Option("auto", help="auto | cpu | cuda | cuda:N"),
    amp: str = typer.Option("auto", help="auto | off | bf16 | fp16"),
    seed: int = typer.Option(0),
    patience: int = typer.Option(50, help="stop after this many epochs without a better fitness"),
    learning_type: str | None = typer.Option(None, help="normal | transfer | incremental"),
    weights: Path | None = typer.Option(None, help="start weights (transfer / incremental / fine-tuning)"),
    tensorboard: bool = typer.Option(False, help="also write TensorBoard event files"),
    nproc_per_node: str | None = typer.Option(
        None, help="data-parallel training: start this command under torchrun with N processes on this "
                   "machine ('gpu': one per GPU); --batch-size is then the global batch"),
) -> None:
    """Train a model; progress on the console, results in the run folder."""
    if nproc_per_node is not None and "WORLD_SIZE" not in os.environ:
        raise typer.Exit(_torchrun(nproc_per_node, _command_line(ctx, drop=("nproc_per_node",))))
    from .engine import train as _train

    main_process = int(os.environ.get("RANK", "0")) == 0  # under torchrun: rank 0 writes and reports

    overrides = {}
    if hyp is not None:
        from ._io import read_yaml

        overrides.update(read_yaml(hyp) or {})
    for item in set_:
        key, sep, value = item.partition("=")
        if not sep:
            raise ConfigError("--set", item, "expected NAME=VALUE", "e.g. --set lr0=0.01")
        overrides[key] = _value(value)
    kwargs = dict(epochs=epochs, imgsz=imgsz, device=device, amp=amp, seed=seed, patience=patience,
                  hyp=overrides or None, resume=_resume_arg(resume),
                  batch_size=batch_size if batch_size == "auto" else int(batch_size),
                  loggers=("csv", "console") + (("tensorboard",) if tensorboard else ()))
    if run_dir is not None:
        kwargs["run_dir"] = run_dir
    if weights is not None:
        kwargs["weights"] = str(weights)
    if learning_type is not None:
        kwargs["learning_type"] = learning_type
    if project is None and data is not None and (data / "tango.yaml").is_file():
        project, data = data, None
    if project is not None:
        from .project import Project

        proj = Project.open(project)
        if not main_process:  # the project file is rank 0's to write (the trainer agrees on the run folder)
            proj.save = lambda: proj.config_path
        result = _train(proj, model, **kwargs)
    else:
        if data is None and not kwargs["resume"]:
            raise ConfigError("tango train", "data", "missing", "give a dataset folder, --project, or --resume")
        result = _train(str(data) if data is not None else None, model, **kwargs)
    if main_process:
        typer.echo(f"best: {result.best} (fitness {result.best_fitness:.4f}, epoch {result.best_epoch + 1})")
        typer.echo("metrics: " + ", ".join(f"{k} {v:.4f}" for k, v in result.metrics.items()))


@app.command()
def predict(weights: Path = typer.Argument(..., help="best.pt / last.pt of a training run"),
            source: list[Path] = typer.Argument(..., help="image files or folders"),
            topk: int = typer.Option(1, help="how many classes to list per image"),
            as_json: bool = typer.Option(False, "--json", help="print JSON lines")) -> None:
    """Classify images with trained weights."""
    from .engine import predict as _predict

    for p in _predict(weights, [str(s) for s in source], topk=topk):
        if as_json:
            typer.echo(json.dumps({"source": p.source, "label": p.label, "name": p.name,
                                   "confidence": round(p.confidence, 6), "top": p.top}))
        else:
            typer.echo(f"{p.source}\t{p.name}\t{p.confidence:.4f}")
