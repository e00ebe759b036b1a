"""The main job: run the quickstart notebook with papermill and turn it into an HTML report."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from .errors import TangoError, require


def notebooks_dir() -> Path:
    here = Path(__file__).resolve().parent
    for candidate in (here.parent / "notebooks", here / "_notebooks"):
        if candidate.is_dir():
            return candidate
    raise TangoError("the guided notebooks (notebooks/) are missing from this installation")


def run_notebook(notebook: str | os.PathLike, out_dir: str | os.PathLike, parameters: dict[str, Any] | None = None,
                 timeout: int = 1800) -> dict[str, Path]:
    """Execute ``notebook`` in ``out_dir`` (its working folder) and write ``<name>.html`` beside it."""
    papermill = require("papermill", "notebook", "running notebooks headless")
    nbconvert = require("nbconvert", "notebook", "HTML reports")
    notebook = Path(notebook)
    out_dir = Path(out_dir).resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    executed = out_dir / notebook.name
    params = dict(parameters or {})
    params.setdefault("workdir", str(out_dir / "work"))
    papermill.execute_notebook(str(notebook), str(executed), parameters=params, cwd=str(out_dir),
                               kernel_name="python3", progress_bar=False, request_save_on_cell_execute=True,
                               execution_timeout=timeout)
    html = write_html_report(executed, nbconvert)
    return {"notebook": executed, "report": html}


def write_html_report(executed: Path, nbconvert=None) -> Path:
    """HTML with widget state stripped (offline viewers cannot render it); each widget's static
    PNG / HTML form, kept in the same output, is what the report shows."""
    import nbformat
    from traitlets.config import Config

    nbconvert = nbconvert or require("nbconvert", "notebook", "HTML reports")
    config = Config()
    config.ClearMetadataPreprocessor.enabled = True
    exporter = nbconvert.HTMLExporter(config=config)
    nb = nbformat.read(str(executed), as_version=4)
    for cell in nb.cells:
        for output in cell.get("outputs", []):
            data = output.get("data")
            if data and "application/vnd.jupyter.widget-view+json" in data and len(data) > 1:
                data.pop("application/vnd.jupyter.widget-view+json")
                data.pop("text/plain", None)
    body, _ = exporter.from_notebook_node(nb)
    html = executed.with_suffix(".html")
    from ._io import atomic_write_text

    atomic_write_text(html, body)
    return html


def _fresh_run_dir(base: Path) -> Path:
    """``base/1``, ``base/2``...: every run keeps its own folder, nothing is overwritten."""
    base.mkdir(parents=True, exist_ok=True)
    taken = [int(p.name) for p in base.iterdir() if p.is_dir() and p.name.isdigit()]
    n = max(taken, default=0) + 1
    while True:
        try:
            (base / str(n)).mkdir()
            return base / str(n)
        except FileExistsError:
            n += 1


def run_demo(out: str | os.PathLike = "runs/demo", parameters: dict[str, Any] | None = None) -> dict[str, Any]:
    """Run the quickstart in a new numbered folder under ``out``; returns the notebook and report paths."""
    start = time.perf_counter()
    run_dir = _fresh_run_dir(Path(out))
    result: dict[str, Any] = dict(run_notebook(notebooks_dir() / "00_quickstart.ipynb", run_dir, parameters))
    result["seconds"] = round(time.perf_counter() - start, 1)
    return result
