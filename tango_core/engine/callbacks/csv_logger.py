"""results.csv: one row per epoch (train loss, validation metrics, fitness, lr, times, batch)."""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

from ... import events as ev
from ..._io import atomic_write_text
from . import register_logger


@register_logger("csv")
class CSVLogger:
    def __init__(self, run_dir: Path) -> None:
        self.path = Path(run_dir) / "results.csv"
        self.rows: list[dict[str, Any]] = []

    def __call__(self, event: ev.Event) -> None:
        if event.name == ev.TRAIN_START and event["start_epoch"] > 0 and self.path.is_file():
            # a resumed run: keep the epochs the checkpoint covers, drop any written after it
            with self.path.open(newline="") as f:
                self.rows = [r for r in csv.DictReader(f) if int(r["epoch"]) < event["start_epoch"]]
        elif event.name == ev.EPOCH_END:
            p = event.payload
            row = {"epoch": p["epoch"], "train_loss": p["train_loss"], **p["metrics"], "fitness": p["fitness"],
                   "lr": p.get("lr"), "batch_size": p.get("batch_size"), "epoch_time": p["epoch_time"],
                   "total_time": p["total_time"]}
            self.rows.append(row)
            self._write()

    def _write(self) -> None:
        fields: list[str] = []
        for row in self.rows:
            fields += [k for k in row if k not in fields]
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=fields)
        writer.writeheader()
        writer.writerows(self.rows)
        atomic_write_text(self.path, buf.getvalue())

    def close(self) -> None:
        pass
