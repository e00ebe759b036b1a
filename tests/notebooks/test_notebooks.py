"""Every guided notebook runs end to end under papermill (a failing cell fails the test)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from tango_core.demo import run_demo, run_notebook

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOKS = ROOT / "notebooks"


def outputs_text(nb_path: Path) -> str:
    nb = json.loads(nb_path.read_text())
    parts = []
    for cell in nb["cells"]:
        for out in cell.get("outputs", []):
            parts.append("".join(out.get("text", "")))
            data = out.get("data", {})
            parts.append("".join(data.get("text/plain", "")))
            parts.append("".join(data.get("text/html", "")))
    return "\n".join(parts)


def report_images(html: str) -> dict:
    """The report's embedded PNG figures, decoded, by their alt text."""
    import base64
    import io
    import re

    from PIL import Image

    found = {}
    for alt, data in re.findall(r'<img alt="([^"]*)" src="data:image/png;base64,([A-Za-z0-9+/=]+)"', html):
        found[alt] = Image.open(io.BytesIO(base64.b64decode(data)))
    return found


def test_notebooks_are_built_from_their_sources():
    result = subprocess.run([sys.executable, str(NOTEBOOKS / "_make.py"), "--check"], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout


def test_every_notebook_has_a_parameters_cell():
    for path in sorted(NOTEBOOKS.glob("*.ipynb")):
        nb = json.loads(path.read_text())
        tagged = [c for c in nb["cells"] if "parameters" in c.get("metadata", {}).get("tags", [])]
        assert len(tagged) == 1, path.name


@pytest.mark.notebook
def test_quickstart_main_job_writes_a_report(tmp_path):
    result = run_demo(tmp_path / "runs")
    html = result["report"].read_text()
    assert result["report"].parent.parent == tmp_path / "runs"
    assert "recommended: resnet-cifar20" in html
    assert "no problems found" in html
    assert "model_selection  completed" in html
    assert "training         completed" in html and "export           completed" in html
    assert "deploy           completed" in html and "all verified: True" in html
    assert "tango-graph-static" in html and "tango-dashboard-static" in html  # widgets' static forms
    assert "done: 8 epochs" in html  # the dashboard's final state, not its empty start
    figures = report_images(html)
    for alt in ("resnet-cifar20", "training curves", "confusion matrix", "sample predictions"):
        assert alt in figures, f"the report has no {alt!r} figure (has {sorted(figures)})"
        image = figures[alt]
        assert min(image.size) >= 100 and len(np.unique(np.asarray(image.convert("L")))) > 8, alt  # drawn
    assert '<caption>Exports for This PC (x86-64 CPU)</caption>' in html
    assert "<td>onnx</td>" in html and "FAILED" not in html
    # the console script, as the README runs it: a second run gets its own folder; report path last
    cli = Path(sys.executable).with_name("tango")
    again = subprocess.run([str(cli), "demo", "--out", str(tmp_path / "runs"), "-p", "epochs=1"],
                           capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr[-3000:]
    last = again.stdout.strip().splitlines()[-1]
    assert last.startswith("report: ") and "notebook: " in again.stdout
    report = Path(last.removeprefix("report: "))
    assert report != result["report"] and report.parent.parent == tmp_path / "runs" and report.is_file()
    assert "done: 1 epochs" in report.read_text()


@pytest.mark.notebook
def test_quickstart_with_detection_parameters(tmp_path):
    result = run_notebook(NOTEBOOKS / "00_quickstart.ipynb", tmp_path,
                          {"task": "detection", "target": "jetson-nano", "n_images": 24, "imgsz": 64})
    text = outputs_text(result["notebook"])
    assert "recommended: yolov7-x" in text
    assert "classes ['circle'" in text or "circle" in text


#: each guided notebook with its CI-sized defaults, and one other parameter set
STAGE_RUNS = {
    "01_labeling": [{}, {"task": "detection", "classes": "circle,square", "prelabel_model": "",
                         "export_format": "yolo", "n_unlabeled": 10}],
    # the second sets go beyond the defaults where it matters (image size, data), within CI's time
    "02_classification": [{}, {"model": "resnet-cifar32", "imgsz": 32, "n_per_class": 60, "epochs": 2,
                               "batch_size": "auto", "target": "galaxy-s22"}],
    "04_export_benchmark": [{}, {"formats": "onnx,tvm", "int8": False, "benchmark_runs": 5}],
    "05_deploy": [{}, {"target": "rpi5-coral", "also": "aws-ecs,odroid-m1"}],
    "06_hpo_nas": [{}, {"hpo_trials": 2, "nas_trials": 3, "n_per_class": 10, "hpo_epochs": 1}],
    "07_segmentation": [{}, {"model": "yolov9-s-seg", "n_images": 12, "epochs": 1, "batch_size": 4}],
    "03_detection": [{}, {"model": "yolov9-t", "n_images": 32, "imgsz": 128, "epochs": 1, "batch_size": 4,
                          "hyp": {"optimizer": "AdamW", "lr0": 0.002, "warmup_epochs": 1}}],
}


def _stage_cases():
    for name, runs in STAGE_RUNS.items():
        for i, params in enumerate(runs):
            yield pytest.param(name, params, id=f"{name}-{'defaults' if not params else f'params{i}'}")


@pytest.mark.notebook
@pytest.mark.parametrize("name, params", list(_stage_cases()))
def test_stage_notebook_runs(tmp_path, name, params):
    result = run_notebook(NOTEBOOKS / f"{name}.ipynb", tmp_path, params)
    text = outputs_text(result["notebook"])
    assert "Traceback" not in text
    if params.get("model"):
        assert f"model: {params['model']}" in text
    if params.get("hyp"):  # the notebook's hyp reached the training (the run records every value used)
        used = [yaml.safe_load(p.read_text()) for p in (tmp_path / "work").glob("project/runs/train/*/hyp.yaml")]
        assert used and all(h[k] == v for h in used for k, v in params["hyp"].items()), used
    assert result["report"].exists()


def test_every_stage_notebook_is_tested():
    names = {p.stem for p in NOTEBOOKS.glob("*.ipynb")} - {"00_quickstart"}
    assert names <= set(STAGE_RUNS), f"untested notebooks: {sorted(names - set(STAGE_RUNS))}"
