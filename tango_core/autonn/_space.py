"""Hyper-parameter search spaces: plain data (``hpo_spaces.yaml``) -> validated ranges -> Optuna.

A space is a mapping ``name -> {low, high[, log][, step][, type]}`` or ``{choices: [...]}``.
It is validated once, stored with the study (so every worker samples the same space) and turned
into ``trial.suggest_*`` calls.
"""

from __future__ import annotations

import fnmatch
import math
import os
from pathlib import Path
from typing import Any

from .._io import read_yaml
from ..errors import ConfigError, UnknownNameError

SPACES_PATH = Path(__file__).with_name("hpo_spaces.yaml")
_KEYS = {"low", "high", "log", "step", "type", "choices"}


def load_space(space: str | os.PathLike | dict | None, task: str,
               model: str | None = None) -> tuple[dict[str, dict[str, Any]], str]:
    """The validated space for ``task``: ``space`` is None (the built-in one), a mapping (of
    parameters, or of task -> parameters), or a YAML file of either.  A file of tasks may hold
    sections for some models of a task, named ``task:pattern`` (``detection:yolov9*``): the first
    whose pattern matches ``model`` replaces the plain ``task`` section.  Returns (space, source)."""
    source = str(SPACES_PATH)
    if space is None or isinstance(space, (str, os.PathLike)):
        if space is not None:
            source = str(space)
            if not Path(space).is_file():
                raise ConfigError(source, "<file>", "not found", "give the path of a YAML space file")
        raw = read_yaml(source)
    else:
        raw, source = space, "space"
    if not isinstance(raw, dict) or not raw:
        raise ConfigError(source, "<root>", "must be a non-empty mapping of hyper-parameter -> range")
    if all(isinstance(v, dict) and not (_KEYS & set(v)) for v in raw.values()):  # task -> parameters
        section = next((k for k in raw if isinstance(k, str) and k.startswith(f"{task}:") and model is not None
                        and fnmatch.fnmatch(model, k.split(":", 1)[1])), task)
        if section not in raw:
            raise UnknownNameError(f"task in the HPO space file {source}", task,
                                   sorted({str(k).split(":", 1)[0] for k in raw}))
        raw, prefix = raw[section], f"{section}."
    else:
        prefix = ""
    return {name: _check(name, spec, source, prefix) for name, spec in raw.items()}, source


def _check(name: str, spec: Any, source: str, prefix: str) -> dict[str, Any]:
    field = f"{prefix}{name}"
    if not isinstance(spec, dict):
        raise ConfigError(source, field, f"{spec!r} is not a range", "write {low: L, high: H} or {choices: [...]}")
    unknown = set(spec) - _KEYS
    if unknown:
        raise ConfigError(source, f"{field}.{sorted(unknown)[0]}", "unknown key", f"keys are {sorted(_KEYS)}")
    if "choices" in spec:
        choices = spec["choices"]
        if not isinstance(choices, list) or not choices:
            raise ConfigError(source, f"{field}.choices", "must be a non-empty list")
        return {"choices": list(choices)}
    for key in ("low", "high"):
        value = spec.get(key)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise ConfigError(source, f"{field}.{key}", f"{value!r} is not a number", "every range needs low and high")
    low, high = spec["low"], spec["high"]
    if low > high:
        raise ConfigError(source, field, f"low {low} is above high {high}", "swap them")
    kind = spec.get("type", "float")
    if kind not in ("float", "int"):
        raise ConfigError(source, f"{field}.type", f"{kind!r} is not a type", "use float or int")
    log = bool(spec.get("log", False))
    if log and low <= 0:
        raise ConfigError(source, f"{field}.low", f"a log scale needs low > 0, not {low}", "raise low or drop log")
    step = spec.get("step")
    if step is not None and (log or not isinstance(step, (int, float)) or step <= 0):
        raise ConfigError(source, f"{field}.step", f"{step!r} must be a positive number without log: true")
    out: dict[str, Any] = {"low": low, "high": high, "type": kind}
    if log:
        out["log"] = True
    if step is not None:
        out["step"] = step
    return out


def suggest(trial, space: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Sample every parameter of ``space`` through ``trial``."""
    out = {}
    for name, spec in space.items():
        if "choices" in spec:
            out[name] = trial.suggest_categorical(name, spec["choices"])
        elif spec["type"] == "int":
            out[name] = trial.suggest_int(name, int(spec["low"]), int(spec["high"]), step=int(spec.get("step", 1)),
                                          log=spec.get("log", False))
        else:
            out[name] = trial.suggest_float(name, float(spec["low"]), float(spec["high"]), step=spec.get("step"),
                                            log=spec.get("log", False))
    return out


def clip_into(space: dict[str, dict[str, Any]], values: dict[str, Any]) -> dict[str, Any]:
    """``values`` moved inside the space (to enqueue the defaults as the first trial)."""
    out = {}
    for name, spec in space.items():
        if name not in values:
            continue
        v = values[name]
        if "choices" in spec:
            if v in spec["choices"]:
                out[name] = v
            continue
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            continue
        v = min(max(v, spec["low"]), spec["high"])
        out[name] = int(round(v)) if spec["type"] == "int" else float(v)
    return out
