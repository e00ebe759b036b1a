"""Pruning is a training subscriber: it reports each epoch's fitness to the trial and raises
``optuna.TrialPruned`` from inside the trainer when the pruner says so, or at once when the loss
diverges (a trial whose loss explodes will not come back, so it gets no further epochs)."""

from __future__ import annotations

import math

from .. import events as ev

#: a batch loss this many times the trial's first loss means the trial diverged
DIVERGENCE_FACTOR = 20.0


class TrialReporter:
    """Subscribe to a trial's training bus (``bus.subscribe("*", reporter)``)."""

    def __init__(self, trial, bus: ev.EventBus, study: str, prune: bool = True,
                 divergence_factor: float = DIVERGENCE_FACTOR) -> None:
        self.trial, self.bus, self.study = trial, bus, study
        self.prune, self.divergence_factor = prune, divergence_factor
        self.first_loss: float | None = None
        self.last_epoch: int | None = None
        self.reports: list[tuple[int, float]] = []

    def __call__(self, event: ev.Event) -> None:
        if event.name == ev.TRAIN_BATCH:
            self._check_loss(float(event["loss"]), int(event["epoch"]))
        elif event.name == ev.EPOCH_START:
            self.last_epoch = int(event["epoch"])
        elif event.name == ev.VAL_END:
            self._report(int(event["epoch"]), float(event["fitness"]))

    def _report(self, epoch: int, fitness: float) -> None:
        import optuna

        self.reports.append((epoch, fitness))
        if self.prune:  # multi-objective trials (NAS) cannot report: Optuna prunes on one value
            self.trial.report(fitness, epoch)
        self.bus.emit(ev.TRIAL_REPORT, study=self.study, trial=self.trial.number, step=epoch, value=fitness)
        if self.prune and self.trial.should_prune():
            self.bus.emit(ev.TRIAL_PRUNED, study=self.study, trial=self.trial.number, step=epoch, reason="pruner",
                          value=fitness)
            raise optuna.TrialPruned(f"pruned at epoch {epoch} (fitness {fitness:.4g})")

    def _check_loss(self, loss: float, epoch: int) -> None:
        if self.first_loss is None and math.isfinite(loss):
            self.first_loss = max(loss, 1e-8)
        if not math.isfinite(loss) or (self.first_loss and loss > self.divergence_factor * self.first_loss):
            self.diverged(epoch, loss)

    def diverged(self, epoch: int, loss: float) -> None:
        import optuna

        self.trial.set_user_attr("diverged", {"epoch": epoch, "loss": loss if math.isfinite(loss) else str(loss)})
        self.bus.emit(ev.TRIAL_PRUNED, study=self.study, trial=self.trial.number, step=epoch, reason="diverged",
                      loss=loss)
        raise optuna.TrialPruned(f"the loss diverged at epoch {epoch} ({loss:.4g})")


def is_divergence(exc: BaseException) -> bool:
    """The trainer stops on a non-finite loss with a TangoError saying so (before emitting the
    batch), which is a divergence to prune, not a failure."""
    from ..errors import TangoError

    return isinstance(exc, TangoError) and "loss became" in str(exc)
