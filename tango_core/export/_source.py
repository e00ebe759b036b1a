"""What is being exported: the model, and everything deploy code must know about its input and output.

A source is built from a module, a registry name or a weights file (tango's ``tango.weights``
dict, read with ``weights_only=True``).  :func:`prepare` makes the inference graph that every
format starts from: eval mode, re-parameterised (RepConv merged, auxiliary heads dropped) and
BatchNorm folded, on a copy so the caller's model is untouched.
"""

from __future__ import annotations

import copy
import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from ..errors import ConfigError, DataError

#: defaults when neither the weights file nor the caller says how images are normalised
IMAGENET_MEAN, IMAGENET_STD = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]
DETECTION_DEFAULTS = {"conf_threshold": 0.25, "iou_threshold": 0.45, "max_det": 300}


@dataclass
class Source:
    model: nn.Module
    name: str | None
    task: str
    class_names: list[str]
    imgsz: list[int] | None
    in_channels: int
    preprocess: dict[str, Any]
    checkpoint: str | None = None
    sha256: str | None = None
    detection: dict[str, Any] | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def describe(self) -> dict[str, Any]:
        return {"checkpoint": self.checkpoint, "sha256": self.sha256, "model": self.name}


def default_preprocess(task: str, given: dict[str, Any] | None = None, channels: int = 3) -> dict[str, Any]:
    """The normalisation deploy code applies: ``((uint8 * scale) - mean) / std`` after resizing.

    The vocabulary is the trainer's (``weights_meta()``): ``resize`` is ``squash`` (stretch to
    the input size) or ``letterbox`` (keep the aspect ratio, pad with ``pad_value``).
    """
    color, layout = ("L" if channels == 1 else "RGB"), "NCHW"
    if task == "detection":
        base = {"resize": "letterbox", "interpolation": "bilinear", "pad_value": 114, "scale": 1 / 255,
                "mean": [0.0] * channels, "std": [1.0] * channels}
    else:
        mean = IMAGENET_MEAN if channels == 3 else [round(sum(IMAGENET_MEAN) / 3, 3)]
        std = IMAGENET_STD if channels == 3 else [round(sum(IMAGENET_STD) / 3, 3)]
        base = {"resize": "squash", "interpolation": "bilinear", "pad_value": 0, "scale": 1 / 255,
                "mean": list(mean), "std": list(std)}
    base.update(color=color, layout=layout)
    for key, value in (given or {}).items():
        if key not in base:
            raise ConfigError("preprocess", key, "unknown field", f"known fields: {sorted(base)}")
        base[key] = list(value) if isinstance(value, tuple) else value
    if base["resize"] == "resize":  # an alias: stretching to the input size
        base["resize"] = "squash"
    if base["resize"] not in ("squash", "letterbox"):
        raise ConfigError("preprocess", "resize", f"{base['resize']!r} is not a resize mode",
                          "use squash or letterbox")
    return base


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _first(*values: Any) -> Any:
    return next((v for v in values if v not in (None, [], {})), None)


def _model_meta(name: str | None) -> dict[str, Any]:
    if not name:
        return {}
    from ..models import model_info

    return model_info(name)


