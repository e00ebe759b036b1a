"""Weights files: tango writes them, and reads them (or a user's plain state dict) safely.

Files are read with ``torch.load(..., weights_only=True)``, so a weights file cannot run code.
tango's own format is a plain dict: ``{"format": "tango.weights", "version": 1, "model": <name>,
"num_classes", "in_channels", "state_dict", ...metadata such as classes and preprocessing}``.
A training checkpoint (``last.pt``) holds the same dict plus the optimiser state, so it loads too.
"""

from __future__ import annotations

import io
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from .._io import atomic_write_bytes
from ..errors import DataError

FORMAT = "tango.weights"
VERSION = 1
_PREFIXES = ("module.", "_orig_mod.")  # DataParallel / torch.compile wrappers


@dataclass
class LoadReport:
    """What :func:`load_weights` did: keys loaded, and keys left as initialised (with why)."""

    path: str
    loaded: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    shape_mismatch: list[str] = field(default_factory=list)
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def complete(self) -> bool:
        return not (self.missing or self.unexpected or self.shape_mismatch)


def save_weights(model: nn.Module, path: str | os.PathLike, **meta: Any) -> Path:
    """Write the model's weights and ``meta`` (plain data only) atomically."""
    state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
    payload = {"format": FORMAT, "version": VERSION, "model": getattr(model, "tango_name", None),
               **_shape_meta(state), **meta, "state_dict": state}
    return atomic_write_bytes(path, to_bytes(payload))


def to_bytes(obj: Any) -> bytes:
    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


def read_weights(path: str | os.PathLike) -> dict[str, Any]:
    """Read a weights file into tango's dict form (a bare state dict gets empty metadata)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(path, "weights file not found", "give the path of a .pt file saved by tango or torch.save")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # pickle errors come in many types; all mean "not safely readable"
        raise DataError(path, f"cannot be read as a weights file ({type(exc).__name__}: {str(exc)[:300]})",
                        "weights are loaded with weights_only=True: save a state_dict with torch.save, "
                        "not a pickled model object") from exc
    if isinstance(obj, dict) and obj.get("format") == FORMAT:
        return obj
    if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
        return {k: v for k, v in obj.items()}
    if isinstance(obj, dict) and obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
        return {"state_dict": obj}
    raise DataError(path, "holds no state dict (expected a dict of tensors or a dict with 'state_dict')",
                    "save weights with torch.save(model.state_dict(), path)")


def load_weights(model: nn.Module, path: str | os.PathLike, strict: bool = True) -> LoadReport:
    """Copy the weights in ``path`` into ``model``.

    ``strict=True`` (the default for ``create_model(..., weights=...)``) refuses a file that does not
    match the model exactly, naming the first differing keys.  ``strict=False`` (transfer learning)
    loads every tensor whose name and shape match and reports the rest, e.g. a classifier head
    with another class count.
    """
    data = read_weights(path)
    source = _strip_prefixes(data["state_dict"])
    target = model.state_dict()
    report = LoadReport(str(path), meta={k: v for k, v in data.items() if k != "state_dict"})
    matched = {}
    for key, value in source.items():
        if key not in target:
            report.unexpected.append(key)
        elif target[key].shape != value.shape:
            report.shape_mismatch.append(f"{key}: file {tuple(value.shape)} vs model {tuple(target[key].shape)}")
        else:
            matched[key] = value
    report.missing = [k for k in target if k not in source]
    if strict and not report.complete:
        problems = [f"{len(v)} {what} (e.g. {v[0]})" for what, v in (
            ("keys with another shape", report.shape_mismatch), ("keys missing from the file", report.missing),
            ("keys the model does not have", report.unexpected)) if v]
        made_for = data.get("model")
        problem = f"does not match the model: {'; '.join(problems)}"
        if made_for:
            problem += f" (the file was saved from {made_for!r} with {data.get('num_classes')} classes)"
        raise DataError(path, problem, "use transfer learning (learning_type='transfer') to load the matching "
                                       "layers and train a new head, or pick the model the file was saved from")
    total = sum(v.numel() for v in target.values() if v.is_floating_point())
    found = sum(v.numel() for v in matched.values() if v.is_floating_point())
    if found < 0.5 * total:  # a head swap keeps most weights; a smaller share means another architecture
        raise DataError(path, f"only {found / max(total, 1):.0%} of the model's weights match the file",
                        f"is it the weights of another architecture (saved from {data.get('model') or 'unknown'})?")
    with torch.no_grad():
        for key, value in matched.items():
            target[key].copy_(value)
    report.loaded = list(matched)
    return report


def _strip_prefixes(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    out = {}
    for key, value in state.items():
        for prefix in _PREFIXES:
            if key.startswith(prefix):
                key = key[len(prefix):]
        out[key] = value
    return out


def _shape_meta(state: dict[str, torch.Tensor]) -> dict[str, Any]:
    """Class count and input channels read off the first and last weights, when they look like a classifier."""
    weights = [(k, v) for k, v in state.items() if k.endswith("weight") and v.ndim >= 2]
    if not weights:
        return {}
    meta = {}
    if weights[0][1].ndim == 4:
        meta["in_channels"] = int(weights[0][1].shape[1])
    if weights[-1][1].ndim == 2:
        meta["num_classes"] = int(weights[-1][1].shape[0])
    return meta
