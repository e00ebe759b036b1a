"""TensorBoard event files in the run folder (``tensorboard --logdir runs/train``)."""

from __future__ import annotations

from pathlib import Path

from ... import events as ev
from ...errors import require
from . import register_logger


@register_logger("tensorboard")
class TensorBoardLogger:
    def __init__(self, run_dir: Path) -> None:
        require("tensorboard", "notebook", "TensorBoard logs")
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(log_dir=str(run_dir))

    def __call__(self, event: ev.Event) -> None:
        p, w = event.payload, self.writer
        if event.name == ev.TRAIN_BATCH:
            w.add_scalar("train/loss", p["loss"], p.get("global_step", p["step"]))
            w.add_scalar("train/lr", p["lr"], p.get("global_step", p["step"]))
        elif event.name == ev.EPOCH_END:
            w.add_scalar("epoch/train_loss", p["train_loss"], p["epoch"])
            w.add_scalar("epoch/fitness", p["fitness"], p["epoch"])
            for key, value in p["metrics"].items():
                w.add_scalar(f"val/{key}", value, p["epoch"])
        elif event.name == ev.MODEL_SUMMARY:
            w.add_text("model", ", ".join(f"{k}: {p[k]}" for k in ("name", "layers", "parameters", "flops")))
        elif event.name in (ev.TRAIN_END, ev.TRAIN_ERROR):
            w.flush()

    def close(self) -> None:
        self.writer.close()
