"""What a training run reported, folded from engine events into plain data.

:class:`TrainingHistory` is the model behind the dashboard: a subscriber that keeps every
number a view needs (it holds no widgets), so the same history drives the live widget, its
static PNG and a report that replays a recorded list of events.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from tango_core import events as ev


class TrainingHistory:
    """Subscribe with ``bus.subscribe("*", history)`` or feed events with :meth:`replay`."""

    def __init__(self) -> None:
        self.system: dict[str, Any] = {}
        self.model: dict[str, Any] = {}
        self.datasets: dict[str, dict[str, Any]] = {}
        self.start: dict[str, Any] | None = None
        self.start_time: float | None = None
        self.now: float | None = None
        #: one row per optimiser step: x (fractional epoch), loss, losses, lr
        self.batches: list[dict[str, Any]] = []
        #: one row per epoch: epoch, train_loss, metrics, fitness, epoch_time
        self.epochs: list[dict[str, Any]] = []
        self.val: list[dict[str, Any]] = []
        self.plots: dict[str, Any] = {}
        self.end: dict[str, Any] | None = None
        self.error: str | None = None
        self.log: list[str] = []
        self.total_epochs: int | None = None
        self.epoch: int | None = None
        self.step: int | None = None
        self.total_step: int | None = None
        self._first_epoch: int | None = None

    # --- folding events --------------------------------------------------------------------
    def __call__(self, event: ev.Event) -> None:
        handler = getattr(self, f"_on_{event.name}", None)
        self.now = event.time
        if handler is not None:
            handler(event.payload, event.time)

    def replay(self, events: Iterable[ev.Event]) -> TrainingHistory:
        for event in events:
            self(event)
        return self

    def _on_system(self, p: dict, t: float) -> None:
        self.system = dict(p)

    def _on_model_summary(self, p: dict, t: float) -> None:
        self.model = dict(p)

    def _on_dataset_summary(self, p: dict, t: float) -> None:
        self.datasets[str(p["split"])] = dict(p)

    def _on_autobatch(self, p: dict, t: float) -> None:
        self.log.append(f"auto-batch: batch size {p['batch_size']} on {p['device']}")

    def _on_train_start(self, p: dict, t: float) -> None:
        self.start, self.start_time = dict(p), t
        self.total_epochs = int(p["epochs"])
        self.end, self.error = None, None
        resumed = f", resumed at epoch {p['start_epoch']}" if p.get("start_epoch") else ""
        self.log.append(f"training started: {p['epochs']} epochs, batch {p['batch_size']} on {p['device']}{resumed}")

    def _seen_epoch(self, epoch: int) -> None:
        if self._first_epoch is None:
            self._first_epoch = int(epoch)
        self.epoch = int(epoch)

    def _on_epoch_start(self, p: dict, t: float) -> None:
        self._seen_epoch(p["epoch"])
        self.total_epochs = int(p["total_epochs"])

    def _on_train_loss(self, p: dict, t: float) -> None:
        self._seen_epoch(p["epoch"])
        self.total_epochs = int(p["total_epochs"])
        self.step, self.total_step = int(p["step"]), max(1, int(p["total_step"]))
        self.batches.append({
            "x": self.epoch + self.step / self.total_step,
            "loss": float(p["loss"]),
            "losses": {k: float(v) for k, v in (p.get("losses") or {}).items()},
            "lr": float(p["lr"]),
        })

    def _on_val_accuracy(self, p: dict, t: float) -> None:
        self.val.append({"epoch": int(p["epoch"]), "metrics": dict(p["metrics"]), "fitness": p["fitness"]})

    def _on_val_plots(self, p: dict, t: float) -> None:
        self.plots = dict(p)

    def _on_epoch_summary(self, p: dict, t: float) -> None:
        self._seen_epoch(p["epoch"])
        self.epochs.append({k: p[k] for k in ("epoch", "train_loss", "metrics", "fitness", "epoch_time")})

    def _on_checkpoint(self, p: dict, t: float) -> None:
        self.log.append(f"checkpoint ({p['kind']}) at epoch {p['epoch']}: {p['path']}")

    def _on_oom_retry(self, p: dict, t: float) -> None:
        self.log.append(f"out of memory at epoch {p['epoch']}: batch {p['old_batch_size']} -> "
                        f"{p['new_batch_size']}, resumed from the last checkpoint")

    def _on_early_stop(self, p: dict, t: float) -> None:
        self.log.append(f"early stop at epoch {p['epoch']}: best fitness {p['best_fitness']:.4g} at epoch "
                        f"{p['best_epoch']}, no improvement for {p['patience']} epochs")

    def _on_train_end(self, p: dict, t: float) -> None:
        self.end = dict(p)
        self.log.append(f"training finished after {p['epochs_run']} epochs: best model {p['best_model']}")

    def _on_train_error(self, p: dict, t: float) -> None:
        self.error = str(p["error"])
        self.log.append(f"training failed: {self.error}")

    # --- derived numbers --------------------------------------------------------------------
    @property
    def fraction(self) -> float:
        """Share of this run's steps done, 0..1 (1 once training ended)."""
        if self.end is not None:
            return 1.0
        if self.total_epochs is None or self.epoch is None or self._first_epoch is None:
            return 0.0
        start = int((self.start or {}).get("start_epoch") or 0)
        first = self._first_epoch
        # epochs may be numbered from 0 or 1; what matters is how many this run has done
        epochs_this_run = max(1, self.total_epochs - start)
        done = self.epoch - first
        if self.step is not None and self.total_step:
            done += min(self.step, self.total_step) / self.total_step
        elif self.epochs and self.epochs[-1]["epoch"] == self.epoch:
            done += 1
        return max(0.0, min(1.0, done / epochs_this_run))

    @property
    def elapsed(self) -> float | None:
        if self.start_time is None or self.now is None:
            return None
        return max(0.0, self.now - self.start_time)

    @property
    def eta(self) -> float | None:
        """Seconds left at the rate so far (None until there is a rate)."""
        f, elapsed = self.fraction, self.elapsed
        if elapsed is None or f <= 0.0 or self.end is not None:
            return None if self.end is None else 0.0
        return elapsed * (1.0 - f) / f

    def loss_names(self) -> list[str]:
        names: dict[str, None] = {}
        for row in self.batches:
            for key in row["losses"]:
                names.setdefault(key, None)
        return list(names)

    def metric_names(self) -> list[str]:
        names: dict[str, None] = {}
        for row in self.val or self.epochs:
            for key, value in row["metrics"].items():
                if isinstance(value, (int, float)):
                    names.setdefault(key, None)
        return list(names)

    def val_rows(self) -> list[dict[str, Any]]:
        """Validation metrics per epoch, from VAL_END or else from EPOCH_END."""
        return self.val if self.val else [r for r in self.epochs if r.get("metrics")]

    @staticmethod
    def val_x(row: dict[str, Any]) -> float:
        """Where a validation row sits on the batch curves' axis: at the end of its epoch."""
        return row["epoch"] + 1


def format_seconds(seconds: float | None) -> str:
    if seconds is None:
        return "--:--"
    seconds = int(round(seconds))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m:02d}:{s:02d}"


def thin(xs: list, ys: list, max_points: int) -> tuple[list, list]:
    """Keep at most ``max_points`` evenly spaced points (the last one always), so long runs
    stay cheap to send to the browser."""
    n = len(xs)
    if n <= max_points:
        return list(xs), list(ys)
    stride = n / max_points
    idx = sorted({int(i * stride) for i in range(max_points - 1)} | {n - 1})
    return [xs[i] for i in idx], [ys[i] for i in idx]
