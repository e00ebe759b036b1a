"""AutoNN: Bayesian hyper-parameter search and target-aware architecture search on Optuna.

``tune()`` searches training hyper-parameters, ``search()`` searches architectures for accuracy
and latency on the target; both keep their study in an Optuna storage (SQLite in the project by
default, PostgreSQL for many machines) and report through the trial events of
:mod:`tango_core.events`.  Names are imported lazily: ``import tango_core.autonn`` does not
import Optuna or torch.
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "tune": "tango_core.autonn.hpo",
    "TuneResult": "tango_core.autonn.hpo",
    "search": "tango_core.autonn.nas",
    "SearchResult": "tango_core.autonn.nas",
    "load_result": "tango_core.autonn.nas",
    "NasSpace": "tango_core.autonn._nas_spaces",
    "list_spaces": "tango_core.autonn._nas_spaces",
    "register_space": "tango_core.autonn._nas_spaces",
    "measure_latency": "tango_core.autonn._latency",
    "LatencyPredictor": "tango_core.autonn._latency",
    "storage_url": "tango_core.autonn._storage",
    "study_events": "tango_core.autonn._study",
    "work": "tango_core.autonn._worker",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'tango_core.autonn' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


__all__ = sorted(_LAZY)
