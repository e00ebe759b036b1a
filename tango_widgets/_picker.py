"""The model picker: the base-model recommendation, its reason, the alternatives as cards.

The recommendation comes from :func:`tango_core.selection.recommend`; each card reads the
registry's metadata (:func:`tango_core.models.model_info`), so nothing about a model is
hard-coded here.  "Use this model" writes the choice to the project
(``Project.set(model=...)``) and marks ``model_selection`` completed.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import ipywidgets as widgets
import traitlets

from tango_core.errors import ConfigError
from tango_core.selection import Recommendation, recommend

from ._static import StaticForm, escape, human

_CARD_CSS = ("border:1px solid #ccc;border-radius:6px;padding:6px 8px;margin:4px;min-width:170px;"
             "font-size:90%;line-height:1.35")
_SELECTED_CSS = _CARD_CSS.replace("1px solid #ccc", "2px solid #2a7ae2") + ";background:#f2f7fe"


def _info(name: str) -> dict[str, Any] | None:
    from tango_core.models import list_models, model_info

    return model_info(name) if name in list_models() else None


def _card_html(name: str, info: dict[str, Any] | None, recommended: bool, selected: bool) -> str:
    badge = " <span style='color:#2a7ae2'>★ recommended</span>" if recommended else ""
    rows = [f"<div><b>{escape(name)}</b>{badge}</div>"]
    if info is None:
        rows.append("<div style='color:#a00'>not available: no builder is registered under this name</div>")
    else:
        rows.append(f"<div>{escape(info.get('family', ''))} · {escape(info.get('task', ''))}</div>")
        rows.append(f"<div>{human(info.get('params'))} parameters</div>")
        size = info.get("input_size")
        rows.append(f"<div>{human(info.get('flops'))}FLOPs at {escape(size)}×{escape(size)}</div>")
    style = _SELECTED_CSS if selected else _CARD_CSS
    return f"<div style='{style}'>{''.join(rows)}</div>"


class ModelPicker(StaticForm, widgets.VBox):
    """Pick the base model for a project (or for a task / class count / target without one)."""

    value = traitlets.Unicode(help="the model currently selected in the picker (not yet saved)")

    def __init__(self, project=None, task: str | None = None, num_classes: int | None = None,
                 target: Any = None, memory_gb: float | None = None, **kwargs) -> None:
        self.project = project
        if project is not None:
            task = task or project.task
            target = target if target is not None else project.config.target
            num_classes = num_classes or len(project.config.classes) or _dataset_classes(project)
        if task is None:
            raise ConfigError("ModelPicker", "task", "missing", "pass a project or task=...")
        if not num_classes:
            raise ConfigError(str(project.config_path) if project is not None else "ModelPicker", "project.classes",
                              "no classes yet, so no model can be recommended",
                              "label the data first, or pass num_classes=...")
        self.recommendation: Recommendation = recommend(task, int(num_classes), target=target, memory_gb=memory_gb)
        self.chosen: Recommendation | None = None
        self._callbacks: list[Callable[[Recommendation], None]] = []
        names = [self.recommendation.model, *self.recommendation.alternatives]
        self._infos = {n: _info(n) for n in names}
        self._cards: dict[str, widgets.HTML] = {}
        self._buttons: dict[str, widgets.Button] = {}
        boxes = []
        for n in names:
            card = widgets.HTML()
            button = widgets.Button(description="Select", disabled=self._infos[n] is None,
                                    tooltip="not registered" if self._infos[n] is None else f"select {n}",
                                    layout=widgets.Layout(width="90px", margin="0 0 4px 10px"))
            button.add_class("tango-picker-select")
            button.on_click(lambda _b, n=n: self.select(n))
            self._cards[n], self._buttons[n] = card, button
            boxes.append(widgets.VBox([card, button], layout=widgets.Layout(width="200px")))
        others = sorted(set(_registered(task)) - set(names))
        self._other = widgets.Dropdown(options=[("other registered model…", "")] + [(o, o) for o in others],
                                       value="", layout=widgets.Layout(width="260px"))
        self._other.observe(self._on_other, "value")
        self._use = widgets.Button(description="Use this model", button_style="primary", icon="check",
                                   layout=widgets.Layout(width="auto"))
        self._use.add_class("tango-picker-use")
        self._use.on_click(lambda _b: self.apply())
        self._status = widgets.HTML()
        self._header = widgets.HTML(self._header_html())
        self._cards_box = widgets.HBox(boxes, layout=widgets.Layout(flex_flow="row wrap"))
        super().__init__(children=[self._header, self._cards_box, widgets.HBox([self._other, self._use]),
                                   self._status], **kwargs)
        self.add_class("tango-model-picker")
        if project is not None and project.config.model in self._all_names():
            self.select(project.config.model)
        if not self.value:
            self.select(self.recommendation.model if self._infos[self.recommendation.model] else
                        next((n for n in names if self._infos[n]), self.recommendation.model))

    # --- behaviour ------------------------------------------------------------------------------------
    def _all_names(self) -> list[str]:
        return list(self._cards) + [o for _, o in self._other.options if o]

    @traitlets.validate("value")
    def _check_value(self, proposal):
        name = proposal["value"]
        if name and name not in self._all_names():
            from tango_core.errors import UnknownNameError

            raise UnknownNameError("model", name, self._all_names())
        return name

    @traitlets.observe("value")
    def _on_value(self, change) -> None:
        self._render_cards()

    def _on_other(self, change) -> None:
        if change["new"]:
            self.value = change["new"]

    def select(self, name: str) -> None:
        self.value = name

    def on_apply(self, callback: Callable[[Recommendation], None]) -> None:
        """Call ``callback(recommendation)`` each time the user confirms a model."""
        self._callbacks.append(callback)

    def apply(self) -> Recommendation:
        """Confirm the selected model: written to the project (when there is one)."""
        rec = self.recommendation
        if self.value != rec.model:
            rec = rec.override(self.value)
        self.chosen = rec
        if self.project is not None:
            self.project.set(model=rec.model)
            self.project.mark("model_selection", "completed", model=rec.model, recommended=self.recommendation.model,
                              reason=rec.reason)
        where = f" in {escape(self.project.config_path)}" if self.project is not None else ""
        self._status.value = f"<span style='color:#1a7f37'>✔ {escape(rec.model)} saved{where}</span>"
        for cb in self._callbacks:
            cb(rec)
        return rec

    # --- drawing --------------------------------------------------------------------------------------
    def _header_html(self) -> str:
        r = self.recommendation
        nas = f" · NAS space: {escape(r.nas_space)}" if r.nas_space else ""
        return (f"<div><b>Recommended base model: {escape(r.model)}</b> ({escape(r.family)}, tier "
                f"{escape(r.tier_label)}){nas}</div><div style='color:#444'>{escape(r.reason)}</div>")

    def _render_cards(self) -> None:
        with self.hold_sync():
            for n, card in self._cards.items():
                card.value = _card_html(n, self._infos[n], n == self.recommendation.model, n == self.value)
            if self.value not in self._cards and self.value:
                self._other.value = self.value
            elif self._other.value:
                self._other.value = ""
            self._use.description = f"Use {self.value}" if self.value else "Use this model"

    def to_html(self) -> str:
        cards = "".join(_card_html(n, self._infos[n], n == self.recommendation.model, n == self.value)
                        for n in self._cards)
        chosen = (f"<div>Chosen: <b>{escape(self.chosen.model)}</b></div>" if self.chosen is not None else "")
        return (f"<div class='tango-picker-static'>{self._header_html()}"
                f"<div style='display:flex;flex-wrap:wrap'>{cards}</div>{chosen}</div>")


def _registered(task: str) -> list[str]:
    from tango_core.models import list_models

    return list_models(task=task)


def _dataset_classes(project) -> int:
    """Class count of the project's dataset, when the project points at one."""
    if not project.config.dataset:
        return 0
    from pathlib import Path

    from tango_core.data import load_dataset

    return len(load_dataset(project.root / Path(project.config.dataset)).classes)
