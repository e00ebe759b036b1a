"""`tango deploy`: generate the deploy package of a project or an export, and check it."""

from __future__ import annotations

import json
from pathlib import Path

import typer

app = typer.Typer(add_completion=False)


def _fields(items: list[str]) -> dict:
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise typer.BadParameter(f"{item!r} is not KEY=VALUE", param_hint="-f")
        out[key.strip()] = value.strip()
    return out


@app.command()
def deploy(source: Path = typer.Argument(Path("."), help="project folder, or an export (.tango.json or the file)"),
           target: str | None = typer.Option(None, "--target", "-t", help="target id (default: the project's)"),
           out: Path | None = typer.Option(None, "--out", "-o", help="package folder"),
           field: list[str] = typer.Option([], "--field", "-f", help="KEY=VALUE: registry, region... (repeatable)"),
           measure: bool = typer.Option(True, help="measure the model's memory by running the package"),
           check: bool = typer.Option(False, help="lint and validate every generated file afterwards"),
           run: bool = typer.Option(False, help="with --check: also run the smoke test and the import audit here")
           ) -> None:
    """Generate the deploy package for a target: runner, server, Dockerfile, manifests, device files."""
    from .deploy import check_package
    from .deploy import deploy as _deploy

    result = _deploy(source, target=target, out=out, measure=measure, **_fields(field))
    record = result.record
    typer.echo(f"{result.kind} package for {result.target} ({result.runtime}): {result.path}")
    typer.echo(f"  image {record['image']}, memory {record['memory']['peak_mb']} MB peak "
               f"({'measured' if record['memory']['measured'] else 'estimated'}), "
               f"request {record['memory']['request_mi']}Mi")
    typer.echo(f"  {len(record['files'])} files; see {result.path / 'README.md'}")
    if check or run:
        report = check_package(result.path, run=run)
        for item in report:
            if not item.ok or run:
                typer.echo(f"  {item}")
        typer.echo(f"  checks: {len(report) - len(report.failures)}/{len(report)} passed")
        if not report.ok:
            raise typer.Exit(1)


@app.command("deploy-check")
def deploy_check(package: Path = typer.Argument(..., help="a generated package folder"),
                 run: bool = typer.Option(False, help="also run the smoke test and the import audit here"),
                 backend: str | None = typer.Option(None, help="run with another backend of the package"),
                 as_json: bool = typer.Option(False, "--json", help="print the report as JSON")) -> None:
    """Lint and validate a generated package (and with --run, execute it here)."""
    from .deploy import check_package

    report = check_package(package, run=run, backend=backend)
    if as_json:
        typer.echo(json.dumps([vars(r) for r in report], indent=1))
    else:
        for item in report:
            typer.echo(str(item))
        typer.echo(f"{len(report) - len(report.failures)}/{len(report)} checks passed")
    if not report.ok:
        raise typer.Exit(1)
