"""``%tango``: open the widgets on the current project without boilerplate.

    %load_ext tango_widgets
    %tango project myproj --create --task detection --target jetson-nano
    %tango app               # the pipeline app, where the project stopped
    %tango label [folder]    # the labeler (a raw image folder is imported into the project);
                             # "suggest" pre-labels with the project's trained model
    %tango model             # the model picker
    %tango train             # training controls and the live dashboard
    %tango graph [model]     # the model's graph
    %tango status            # stage status as text

The project picked with ``%tango project`` is remembered for the notebook (keyed by the
notebook's path, which Jupyter gives the kernel), also across kernel restarts, in
``$TANGO_STATE_DIR/notebook-projects.json`` (default ``~/.tango``).  Without one, a
``tango.yaml`` in the working folder is used.
"""

from __future__ import annotations

import argparse
import os
import shlex
from pathlib import Path
from typing import Any

from IPython.core.error import UsageError
from IPython.core.magic import Magics, line_magic, magics_class

from tango_core._io import read_json, write_json
from tango_core.errors import TangoError
from tango_core.project import CONFIG_NAME, Project

COMMANDS = ("project", "app", "label", "model", "train", "graph", "status")


def state_file() -> Path:
    return Path(os.environ.get("TANGO_STATE_DIR") or Path.home() / ".tango") / "notebook-projects.json"


def _parser(command: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=f"%tango {command}", add_help=False, exit_on_error=False)
    if command == "project":
        p.add_argument("folder")
        p.add_argument("--create", action="store_true", help="make the project if the folder has none")
        p.add_argument("--task", default="classification")
        p.add_argument("--target", default="x86-cpu")
    elif command == "label":
        p.add_argument("folder", nargs="?")
    elif command == "graph":
        p.add_argument("model", nargs="?")
        p.add_argument("--size", type=int, default=None, help="input size in px")
    elif command == "app":
        p.add_argument("step", nargs="?")
    return p


@magics_class
class TangoMagics(Magics):
    """The ``%tango`` line magic; see the module docstring."""

    def __init__(self, shell=None) -> None:
        super().__init__(shell)
        self.project: Project | None = None

    # --- the remembered project ------------------------------------------------------------------
    def notebook_key(self) -> str:
        ns = self.shell.user_ns if self.shell is not None else {}
        return str(ns.get("__session__") or os.environ.get("JPY_SESSION_NAME") or Path.cwd() / "<no notebook>")

    def _remembered(self) -> dict[str, str]:
        path = state_file()
        if not path.exists():
            return {}
        try:
            data = read_json(path)
        except TangoError:
            return {}  # a damaged state file only forgets which project was open
        return data if isinstance(data, dict) else {}

    def remember(self, project: Project) -> None:
        data = self._remembered()
        data[self.notebook_key()] = str(project.root.resolve())
        write_json(state_file(), data)

    def current(self) -> Project:
        if self.project is not None:
            return self.project
        folder = self._remembered().get(self.notebook_key())
        if folder and (Path(folder) / CONFIG_NAME).exists():
            self.project = Project.open(folder)
        elif (Path.cwd() / CONFIG_NAME).exists():
            self.project = Project.open(Path.cwd())
        else:
            raise UsageError("no tango project for this notebook yet: run  %tango project <folder> --create")
        return self.project

    # --- the magic -------------------------------------------------------------------------------
    @line_magic
    def tango(self, line: str) -> Any:
        words = shlex.split(line)
        command = words[0] if words else "app"
        if command not in COMMANDS:
            import difflib

            close = difflib.get_close_matches(command, COMMANDS, n=1)
            hint = f" Did you mean '{close[0]}'?" if close else ""
            raise UsageError(f"%tango: unknown command {command!r}.{hint} Commands: {', '.join(COMMANDS)}")
        parser = _parser(command)
        try:
            args = parser.parse_args(words[1:])
        except (argparse.ArgumentError, SystemExit) as exc:
            raise UsageError(f"{exc}\nusage: {parser.format_usage().strip()}") from None
        try:
            return getattr(self, f"_cmd_{command}")(args)
        except TangoError as exc:
            raise UsageError(str(exc)) from None

    def _cmd_project(self, args) -> Project:
        folder = Path(args.folder).expanduser()
        if (folder / CONFIG_NAME).exists():
            project = Project.open(folder)
        elif args.create:
            project = Project.create(folder, task=args.task, target=args.target)
        else:
            raise UsageError(f"{folder} is not a tango project: add --create to make one")
        self.project = project
        self.remember(project)
        return project

    def _cmd_app(self, args):
        from ._app import PipelineApp

        return PipelineApp(self.current(), step=args.step)

    def _cmd_label(self, args):
        from .labeler import Labeler

        folder = Path(args.folder).expanduser() if args.folder else None
        if folder is not None and (folder / "dataset.json").exists():
            return Labeler(folder)  # a dataset store: no project needed
        from ._panels import new_dataset, trained_model

        project = self.current()
        model = trained_model(project)  # "suggest" pre-labels with the project's trained model
        if folder is None:
            if not project.config.dataset:
                raise UsageError("the project has no dataset yet: %tango label <image folder>")
            return Labeler(project.root / project.config.dataset, model=model)
        from tango_core.data import import_dataset

        ds = new_dataset(project, str(folder), lambda dest: import_dataset(folder, dest, task=project.task))
        return Labeler(ds, model=model)

    def _cmd_model(self, args):
        from ._picker import ModelPicker

        return ModelPicker(self.current())

    def _cmd_train(self, args):
        from ._app import PipelineApp

        return PipelineApp(self.current(), step="train")

    def _cmd_graph(self, args):
        from ._graph_view import GraphViewer

        name = args.model
        if name is None:
            project = self.current()
            if not project.config.model:
                raise UsageError("the project has no model yet: %tango model, or %tango graph <model name>")
            name = project.config.model
        return GraphViewer(name, input_size=args.size)

    def _cmd_status(self, args) -> None:
        project = self.current()
        lines = [repr(project)] + [f"  {stage:16s} {status}" for stage, status in project.summary().items()]
        print("\n".join(lines))


def register(ipython) -> TangoMagics:
    magics = TangoMagics(ipython)
    ipython.register_magics(magics)
    return magics


def unregister(ipython) -> None:
    ipython.magics_manager.magics["line"].pop("tango", None)
