"""Hyper-parameters: defaults from ``hyp.yaml``, overridden by a mapping or a YAML file, validated."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from .._io import read_yaml
from ..errors import ConfigError, UnknownNameError

DEFAULTS_PATH = Path(__file__).with_name("hyp.yaml")
OPTIMIZERS = ("SGD", "AdamW")
SCHEDULERS = ("cosine", "linear", "constant")
_AUTO_LR = {"SGD": 0.05, "AdamW": 0.001}


def default_hyp() -> dict[str, Any]:
    return dict(read_yaml(DEFAULTS_PATH))


def model_hyp(model: str | None, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """What ``model``'s task sets beyond or instead of the engine's defaults, given the user's
    ``overrides``: for a YOLO model its recipe (loss gains, augmentation, and the optimiser
    schedule under SGD).  Tasks provide it as the class method ``hyp_defaults(model, overrides)``;
    an unknown model gives nothing here (the trainer reports it)."""
    if not model:
        return {}
    from ..errors import UnknownNameError as _Unknown
    from ..models import model_info
    from .tasks import get_task

    try:
        task = get_task(model_info(model)["task"])
    except _Unknown:
        return {}
    hook = getattr(task, "hyp_defaults", None)
    return dict(hook(model, dict(overrides or {}))) if hook is not None else {}


def load_hyp(overrides: dict[str, Any] | str | os.PathLike | None = None, source: str = "hyp",
             model: str | None = None) -> dict[str, Any]:
    """Defaults updated with ``overrides`` (a mapping or a YAML file); unknown names and bad values
    raise an error naming the field, with close matches for typos.  With ``model``, its task's
    own hyper-parameters (:func:`model_hyp`) are known names too and their defaults are filled in,
    so the result is every value the training of ``model`` uses; a name set in ``overrides``
    always keeps its value, even when it equals the engine's default."""
    hyp = default_hyp()
    if overrides is None:
        overrides = {}
    elif not isinstance(overrides, dict):
        source = str(overrides)
        overrides = read_yaml(overrides) or {}
        if not isinstance(overrides, dict):
            raise ConfigError(source, "<root>", "must be a mapping of hyper-parameter -> value")
    extra = model_hyp(model, overrides)
    known = {**hyp, **extra}
    for key in overrides:
        if key not in known:
            raise UnknownNameError(f"hyper-parameter (in {source})", key, list(known))
    hyp.update(extra)
    hyp.update(overrides)
    _validate(hyp, source)
    for key, default in extra.items():  # the task's names: numbers where the recipe has numbers
        value = hyp[key]
        if isinstance(default, (int, float)) and not isinstance(default, bool) and \
                (isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0):
            raise ConfigError(source, key, f"{value!r} is not a non-negative number")
    if hyp["lr0"] == "auto":
        hyp["lr0"] = _AUTO_LR[hyp["optimizer"]]
    return hyp


def _validate(hyp: dict[str, Any], source: str) -> None:
    if hyp["optimizer"] not in OPTIMIZERS:
        raise UnknownNameError(f"optimizer (in {source})", hyp["optimizer"], list(OPTIMIZERS))
    if hyp["scheduler"] not in SCHEDULERS:
        raise UnknownNameError(f"scheduler (in {source})", hyp["scheduler"], list(SCHEDULERS))
    if hyp["ema"] not in (True, False):
        raise ConfigError(source, "ema", f"{hyp['ema']!r} must be true or false")
    ranges = {"lrf": (0, 1), "momentum": (0, 1), "warmup_momentum": (0, 1), "label_smoothing": (0, 1),
              "ema_decay": (0, 1), "translate": (0, 0.5), "fliplr": (0, 1), "flipud": (0, 1), "hsv_v": (0, 1),
              "weight_decay": (0, 1), "warmup_epochs": (0, None), "warmup_bias_lr": (0, None), "nbs": (1, None),
              "clip_grad": (0, None)}
    if hyp["lr0"] != "auto":
        ranges["lr0"] = (0, None)
    for key, (lo, hi) in ranges.items():
        value = hyp[key]
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(source, key, f"{value!r} is not a number")
        if value < lo or (hi is not None and value > hi):
            span = f"between {lo} and {hi}" if hi is not None else f"at least {lo}"
            raise ConfigError(source, key, f"{value!r} is out of range", f"use a value {span}")
    if hyp["lr0"] != "auto" and hyp["lr0"] <= 0:
        raise ConfigError(source, "lr0", "must be positive")
