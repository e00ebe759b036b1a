"""The `tango` command: a thin typer layer over the same functions the notebooks call."""

from __future__ import annotations

import importlib
import json
import sys
from pathlib import Path

import typer

from .errors import TangoError

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="tango: from images to a verified, deployable model for your target.")
targets_app = typer.Typer(no_args_is_help=True, help="The target catalog.")
app.add_typer(targets_app, name="targets")


def _echo_json(data) -> None:
    typer.echo(json.dumps(data, indent=2, default=str))


@app.command()
def new(path: Path, task: str = typer.Option("classification", help="classification | detection | segmentation"),
        target: str = typer.Option("x86-cpu", help="a target id (tango targets list)"),
        name: str | None = typer.Option(None, help="project name (default: the folder name)"),
        learning_type: str = typer.Option("normal", help="normal | incremental | transfer")) -> None:
    """Create a project folder."""
    from .project import Project
    from .targets import get_target

    get_target(target)
    project = Project.create(path, name=name, task=task, target=target, learning_type=learning_type)
    typer.echo(f"created {project!r}")


@app.command()
def status(path: Path = typer.Argument(Path("."), help="project folder")) -> None:
    """Show a project's config and the status of every stage."""
    from .project import Project

    project = Project.open(path)
    typer.echo(repr(project))
    for stage, st in project.stages.items():
        extra = f"  ({st.last_error})" if st.last_error else ""
        typer.echo(f"  {stage:16s} {st.status}{extra}")
    typer.echo(f"next: {project.resume_point() or 'all stages completed'}")


@targets_app.command("list")
def targets_list(kind: str | None = typer.Option(None, help="cloud | k8s | pc | ondevice")) -> None:
    """List the targets."""
    from .targets import get_target, list_targets

    for tid in list_targets(kind):
        t = get_target(tid)
        mem = f"{t.memory_gb:g} GB" if t.memory_gb else "? GB"
        typer.echo(f"{tid:20s} {t.kind:9s} {t.cpu:8s} {t.accelerator:11s} {mem:>7s}  {', '.join(t.runtimes)}")


@targets_app.command("show")
def targets_show(target_id: str) -> None:
    """Show one target."""
    from .targets import get_target

    t = get_target(target_id)
    _echo_json(dict(t.to_dict(), source=t.source))


@targets_app.command("check")
def targets_check(path: Path) -> None:
    """Validate a target file you wrote."""
    from .targets import load_target_file

    t = load_target_file(path)
    typer.echo(f"{path}: ok ({t.id}, {t.kind}, runtimes {t.runtimes})")


@app.command()
def recommend(project: Path | None = typer.Option(None, help="project folder (uses its task, classes, target)"),
              task: str | None = None, classes: int | None = typer.Option(None, help="number of classes"),
              target: str | None = None, memory_gb: float | None = None,
              save: bool = typer.Option(False, help="write the recommended model to the project")) -> None:
    """Recommend a base model from the seed's rule table, and say why."""
    from .selection import recommend as _recommend

    proj = None
    if project is not None:
        from .project import Project

        proj = Project.open(project)
        task = task or proj.task
        classes = classes or len(proj.config.classes)
        target = target or proj.config.target
    if not task or not classes:
        raise TangoError("give --project, or --task and --classes")
    rec = _recommend(task, classes, target=target, memory_gb=memory_gb)
    typer.echo(f"recommended: {rec.model}")
    typer.echo(f"why: {rec.reason}")
    typer.echo(f"alternatives: {', '.join(rec.alternatives)}")
    if save and proj is not None:
        proj.set(model=rec.model)
        proj.mark("model_selection", "completed", model=rec.model, reason=rec.reason)
        typer.echo(f"saved to {proj.config_path}")


@app.command()
def demo(out: Path = typer.Option(Path("runs/demo"), help="run folder"),
         param: list[str] = typer.Option([], "-p", help="notebook parameter NAME=VALUE (repeatable)")) -> None:
    """Run the quickstart on the built-in sample data and write an HTML report."""
    from .demo import run_demo

    params = {}
    for item in param:
        key, _, value = item.partition("=")
        try:
            params[key] = json.loads(value)
        except json.JSONDecodeError:
            params[key] = value
    result = run_demo(out, params)
    for key, value in sorted(result.items(), key=lambda kv: kv[0] == "report"):  # the report path last
        typer.echo(f"{key}: {value}")


@app.command()
def graph(model: str = typer.Argument(..., help="a registered model name, e.g. yolov7-tiny"),
          size: int | None = typer.Option(None, help="input size in px (default: the model's)"),
          as_json: bool = typer.Option(False, "--json", help="the whole graph (with block insides) as JSON")) -> None:
    """Print a model's graph: each layer's lane, output shape, parameters and FLOPs."""
    from .graph import model_graph

    g = model_graph(model, input_size=size, depth=3 if as_json else 1)
    if as_json:
        _echo_json(g.to_dict())
    else:
        typer.echo(g.summary())


def _add_subcommands() -> None:
    # each area owns its commands; a module still being written is simply absent
    for module, attr, name in (("cli_data", "app", "data"), ("cli_train", "app", None),
                               ("cli_export", "app", None), ("cli_deploy", "app", None),
                               ("cli_autonn", "app", None)):
        try:
            mod = importlib.import_module(f"{__package__}.{module}")
        except ModuleNotFoundError as exc:
            if exc.name == f"{__package__}.{module}":
                continue
            raise
        sub = getattr(mod, attr)
        if name:
            app.add_typer(sub, name=name)
        else:
            for command in sub.registered_commands:
                app.registered_commands.append(command)
            for group in sub.registered_groups:
                app.registered_groups.append(group)


_add_subcommands()


def main() -> None:
    try:
        app()
    except TangoError as exc:
        typer.secho(f"error: {exc}", fg=typer.colors.RED, err=True)
        sys.exit(2)


if __name__ == "__main__":
    main()
