"""Every engine event, named and documented in one place, and the bus that carries them.

The payloads follow the original TANGO progress schema (``status_update`` ids such as
``system``, ``model_summary``, ``train_loss``, ``epoch_summary``, ``train_end``) so that
dashboards, loggers and the CLI subscribe to one documented contract.  ``emit`` checks that
the documented fields are present, so a renamed field fails loudly in tests.

Subscribers are plain callables ``fn(event)``; widgets, CSV / TensorBoard loggers, the
console progress bar and Optuna pruning are all subscribers.
"""

from __future__ import annotations

import threading
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

# --- event names -----------------------------------------------------------------------------
# project
STAGE_STATUS = "stage_status"
# training (payload fields in EVENT_FIELDS)
SYSTEM_INFO = "system"
MODEL_SUMMARY = "model_summary"
DATASET_SUMMARY = "dataset_summary"
AUTOBATCH = "autobatch"
TRAIN_START = "train_start"
EPOCH_START = "epoch_start"
TRAIN_BATCH = "train_loss"
VAL_END = "val_accuracy"
VAL_PLOTS = "val_plots"
EPOCH_END = "epoch_summary"
CHECKPOINT = "checkpoint"
OOM_RETRY = "oom_retry"
EARLY_STOP = "early_stop"
TRAIN_END = "train_end"
TRAIN_ERROR = "train_error"
# export / deploy
EXPORT_START = "export_start"
EXPORT_END = "export_end"
VERIFY_END = "verify_end"
BENCHMARK_ROW = "benchmark_row"
EXPORT_SELECTED = "export_selected"
DEPLOY_END = "deploy_end"
# AutoNN
TRIAL_START = "trial_start"
TRIAL_REPORT = "trial_report"
TRIAL_PRUNED = "trial_pruned"
TRIAL_COMPLETE = "trial_complete"
STUDY_END = "study_end"

#: name -> (description, required payload fields)
EVENT_FIELDS: dict[str, tuple[str, tuple[str, ...]]] = {
    STAGE_STATUS: ("a project stage changed status", ("stage", "status")),
    SYSTEM_INFO: ("software and hardware the run uses", ("torch", "device", "cpu_count", "cuda")),
    MODEL_SUMMARY: ("the model about to be trained", ("name", "layers", "parameters", "gradients", "flops")),
    DATASET_SUMMARY: (
        "one split of the dataset as loaded",
        ("split", "total", "found", "missing", "empty", "corrupted", "classes"),
    ),
    AUTOBATCH: ("batch size chosen by measuring memory", ("batch_size", "budget_bytes", "per_sample_bytes", "device")),
    TRAIN_START: ("training begins", ("epochs", "batch_size", "device", "run_dir", "start_epoch")),
    EPOCH_START: ("an epoch begins", ("epoch", "total_epochs", "lr")),
    TRAIN_BATCH: (
        "one optimiser step (throttle in views)",
        ("epoch", "total_epochs", "step", "total_step", "loss", "losses", "lr", "time"),
    ),
    VAL_END: ("validation metrics of one epoch", ("epoch", "metrics", "fitness", "time")),
    VAL_PLOTS: (
        "evaluation pictures for dashboards and reports; optional keys: confusion_matrix (rows = true, "
        "columns = predicted class), pr_curve ({recall: [...], precision: [[...] per class], ap: [per class]}), "
        "samples ([{file | image, label, pred, score, boxes: [[cls, x1, y1, x2, y2]], "
        "pred_boxes: [[cls, x1, y1, x2, y2, score]]}])",
        ("epoch", "class_names"),
    ),
    EPOCH_END: ("summary of one epoch", ("epoch", "train_loss", "metrics", "fitness", "epoch_time", "total_time")),
    CHECKPOINT: ("a checkpoint was written", ("path", "kind", "epoch")),
    OOM_RETRY: ("out of memory: retrying from the last checkpoint", ("old_batch_size", "new_batch_size", "epoch")),
    EARLY_STOP: ("no better fitness for `patience` epochs", ("epoch", "best_epoch", "best_fitness", "patience")),
    TRAIN_END: ("training finished", ("best_model", "size_bytes", "best_fitness", "epochs_run", "time")),
    TRAIN_ERROR: ("training failed", ("error",)),
    EXPORT_START: ("an export begins", ("format", "options")),
    EXPORT_END: ("an export finished", ("format", "path", "size_bytes", "time")),
    VERIFY_END: ("an export was compared with PyTorch", ("format", "passed", "metrics")),
    BENCHMARK_ROW: ("one row of the export benchmark (error set when the row failed)",
                    ("label", "format", "precision", "inference_ms", "error")),
    EXPORT_SELECTED: ("the target's fastest verified candidate was chosen (rows: every candidate's latency, "
                      "metric and error)", ("target", "chosen", "path", "inference_ms", "rows")),
    DEPLOY_END: ("a deploy package was generated (tango_core.deploy also sends kind, runtime, files: the "
                 "number of files, memory_mi: the memory request from the measured peak)", ("target", "path")),
    TRIAL_START: ("an HPO / NAS trial begins; optional: arch (NAS: the architecture as data)",
                  ("study", "trial", "params")),
    TRIAL_REPORT: ("an intermediate value of a trial (step: the epoch; value: its fitness)",
                   ("study", "trial", "step", "value")),
    TRIAL_PRUNED: ("a trial was pruned; optional: reason (pruner | diverged)", ("study", "trial", "step")),
    TRIAL_COMPLETE: ("a trial finished: state complete | pruned | fail, values None unless complete; "
                     "optional: user_attrs", ("study", "trial", "values", "params", "state")),
    STUDY_END: ("a study finished: best is the best trial's summary {trial, values, params, state}, or the "
                "Pareto front (a list of them) with several objectives; optional: storage, objectives",
                ("study", "best")),
}


