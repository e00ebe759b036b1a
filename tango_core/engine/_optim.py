"""Optimiser, learning-rate schedule with warm-up, and the exponential moving average of weights.

The schedule is a pure function of training progress in epochs (``epoch + batch / batches``), so
it needs no state of its own: resuming, or changing the batch size after running out of memory,
keeps the same curve.
"""

from __future__ import annotations

import copy
import math
from typing import Any

import torch
import torch.nn as nn


def build_optimizer(model: nn.Module, hyp: dict[str, Any], weight_decay: float) -> torch.optim.Optimizer:
    """Three parameter groups as in the original: weights with decay, norm weights and biases without."""
    decay, no_decay, bias = [], [], []
    norm_types = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.GroupNorm, nn.LayerNorm, nn.InstanceNorm2d)
    for module in model.modules():
        for pname, p in module.named_parameters(recurse=False):
            if not p.requires_grad:
                continue
            if pname == "bias":
                bias.append(p)
            elif isinstance(module, norm_types):
                no_decay.append(p)
            else:
                decay.append(p)
    lr, momentum = hyp["lr0"], hyp["momentum"]
    # always three groups, even empty ones (a model without norm layers), so that checkpoints of
    # every model have the same optimiser layout
    groups = [{"params": no_decay, "weight_decay": 0.0}, {"params": decay, "weight_decay": weight_decay},
              {"params": bias, "weight_decay": 0.0, "is_bias": True}]
    if hyp["optimizer"] == "AdamW":
        opt = torch.optim.AdamW(groups, lr=lr, betas=(momentum, 0.999), weight_decay=0.0)
    else:
        opt = torch.optim.SGD(groups, lr=lr, momentum=momentum, nesterov=True, weight_decay=0.0)
    for group in opt.param_groups:
        group.setdefault("is_bias", False)
    return opt


def lr_factor(progress: float, epochs: int, lrf: float, kind: str) -> float:
    """Multiplier of lr0 at ``progress`` epochs: from 1 down to ``lrf``."""
    x = min(max(progress / max(epochs, 1), 0.0), 1.0)
    if kind == "cosine":
        return ((1 - math.cos(x * math.pi)) / 2) * (lrf - 1) + 1
    if kind == "linear":
        return (1 - x) * (1.0 - lrf) + lrf
    return 1.0


def apply_schedule(opt: torch.optim.Optimizer, hyp: dict[str, Any], progress: float, epochs: int) -> float:
    """Set every group's learning rate (and momentum during warm-up); returns the weights' lr."""
    target = hyp["lr0"] * lr_factor(progress, epochs, hyp["lrf"], hyp["scheduler"])
    warm = hyp["warmup_epochs"]
    w = progress / warm if warm > 0 else 1.0
    for group in opt.param_groups:
        if w < 1.0:
            start = hyp["warmup_bias_lr"] if group["is_bias"] else 0.0
            group["lr"] = start + (target - start) * w
            momentum = hyp["warmup_momentum"] + (hyp["momentum"] - hyp["warmup_momentum"]) * w
        else:
            group["lr"] = target
            momentum = hyp["momentum"]
        if "betas" in group:
            group["betas"] = (momentum, group["betas"][1])
        else:
            group["momentum"] = momentum
    return opt.param_groups[1]["lr"]


class ModelEMA:
    """Exponential moving average of a model's weights and buffers.

    The decay ramps up as ``decay * (1 - exp(-updates / tau))`` so that short trainings are not
    dominated by the random initial weights (the scheme of the original's YOLO trainers).
    """

    def __init__(self, model: nn.Module, decay: float = 0.9999, tau: float = 2000.0, updates: int = 0) -> None:
        self.module = copy.deepcopy(model).eval()
        for p in self.module.parameters():
            p.requires_grad_(False)
        self.decay, self.tau, self.updates = decay, tau, updates
        self._pairs: list[tuple[torch.Tensor, torch.Tensor]] | None = None

    def _float_pairs(self, model: nn.Module) -> tuple[list[torch.Tensor], list[torch.Tensor], list[tuple]]:
        ema_state, state = self.module.state_dict(), model.state_dict()
        floats_e, floats_m, ints = [], [], []
        for key, value in ema_state.items():
            if value.is_floating_point():
                floats_e.append(value)
                floats_m.append(state[key].detach())
            else:
                ints.append((value, state[key]))
        return floats_e, floats_m, ints

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        self.updates += 1
        d = self.decay * (1 - math.exp(-self.updates / self.tau))
        if self._pairs is None:  # state_dict() walks the module tree: do it once
            self._pairs = self._float_pairs(model)
        ema_f, model_f, ints = self._pairs
        torch._foreach_lerp_(ema_f, model_f, 1.0 - d)
        for e, m in ints:
            e.copy_(m)

    def reset_cache(self) -> None:
        """Call after loading a state dict into the model or the EMA (tensors may be replaced)."""
        self._pairs = None
