"""``tango export`` and ``tango benchmark``: thin commands over tango_core.export."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from .errors import TangoError

app = typer.Typer(add_completion=False)


def _options(pairs: list[str]) -> dict[str, object]:
    out: dict[str, object] = {}
    for item in pairs:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise TangoError(f"option {item!r} must be KEY=VALUE, e.g. -o opset=17")
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out


def _options_for(fmt: str | None, formats: list[str], options: dict[str, object]) -> dict[str, object]:
    """With several formats, each gets the options it accepts; an option none accepts is an error."""
    if fmt in (None, "auto") or len(formats) < 2:
        return options
    from .export import get_format

    accepted = {f: set(get_format(f).options) for f in formats}
    for key in options:
        if not any(key in names for names in accepted.values()):
            get_format(formats[0]).validate({key: options[key]})  # raises, with a suggestion
    return {k: v for k, v in options.items() if k in accepted[fmt]}


def _show_formats() -> None:
    from .export import get_format, list_formats

    for name in list_formats():
        f = get_format(name)
        where = "runs here" if f.runs_here else f"verified via {f.verify_with}"
        typer.echo(f"{name:12s} {f.suffix:13s} {'/'.join(f.precisions):28s} {where:22s} {f.description}")


def _show_format(name: str) -> None:
    from .export import get_format

    f = get_format(name)
    typer.echo(f"{name}: {f.description}\n  file: *{f.suffix}   runtime: {f.runtime}   extra: {f.extra or '-'}   "
               f"needs a GPU to build: {'yes' if f.gpu else 'no'}   precisions: {', '.join(f.precisions)}")
    defaults = f.defaults()
    for opt in f.options:
        spec = f.option_specs[opt]
        typer.echo(f"  {opt:20s} {spec.type:6s} default {defaults[opt]!s:10s} {spec.help}")


@app.command("export")
def export_command(
    model: str | None = typer.Argument(None, help="weights file (.pt) or registered model; default: the project's"),
    format: list[str] = typer.Option([], "--format", "-f", help="format (repeatable), or 'auto': every candidate of the target's select rule exported, "
                                     "timed here, the fastest verified kept; default: auto where the target has a rule "
                                     "(x86-cpu), else its first runtime"),
    project: Path | None = typer.Option(None, "--project", "-p", help="project folder"),
    out: Path | None = typer.Option(None, "--out", help="output folder (default: <project>/exports or ./exports)"),
    imgsz: str | None = typer.Option(None, help="input size: 640 or 480,640"),
    precision: str | None = typer.Option(None, help="fp32 | fp16 | dynamic_int8 | int8 (per format)"),
    data: Path | None = typer.Option(None, help="held-out images for verification (dataset or folder)"),
    calibration: Path | None = typer.Option(None, help="INT8 calibration images (dataset or folder)"),
    option: list[str] = typer.Option([], "--option", "-o", help="format option KEY=VALUE (repeatable)"),
    all_runtimes: bool = typer.Option(False, "--all-runtimes", help="every runtime of the project's target"),
    threads: int = typer.Option(1, help="threads for verification"),
    list_formats: bool = typer.Option(False, "--list-formats", help="list the formats and exit"),
    help_format: str | None = typer.Option(None, "--help-format", help="show one format's options and exit"),
) -> None:
    """Export a model for a runtime, and verify it against PyTorch on held-out images."""
    if list_formats:
        _show_formats()
        return
    if help_format:
        _show_format(help_format)
        return
    from .export import export

    proj = None
    if project is not None:
        from .project import Project

        proj = Project.open(project)
    formats = list(format)
    if all_runtimes:
        if proj is None:
            raise TangoError("--all-runtimes needs --project (the runtimes come from its target)")
        formats = list(proj.target().runtimes)
    options = _options(option)
    if imgsz is not None:
        options["imgsz"] = imgsz
    if precision is not None:
        options["precision"] = precision
    for fmt in formats or [None]:
        result = export(model, fmt, project=proj, out=out, data=data, calibration=calibration, threads=threads,
                        **_options_for(fmt, formats, options))
        v = result.verification
        if v is None:
            state = "not verified (verify=false)"
        elif v.get("skipped"):
            state = f"not verified: {v['skipped']}"
        else:
            shown = {k: round(val, 6) if isinstance(val, float) else val for k, val in v["metrics"].items()}
            state = f"verified with {v['runtime']} on {v['images']} images: {shown}"
        typer.echo(f"{result.format}: {result.path} ({result.size_bytes / 1e6:.2f} MB, {result.time:.1f} s)\n"
                   f"  {state}\n  metadata: {result.metadata_path}")
        for note in result.metadata.get("notes") or []:
            typer.echo(f"  note: {note}")
        selection = result.metadata.get("selection")
        if selection:
            typer.echo(f"  selected for {selection['target']} by latency on this machine: {selection['chosen']}")
            for label, why in selection["why"].items():
                typer.echo(f"    {label}: {why}")


@app.command("benchmark")
def benchmark_command(
    model: str = typer.Argument(..., help="weights file (.pt) or registered model name"),
    imgsz: str | None = typer.Option(None, help="input size: 32 or 480,640"),
    data: Path | None = typer.Option(None, help="validation images (dataset or folder) for accuracy / mAP"),
    calibration: Path | None = typer.Option(None, help="INT8 calibration images; without them no INT8 rows"),
    formats: str | None = typer.Option(None, help="comma-separated rows, e.g. onnx,onnx:int8,tflite"),
    threads: int = typer.Option(2, help="threads in every runtime"),
    runs: int = typer.Option(100, help="timed runs per row (median reported)"),
    tune_budget: int = typer.Option(0, help="seconds of TVM tuning for a 'tvm tuned' row (0: no such row)"),
    out: Path = typer.Option(Path("runs/benchmark"), help="folder for the exports"),
    json_out: Path | None = typer.Option(None, "--json", help="also write the rows as JSON"),
    target: str = typer.Option("x86-cpu", help="target whose default format is marked"),
) -> None:
    """Export to every format that runs here and print one table (size, accuracy, latency, speed-up)."""
    from ._io import write_json
    from .export import benchmark
    from .export._benchmark import DEFAULT_ROWS, default_row

    rows = None
    if formats:
        rows = []
        for item in formats.split(","):
            fmt, _, prec = item.strip().partition(":")
            rows.append((fmt, {"precision": prec} if prec else {}))
    elif tune_budget:
        rows = [r for r in DEFAULT_ROWS if calibration is not None or r[1].get("precision") != "int8"]
    if tune_budget:
        rows.append(("tvm", {"tune": True, "tune_budget_s": tune_budget}))
    options = {"imgsz": imgsz} if imgsz else {}
    result = benchmark(model, rows, data=data, calibration=calibration, threads=threads, runs=runs, out=out, **options)
    typer.echo(result.table())
    chosen = default_row(target, result.rows)
    fastest = result.fastest()
    default = next((r for r in result.rows if r["label"] == chosen and not r.get("error")), None)
    if default is not None:
        ratio = default["inference_ms"] / fastest["inference_ms"]
        typer.echo(f"\n{target} exports {chosen} by default: {default['inference_ms']:.3f} ms, "
                   f"{default['speedup']:.1f}x eager; fastest row {fastest['label']} ({fastest['inference_ms']:.3f} ms, "
                   f"default is {ratio:.2f}x its latency)")
    if json_out:
        write_json(json_out, result.to_dict())
