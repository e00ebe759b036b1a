"""The panels of the pipeline app, one function per step: controls that call engine functions.

Each ``<step>_panel(app)`` returns a widget; actions go through ``app.run(label, action)`` so
they run in a thread, show their errors, and leave the stage status to the project (the
engine marks ``training`` and ``export`` itself; the panels mark ``data`` through
``Project.attach_dataset``, which also completes ``labels`` for a dataset that came labelled, and
``labels`` when the user says the labels are done).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from pathlib import Path
from typing import Any

import ipywidgets as widgets

from tango_core import events as ev

from ._static import escape

_WIDE = widgets.Layout(width="420px")


def _button(text: str, css: str, style: str = "") -> widgets.Button:
    b = widgets.Button(description=text, button_style=style, layout=widgets.Layout(width="auto"))
    b.add_class(css)
    return b


def _dataset_root(project) -> Path | None:
    if not project.config.dataset:
        return None
    return project.root / Path(project.config.dataset)


def _free_data_dir(project) -> Path:
    for i in range(1, 1000):
        name = "data" if i == 1 else f"data-{i}"
        if not (project.path(name) / "dataset.json").exists():
            return project.path(name)
    raise RuntimeError("no free data folder name in the project")


def new_dataset(project, source: str, make: Callable[[Path], Any]):
    """Make a dataset in a free folder of the project (``make(dest) -> Dataset``) and attach it
    with the project's own API (``Project.attach_dataset``: path, classes, the data stage
    completed, and the labels stage completed when every image came labelled).  The data stage is
    running meanwhile and failed with the error when something goes wrong.  A labels stage left
    completed by an earlier dataset goes back to ready when the new one still needs labels."""
    dest = _free_data_dir(project)
    project.mark("data", "running", source=source)
    try:
        ds = make(dest)
        project.attach_dataset(ds)
    except BaseException as exc:
        project.mark("data", "failed", error=f"{type(exc).__name__}: {exc}")
        raise
    labelled = sum(r.is_labelled for r in ds.records)
    if project.stages["labels"].status == "completed" and not (labelled and labelled == len(ds)):
        project.mark("labels", "ready", labelled=labelled, images=len(ds))
    return ds


def trained_model(project) -> Path | None:
    """The weights of the project's last completed training (its best.pt) when the file exists."""
    path = project.trained_weights()
    return path if path is not None and path.is_file() else None


# --- project ------------------------------------------------------------------------------------------
def project_panel(app) -> widgets.Widget:
    from tango_core.project import LEARNING_TYPES
    from tango_core.targets import list_targets

    p = app.project
    target = widgets.Dropdown(options=sorted(set(list_targets()) | {p.config.target}), value=p.config.target,
                              description="target")
    learning = widgets.Dropdown(options=list(LEARNING_TYPES), value=p.config.learning_type, description="learning")
    save = _button("Save", "tango-app-project-save", "primary")
    info = widgets.HTML()

    def render() -> None:
        c = p.config
        rows = [("task", c.task), ("classes", ", ".join(c.classes) or "none yet"), ("dataset", c.dataset or "none"),
                ("model", c.model or "not chosen"), ("folder", p.root)]
        info.value = "".join(f"<div><b>{escape(k)}</b>: {escape(v)}</div>" for k, v in rows)

    def on_save(_b) -> None:
        p.set(target=target.value, learning_type=learning.value)
        app._render_steps()
        render()
        app.say("project saved")

    save.on_click(on_save)
    render()
    return widgets.VBox([info, target, learning, save])


# --- data ---------------------------------------------------------------------------------------------
def _dataset_html(project) -> str:
    root = _dataset_root(project)
    if root is None or not (root / "dataset.json").exists():
        return "<i>no dataset yet: import one, upload images or make a sample</i>"
    from tango_core.data import load_dataset

    ds = load_dataset(root)
    labelled = sum(r.is_labelled for r in ds.records)
    splits = {s: len(ds.records_of(s)) for s in ("train", "val", "test")}
    return (f"<div><b>{escape(project.config.dataset)}</b>: {len(ds)} images, {labelled} labelled, classes "
            f"{escape(', '.join(ds.classes) or 'none')}; splits "
            f"{escape(', '.join(f'{k} {v}' for k, v in splits.items() if v) or 'none')}</div>")


