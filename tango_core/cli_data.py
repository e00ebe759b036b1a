"""`tango data ...`: samples, import, export, convert, analyse and split, over tango_core.data."""

from __future__ import annotations

import json
from pathlib import Path

import typer

app = typer.Typer(no_args_is_help=True, help="Datasets: samples, import / export / convert, analysis, splits.")


def _errors(collect: bool) -> str:
    return "collect" if collect else "raise"


@app.command()
def formats() -> None:
    """List the dataset formats (auto-detection tries them in this order)."""
    from .data import FORMATS

    for name in FORMATS.names():
        meta = FORMATS.meta(name)
        rw = "read/write" if meta["writable"] else "read"
        typer.echo(f"{name:12s} {rw:10s} {', '.join(meta['tasks']):40s} {meta['description']}")


@app.command()
def sample(name: str = typer.Argument(..., help="digits | shapes"),
           dest: Path = typer.Argument(..., help="folder for the new dataset"),
           n: int | None = typer.Option(None, help="shapes: number of images"),
           n_per_class: int | None = typer.Option(None, help="digits: images per class"),
           size: int | None = typer.Option(None, help="image size in pixels"),
           task: str | None = typer.Option(None, help="shapes: classification | detection | segmentation"),
           seed: int = typer.Option(0, help="random seed (same seed, same dataset)"),
           val: float = typer.Option(0.2, help="fraction for the val split"),
           test: float = typer.Option(0.0, help="fraction for the test split")) -> None:
    """Generate a built-in sample dataset (nothing is downloaded)."""
    from .data import make_sample

    options = {k: v for k, v in dict(n=n, n_per_class=n_per_class, size=size, task=task).items() if v is not None}
    ds = make_sample(name, dest, seed=seed, val=val, test=test, **options)
    typer.echo(f"{ds!r}: {ds.class_counts()}")


@app.command("import")
def import_(src: Path = typer.Argument(..., help="a dataset folder or .zip"),
            dest: Path | None = typer.Argument(None, help="folder for the new tango dataset (default: PROJECT/data)"),
            format: str = typer.Option("auto", "--format", "-f", help="source format (tango data formats)"),
            task: str | None = typer.Option(None, help="override the task the files suggest"),
            collect: bool = typer.Option(False, help="keep going past broken label lines; analyse lists them"),
            project: Path | None = typer.Option(None, help="a project folder: the import becomes its dataset")) -> None:
    """Import a dataset (COCO, YOLO, VOC, ImageFolder, plain images, or a tango store) into a new store."""
    from .data import import_dataset

    proj = None
    if project is not None:
        from .project import Project

        proj = Project.open(project)
        dest = dest or proj.path("data")
    if dest is None:
        raise typer.BadParameter("give DEST or --project")
    ds = import_dataset(src, dest, format=format, task=task or (proj.task if proj else None), errors=_errors(collect))
    typer.echo(f"{ds!r}: {ds.class_counts()}")
    if proj is not None:
        proj.attach_dataset(ds)
        typer.echo(f"dataset of {proj!r}")
    if ds.problems:
        typer.echo(f"{len(ds.problems)} problems kept; see: tango data analyse {dest}")


@app.command()
def export(store: Path = typer.Argument(..., help="a tango dataset folder"),
           dst: Path = typer.Argument(..., help="new folder to write"),
           format: str = typer.Option(..., "--format", "-f", help="coco | yolo | voc | imagefolder | tango")) -> None:
    """Export a tango dataset to another format."""
    from .data import export_dataset

    typer.echo(f"wrote {export_dataset(store, dst, format)}")


@app.command()
def convert(src: Path = typer.Argument(..., help="a dataset folder or .zip"),
            dst: Path = typer.Argument(..., help="new folder to write"),
            to: str = typer.Option(..., "--to", help="target format"),
            from_: str = typer.Option("auto", "--from", help="source format"),
            task: str | None = typer.Option(None, help="override the task the files suggest"),
            collect: bool = typer.Option(False, help="skip broken label lines instead of stopping")) -> None:
    """Convert a dataset from one format to another in one step."""
    from .data import convert as _convert

    typer.echo(f"wrote {_convert(src, dst, src_format=from_, dst_format=to, task=task, errors=_errors(collect))}")


@app.command()
def analyse(store: Path = typer.Argument(..., help="a tango dataset folder"),
            as_json: bool = typer.Option(False, "--json", help="print the report as JSON"),
            strict: bool = typer.Option(False, help="exit with status 1 when there are problems"),
            fix: list[str] = typer.Option([], help="problem kind to fix (repeatable)"),
            drop: list[str] = typer.Option([], help="problem kind to drop (repeatable; '*' for all the rest)"),
            keep: list[str] = typer.Option([], help="problem kind to keep (repeatable; '*' for all the rest)")) -> None:
    """Validate and measure a dataset; with --fix / --drop / --keep, act on the problems."""
    from .data import analyse as _analyse
    from .data import load_dataset

    ds = load_dataset(store)
    report = _analyse(ds)
    typer.echo(json.dumps(report.to_dict(), indent=2) if as_json else report.summary())
    if fix or drop or keep:
        done = report.apply(ds, fix=fix, drop=drop, keep=keep)
        for kind, what in done.items():
            typer.echo(f"{kind}: {what['action']} ({what['problems']} problems, {what['fixed']} fixed, "
                       f"{what['removed_images']} images and {what['removed_shapes']} shapes removed)")
        report = _analyse(ds)
    if strict and not report.ok:
        raise typer.Exit(1)


@app.command()
def split(store: Path = typer.Argument(..., help="a tango dataset folder"),
          val: float = typer.Option(0.2, help="fraction for val"),
          test: float = typer.Option(0.0, help="fraction for test"),
          seed: int = typer.Option(0, help="random seed")) -> None:
    """Assign train / val / test (deterministic; stratified by class)."""
    from .data import load_dataset

    ds = load_dataset(store)
    counts = ds.split(val=val, test=test, seed=seed)
    ds.save()
    typer.echo(", ".join(f"{k} {v}" for k, v in counts.items()))
