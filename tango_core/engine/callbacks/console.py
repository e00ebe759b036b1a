"""Progress on the console or in a notebook (tqdm.auto): one bar per epoch, metrics as lines."""

from __future__ import annotations

from pathlib import Path

from ... import events as ev
from . import register_logger


def _fmt(metrics: dict) -> str:
    return "  ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in metrics.items())


@register_logger("console")
class ConsoleLogger:
    def __init__(self, run_dir: Path) -> None:
        from tqdm.auto import tqdm

        self.tqdm, self.bar = tqdm, None

    def _write(self, text: str) -> None:
        self.tqdm.write(text)

    def __call__(self, event: ev.Event) -> None:
        p = event.payload
        if event.name == ev.MODEL_SUMMARY:
            self._write(f"model {p['name']}: {p['layers']} layers, {p['parameters']:,} parameters, "
                        f"{p['flops'] / 1e9:.3g} GFLOPs")
            anchors = p.get("anchors")
            if anchors and anchors["refitted"]:
                self._write(f"anchors re-fitted to the {anchors['boxes']} training boxes: best possible recall "
                            f"{anchors['bpr_before']:.3f} -> {anchors['bpr']:.3f}")
        elif event.name == ev.AUTOBATCH:
            self._write(f"auto batch: {p['batch_size']} ({p['per_sample_bytes'] / 2**20:.1f} MB per image, "
                        f"budget {p['budget_bytes'] / 2**30:.1f} GB on {p['device']})")
        elif event.name == ev.TRAIN_START:
            self._write(f"training {p['epochs']} epochs from epoch {p['start_epoch']}, batch {p['batch_size']}, "
                        f"on {p['device']} -> {p['run_dir']}")
        elif event.name == ev.EPOCH_START:
            self.bar = self.tqdm(total=p.get("batches"), desc=f"epoch {p['epoch'] + 1}/{p['total_epochs']}",
                                 leave=False, mininterval=0.5)
        elif event.name == ev.TRAIN_BATCH and self.bar is not None:
            self.bar.update(1)
            self.bar.set_postfix(loss=f"{p['loss']:.4f}", lr=f"{p['lr']:.3g}", refresh=False)
        elif event.name == ev.EPOCH_END:
            if self.bar is not None:
                self.bar.close()
                self.bar = None
            self._write(f"epoch {p['epoch'] + 1}: loss {p['train_loss']:.4f}  {_fmt(p['metrics'])}  "
                        f"({p['epoch_time']:.1f}s)")
        elif event.name == ev.OOM_RETRY:
            self._write(f"out of memory at batch {p['old_batch_size']}: retrying with {p['new_batch_size']} "
                        f"from {p.get('resume_from', 'the last checkpoint')}")
        elif event.name == ev.EARLY_STOP:
            self._write(f"early stop: no improvement for {p['patience']} epochs (best epoch {p['best_epoch'] + 1})")
        elif event.name == ev.TRAIN_END:
            self._write(f"done in {p['time']:.1f}s: best fitness {p['best_fitness']:.4f} -> {p['best_model']}")
        elif event.name == ev.TRAIN_ERROR:
            self.close()
            self._write(f"training failed: {p['error']}")

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