def data_panel(app) -> widgets.Widget:
    from tango_core.data import FORMATS, SAMPLES

    p = app.project
    info = widgets.HTML(_dataset_html(p))
    source = widgets.Text(placeholder="a folder or .zip (COCO, YOLO, VOC, ImageFolder, plain images)",
                          layout=_WIDE)
    fmt = widgets.Dropdown(options=["auto", *FORMATS.names()], value="auto", layout=widgets.Layout(width="140px"))
    do_import = _button("Import", "tango-app-import")
    upload = widgets.FileUpload(multiple=True, description="Upload files")
    do_upload = _button("Import uploaded files", "tango-app-import-uploads")
    samples = [n for n in SAMPLES.names() if p.task in SAMPLES.meta(n).get("tasks", ())]
    sample = widgets.Dropdown(options=samples, value=samples[0] if samples else None,
                              layout=widgets.Layout(width="140px"))
    sample_n = widgets.BoundedIntText(value=20, min=1, max=10000, description="size",
                                      layout=widgets.Layout(width="160px"))
    do_sample = _button("Make sample", "tango-app-sample")
    do_analyse = _button("Analyse", "tango-app-analyse")
    report = widgets.HTML()

    def imported(ds) -> None:
        info.value = _dataset_html(p)

    def run_import(src: Any, label: str, fmt_name: str = "auto") -> None:
        def action():
            from tango_core.data import import_dataset

            return new_dataset(p, label, lambda dest: import_dataset(src, dest, format=fmt_name, task=p.task))

        app.run(f"import {label}", action, imported)

    do_import.on_click(lambda _b: run_import(source.value.strip(), source.value.strip(), fmt.value))
    do_upload.on_click(lambda _b: run_import([{"name": f["name"], "content": bytes(f["content"])}
                                              for f in upload.value], f"{len(upload.value)} uploaded files"))

    def make(_b) -> None:
        def action():
            from tango_core.data import make_sample

            params = inspect.signature(SAMPLES.get(sample.value)).parameters
            opts = {"n_per_class" if "n_per_class" in params else "n": sample_n.value}
            if "task" in params:
                opts["task"] = p.task
            return new_dataset(p, f"sample {sample.value}", lambda dest: make_sample(sample.value, dest, **opts))

        app.run(f"sample {sample.value}", action, imported)

    def analyse(_b) -> None:
        root = _dataset_root(p)
        if root is None:
            app.say("no dataset to analyse yet", error=True)
            return

        def action():
            from tango_core.data import analyse as run

            return run(root)

        app.run("analyse", action, lambda r: setattr(report, "value", f"<pre>{escape(r.summary())}</pre>"))

    do_sample.on_click(make)
    do_analyse.on_click(analyse)
    return widgets.VBox([info, widgets.HBox([source, fmt, do_import]), widgets.HBox([upload, do_upload]),
                         widgets.HBox([sample, sample_n, do_sample]), do_analyse, report])


# --- labels -------------------------------------------------------------------------------------------
def labels_panel(app) -> widgets.Widget:
    from tango_core.data import load_dataset

    from .labeler import Labeler

    p = app.project
    root = _dataset_root(p)
    if root is None:
        return widgets.HTML("<i>import or make a dataset first (data step)</i>")
    labeler = Labeler(load_dataset(root), model=trained_model(p))
    done = _button("Labels done", "tango-app-labels-done", "success")
    model_info = widgets.HTML()
    model_info.add_class("tango-app-labels-model")

    def show_model() -> None:
        if labeler.model is not None:
            model_info.value = (f"<div>pre-labels: \"suggest\" runs the trained model "
                                f"<code>{escape(labeler.model)}</code> on the unlabeled images</div>")
        else:
            model_info.value = "<div style='color:#666'>pre-labels: train a model (train step) to get suggestions</div>"

    def on_status(event) -> None:  # a training that finishes while the labeler is open
        if event["stage"] == "training" and event["status"] == "completed":
            labeler.model = trained_model(p) or labeler.model
            show_model()

    app.subscribe(ev.STAGE_STATUS, on_status)
    show_model()

    def finish(_b) -> None:
        ds = labeler.dataset
        labelled = sum(r.is_labelled for r in ds.records)
        p.set(classes=list(ds.classes))
        p.mark("labels", "completed", labelled=labelled, images=len(ds))
        app.say(f"labels: {labelled} of {len(ds)} images labelled")

    done.on_click(finish)
    return widgets.VBox([labeler, done, model_info])


# --- model --------------------------------------------------------------------------------------------
def model_panel(app) -> widgets.Widget:
    from ._picker import ModelPicker

    picker = ModelPicker(app.project)
    picker.on_apply(lambda rec: app.say(f"model: {rec.model}"))
    return picker


