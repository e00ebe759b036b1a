"""Checkpoints: ``best.pt`` (weights to deploy) and ``last.pt`` (those plus everything needed to
resume exactly: raw model, optimiser, EMA, RNG states, epoch, step, history, arguments).

Both are tango weights files (see tango_core.models.weights), written atomically, so a process
killed mid-write leaves the previous file intact, and both load with ``weights_only=True``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from .._io import atomic_write_bytes
from ..errors import DataError
from ..models.weights import FORMAT, VERSION, read_weights, to_bytes


def rng_state() -> dict[str, Any]:
    state: dict[str, Any] = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def write(path: str | os.PathLike, weights: dict[str, torch.Tensor], meta: dict[str, Any],
          train_state: dict[str, Any] | None = None) -> Path:
    payload = {"format": FORMAT, "version": VERSION, **meta, "state_dict": weights}
    if train_state is not None:
        payload["train_state"] = train_state
    return atomic_write_bytes(path, to_bytes(payload))


def read_train_state(path: str | os.PathLike) -> dict[str, Any]:
    data = read_weights(path)
    if "train_state" not in data:
        raise DataError(path, "holds weights only, not a training state to resume",
                        "resume from a run's weights/last.pt, or start a new run with weights=<this file>")
    return data


def cpu_state(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().to("cpu", copy=True) for k, v in module.state_dict().items()}
