"""The HPO / NAS view: trials, best so far, parallel coordinates and the Pareto front.

Like the dashboard it is a subscriber plus a view: ``StudyView(bus, directions=[...])``
listens to the ``trial_*`` / ``study_end`` events of :mod:`tango_core.events`, keeps a
:class:`StudyHistory` (plain data) and redraws one plotly figure in a batch.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import ipywidgets as widgets

from tango_core import events as ev
from tango_core.errors import ConfigError

from ._plots import PALETTE
from ._static import StaticForm, escape, figure_png, new_figure, png_img

DIRECTIONS = ("maximize", "minimize")


def pareto_front(points: Sequence[Sequence[float]], directions: Sequence[str]) -> list[int]:
    """Indices of the points no other point dominates (better or equal in every objective and
    strictly better in one)."""
    sign = [1.0 if d == "maximize" else -1.0 for d in directions]
    scored = [[s * v for s, v in zip(sign, p, strict=False)] for p in points]
    front = []
    for i, a in enumerate(scored):
        dominated = any(all(x >= y for x, y in zip(b, a, strict=False)) and any(x > y for x, y in zip(b, a, strict=False))
                        for j, b in enumerate(scored) if j != i)
        if not dominated:
            front.append(i)
    return front


class StudyHistory:
    """Every trial of a study as plain data, folded from trial events."""

    def __init__(self, directions: Sequence[str] = ("maximize",), objectives: Sequence[str] | None = None) -> None:
        for i, d in enumerate(directions):
            if d not in DIRECTIONS:
                raise ConfigError("StudyView", f"directions[{i}]", f"{d!r} is not a direction",
                                  f"use one of {list(DIRECTIONS)}")
        self.directions = list(directions)
        self.objectives = list(objectives or [f"objective {i}" for i in range(len(directions))])
        if len(self.objectives) != len(self.directions):
            raise ConfigError("StudyView", "objectives", f"{len(self.objectives)} names for "
                              f"{len(self.directions)} directions", "give one name per direction")
        self.study: str | None = None
        self.trials: dict[int, dict[str, Any]] = {}
        self.best: Any = None

    def __call__(self, event: ev.Event) -> None:
        p = event.payload
        if event.name not in (ev.TRIAL_START, ev.TRIAL_REPORT, ev.TRIAL_PRUNED, ev.TRIAL_COMPLETE, ev.STUDY_END):
            return
        self.study = str(p["study"])
        if event.name == ev.STUDY_END:
            self.best = p["best"]
            return
        trial = self.trials.setdefault(int(p["trial"]), {"params": {}, "state": "running", "values": None,
                                                         "reports": []})
        if event.name == ev.TRIAL_START:
            trial["params"] = dict(p["params"])
        elif event.name == ev.TRIAL_REPORT:
            trial["reports"].append((p["step"], float(p["value"])))
        elif event.name == ev.TRIAL_PRUNED:
            trial["state"] = "pruned"
        else:
            values = p["values"]
            values = [values] if isinstance(values, (int, float)) else values
            trial.update(state=str(p["state"]).lower(), params=dict(p["params"]),
                         values=[float(v) for v in values] if values is not None else None)

    def replay(self, events: Iterable[ev.Event]) -> StudyHistory:
        for event in events:
            self(event)
        return self

    def complete(self) -> list[tuple[int, dict[str, Any]]]:
        return [(n, t) for n, t in sorted(self.trials.items())
                if t["state"] == "complete" and t["values"] and len(t["values"]) == len(self.directions)]

    def best_so_far(self) -> tuple[list[int], list[float]]:
        """The running best of the first objective over completed trials."""
        better = max if self.directions[0] == "maximize" else min
        xs, ys, best = [], [], None
        for n, t in self.complete():
            v = t["values"][0]
            best = v if best is None else better(best, v)
            xs.append(n)
            ys.append(best)
        return xs, ys

    def best_trials(self) -> list[int]:
        done = self.complete()
        if not done:
            return []
        if len(self.directions) == 1:
            pick = max if self.directions[0] == "maximize" else min
            return [pick(done, key=lambda nt: nt[1]["values"][0])[0]]
        front = pareto_front([t["values"] for _, t in done], self.directions)
        return [done[i][0] for i in front]

    def param_names(self) -> list[str]:
        names: dict[str, None] = {}
        for t in self.trials.values():
            for k in t["params"]:
                names.setdefault(k, None)
        return list(names)

    def dimensions(self) -> list[dict[str, Any]]:
        """Parallel-coordinate axes: each parameter then each objective, over completed trials;
        text values become ticks."""
        done = self.complete()
        dims = []
        for name in self.param_names():
            raw = [t["params"].get(name) for _, t in done]
            if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in raw):
                dims.append({"label": name, "values": [float(v) for v in raw]})
            else:
                cats = sorted({str(v) for v in raw})
                dims.append({"label": name, "values": [float(cats.index(str(v))) for v in raw],
                             "tickvals": list(range(len(cats))), "ticktext": cats})
        for i, obj in enumerate(self.objectives):
            dims.append({"label": obj, "values": [t["values"][i] for _, t in done]})
        return dims


class StudyView(StaticForm, widgets.VBox):
    """Trials table, best so far, intermediate values or the Pareto front, parallel coordinates."""

    def __init__(self, bus: ev.EventBus | None = None, directions: Sequence[str] = ("maximize",),
                 objectives: Sequence[str] | None = None, title: str = "Study", **kwargs) -> None:
        import plotly.graph_objects as go
        from plotly.subplots import make_subplots

        self.history = StudyHistory(directions, objectives)
        self.title = title
        self._unsubscribe: list[Callable[[], None]] = []
        multi = len(self.history.directions) > 1
        right = "Pareto front" if multi else "intermediate values"
        base = make_subplots(rows=2, cols=2, specs=[[{"type": "xy"}, {"type": "xy"}], [{"type": "domain", "colspan": 2}, None]],
                             subplot_titles=(f"{self.history.objectives[0]} per trial", right, ""),
                             row_heights=[0.55, 0.45], vertical_spacing=0.12)
        base.update_layout(height=520, margin=dict(l=50, r=20, t=40, b=30), template="plotly_white", showlegend=False)
        base.add_trace(go.Scatter(x=[], y=[], mode="markers", name="trials"), row=1, col=1)
        base.add_trace(go.Scatter(x=[], y=[], mode="lines", name="best so far", line=dict(shape="hv")), row=1, col=1)
        if multi:
            base.add_trace(go.Scatter(x=[], y=[], mode="markers", name="trials", marker=dict(color="#bbb")), row=1, col=2)
            base.add_trace(go.Scatter(x=[], y=[], mode="lines+markers", name="Pareto front"), row=1, col=2)
        base.add_trace(go.Parcoords(dimensions=[]), row=2, col=1)
        self._par_index = len(base.data) - 1
        self.figure = go.FigureWidget(base)
        self.figure.add_class("tango-study-plot")
        self._table = widgets.HTML()
        self._header = widgets.HTML()
        super().__init__(children=[self._header, self.figure, self._table], **kwargs)
        self.add_class("tango-study")
        self.render()
        if bus is not None:
            self.attach(bus)

    def attach(self, bus: ev.EventBus) -> Callable[[], None]:
        offs = [bus.subscribe(name, self.handle) for name in
                (ev.TRIAL_START, ev.TRIAL_REPORT, ev.TRIAL_PRUNED, ev.TRIAL_COMPLETE, ev.STUDY_END)]

        def off() -> None:
            for o in offs:
                o()

        self._unsubscribe.append(off)
        return off

    def detach(self) -> None:
        for off in self._unsubscribe:
            off()
        self._unsubscribe.clear()

    def handle(self, event: ev.Event) -> None:
        self.history(event)
        # intermediate reports are frequent; the table and the figure change on the others
        if event.name != ev.TRIAL_REPORT or len(self.history.directions) == 1:
            self.render()
        if event.name == ev.STUDY_END:
            self.refresh()

    @classmethod
    def from_events(cls, events: Iterable[ev.Event], **kwargs) -> StudyView:
        view = cls(**kwargs)
        view.history.replay(events)
        view.render()
        return view

    def render(self) -> None:
        import plotly.graph_objects as go

        h = self.history
        done = h.complete()
        bx, by = h.best_so_far()
        with self.figure.batch_update():
            d = self.figure.data
            d[0].x, d[0].y = [n for n, _ in done], [t["values"][0] for _, t in done]
            d[1].x, d[1].y = bx, by
            if len(h.directions) > 1:
                front = set(h.best_trials())
                d[2].x, d[2].y = [t["values"][0] for _, t in done], [t["values"][1] for _, t in done]
                pts = sorted((t["values"][0], t["values"][1]) for n, t in done if n in front)
                d[3].x, d[3].y = [p[0] for p in pts], [p[1] for p in pts]
                self.figure.layout.xaxis2.title.text = h.objectives[0]
                self.figure.layout.yaxis2.title.text = h.objectives[1]
            d[self._par_index].dimensions = [go.parcoords.Dimension(**dim) for dim in h.dimensions()]
            if done:
                d[self._par_index].line = dict(color=[t["values"][0] for _, t in done], colorscale="Viridis")
        if len(h.directions) == 1:
            self._render_intermediate()
        self._header.value = self._header_html()
        self._table.value = self.table_html()

    def _render_intermediate(self) -> None:
        import plotly.graph_objects as go

        # one line per trial, added as trials appear (traces after the fixed ones)
        fixed = self._par_index + 1
        trials = sorted(self.history.trials.items())
        with self.figure.batch_update():
            for k, (_n, t) in enumerate(trials):
                if fixed + k >= len(self.figure.data):
                    break
                tr = self.figure.data[fixed + k]
                tr.x, tr.y = [s for s, _ in t["reports"]], [v for _, v in t["reports"]]
                tr.line.dash = "dot" if t["state"] == "pruned" else "solid"
        for n, t in trials[len(self.figure.data) - fixed:]:
            self.figure.add_trace(go.Scatter(x=[s for s, _ in t["reports"]], y=[v for _, v in t["reports"]],
                                             mode="lines", name=f"trial {n}",
                                             line=dict(dash="dot" if t["state"] == "pruned" else "solid")),
                                  row=1, col=2)

    def _header_html(self) -> str:
        h = self.history
        states = [t["state"] for t in h.trials.values()]
        counts = ", ".join(f"{states.count(s)} {s}" for s in ("complete", "pruned", "running", "fail")
                           if states.count(s))
        best = h.best_trials()
        best_text = ""
        if best and len(h.directions) == 1:
            t = h.trials[best[0]]
            best_text = f" · best: trial {best[0]} ({h.objectives[0]} {t['values'][0]:.4g})"
        elif best:
            best_text = f" · Pareto front: trials {', '.join(map(str, best))}"
        name = escape(h.study or self.title)
        return f"<b>{name}</b>: {len(h.trials)} trials ({escape(counts or 'none yet')}){escape(best_text)}"

    def table_html(self) -> str:
        h = self.history
        params = h.param_names()
        best = set(h.best_trials())
        head = "".join(f"<th>{escape(c)}</th>" for c in ["trial", "state", *h.objectives, *params])
        rows = []
        for n, t in sorted(h.trials.items()):
            vals = t["values"] or [None] * len(h.objectives)
            cells = [str(n), t["state"], *("" if v is None else f"{v:.4g}" for v in vals),
                     *(_fmt(t["params"].get(p)) for p in params)]
            style = " style='font-weight:bold;background:#eef7ee'" if n in best else ""
            rows.append(f"<tr{style}>" + "".join(f"<td>{escape(c)}</td>" for c in cells) + "</tr>")
        return (f"<table class='tango-study-table' style='font-size:90%'><tr>{head}</tr>{''.join(rows)}</table>")

    # --- static form --------------------------------------------------------------------------
    def _resync(self) -> None:
        self.figure._widget_layout = copy.deepcopy(self.figure._layout_obj._props)
        self.figure._widget_data = copy.deepcopy(self.figure._data)

    def to_png(self) -> bytes:
        h = self.history
        done = h.complete()
        fig = new_figure(11, 3.4)
        ax_hist, ax_right, ax_par = fig.subplots(1, 3)
        ax_hist.scatter([n for n, _ in done], [t["values"][0] for _, t in done], s=12, color=PALETTE[0])
        bx, by = h.best_so_far()
        ax_hist.step(bx, by, where="post", color=PALETTE[3])
        ax_hist.set_title(f"{h.objectives[0]} per trial", fontsize=10)
        if len(h.directions) > 1:
            front = set(h.best_trials())
            ax_right.scatter([t["values"][0] for _, t in done], [t["values"][1] for _, t in done], s=12, color="#bbb")
            pts = sorted((t["values"][0], t["values"][1]) for n, t in done if n in front)
            ax_right.plot([p[0] for p in pts], [p[1] for p in pts], "o-", color=PALETTE[3], ms=4)
            ax_right.set_xlabel(h.objectives[0], fontsize=8)
            ax_right.set_ylabel(h.objectives[1], fontsize=8)
            ax_right.set_title("Pareto front", fontsize=10)
        else:
            for i, (_n, t) in enumerate(sorted(h.trials.items())):
                ax_right.plot([s for s, _ in t["reports"]], [v for _, v in t["reports"]], lw=1,
                              ls=":" if t["state"] == "pruned" else "-", color=PALETTE[i % len(PALETTE)])
            ax_right.set_title("intermediate values", fontsize=10)
        dims = h.dimensions()
        if dims and done:
            for k in range(len(done)):
                ys = []
                for dim in dims:
                    lo, hi = min(dim["values"]), max(dim["values"])
                    ys.append(0.5 if hi == lo else (dim["values"][k] - lo) / (hi - lo))
                ax_par.plot(range(len(dims)), ys, lw=1, alpha=0.7, color=PALETTE[k % len(PALETTE)])
            ax_par.set_xticks(range(len(dims)), [d["label"] for d in dims], rotation=30, fontsize=7)
            ax_par.set_yticks([])
        ax_par.set_title("parallel coordinates", fontsize=10)
        for ax in (ax_hist, ax_right):
            ax.tick_params(labelsize=7)
            ax.grid(alpha=0.3)
        return figure_png(fig)

    def to_html(self) -> str:
        return (f"<div class='tango-study-static'><div>{self._header_html()}</div>{png_img(self.to_png(), 'study')}"
                f"{self.table_html()}</div>")


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return "nan" if math.isnan(v) else f"{v:.4g}"
    return "" if v is None else str(v)