# --- train --------------------------------------------------------------------------------------------
def train_panel(app) -> widgets.Widget:
    from ._dashboard import Dashboard

    p = app.project
    epochs = widgets.BoundedIntText(value=10, min=1, max=10000, description="epochs", layout=widgets.Layout(width="180px"))
    batch = widgets.Text(value="auto", description="batch", layout=widgets.Layout(width="180px"))
    imgsz = widgets.BoundedIntText(value=0, min=0, max=4096, description="image size",
                                   tooltip="0: the model's default", layout=widgets.Layout(width="200px"))
    start = _button("Train", "tango-app-train", "primary")
    resume = _button("Resume", "tango-app-resume")
    board = Dashboard(p.events, title=f"Training {p.config.model or ''}".strip())

    def options() -> dict[str, Any]:
        b = batch.value.strip()
        return {"epochs": epochs.value, "batch_size": int(b) if b.isdigit() else b,
                "imgsz": imgsz.value or None}

    def refresh_resume() -> None:
        st = p.stages["training"]
        resume.disabled = not (st.status == "failed" and st.info.get("run_dir")
                               and (Path(st.info["run_dir"]) / "weights" / "last.pt").exists())

    def go(resuming: bool) -> None:
        def action():
            from tango_core.engine import train

            return train(p, resume=True) if resuming else train(p, **options())

        def finished(result) -> None:
            refresh_resume()
            app.say(f"training done: best model {result.best}")

        app.run("resume training" if resuming else "training", action, finished)

    start.on_click(lambda _b: go(False))
    resume.on_click(lambda _b: go(True))
    # a training that fails (or is interrupted) offers Resume at once, not only on the next visit
    app.subscribe(ev.STAGE_STATUS, lambda e: refresh_resume() if e["stage"] == "training" else None)
    refresh_resume()
    return widgets.VBox([widgets.HBox([epochs, batch, imgsz, start, resume]), board])


# --- export -------------------------------------------------------------------------------------------
def export_panel(app) -> widgets.Widget:
    from tango_core.export import list_formats

    p = app.project
    known = list_formats()
    target = p.target()
    preferred = [f for f in target.runtimes if f in known]
    # a target with a select rule (x86-cpu) defaults to "auto": its candidates measured here
    options = (["auto"] if target.select else []) + known
    formats = widgets.SelectMultiple(options=options, value=("auto",) if target.select else tuple(preferred[:1]),
                                     rows=min(8, len(options)), description="formats")
    precision = widgets.Dropdown(options=["fp32", "fp16", "int8"], value="fp32", description="precision")
    go = _button("Export", "tango-app-export", "primary")
    table = widgets.HTML(_exports_html(p))

    def action():
        from tango_core.export import export

        best = p.stages["training"].info.get("best_model")
        if not best and not p.config.weights:
            raise RuntimeError("no trained model yet: run the train step first")
        results, failed = [], []
        for fmt in formats.value:
            opts = {} if precision.value == "fp32" or fmt == "auto" else {"precision": precision.value}
            try:
                results.append(export(best, fmt, project=p, **opts) if best else export(None, fmt, project=p, **opts))
            except Exception as exc:  # noqa: BLE001 - one format failing does not stop the others
                failed.append(f"{fmt}: {type(exc).__name__}: {exc}")
        if failed and not results:
            p.mark("export", "failed", error="; ".join(failed))
        table.value = _exports_html(p)
        if failed:
            raise RuntimeError("; ".join(failed))
        return results

    go.on_click(lambda _b: app.run("export", action))
    return widgets.VBox([widgets.HBox([formats, widgets.VBox([precision, go])]), table])


def _exports_html(project) -> str:
    exports = project.stages["export"].info.get("exports") or {}
    if not exports:
        return "<i>no exports yet</i>"
    selected = project.stages["export"].info.get("selected") or {}
    rows = "".join(f"<tr><td>{escape(k)}</td><td>{escape(v)}</td><td>"
                   f"{'fastest measured for ' + escape(selected['target']) if selected.get('export') == k else ''}"
                   f"</td></tr>" for k, v in exports.items())
    return f"<table class='tango-app-exports'><tr><th>format</th><th>metadata</th><th></th></tr>{rows}</table>"


# --- deploy -------------------------------------------------------------------------------------------
def deploy_panel(app) -> widgets.Widget:
    p = app.project
    target = p.target()
    info = widgets.HTML(f"<div><b>{escape(target.name)}</b> ({escape(target.id)}): runtimes "
                        f"{escape(', '.join(target.runtimes))}</div>")
    go = _button("Generate deploy package", "tango-app-deploy", "primary")
    result = widgets.HTML()

    def action():
        from tango_core.deploy import deploy

        return deploy(p)

    def done(out) -> None:
        result.value = f"<div>package: {escape(getattr(out, 'path', out))}</div>"

    go.on_click(lambda _b: app.run("deploy", action, done))
    return widgets.VBox([info, go, result])
