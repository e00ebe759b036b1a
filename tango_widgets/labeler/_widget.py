"""The labeler widget: ipywidgets controls around a canvas (an anywidget ES module).

The canvas draws in the browser and turns mouse and keys into small messages
(``{"op": "add_box", "box": [...]}``, ``{"op": "key", "key": "1"}``); this class applies them
to a :class:`LabelSession` (which saves the store after every change) and pushes the new state
back in one batched update.  The image is sent once per image switch; redraws during a drag
happen in the browser only.
"""

from __future__ import annotations

import io
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anywidget
import ipywidgets as widgets
import traitlets

from tango_core.data import Box, Dataset, Polygon, load_dataset
from tango_core.errors import ConfigError, DataError, TangoError

from .._static import StaticForm, escape
from ._session import FILTERS, LabelSession

#: image files the browser decodes itself; others are re-encoded as PNG
_BROWSER_FORMATS = {".png", ".jpg", ".jpeg", ".gif", ".webp", ".bmp"}


class LabelCanvas(anywidget.AnyWidget):
    """The drawing surface: image, shapes, selection, zoom and pan."""

    _esm = Path(__file__).with_name("_canvas.js")
    _css = Path(__file__).with_name("_canvas.css")

    image = traitlets.Bytes(b"", help="the current image file's bytes (sent once per image)").tag(sync=True)
    image_id = traitlets.Unicode("", help="id of the current image; a new id resets the view").tag(sync=True)
    image_size = traitlets.List(traitlets.Int(), [0, 0], help="[width, height] in pixels").tag(sync=True)
    shapes = traitlets.List(help="shapes of the current image: id, kind, cls, box | points, score, suggestion"
                            ).tag(sync=True)
    label = traitlets.Dict(help="classification: {cls, suggested: [cls, score] | null}").tag(sync=True)
    classes = traitlets.List(help="[{name, color}] in class-index order").tag(sync=True)
    current_class = traitlets.Int(0, help="class index new shapes get").tag(sync=True)
    selected = traitlets.Unicode("", help="id of the selected shape ('' = none)").tag(sync=True)
    tool = traitlets.Unicode("box", help="select | box | polygon").tag(sync=True)
    task = traitlets.Unicode("detection").tag(sync=True)
    zoom = traitlets.Float(0.0, help="view scale (0: fit the image when it loads)").tag(sync=True)
    pan = traitlets.List(traitlets.Float(), [0.0, 0.0], help="view offset in canvas px").tag(sync=True)
    height = traitlets.Int(480, help="canvas height in px").tag(sync=True)


def _image_bytes(path: Path, max_side: int | None) -> bytes:
    """The file as is when the browser can show it, else (or when larger than ``max_side``) a PNG."""
    if path.suffix.lower() in _BROWSER_FORMATS and max_side is None:
        return path.read_bytes()
    from PIL import Image

    with Image.open(path) as im:
        im = im.convert("RGBA" if im.mode in ("RGBA", "LA", "P") else "RGB")
        if max_side is not None and max(im.size) > max_side:
            im.thumbnail((max_side, max_side))
        buf = io.BytesIO()
        im.save(buf, format="PNG", compress_level=1)
    return buf.getvalue()


def _shape_dict(s: Box | Polygon, suggestion: bool = False) -> dict[str, Any]:
    d: dict[str, Any] = {"id": s.id, "cls": s.cls, "score": s.score, "suggestion": suggestion}
    if isinstance(s, Box):
        d.update(kind="box", box=[s.x1, s.y1, s.x2, s.y2])
    else:
        d.update(kind="polygon", points=[[x, y] for x, y in s.points])
    return d