def load_source(model: nn.Module | str | os.PathLike, *, task: str | None = None,
                class_names: list[str] | None = None, imgsz: Any = None, preprocess: dict[str, Any] | None = None,
                model_name: str | None = None, detection: dict[str, Any] | None = None) -> Source:
    """Resolve ``model`` (a module, a registry name or a weights file) and its metadata.

    Explicit arguments win over what the weights file records, which wins over registry metadata.
    """
    checkpoint = sha = None
    meta: dict[str, Any] = {}
    if isinstance(model, nn.Module):
        module, name = model, model_name or getattr(model, "tango_name", None)
        meta = dict(getattr(model, "tango_meta", None) or {})
    elif isinstance(model, (str, os.PathLike)) and Path(model).suffix in (".pt", ".pth") or Path(str(model)).is_file():
        path = Path(model)
        from ..models.weights import read_weights

        meta = read_weights(path)
        name = model_name or meta.get("model")
        if not name:
            raise DataError(path, "does not say which model it holds (no 'model' field)",
                            "export the module itself, or pass model_name='<registry name>'")
        from ..models import create_model, model_info
        from ..models.weights import load_weights

        info = model_info(name)
        num_classes = meta.get("num_classes") or len(meta.get("classes") or []) or info["num_classes"]
        module = create_model(name, num_classes=num_classes, in_channels=meta.get("in_channels", 3),
                              **(meta.get("model_kwargs") or {}))
        load_weights(module, path)
        checkpoint, sha = str(path), _sha256(path)
    elif isinstance(model, str):
        from ..models import create_model, list_models

        if model not in list_models():
            raise DataError(model, "is neither a weights file nor a registered model",
                            "give the path of a .pt file, or a name from list_models()")
        name = model
        module = create_model(name, num_classes=len(class_names) if class_names else None)
    else:
        raise ConfigError("export", "model", f"cannot export a {type(model).__name__}",
                          "give an nn.Module, a weights file or a registered model name")

    info = _model_meta(name)
    task = _first(task, meta.get("task"), info.get("task"), "classification")
    classes = _first(class_names, meta.get("classes"), meta.get("class_names"))
    num_classes = _num_outputs_hint(module, meta, info)
    if classes is None:
        classes = [str(i) for i in range(num_classes)] if num_classes else []
    size = _first(imgsz, meta.get("imgsz"), meta.get("input_size"), info.get("input_size"))
    if size is not None and not isinstance(size, (list, tuple)):
        size = [int(size), int(size)]
    channels = int(meta.get("in_channels") or _in_channels(module))
    det = None
    if task == "detection":
        det = dict(DETECTION_DEFAULTS)
        det["strides"] = _first(meta.get("strides"), info.get("strides"), _tensor_list(getattr(getattr(module, "head", module), "stride", None)))
        det["anchors"] = _first(meta.get("anchors"), info.get("anchors"))
        det.update(detection or {})
    return Source(model=module, name=name, task=task, class_names=list(classes),
                  imgsz=list(size) if size is not None else None, in_channels=channels,
                  preprocess=default_preprocess(task, _first(preprocess, meta.get("preprocess")), channels),
                  checkpoint=checkpoint, sha256=sha, detection=det)


def _in_channels(module: nn.Module) -> int:
    first = next((m for m in module.modules() if isinstance(m, nn.Conv2d)), None)
    return first.in_channels if first is not None else 3


def _tensor_list(value: Any) -> list[float] | None:
    if value is None:
        return None
    if isinstance(value, torch.Tensor):
        return [float(v) for v in value.flatten().tolist()]
    if isinstance(value, (int, float)):
        return [float(value)]
    return [float(v) for v in value]


def _num_outputs_hint(module: nn.Module, meta: dict[str, Any], info: dict[str, Any]) -> int | None:
    for value in (meta.get("num_classes"), getattr(module, "num_classes", None), getattr(module, "nc", None)):
        if isinstance(value, int) and value > 0:
            return value
    linear = [m for m in module.modules() if isinstance(m, nn.Linear)]
    if linear and info.get("task", "classification") == "classification":
        return linear[-1].out_features
    return info.get("num_classes")


# --- the inference graph ------------------------------------------------------------------------------
def prepare(source: Source, *, fuse: bool = True, reparameterize: bool = True) -> tuple[nn.Module, list[str]]:
    """A copy of the model ready to export, and notes on what was done to it."""
    model = copy.deepcopy(source.model).float().eval()
    notes = []
    if reparameterize:
        model, done = _reparameterize(model)
        model = model.float().eval()
        if done:
            notes.append(done)
    if fuse:
        model, done = _fuse(model)
        if done:
            notes.append(done)
    for p in model.parameters():
        p.requires_grad_(False)
    return model, notes


def _reparameterize(model: nn.Module) -> tuple[nn.Module, str | None]:
    """Returns (the inference model, a note); ``deploy()`` may change the model in place or return a new one."""
    for attr in ("reparameterize", "deploy"):
        fn = getattr(model, attr, None)
        if callable(fn):
            out = fn()
            return (out if isinstance(out, nn.Module) else model), f"re-parameterised with {type(model).__name__}.{attr}()"
    return model, None


def _fuse(model: nn.Module) -> tuple[nn.Module, str | None]:
    fn = getattr(model, "fuse", None)
    if callable(fn):
        out = fn()
        return (out if isinstance(out, nn.Module) else model), f"BatchNorm folded by {type(model).__name__}.fuse()"
    if not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules()):
        return model, None
    try:
        from torch.fx.experimental.optimization import fuse as fx_fuse

        fused = fx_fuse(model, inplace=False)
    except Exception as exc:  # noqa: BLE001  symbolic tracing fails on data-dependent control flow
        count = 0
        for m in model.modules():
            if m is not model and callable(getattr(m, "fuse", None)):
                m.fuse()
                count += 1
        if count:
            return model, f"BatchNorm folded in {count} blocks by their fuse()"
        return model, f"BatchNorm not folded (the model cannot be traced: {type(exc).__name__})"
    for attr in ("tango_name", "tango_meta", "stride", "nc", "names"):
        if hasattr(model, attr):
            setattr(fused, attr, getattr(model, attr))
    return fused, "BatchNorm folded into convolutions (torch.fx)"
