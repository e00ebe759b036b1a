"""The pipeline app: one widget that walks a project through its stages.

project → data → labels → model → train → export → deploy.  The status of every stage is
read from the project (``tango.yaml``), so after a kernel restart ``PipelineApp(folder)``
opens where the work stopped, and a stage that was left running by a dead process shows as
interrupted.  Each step's panel (``_panels.py``) calls the same engine functions a notebook
would; the app itself only shows status and routes clicks.
"""

from __future__ import annotations

import threading
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import ipywidgets as widgets
import traitlets

from tango_core import events as ev
from tango_core.project import Project

from ._static import StaticForm, escape

#: app step -> project stage (None: the project itself)
STEPS: dict[str, str | None] = {
    "project": None, "data": "data", "labels": "labels", "model": "model_selection", "train": "training",
    "export": "export", "deploy": "deploy",
}
STAGE_TO_STEP = {stage: step for step, stage in STEPS.items() if stage} | {"hpo": "train", "nas": "train"}
ICONS = {"ready": "○", "running": "◔", "completed": "✔", "failed": "✖"}
STYLES = {"ready": "", "running": "info", "completed": "success", "failed": "danger"}


class PipelineApp(StaticForm, widgets.VBox):
    """``PipelineApp("myproj")`` or ``PipelineApp(project)``; ``background=False`` runs stage
    actions in the calling thread (tests, papermill)."""

    step = traitlets.Unicode("project", help="the step whose panel is shown")

    def __init__(self, project: Project | str | Path, step: str | None = None, background: bool = True,
                 **kwargs: Any) -> None:
        self.project = project if isinstance(project, Project) else Project.open(project)
        self.background = background
        self.last_error: str | None = None  # the traceback of the last failed action, for bug reports
        self._panels: dict[str, widgets.Widget] = {}
        self._worker: threading.Thread | None = None
        self._buttons: dict[str, widgets.Button] = {}
        for name in STEPS:
            b = widgets.Button(layout=widgets.Layout(width="auto", margin="0 4px 0 0"))
            b.add_class("tango-app-step")
            b.add_class(f"tango-app-step-{name}")
            b.on_click(lambda _b, name=name: self.show(name))
            self._buttons[name] = b
        self._header = widgets.HTML()
        self._message = widgets.HTML()
        self._message.add_class("tango-app-message")
        self._body = widgets.Box(layout=widgets.Layout(flex_flow="column", padding="6px 0"))
        super().__init__(children=[self._header, widgets.HBox(list(self._buttons.values())), self._message,
                                   self._body], **kwargs)
        self.add_class("tango-app")
        self._offs: list[Callable[[], None]] = []
        self.subscribe(ev.STAGE_STATUS, self._on_stage_status)
        self._render_steps()
        self.step = step or self.resume_step()
        self._show_panel()

    # --- status -------------------------------------------------------------------------------
    def status(self, step: str) -> str:
        stage = STEPS[step]
        if stage is None:
            return "completed"
        return self.project.stages[stage].status

    def resume_step(self) -> str:
        """Where to continue: the first stage not completed (the project step when all are)."""
        stage = self.project.resume_point()
        return STAGE_TO_STEP.get(stage, "project") if stage else "deploy"

    def _on_stage_status(self, event: ev.Event) -> None:
        self._render_steps()
        step = STAGE_TO_STEP.get(event["stage"])
        if event["status"] == "failed" and step:
            self.say(f"{step}: {event['error']}", error=True)

    def _render_steps(self) -> None:
        with self.hold_sync():
            for name, button in self._buttons.items():
                status = self.status(name)
                button.description = f"{ICONS[status]} {name}"
                button.button_style = STYLES[status]
                button.tooltip = f"{name}: {status}" + (
                    f" ({self.project.stages[STEPS[name]].last_error})" if status == "failed" and STEPS[name] else "")
            c = self.project.config
            self._header.value = (f"<b>{escape(c.name)}</b> · {escape(c.task)} · target {escape(c.target)}"
                                  f" · <span style='color:#666'>{escape(self.project.root)}</span>")

    # --- navigation ---------------------------------------------------------------------------
    @traitlets.validate("step")
    def _check_step(self, proposal):
        if proposal["value"] not in STEPS:
            from tango_core.errors import UnknownNameError

            raise UnknownNameError("step", proposal["value"], list(STEPS))
        return proposal["value"]

    @traitlets.observe("step")
    def _on_step(self, change) -> None:
        if self._buttons:
            self._show_panel()

    def show(self, step: str) -> None:
        self.step = step

    def panel(self, step: str) -> widgets.Widget:
        """The panel of a step (built on first use)."""
        if step not in self._panels:
            from . import _panels

            self._panels[step] = getattr(_panels, f"{step}_panel")(self)
        return self._panels[step]

    def _show_panel(self) -> None:
        for name, button in self._buttons.items():
            (button.add_class if name == self.step else button.remove_class)("tango-app-current")
        try:
            self._body.children = [self.panel(self.step)]
        except Exception as exc:  # noqa: BLE001 - a panel that cannot open says why, the app stays usable
            self._body.children = []
            self.say(f"{self.step}: {type(exc).__name__}: {exc}", error=True)

    # --- running stage actions -------------------------------------------------------------
    def say(self, text: str, error: bool = False) -> None:
        colour = "#b91c1c" if error else "#1a7f37"
        self._message.value = f"<span style='color:{colour}'>{escape(text)}</span>" if text else ""

    @property
    def busy(self) -> bool:
        return self._worker is not None and self._worker.is_alive()

    def run(self, label: str, action: Callable[[], Any], done: Callable[[Any], None] | None = None) -> None:
        """Run a stage action (in a thread unless ``background=False``); errors are shown, not raised."""
        if self.busy:
            self.say(f"{label}: wait until the running step finishes", error=True)
            return

        def work() -> None:
            try:
                result = action()
            except Exception as exc:  # noqa: BLE001 - shown to the user with its hint
                self.say(f"{label} failed: {type(exc).__name__}: {exc}", error=True)
                self.last_error = traceback.format_exc()
                return
            finally:
                self._render_steps()
            self.say(f"{label}: done")
            if done is not None:
                done(result)

        self.say(f"{label}…")
        if self.background:
            self._worker = threading.Thread(target=work, name=f"tango-{label}", daemon=True)
            self._worker.start()
        else:
            work()

    def wait(self, timeout: float | None = None) -> None:
        """Block until a background action finished (notebooks that must run top to bottom)."""
        if self._worker is not None:
            self._worker.join(timeout)

    def subscribe(self, event: str, callback: Callable[[ev.Event], None]) -> None:
        """Observe one of the project's events while the app is open (panels use this)."""
        self._offs.append(self.project.events.subscribe(event, callback))

    def close(self) -> None:
        for off in self._offs:
            off()
        self._offs.clear()
        super().close()

    # --- static form --------------------------------------------------------------------------
    def to_html(self) -> str:
        rows = []
        for name, stage in STEPS.items():
            status = self.status(name)
            st = self.project.stages[stage] if stage else None
            extra = escape(st.last_error) if st is not None and st.last_error else ""
            colour = {"completed": "#1a7f37", "failed": "#b91c1c", "running": "#1d4ed8"}.get(status, "#666")
            rows.append(f"<tr><td>{escape(name)}</td><td style='color:{colour}'>{ICONS[status]} {status}</td>"
                        f"<td>{extra}</td></tr>")
        c = self.project.config
        return (f"<div class='tango-app-static'><b>{escape(c.name)}</b> · {escape(c.task)} · target "
                f"{escape(c.target)}{' · model ' + escape(c.model) if c.model else ''}"
                f"<table>{''.join(rows)}</table></div>")
