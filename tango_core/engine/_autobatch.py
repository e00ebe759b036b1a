"""Memory: the batch size that fits a budget, measured, and the guard that turns "too big" into a retry.

On CUDA the peak of ``torch.cuda.max_memory_allocated`` around a forward + backward is measured.
On CPU, RSS is too noisy (allocator caches, other processes), so the activations autograd keeps
for the backward pass are counted exactly with ``saved_tensors_hooks``; parameters, gradients,
optimiser state and the EMA copy are added as a fixed cost.  A line through a few batch sizes
gives bytes per sample; a safety factor covers workspace and fragmentation.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import torch
import torch.nn as nn

from ..errors import TangoError

SAFETY = 1.25  # estimates are multiplied by this before comparing with the budget
DEFAULT_FRACTION = {"cuda": 0.6, "cpu": 0.5}  # of free GPU memory / available RAM
PROBE_SIZES = (2, 4, 8)  # batch norm needs 2+ samples


class OutOfMemory(TangoError, MemoryError):
    """A batch does not fit the memory budget (raised by tango's guard or translated from torch)."""

    def __init__(self, batch_size: int, needed: int | None, budget: int | None, detail: str = "") -> None:
        self.batch_size, self.needed, self.budget = batch_size, needed, budget
        what = f"batch {batch_size} needs ~{_mb(needed)}" if needed else f"batch {batch_size} ran out of memory"
        super().__init__(f"{what} of a {_mb(budget)} budget{f' ({detail})' if detail else ''}")


def _mb(n: int | None) -> str:
    return "unknown" if n is None else f"{n / 2**20:.0f} MB"


def is_oom_error(exc: BaseException) -> bool:
    if isinstance(exc, (OutOfMemory, torch.OutOfMemoryError, MemoryError)):
        return True
    msg = str(exc).lower()
    return isinstance(exc, RuntimeError) and ("out of memory" in msg or "can't allocate memory" in msg)


def default_budget(device: torch.device) -> int:
    if device.type == "cuda":
        free, _total = torch.cuda.mem_get_info(device)
        return int(free * DEFAULT_FRACTION["cuda"])
    import psutil

    return int(psutil.virtual_memory().available * DEFAULT_FRACTION["cpu"])


def fixed_bytes(model: nn.Module, optimizer: str, ema: bool) -> int:
    """Weights, gradients, optimiser state (1 buffer for SGD momentum, 2 for AdamW) and the EMA copy."""
    n = sum(p.numel() * p.element_size() for p in model.parameters())
    copies = 2 + (2 if optimizer == "AdamW" else 1) + (1 if ema else 0)
    return n * copies


class StepMeter:
    """Measures the memory one training step needs beyond the fixed cost (see the module docstring)."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.bytes = 0
        self._seen: set[int] = set()

    def _pack(self, t: torch.Tensor) -> torch.Tensor:
        try:
            storage = t.untyped_storage()
            key = storage.data_ptr()
            if key not in self._seen:
                self._seen.add(key)
                self.bytes += storage.nbytes()
        except (RuntimeError, NotImplementedError):  # opaque tensors (mkldnn): count their logical size
            self.bytes += t.numel() * t.element_size()
        return t

    @contextlib.contextmanager
    def measure(self) -> Iterator[StepMeter]:
        self.bytes, self._seen = 0, set()
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            base = torch.cuda.memory_allocated(self.device)
            yield self
            torch.cuda.synchronize(self.device)
            self.bytes = torch.cuda.max_memory_allocated(self.device) - base
        else:
            with torch.autograd.graph.saved_tensors_hooks(self._pack, lambda t: t):
                yield self


def fit_line(sizes: list[int], values: list[int]) -> tuple[float, float]:
    """Least-squares (intercept, slope) of bytes against batch size."""
    n = len(sizes)
    mx, my = sum(sizes) / n, sum(values) / n
    sxx = sum((x - mx) ** 2 for x in sizes)
    slope = sum((x - mx) * (y - my) for x, y in zip(sizes, values, strict=True)) / sxx if sxx else 0.0
    return my - slope * mx, max(slope, 1.0)


def measure_line(step: Callable[[int], None], device: torch.device,
                 sizes: tuple[int, ...] = PROBE_SIZES) -> tuple[float, float]:
    """Run ``step(batch_size)`` (forward + backward) under the meter at a few sizes; fit a line."""
    meter, values = StepMeter(device), []
    for b in sizes:
        with meter.measure():
            step(b)
        values.append(meter.bytes)
    return fit_line(list(sizes), values)


def choose_batch(fixed: int, intercept: float, slope: float, budget: int, max_batch: int) -> dict[str, Any]:
    """The largest power-of-two batch whose estimate, times the safety factor, fits ``budget``."""
    room = budget / SAFETY - fixed - intercept
    fits = int(room / slope + 1e-6) if room > 0 else 0  # the epsilon absorbs float rounding of exact fits
    batch = 1
    while batch * 2 <= min(fits, max_batch):
        batch *= 2
    return {"batch_size": batch, "fits": fits, "per_sample_bytes": int(slope),
            "fixed_bytes": int(fixed + intercept), "estimate_bytes": int(SAFETY * (fixed + intercept + slope * batch))}