class Labeler(StaticForm, widgets.VBox):
    """Label a dataset's images: class labels, boxes and polygons, with hotkeys and undo.

    ``Labeler(dataset_or_folder)``; ``model`` is the weights file (classification, detection or
    segmentation), a predictor or a callable used by "suggest" for model-assisted pre-labels
    (see :meth:`prelabel`).
    """

    def __init__(self, dataset: Dataset | str | Path, autosave: bool = True, model: Any = None,
                 height: int = 480, **kwargs: Any) -> None:
        ds = dataset if isinstance(dataset, Dataset) else load_dataset(dataset)
        self.session = LabelSession(ds, autosave=autosave, on_change=self._sync)
        self.model = model
        self._predictor_cache: tuple[tuple[str, int], Any] | None = None
        default_tool = {"classification": "select", "segmentation": "polygon"}.get(ds.task, "box")
        self.canvas = LabelCanvas(task=ds.task, tool=default_tool, height=height)
        self.canvas.add_class("tango-labeler-canvas")
        self.canvas.on_msg(self._on_canvas_msg)
        self._shown_image = None

        b = self._button
        self._prev, self._next = b("◀", "tango-labeler-prev", "previous image (p / ←)"), \
            b("▶", "tango-labeler-next", "next image (n / →)")
        self._position = widgets.Label()
        self._position.add_class("tango-labeler-position")
        self._filter = widgets.ToggleButtons(options=list(FILTERS), value="all", style={"button_width": "96px"})
        self._filter.add_class("tango-labeler-filter")
        self._tool = widgets.ToggleButtons(options=["select", "box", "polygon"], value=default_tool,
                                           tooltips=["select, move, resize (v)", "draw boxes (b)",
                                                     "draw polygons (g); double-click or Enter closes"],
                                           style={"button_width": "84px"})
        self._tool.add_class("tango-labeler-tool")
        self._tool.layout.display = "none" if ds.task == "classification" else ""
        self._undo, self._redo = b("↶ undo", "tango-labeler-undo", "ctrl+z"), \
            b("↷ redo", "tango-labeler-redo", "ctrl+y / ctrl+shift+z")
        self._fit = b("fit", "tango-labeler-fit", "fit the image in the view (f)")
        self._classes = widgets.ToggleButtons(options=[("none", -1)], style={"button_width": "auto"})
        self._classes.add_class("tango-labeler-classes")
        self._legend = widgets.HTML()
        self._color = widgets.ColorPicker(concise=True, layout=widgets.Layout(width="36px"))
        self._color.add_class("tango-labeler-color")
        self._new_name = widgets.Text(placeholder="class name", layout=widgets.Layout(width="130px"))
        self._new_name.add_class("tango-labeler-class-name")
        self._add_class, self._rename = b("+ class", "tango-labeler-add-class", "add a class with this name"), \
            b("rename", "tango-labeler-rename", "rename the current class to this name")
        self._progress = widgets.IntProgress(min=0, max=max(1, len(ds)), layout=widgets.Layout(width="160px"))
        self._progress_text = widgets.Label()
        self._progress_text.add_class("tango-labeler-progress")
        self._suggest = b("suggest", "tango-labeler-suggest", "run the model on unlabeled images")
        self._min_score = widgets.BoundedFloatText(value=0.25, min=0.0, max=1.0, step=0.05, description="min score",
                                                   tooltip="suggestions below this score are not shown",
                                                   layout=widgets.Layout(width="150px"),
                                                   style={"description_width": "64px"})
        self._min_score.add_class("tango-labeler-min-score")
        self._accept_all = b("accept all", "tango-labeler-accept-all", "make this image's suggestions labels (a)")
        from tango_core.data import FORMATS

        self._export_format = widgets.Dropdown(options=[f for f in FORMATS.names() if f != "tango"],
                                               layout=widgets.Layout(width="120px"))
        self._export_dest = widgets.Text(placeholder="export folder", layout=widgets.Layout(width="200px"))
        self._export = b("export", "tango-labeler-export", "write the labels in this format")
        self._status = widgets.HTML()
        self._status.add_class("tango-labeler-status")

        self._prev.on_click(lambda _b: self._act(lambda s: s.step(-1)))
        self._next.on_click(lambda _b: self._act(lambda s: s.step(+1)))
        self._undo.on_click(lambda _b: self._act(lambda s: s.undo()))
        self._redo.on_click(lambda _b: self._act(lambda s: s.redo()))
        self._fit.on_click(lambda _b: self.canvas.send({"cmd": "fit"}))
        self._filter.observe(lambda c: self._act(lambda s: s.set_filter(c["new"])), "value")
        self._tool.observe(lambda c: setattr(self.canvas, "tool", c["new"]), "value")
        self._classes.observe(self._on_class_button, "value")
        self._color.observe(self._on_color, "value")
        self._add_class.on_click(lambda _b: self._act(lambda s: s.add_class(self._new_name.value)))
        self._rename.on_click(lambda _b: self._act(lambda s: s.rename_class(
            s.ds.classes[s.current_class], self._new_name.value)))
        self._suggest.on_click(lambda _b: self._act(lambda s: self.prelabel(min_score=self._min_score.value)))
        self._accept_all.on_click(lambda _b: self._act(lambda s: s.accept()))
        self._export.on_click(lambda _b: self._act(lambda s: self.export(self._export_dest.value,
                                                                          self._export_format.value)))
        rows = [
            widgets.HBox([self._prev, self._next, self._position, self._filter, self._progress, self._progress_text]),
            widgets.HBox([self._tool, self._undo, self._redo, self._fit]),
            widgets.HBox([self._classes, self._color]),
            self._legend,
            self.canvas,
            widgets.HBox([self._new_name, self._add_class, self._rename, self._suggest, self._min_score, self._accept_all,
                          self._export_format, self._export_dest, self._export]),
            self._status,
        ]
        super().__init__(children=rows, **kwargs)
        self.add_class("tango-labeler")
        self._sync()

    @staticmethod
    def _button(text: str, css: str, tip: str) -> widgets.Button:
        button = widgets.Button(description=text, tooltip=tip, layout=widgets.Layout(width="auto"))
        button.add_class(css)
        return button

    @property
    def dataset(self) -> Dataset:
        return self.session.ds

    # --- applying actions -----------------------------------------------------------------------
    def _act(self, fn: Callable[[LabelSession], Any]) -> Any:
        """Run one action; a refused edit (bad class name, too few vertices…) shows its reason."""
        self._status.value = ""
        try:
            return fn(self.session)
        except (TangoError, KeyError, ValueError) as exc:
            self._status.value = f"<span style='color:#b91c1c'>{escape(exc)}</span>"
            return None

    def _on_canvas_msg(self, _widget, content: dict[str, Any], _buffers) -> None:
        op = content.get("op")
        handler = getattr(self, f"_op_{op}", None)
        if handler is None:
            self._status.value = f"<span style='color:#b91c1c'>unknown canvas message {escape(op)}</span>"
            return
        self._act(lambda s: handler(s, content))

    def _op_add_box(self, s: LabelSession, m: dict) -> None:
        s.add_box(*m["box"], cls=m.get("cls"))

    def _op_add_polygon(self, s: LabelSession, m: dict) -> None:
        s.add_polygon(m["points"], cls=m.get("cls"))

    def _op_select(self, s: LabelSession, m: dict) -> None:
        s.select(m.get("id") or None)

    def _op_move(self, s: LabelSession, m: dict) -> None:
        s.move(s.editable(m["id"]), m["dx"], m["dy"])

    def _op_set_box(self, s: LabelSession, m: dict) -> None:
        s.set_box(s.editable(m["id"]), *m["box"])

    def _op_move_vertex(self, s: LabelSession, m: dict) -> None:
        s.move_vertex(s.editable(m["id"]), int(m["index"]), m["x"], m["y"])

    def _op_insert_vertex(self, s: LabelSession, m: dict) -> None:
        s.insert_vertex(s.editable(m["id"]), int(m["index"]), m["x"], m["y"])

    def _op_delete_vertex(self, s: LabelSession, m: dict) -> None:
        s.delete_vertex(s.editable(m["id"]), int(m["index"]))

    def _op_delete(self, s: LabelSession, m: dict) -> None:
        s.delete(m.get("id"))

    def _op_accept(self, s: LabelSession, m: dict) -> None:
        s.accept(m.get("id"))

    def _op_key(self, s: LabelSession, m: dict) -> None:
        key, ctrl, shift = str(m.get("key", "")), bool(m.get("ctrl")), bool(m.get("shift"))
        lower = key.lower()
        if key.isdigit() and key != "0" and not ctrl:
            if int(key) <= len(s.ds.classes):
                s.set_class(int(key) - 1)
        elif ctrl and lower == "z":
            s.redo() if shift else s.undo()
        elif ctrl and lower == "y":
            s.redo()
        elif key in ("Delete", "Backspace"):
            s.delete()
        elif key.startswith("Arrow") and s.selected:
            step = 10.0 if shift else 1.0
            dx, dy = {"ArrowLeft": (-step, 0), "ArrowRight": (step, 0), "ArrowUp": (0, -step),
                      "ArrowDown": (0, step)}[key]
            s.nudge(dx, dy)
        elif key in ("ArrowRight", "PageDown") or lower == "n":
            s.step(+1)
        elif key in ("ArrowLeft", "PageUp") or lower == "p":
            s.step(-1)
        elif lower == "u":
            self._filter.value = "unlabeled" if s.filter == "all" else "all"
        elif lower == "a":
            s.accept()
        elif key == "Enter" and s.selected:
            s.accept(s.selected)
        elif key == "Escape":
            s.select(None)
        elif key == "Tab":
            ids = [d["id"] for d in self.canvas.shapes]
            if ids:
                k = ids.index(s.selected) + (-1 if shift else 1) if s.selected in ids else 0
                s.select(ids[k % len(ids)])
        elif lower in ("v", "b", "g") and s.task != "classification":
            self._tool.value = {"v": "select", "b": "box", "g": "polygon"}[lower]

    def _on_class_button(self, change) -> None:
        if change["new"] is not None and change["new"] >= 0 and change["new"] != self.session.current_class:
            self._act(lambda s: s.set_class(change["new"]))

    def _on_color(self, change) -> None:
        s = self.session
        if s.ds.classes and change["new"] and change["new"] != s.colors()[s.ds.classes[s.current_class]]:
            self._act(lambda s: s.set_color(s.ds.classes[s.current_class], change["new"]))

    # --- pushing state to the browser -----------------------------------------------------------
    def _sync(self) -> None:
        s = self.session
        rec = s.record
        colors = s.colors()
        pending = s.suggestions.get(rec.id, [])
        shapes = [_shape_dict(x) for x in (*rec.boxes, *rec.polygons)]
        shapes += [_shape_dict(x, suggestion=True) for x in pending if isinstance(x, (Box, Polygon))]
        label_hint = next(([int(x[0]), float(x[1])] for x in pending if isinstance(x, tuple)), None)
        done, total = s.progress
        pos, count = s.position
        with self.canvas.hold_sync():
            if self._shown_image != rec.id:
                self.canvas.image = _image_bytes(s.ds.image_path(rec), None)
                self.canvas.image_size = [rec.width, rec.height]
                self.canvas.image_id = rec.id
                self._shown_image = rec.id
            self.canvas.shapes = shapes
            self.canvas.label = {"cls": rec.label, "suggested": label_hint}
            self.canvas.classes = [{"name": n, "color": colors[n]} for n in s.ds.classes]
            self.canvas.current_class = s.current_class
            self.canvas.selected = s.selected or ""
        with self.hold_sync():
            self._position.value = f"{pos + 1} / {count} · {rec.file}"
            self._progress.max = max(1, total)
            self._progress.value = done
            self._progress_text.value = f"{done} of {total} labeled"
            self._undo.disabled = not s.undo_stack
            self._redo.disabled = not s.redo_stack
            options = [(f"{i + 1} {n}" if i < 9 else n, i) for i, n in enumerate(s.ds.classes)] or [("no classes", -1)]
            if list(self._classes.options) != options:
                self._classes.options = options
            self._classes.value = s.current_class if s.ds.classes else -1
            if s.ds.classes:
                self._color.value = colors[s.ds.classes[s.current_class]]
            self._legend.value = "".join(
                f"<span style='display:inline-block;margin-right:10px'><span style='display:inline-block;width:10px;"
                f"height:10px;background:{c};margin-right:3px'></span>{escape(n)}</span>" for n, c in colors.items())

    # --- model-assisted labels and export -------------------------------------------------------
    def prelabel(self, model: Any = None, only_unlabeled: bool = True, min_score: float = 0.25,
                 max_per_image: int = 100) -> int:
        """Run a model on (unlabeled) images and show its predictions as editable suggestions.

        ``model`` (default: the labeler's ``model``): a weights file tango saved (classification,
        detection or segmentation: its predictor is ``tango_core.engine.Predictor`` or
        ``tango_core.detection.DetectionPredictor``), one of those predictors, or a callable
        ``fn(paths) -> list`` of, per image, a ``(cls, score)`` pair or a list of scored Boxes /
        Polygons.  The model's classes are matched to the dataset's by name.  Detections become
        boxes on a detection dataset and outlines (the box's rectangle for box-only models) on a
        segmentation one.  Returns how many images got suggestions.
        """
        model = model if model is not None else self.model
        if model is None:
            raise ConfigError("labeler", "model", "no model to make suggestions with",
                              "train one first, or pass Labeler(..., model='runs/train/1/weights/best.pt')")
        s = self.session
        records = [r for r in s.ds.records if not (only_unlabeled and r.is_labelled)]
        if not records:
            self._status.value = "<span style='color:#666'>no unlabeled images to suggest labels for</span>"
            return 0
        paths = [s.ds.image_path(r) for r in records]
        predictions = self._predictions(model, paths, min_score, max_per_image)
        count = 0
        for rec, pred in zip(records, predictions, strict=False):
            items = [pred] if isinstance(pred, tuple) else list(pred or [])
            items = [p for p in items if (p[1] if isinstance(p, tuple) else (p.score or 0.0)) >= min_score]
            if items:
                s.suggest(rec.id, items[:max_per_image])
                count += 1
        self._sync()
        self._status.value = (f"<span style='color:#1a7f37'>suggestions on {count} of {len(records)} "
                              f"image{'s' if len(records) != 1 else ''}</span>")
        return count

    def _predictions(self, model: Any, paths: list[Path], min_score: float, max_per_image: int) -> list[Any]:
        """Per image, what :meth:`LabelSession.suggest` takes, from any kind of ``model``."""
        from tango_core.detection import DetectionPredictor
        from tango_core.engine import Predictor

        if isinstance(model, (str, os.PathLike)):
            model = self._predictor(Path(model), min_score, max_per_image)
        s = self.session
        index = {n: i for i, n in enumerate(s.ds.classes)}
        if isinstance(model, (Predictor, DetectionPredictor)):
            kind = "classification" if isinstance(model, Predictor) else "detection"
            if (kind == "classification") != (s.task == "classification"):
                made = "classification" if kind == "classification" else model.task
                raise ConfigError("labeler", "model", f"a {made} model cannot pre-label {s.task} images",
                                  f"use weights trained for {s.task}")
            if not set(model.classes) & set(index):
                raise ConfigError("labeler", "model", f"none of the model's classes {model.classes} is a class of "
                                  f"the dataset ({s.ds.classes or 'none yet'})",
                                  "add the classes (+ class), or use a model trained on these classes")
        if isinstance(model, Predictor):
            return [[(index[p.name], p.confidence)] if p.name in index else []
                    for p in model([str(x) for x in paths])]
        if isinstance(model, DetectionPredictor):
            out = []
            for result in model([str(x) for x in paths]):
                dets = [d for d in result.detections if d.name in index][:max_per_image]
                if s.task == "segmentation":
                    out.append([d.to_polygon(index[d.name]) for d in dets])
                else:
                    out.append([d.to_box(index[d.name]) for d in dets])
            return out
        if callable(model):
            return list(model(paths))
        raise ConfigError("labeler", "model", f"{type(model).__name__} is not a model",
                          "give a weights file, a predictor or a callable paths -> predictions")

    def _predictor(self, weights: Path, min_score: float, max_per_image: int) -> Any:
        """The predictor of a weights file, kept while the file is unchanged."""
        from tango_core.models.weights import read_weights

        if not weights.is_file():
            raise DataError(weights, "weights file not found", "train a model first, or give the path of its best.pt")
        key = (str(weights.resolve()), weights.stat().st_mtime_ns)
        cached = self._predictor_cache
        if cached is None or cached[0] != key:
            task = read_weights(weights).get("task", "classification")
            if task in ("detection", "segmentation"):
                from tango_core.detection import DetectionPredictor

                predictor = DetectionPredictor(weights, agnostic=True)  # one suggestion per object
            else:
                from tango_core.engine import Predictor

                predictor = Predictor(weights)
            cached = self._predictor_cache = (key, predictor)
        predictor = cached[1]
        if hasattr(predictor, "conf"):
            predictor.conf, predictor.max_det = min_score, max_per_image
        return predictor

    def export(self, dest: str | Path, format: str) -> Path:
        """Write the labels through the data layer's formats (COCO, YOLO, VOC, ImageFolder...)."""
        from tango_core.data import export_dataset

        if not str(dest).strip():
            raise ConfigError("labeler", "export folder", "empty", "type the folder to write to")
        out = export_dataset(self.session.ds, Path(dest), format)
        self._status.value = f"<span style='color:#1a7f37'>exported {escape(format)} to {escape(out)}</span>"
        return out

    # --- static form ------------------------------------------------------------------------------
    def to_png(self) -> bytes:
        from ._render import render_record

        return render_record(self.session)
