"""The training dashboard: engine events in, a live view out (a set of subscribers plus a view).

``Dashboard(bus)`` subscribes to every event on a :class:`tango_core.events.EventBus`; the
numbers go into a :class:`TrainingHistory` and the view redraws from it.  Per-batch events
are throttled to a few redraws a second and each redraw is one plotly ``batch_update``.
``Dashboard.from_events(recorded)`` replays a recorded run (reports, tests).
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable

import ipywidgets as widgets

from tango_core import events as ev

from ._history import TrainingHistory, format_seconds, thin
from ._static import StaticForm, escape, human, png_img

#: subplot columns of the live figure
_LOSS, _LR, _VAL = 1, 2, 3


class Dashboard(StaticForm, widgets.VBox):
    """Live losses, learning rate, validation metrics, progress with ETA, system info and, at
    the end, confusion matrix, PR curve and sample predictions."""

    def __init__(self, bus: ev.EventBus | None = None, title: str = "Training", rate_hz: float = 4.0,
                 max_points: int = 2000, **kwargs) -> None:
        import plotly.graph_objects as go
        from plotly.subplots import make_subplots

        self.history = TrainingHistory()
        self.title = title
        self.max_points = max_points
        self._unsubscribe: list[Callable[[], None]] = []
        self._throttled = ev.Throttle(lambda _event: self._render_live(), rate_hz=rate_hz)
        self._traces: dict[str, int] = {}

        self._header = widgets.HTML()
        self._progress = widgets.FloatProgress(value=0.0, min=0.0, max=1.0, layout=widgets.Layout(width="50%"))
        self._status = widgets.Label()
        self._status.add_class("tango-dashboard-status")
        self._info = widgets.HTML()
        base = make_subplots(rows=1, cols=3, subplot_titles=("train loss", "learning rate", "validation"))
        base.update_layout(height=300, margin=dict(l=40, r=10, t=40, b=30), legend=dict(font=dict(size=10)),
                           template="plotly_white")
        self.figure = go.FigureWidget(base)
        self.figure.add_class("tango-dashboard-plot")
        self._confusion = widgets.Image(format="png", layout=widgets.Layout(max_width="420px"))
        self._pr = widgets.Image(format="png", layout=widgets.Layout(max_width="420px"))
        self._samples = widgets.Image(format="png", layout=widgets.Layout(max_width="660px"))
        self._eval = widgets.HBox(layout=widgets.Layout(flex_flow="row wrap"))
        self._log = widgets.HTML()
        super().__init__(children=[self._header, widgets.HBox([self._progress, self._status]), self._info,
                                   self.figure, self._eval, self._log], **kwargs)
        self.add_class("tango-dashboard")
        self._render_all()
        if bus is not None:
            self.attach(bus)

    # --- wiring -----------------------------------------------------------------------------
    def attach(self, bus: ev.EventBus) -> Callable[[], None]:
        """Subscribe to every event of ``bus``; returns a function that detaches again."""
        off = bus.subscribe("*", self.handle)
        self._unsubscribe.append(off)
        return off

    def detach(self) -> None:
        for off in self._unsubscribe:
            off()
        self._unsubscribe.clear()

    def handle(self, event: ev.Event) -> None:
        """One event: fold it into the history, then redraw (throttled for per-batch events)."""
        self.history(event)
        if event.name == ev.TRAIN_BATCH:
            self._throttled(event)
            return
        self._throttled.flush()
        if event.name in (ev.TRAIN_END, ev.TRAIN_ERROR):
            self._render_all()
            self.refresh()
        elif event.name == ev.VAL_PLOTS:
            self._render_eval()
        else:
            self._render_live()
            self._render_text()

    @classmethod
    def from_events(cls, events: Iterable[ev.Event], **kwargs) -> Dashboard:
        """A dashboard showing a recorded run (``Recorder.events``), drawn once."""
        board = cls(**kwargs)
        board.replay(events)
        return board

    def replay(self, events: Iterable[ev.Event]) -> Dashboard:
        self.history.replay(events)
        self._render_all()
        return self

    # --- drawing ------------------------------------------------------------------------------
    def _render_all(self) -> None:
        self._render_live()
        self._render_text()
        self._render_eval()

    def _trace(self, key: str, name: str, col: int, mode: str = "lines"):
        import plotly.graph_objects as go

        if key not in self._traces:
            self.figure.add_trace(go.Scatter(x=[], y=[], name=name, mode=mode, legendgroup=str(col)),
                                  row=1, col=col)
            self._traces[key] = len(self.figure.data) - 1
        return self.figure.data[self._traces[key]]

    def _render_live(self) -> None:
        h = self.history
        xs = [b["x"] for b in h.batches]
        series = []
        if xs:
            series.append(("loss", "loss", _LOSS, "lines", xs, [b["loss"] for b in h.batches]))
            for name in h.loss_names():
                series.append((f"loss:{name}", name, _LOSS, "lines", xs, [b["losses"].get(name) for b in h.batches]))
            series.append(("lr", "lr", _LR, "lines", xs, [b["lr"] for b in h.batches]))
        rows = h.val_rows()
        for name in h.metric_names():
            series.append((f"val:{name}", name, _VAL, "lines+markers", [h.val_x(r) for r in rows],
                           [r["metrics"].get(name) for r in rows]))
        traces = [(self._trace(key, name, col, mode), x, y) for key, name, col, mode, x, y in series]
        with self.figure.batch_update():
            for trace, x, y in traces:
                trace.x, trace.y = thin(x, y, self.max_points)
        with self.hold_sync():
            self._progress.value = h.fraction
            self._status.value = self.status_text()
            if h.error is not None:
                self._progress.bar_style = "danger"
            elif h.end is not None:
                self._progress.bar_style = "success"
            else:
                self._progress.bar_style = ""

    def status_text(self) -> str:
        h = self.history
        if h.error is not None:
            return f"failed after {format_seconds(h.elapsed)}: {h.error}"
        if h.end is not None:
            fit = h.end.get("best_fitness")
            fit_text = f", best fitness {fit:.4g}" if isinstance(fit, (int, float)) else ""
            return f"done: {h.end['epochs_run']} epochs in {format_seconds(h.end.get('time', h.elapsed))}{fit_text}"
        if h.start is None:
            return "waiting for training to start"
        parts = []
        if h.epoch is not None and h.total_epochs:
            parts.append(f"epoch {h.epoch}/{h.total_epochs}")
        if h.step is not None and h.total_step:
            parts.append(f"step {h.step}/{h.total_step}")
        if h.batches:
            parts.append(f"loss {h.batches[-1]['loss']:.4g}")
        parts.append(f"{format_seconds(h.elapsed)} elapsed")
        parts.append(f"ETA {format_seconds(h.eta)}")
        return " · ".join(parts)

    def _info_rows(self) -> list[tuple[str, str]]:
        h = self.history
        rows = []
        if h.system:
            s = h.system
            extra = {k: v for k, v in s.items() if k not in ("torch", "device", "cpu_count", "cuda")}
            text = f"torch {s['torch']} · device {s['device']} · {s['cpu_count']} CPUs · CUDA {s['cuda'] or 'none'}"
            text += "".join(f" · {k} {v}" for k, v in extra.items() if isinstance(v, (str, int, float)))
            rows.append(("system", text))
        if h.model:
            m = h.model
            rows.append(("model", f"{m['name']} · {m['layers']} layers · {human(m['parameters'])} parameters · "
                                  f"{human(m['flops'])}FLOPs"))
        for split, d in h.datasets.items():
            rows.append((f"{split} data", f"{d['found']}/{d['total']} images · {d['missing']} missing · "
                                          f"{d['empty']} empty · {d['corrupted']} corrupted"))
        if h.end is not None:
            rows.append(("best model", f"{h.end['best_model']} ({human(h.end['size_bytes'])}B)"))
        return rows

    def _render_text(self) -> None:
        h = self.history
        run = (h.start or {}).get("run_dir")
        with self.hold_sync():
            self._header.value = (f"<b>{escape(self.title)}</b>"
                                  + (f" <span style='color:#666'>{escape(run)}</span>" if run else ""))
            self._info.value = "".join(f"<div><b>{escape(k)}</b>: {escape(v)}</div>" for k, v in self._info_rows())
            self._log.value = "".join(f"<div style='font-size:90%;color:#444'>{escape(line)}</div>"
                                      for line in h.log[-8:])

    def _render_eval(self) -> None:
        from ._plots import confusion_png, pr_png, samples_png

        p = self.history.plots
        names = list(p.get("class_names") or [])
        shown = []
        if p.get("confusion_matrix") is not None:
            self._confusion.value = confusion_png(p["confusion_matrix"], names)
            shown.append(self._confusion)
        if p.get("pr_curve"):
            self._pr.value = pr_png(p["pr_curve"], names)
            shown.append(self._pr)
        if p.get("samples"):
            self._samples.value = samples_png(p["samples"], names)
            shown.append(self._samples)
        self._eval.children = shown

    # --- static form --------------------------------------------------------------------------
    def _resync(self) -> None:
        # plotly keeps later updates as messages only; this copies them into the widget state
        self.figure._widget_layout = copy.deepcopy(self.figure._layout_obj._props)
        self.figure._widget_data = copy.deepcopy(self.figure._data)

    def to_png(self) -> bytes:
        from ._plots import curves_png

        return curves_png(self.history)

    def to_html(self) -> str:
        from ._plots import confusion_png, pr_png, samples_png

        h = self.history
        out = [f"<div class='tango-dashboard-static'><h4>{escape(self.title)}</h4>",
               f"<div>{escape(self.status_text())}</div>"]
        out += [f"<div><b>{escape(k)}</b>: {escape(v)}</div>" for k, v in self._info_rows()]
        out.append(png_img(self.to_png(), "training curves"))
        names = list(h.plots.get("class_names") or [])
        if h.plots.get("confusion_matrix") is not None:
            out.append(png_img(confusion_png(h.plots["confusion_matrix"], names), "confusion matrix", "max-width:45%"))
        if h.plots.get("pr_curve"):
            out.append(png_img(pr_png(h.plots["pr_curve"], names), "PR curve", "max-width:45%"))
        if h.plots.get("samples"):
            out.append(png_img(samples_png(h.plots["samples"], names), "sample predictions"))
        out += [f"<div style='font-size:90%;color:#444'>{escape(line)}</div>" for line in h.log[-8:]]
        out.append("</div>")
        return "".join(out)
