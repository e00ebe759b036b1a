"""A tango project: one folder with a human-readable config and the status of each stage.

``tango.yaml`` in the project folder holds everything; it is written atomically, so a crash
never leaves a half-written config, and reopening the folder restores exactly where the work
stopped.  A stage left ``running`` by a process that no longer exists is reported as failed
("interrupted") on reopening, so the pipeline app offers to resume it.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import os
import re
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from . import events as ev
from ._io import read_yaml, write_yaml
from .errors import ConfigError, TangoError

CONFIG_NAME = "tango.yaml"
SCHEMA_VERSION = 1
TASKS = ("classification", "detection", "segmentation")
LEARNING_TYPES = ("normal", "incremental", "transfer")
STAGES = ("data", "labels", "model_selection", "training", "hpo", "nas", "export", "deploy")
STATUSES = ("ready", "running", "completed", "failed")


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def _yaml_timestamp(value: Any) -> Any:
    """A hand-written, unquoted timestamp is read by YAML as a datetime (or a date): keep it as
    the ISO string tango writes."""
    if isinstance(value, (_dt.datetime, _dt.date)):
        return value.isoformat()
    return value


def _is_timestamp(value: Any) -> bool:
    if not isinstance(value, str):
        return False
    try:
        _dt.datetime.fromisoformat(value)
    except ValueError:
        return False
    return True


def _check_mapping(source: str, field_name: str, value: Any, what: str) -> None:
    if not isinstance(value, dict):
        raise ConfigError(source, field_name, f"{value!r} must be a mapping of {what}")
    for key in value:
        if not isinstance(key, str):
            raise ConfigError(source, f"{field_name}.{key}", f"the key {key!r} must be a string")


def _pid_alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@dataclass
class StageStatus:
    status: str = "ready"
    started: str | None = None
    finished: str | None = None
    last_error: str | None = None
    pid: int | None = None
    info: dict[str, Any] = field(default_factory=dict)


@dataclass
class ProjectConfig:
    name: str
    task: str = "classification"
    target: str = "x86-cpu"
    learning_type: str = "normal"
    dataset: str | None = None
    classes: list[str] = field(default_factory=list)
    model: str | None = None
    weights: str | None = None
    hyp: dict[str, Any] = field(default_factory=dict)
    created: str = field(default_factory=_now)


class Project:
    """Open with :meth:`Project.open`, make with :meth:`Project.create`."""

    def __init__(self, root: Path, config: ProjectConfig, stages: dict[str, StageStatus]):
        self.root = Path(root).absolute()  # stays valid when the working directory changes
        self.config = config
        self.stages = stages
        self.events = ev.EventBus()
        # the architectures NAS saved in this project register as models (tango_core/autonn/_archs.py)
        from .autonn._archs import add_model_dir

        add_model_dir(self.root / "models")

    # --- construction ------------------------------------------------------------------------
    @classmethod
    def create(
        cls,
        root: str | os.PathLike,
        name: str | None = None,
        task: str = "classification",
        target: str = "x86-cpu",
        learning_type: str = "normal",
        exist_ok: bool = False,
        **fields: Any,
    ) -> Project:
        root = Path(root)
        if (root / CONFIG_NAME).exists():
            if not exist_ok:
                raise TangoError(f"{root / CONFIG_NAME} exists already: use Project.open() to continue it")
            return cls.open(root)
        config = ProjectConfig(name=name or root.resolve().name, task=task, target=target,
                               learning_type=learning_type, **fields)
        project = cls(root, config, {s: StageStatus() for s in STAGES})
        project._validate(str(root / CONFIG_NAME))
        project.save()
        return project

    @classmethod
    def open(cls, root: str | os.PathLike) -> Project:
        root = Path(root)
        path = root / CONFIG_NAME
        if not path.exists():
            raise TangoError(f"{root} is not a tango project ({CONFIG_NAME} not found): create it with Project.create()")
        raw = read_yaml(path)
        project = cls._from_dict(raw, str(path), root)
        changed = False
        for st in project.stages.values():
            if st.status == "running" and not _pid_alive(st.pid):
                st.status, st.last_error = "failed", f"interrupted (process {st.pid} is no longer running)"
                st.finished = _now()
                changed = True
        if changed:
            project.save()
        return project

    @classmethod
    def _from_dict(cls, raw: Any, source: str, root: Path) -> Project:
        if not isinstance(raw, dict):
            raise ConfigError(source, "<root>", "must be a mapping of fields", "see docs/project.md")
        version = raw.get("version", SCHEMA_VERSION)
        if isinstance(version, bool) or version != SCHEMA_VERSION:
            raise ConfigError(source, "version", f"unsupported version {version!r}", f"expected {SCHEMA_VERSION}")
        proj = raw.get("project")
        if not isinstance(proj, dict):
            raise ConfigError(source, "project", "missing or not a mapping")
        known = set(ProjectConfig.__dataclass_fields__)
        unknown = set(proj) - known
        if unknown:
            raise ConfigError(source, f"project.{sorted(unknown)[0]}", "unknown field", f"known fields: {sorted(known)}")
        if "name" not in proj:
            raise ConfigError(source, "project.name", "missing")
        config = ProjectConfig(**{k: _yaml_timestamp(v) if k == "created" else v for k, v in proj.items()})
        stages_raw = raw.get("stages") or {}
        if not isinstance(stages_raw, dict):
            raise ConfigError(source, "stages", "must be a mapping of stage -> status")
        stages = {}
        for stage in STAGES:
            st = stages_raw.get(stage) or {}
            if not isinstance(st, dict):
                raise ConfigError(source, f"stages.{stage}", "must be a mapping")
            bad = set(st) - set(StageStatus.__dataclass_fields__)
            if bad:
                raise ConfigError(source, f"stages.{stage}.{sorted(bad)[0]}", "unknown field")
            stages[stage] = StageStatus(**{k: _yaml_timestamp(v) if k in ("started", "finished") else v
                                           for k, v in st.items()})
        for stage in set(stages_raw) - set(STAGES):
            raise ConfigError(source, f"stages.{stage}", "unknown stage", f"stages are {list(STAGES)}")
        project = cls(root, config, stages)
        project._validate(source)
        return project

    # --- validation and persistence ---------------------------------------------------------
    def _validate(self, source: str) -> None:
        c = self.config
        if not isinstance(c.name, str) or not c.name.strip():
            raise ConfigError(source, "project.name", "must be a non-empty string")
        if c.task not in TASKS:
            raise ConfigError(source, "project.task", f"{c.task!r} is not a task", f"use one of {list(TASKS)}")
        if c.learning_type not in LEARNING_TYPES:
            raise ConfigError(source, "project.learning_type", f"{c.learning_type!r} is not a learning type",
                              f"use one of {list(LEARNING_TYPES)}")
        if not isinstance(c.target, str) or not re.fullmatch(r"[A-Za-z0-9_.\-]+", c.target or ""):
            raise ConfigError(source, "project.target", f"{c.target!r} is not a target id",
                              "a target id from the catalog: tango targets list")
        self._validate_target(source)
        for key, hint in (("dataset", "the dataset folder, relative to the project, or null"),
                          ("model", "a registered model name such as yolov7-tiny, or null"),
                          ("weights", "a weights file for transfer learning, or null")):
            value = getattr(c, key)
            if value is not None and (not isinstance(value, str) or not value.strip()):
                raise ConfigError(source, f"project.{key}", f"{value!r} must be a non-empty string or null", hint)
        if not isinstance(c.classes, list) or not all(isinstance(x, str) and x for x in c.classes):
            raise ConfigError(source, "project.classes", "must be a list of non-empty class names")
        if len(set(c.classes)) != len(c.classes):
            dup = sorted({x for x in c.classes if c.classes.count(x) > 1})
            raise ConfigError(source, "project.classes", f"duplicate class names {dup}")
        _check_mapping(source, "project.hyp", c.hyp, "hyper-parameter -> value")
        if not _is_timestamp(c.created):
            raise ConfigError(source, "project.created", f"{c.created!r} is not an ISO timestamp",
                              "e.g. '2026-11-25T18:40:00+00:00'")
        for stage, st in self.stages.items():
            where = f"stages.{stage}"
            if not isinstance(st.status, str) or st.status not in STATUSES:
                raise ConfigError(source, f"{where}.status", f"{st.status!r} is not a status",
                                  f"use one of {list(STATUSES)}")
            for key in ("started", "finished"):
                value = getattr(st, key)
                if value is not None and not _is_timestamp(value):
                    raise ConfigError(source, f"{where}.{key}", f"{value!r} is not an ISO timestamp or null",
                                      "e.g. '2026-11-25T18:40:00+00:00'")
            if st.last_error is not None and not isinstance(st.last_error, str):
                raise ConfigError(source, f"{where}.last_error", f"{st.last_error!r} must be a message (a string) or null")
            if st.pid is not None and (isinstance(st.pid, bool) or not isinstance(st.pid, int) or st.pid <= 0):
                raise ConfigError(source, f"{where}.pid", f"{st.pid!r} must be a process id (a positive integer) or null")
            _check_mapping(source, f"{where}.info", st.info, "name -> value")

    def _validate_target(self, source: str) -> None:
        """The target must be in the catalog (built-in, TANGO_TARGETS_PATH, ~/.config/tango/targets
        or register_target in this process); the error suggests close ids."""
        from .errors import UnknownNameError
        from .targets import get_target

        try:
            get_target(self.config.target)
        except UnknownNameError as exc:
            raise ConfigError(source, "project.target", exc.message,
                              "see `tango targets list`; add your own target with register_target() or a file "
                              "in TANGO_TARGETS_PATH, as docs/targets.md says") from None

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": SCHEMA_VERSION,
            "project": asdict(self.config),
            "stages": {k: asdict(v) for k, v in self.stages.items()},
        }

    def save(self) -> Path:
        self._validate(str(self.config_path))
        return write_yaml(self.config_path, self.to_dict())

    # --- convenience ---------------------------------------------------------------------------
    @property
    def config_path(self) -> Path:
        return self.root / CONFIG_NAME

    @property
    def name(self) -> str:
        return self.config.name

    @property
    def task(self) -> str:
        return self.config.task

    def path(self, *parts: str) -> Path:
        """A path inside the project folder (``data``, ``runs``, ``exports``, ``deploy``...)."""
        return self.root.joinpath(*parts)

    def set(self, **fields: Any) -> Project:
        """Change config fields (validated, saved atomically)."""
        for key in fields:
            if key not in ProjectConfig.__dataclass_fields__:
                raise ConfigError(str(self.config_path), f"project.{key}", "unknown field",
                                  f"known fields: {sorted(ProjectConfig.__dataclass_fields__)}")
        old = asdict(self.config)
        for key, value in fields.items():
            setattr(self.config, key, value)
        try:
            self.save()
        except ConfigError:
            self.config = ProjectConfig(**old)
            raise
        return self

    def attach_dataset(self, dataset: Any) -> Project:
        """Make ``dataset`` (a tango_core.data.Dataset or its folder) the project's dataset:
        records its path (relative when inside the project), task check and classes, and marks
        the data stage completed."""
        if not hasattr(dataset, "classes"):
            from .data import load_dataset

            dataset = load_dataset(dataset)
        if dataset.task != self.config.task and not (self.config.task == "detection" and dataset.task == "segmentation"):
            raise ConfigError(str(self.config_path), "project.task",
                              f"the project is for {self.config.task} but {dataset.root} holds {dataset.task} labels",
                              "import a dataset of the project's task, or create the project with that task")
        root = Path(dataset.root).resolve()
        try:
            rel = str(root.relative_to(self.root.resolve()))
        except ValueError:
            rel = str(root)
        self.set(dataset=rel, classes=list(dataset.classes))
        self.mark("data", "completed", images=len(dataset), classes=len(dataset.classes))
        labelled = sum(1 for r in dataset.records if r.label is not None or r.boxes or r.polygons)
        if labelled == len(dataset) and labelled:
            self.mark("labels", "completed", labelled=labelled)
        return self

    def dataset(self):
        """The project's dataset store (tango_core.data.Dataset)."""
        if not self.config.dataset:
            raise TangoError(f"{self.config_path}: no dataset yet: import one (tango data import SRC --project ...)")
        from .data import load_dataset

        path = Path(self.config.dataset)
        return load_dataset(path if path.is_absolute() else self.root / path)

    def trained_weights(self) -> Path | None:
        """The weights the last completed training kept (its best.pt), or None before training.
        (``config.weights`` is something else: the starting weights for transfer learning.)"""
        st = self.stages["training"]
        best = st.info.get("best_model") if st.status == "completed" else None
        if not best:
            return None
        path = Path(best)
        return path if path.is_absolute() else self.root / path

    def target(self):
        from .targets import get_target

        return get_target(self.config.target)

    # --- stage status ----------------------------------------------------------------------------
    def _stage(self, stage: str) -> StageStatus:
        if stage not in self.stages:
            from .errors import UnknownNameError

            raise UnknownNameError("stage", stage, list(STAGES))
        return self.stages[stage]

    def mark(self, stage: str, status: str, error: str | None = None, **info: Any) -> StageStatus:
        st = self._stage(stage)
        if status not in STATUSES:
            raise ConfigError(str(self.config_path), f"stages.{stage}.status", f"{status!r} is not a status")
        st.status = status
        if status == "running":
            st.started, st.finished, st.last_error, st.pid = _now(), None, None, os.getpid()
        elif status in ("completed", "failed"):
            st.finished, st.pid = _now(), None
            st.last_error = error if status == "failed" else None
        elif status == "ready":
            st.started = st.finished = st.last_error = st.pid = None
        st.info.update(info)
        self.save()
        self.events.emit(ev.STAGE_STATUS, stage=stage, status=status, error=st.last_error, info=dict(st.info))
        return st

    @contextlib.contextmanager
    def stage(self, stage: str, **info: Any) -> Iterator[StageStatus]:
        """Mark ``stage`` running for the block; completed on success, failed (with the error) otherwise."""
        st = self.mark(stage, "running", **info)
        try:
            yield st
        except BaseException as exc:
            self.mark(stage, "failed", error=f"{type(exc).__name__}: {exc}")
            raise
        self.mark(stage, "completed")

    def resume_point(self) -> str | None:
        """The first stage that is not completed (skipping optional hpo / nas), or None when all are."""
        for stage in STAGES:
            if stage in ("hpo", "nas") and self.stages[stage].status == "ready":
                continue
            if self.stages[stage].status != "completed":
                return stage
        return None

    def summary(self) -> dict[str, str]:
        return {s: st.status for s, st in self.stages.items()}

    def __repr__(self) -> str:
        return f"Project({self.name!r}, task={self.task!r}, target={self.config.target!r}, root={str(self.root)!r})"
