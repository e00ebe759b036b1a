"""The graph viewer: a model's node-edge drawing with lanes, ×N folds and block pop-ups.

The graph is :func:`tango_core.graph.model_graph` (plain data with positions); the front-end
(``_graph_view.js``, an anywidget ES module) only draws it, pans, zooms and opens a pop-up
with a block's inside.  ``selected`` is the synced node path (``"layer1/_0"``), so a click in
the browser and ``viewer.select(...)`` in Python do the same thing.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anywidget
import traitlets

from tango_core.graph import NODE_H, NODE_W, Graph, model_graph

from ._static import StaticForm, escape, figure_png, human, new_figure, png_img

_LANE_FILL = {"backbone": "#dbeafe", "neck": "#dcfce7", "head": "#fde68a", "aux": "#f3e8ff"}


class GraphViewer(StaticForm, anywidget.AnyWidget):
    """``GraphViewer("yolov7-tiny")`` or ``GraphViewer(module, input_size=64)``."""

    _esm = Path(__file__).with_name("_graph_view.js")
    _css = Path(__file__).with_name("_graph_view.css")

    graph = traitlets.Dict(help="tango_core.graph.Graph.to_dict(): nodes with positions, edges, lanes").tag(sync=True)
    selected = traitlets.Unicode("", help="path of the node whose pop-up is open ('' = none)").tag(sync=True)
    zoom = traitlets.Float(0.0, help="view scale; 0 fits the graph to the width on first display").tag(sync=True)
    pan = traitlets.List(traitlets.Float(), [20.0, 44.0], minlen=2, maxlen=2, help="view offset in px").tag(sync=True)
    height = traitlets.Int(560, help="height of the drawing area in px").tag(sync=True)

    def __init__(self, model: Any, input_size: int | tuple[int, int] | None = None, depth: int = 3,
                 graph: Graph | None = None, **kwargs: Any) -> None:
        self.model_graph = graph if graph is not None else model_graph(model, input_size=input_size, depth=depth)
        super().__init__(graph=self.model_graph.to_dict(), **kwargs)
        self.add_class("tango-graph-viewer")

    @traitlets.validate("selected")
    def _check_selected(self, proposal):
        path = proposal["value"]
        if path:
            self.model_graph.find(path)  # raises UnknownNameError naming the close matches
        return path

    @traitlets.validate("zoom")
    def _check_zoom(self, proposal):
        return min(4.0, max(0.0, float(proposal["value"])))

    def select(self, path: str | list[str]) -> None:
        """Open the pop-up of a node (``""`` closes it)."""
        self.selected = "/".join(path) if isinstance(path, list) else path

    @property
    def details(self) -> dict[str, Any] | None:
        """The selected node as plain data (what the pop-up shows)."""
        if not self.selected:
            return None
        n = self.model_graph.find(self.selected)
        inside = None
        if n.children is not None:
            inside = [c.label for c in n.children.nodes if c.kind in ("module", "function")]
        return {"id": n.id, "type": n.type, "label": n.label, "name": n.name, "lane": n.lane, "params": n.params,
                "flops": n.flops, "shape": n.shape, "args": dict(n.args), "repeat": n.repeat,
                "members": list(n.members), "inside": inside}

    # --- static form --------------------------------------------------------------------------
    def to_png(self) -> bytes:
        return graph_png(self.model_graph)

    def to_html(self) -> str:
        g = self.model_graph
        head = (f"<div><b>{escape(g.name)}</b>: {human(g.params)} parameters · {human(g.flops)}FLOPs · input "
                f"{escape('×'.join(map(str, g.input_shape or [])))}</div>")
        table = f"<details><summary>layers</summary><pre>{escape(g.summary())}</pre></details>"
        return f"<div class='tango-graph-static'>{head}{png_img(self.to_png(), g.name)}{table}</div>"


def graph_png(graph: Graph, max_px: int = 2400, dpi: int = 72) -> bytes:
    """The top level of a graph drawn with matplotlib, with the positions the viewer uses."""
    from matplotlib.patches import FancyArrowPatch, FancyBboxPatch

    margin = 40.0
    width, height = graph.width + 2 * margin, graph.height + 2 * margin + 30
    scale = min(1.0, max_px / max(width, height))
    fig = new_figure(width * scale / dpi, height * scale / dpi)
    ax = fig.add_axes((0, 0, 1, 1))
    ax.set_xlim(-margin, graph.width + margin)
    ax.set_ylim(graph.height + margin, -margin - 30)
    ax.axis("off")
    pos = {n.id: n for n in graph.nodes}
    for lane in graph.lanes:
        xs = [n.x for n in graph.nodes if n.lane == lane]
        if xs:
            ax.add_patch(FancyBboxPatch((min(xs) - 12, -34), max(xs) - min(xs) + NODE_W + 24, graph.height + 48,
                                        boxstyle="round,pad=0,rounding_size=8", fc="#f8fafc", ec="#e2e8f0"))
            ax.text(min(xs) - 4, -16, lane, fontsize=11 * scale, weight="bold", color="#475569")
    for e in graph.edges:
        a, b = pos.get(e.src), pos.get(e.dst)
        if a is None or b is None:
            continue
        ax.add_patch(FancyArrowPatch(path=_edge_path(a, b), arrowstyle="-|>", mutation_scale=10 * scale,
                                     color="#64748b", lw=0.8))
    font = max(3.0, 8.5 * scale)
    for n in graph.nodes:
        dark = n.kind in ("input", "output")
        colour = "#334155" if dark else ("#f1f5f9" if n.kind == "function" else _LANE_FILL.get(n.lane or "", "#e0e7ff"))
        ax.add_patch(FancyBboxPatch((n.x, n.y), NODE_W, NODE_H, boxstyle="round,pad=0,rounding_size=6", fc=colour,
                                    ec="#1e293b" if n.children is not None else "#94a3b8", lw=0.8))
        title = n.kind if dark else _title(n, bool(graph.lanes))
        shape = "×".join(map(str, n.shape)) if n.shape and not isinstance(n.shape[0], list) else ""
        text = f"{title}\n{shape}"
        if n.kind == "module":
            text += f"\n{human(n.params)} · {human(n.flops)}FLOPs"
        ax.text(n.x + 6, n.y + NODE_H / 2, text, fontsize=font, va="center", color="white" if dark else "#0f172a")
    return figure_png(fig, dpi)



def _edge_path(a, b):
    """The same cubic curve the front-end draws (a long edge inside one column bends to the side)."""
    from matplotlib.path import Path as MplPath

    sx, sy, tx, ty = a.x + NODE_W / 2, a.y + NODE_H, b.x + NODE_W / 2, b.y - 2
    if abs(sx - tx) < 1 and ty - sy > NODE_H + 40:
        ctrl = [(sx + NODE_W * 0.75, sy + 30), (tx + NODE_W * 0.75, ty - 30)]
    else:
        mid = (sy + ty) / 2
        ctrl = [(sx, mid), (tx, mid)]
    return MplPath([(sx, sy), *ctrl, (tx, ty)], [MplPath.MOVETO, MplPath.CURVE4, MplPath.CURVE4, MplPath.CURVE4])


def _title(n, config_graph: bool) -> str:
    """The node's heading, as the front-end writes it."""
    if config_graph:
        return f"#{n.id} {n.label}"
    if n.kind == "module" and n.name and n.name != n.type and not n.name.isdigit():
        return f"{n.name}: {n.label}"
    return n.label
