"""Exact parameter and FLOP counts of a config, measured on the meta device (no memory, no data).

The counts are stored in each config as ``measured:`` (80 classes, 640 x 640, FLOPs with a
multiply-add counted as two, as ``torch.utils.flop_counter`` and the YOLO papers' "GFLOPs" do), so
that registering the models costs nothing; the tests re-measure and compare.  After changing a
config, refresh the stored counts with ``python -m tango_core.models.yolo._measure``.
"""

from __future__ import annotations

import re
import sys
from typing import Any

import torch
from torch.utils.flop_counter import FlopCounterMode

from ._builder import CONFIG_DIR, YoloModel, load_config


def _flops(model: torch.nn.Module, size: int) -> int:
    with FlopCounterMode(display=False) as counter:
        model(torch.zeros(1, model.in_channels, size, size))
    return int(counter.get_total_flops())


@torch.no_grad()
def measure(cfg: dict[str, Any], num_classes: int = 80, size: int = 640, train_flops: bool = True) -> dict[str, Any]:
    """``params`` / ``flops`` of the deploy graph, ``train_params`` / ``train_flops`` of the
    training graph (auxiliary branch included, nothing fused; ``train_flops=False`` skips that
    count, the slowest)."""
    with torch.device("meta"):
        model = YoloModel(cfg, num_classes)
        deployed = model.deploy()
        model.train()
        return {
            "strides": [int(s) for s in deployed.strides],
            "params": sum(p.numel() for p in deployed.parameters()),
            "flops": _flops(deployed, size),
            "train_params": sum(p.numel() for p in model.parameters()),
            **({"train_flops": _flops(model, size)} if train_flops else {}),
        }


def write_measured() -> list[str]:
    """Rewrite the ``measured:`` line of every config file; returns the names updated."""
    changed = []
    for path in sorted(CONFIG_DIR.glob("*.yaml")):
        counts = measure(load_config(path))
        line = "measured: {" + ", ".join(f"{k}: {v}" for k, v in counts.items()) + "}  # 80 classes, 640x640"
        line = line.replace("'", "")
        text = path.read_text(encoding="utf-8")
        if re.search(r"^measured:.*$", text, flags=re.M):
            new = re.sub(r"^measured:.*$", line, text, flags=re.M)
        else:
            new = re.sub(r"^(act:.*|head_block:.*)$", lambda m, line=line: m.group(1) + "\n" + line, text, count=1, flags=re.M)
        if new != text:
            from ..._io import atomic_write_text

            atomic_write_text(path, new)
            changed.append(path.stem)
    return changed


if __name__ == "__main__":  # pragma: no cover - maintenance entry point
    sys.stdout.write("updated: " + ", ".join(write_measured()) + "\n")