@dataclass(frozen=True)
class Event:
    name: str
    payload: dict[str, Any]
    time: float = field(default_factory=time.time)

    def __getitem__(self, key: str) -> Any:
        return self.payload[key]


Callback = Callable[[Event], None]


class EventBus:
    """A synchronous publish / subscribe bus.  ``"*"`` subscribes to every event."""

    def __init__(self) -> None:
        self._subs: dict[str, list[Callback]] = defaultdict(list)
        self._lock = threading.Lock()

    def subscribe(self, name: str, callback: Callback) -> Callable[[], None]:
        if name != "*" and name not in EVENT_FIELDS:
            from .errors import UnknownNameError

            raise UnknownNameError("event", name, list(EVENT_FIELDS))
        with self._lock:
            self._subs[name].append(callback)

        def unsubscribe() -> None:
            with self._lock:
                if callback in self._subs[name]:
                    self._subs[name].remove(callback)

        return unsubscribe

    def emit(self, name: str, /, **payload: Any) -> Event:  # "/": payloads may have a "name" field
        spec = EVENT_FIELDS.get(name)
        if spec is None:
            from .errors import UnknownNameError

            raise UnknownNameError("event", name, list(EVENT_FIELDS))
        missing = [f for f in spec[1] if f not in payload]
        if missing:
            raise ValueError(f"event {name!r} is missing documented fields {missing}")
        event = Event(name, payload)
        with self._lock:
            subs = list(self._subs.get(name, ())) + list(self._subs.get("*", ()))
        for cb in subs:
            cb(event)
        return event


class Recorder:
    """A subscriber that keeps every event (tests, reports, replay into a widget)."""

    def __init__(self, bus: EventBus | None = None, name: str = "*") -> None:
        self.events: list[Event] = []
        if bus is not None:
            bus.subscribe(name, self)

    def __call__(self, event: Event) -> None:
        self.events.append(event)

    def names(self) -> list[str]:
        return [e.name for e in self.events]

    def of(self, name: str) -> list[Event]:
        return [e for e in self.events if e.name == name]


class Throttle:
    """Wrap a callback so it runs at most ``rate_hz`` times a second (the last event always wins on flush)."""

    def __init__(self, callback: Callback, rate_hz: float = 4.0) -> None:
        self.callback, self.interval = callback, 1.0 / rate_hz
        self._last = float("-inf")
        self._pending: Event | None = None

    def __call__(self, event: Event) -> None:
        now = time.monotonic()
        if now - self._last >= self.interval:
            self._last, self._pending = now, None
            self.callback(event)
        else:
            self._pending = event

    def flush(self) -> None:
        if self._pending is not None:
            event, self._pending = self._pending, None
            self._last = time.monotonic()
            self.callback(event)
