"""ResNets with any depth per stage and any width: what the ResNet NAS spaces build.

Two designs, as the registered base models: ``cifar`` (He et al.'s 6n+2 CIFAR net: 3x3 stem,
three stages of basic blocks at 16/32/64 channels, parameter-free shortcuts) and ``imagenet``
(torchvision's: 7x7 stem and max-pool, four stages of basic or bottleneck blocks at
64/128/256/512).  With the base depths and ``width: 1.0`` the parameter count equals the
registered model's, which the tests check.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

DESIGNS = {
    "cifar": {"stem": 16, "stages": 3, "blocks": ("basic",)},
    "imagenet": {"stem": 64, "stages": 4, "blocks": ("basic", "bottleneck")},
}


def scaled(channels: int, width: float) -> int:
    """Channels times a width multiplier, rounded to a multiple of 4 (at least 4)."""
    return max(4, int(round(channels * width / 4.0)) * 4)


class _BlockA(nn.Module):
    """A basic block whose widening shortcut subsamples and zero-pads (option A of He et al.)."""

    def __init__(self, in_planes: int, planes: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.stride, self.pad = stride, planes - in_planes

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))
        short = x[:, :, :: self.stride, :: self.stride] if self.stride != 1 else x
        if self.pad:
            short = F.pad(short, (0, 0, 0, 0, self.pad // 2, self.pad - self.pad // 2))
        return F.relu(out + short)


class ArchResNet(nn.Module):
    """A ResNet described by plain data: ``{"design", "block", "depths": [...], "width"}``."""

    def __init__(self, arch: dict[str, Any], num_classes: int = 10, in_channels: int = 3) -> None:
        super().__init__()
        arch = check_arch(arch)
        self.arch = arch
        design, width, depths = DESIGNS[arch["design"]], arch["width"], arch["depths"]
        stem = scaled(design["stem"], width)
        if arch["design"] == "cifar":
            self.stem = nn.Sequential(nn.Conv2d(in_channels, stem, 3, 1, 1, bias=False), nn.BatchNorm2d(stem),
                                      nn.ReLU(inplace=True))
            planes, stages = stem, []
            for i, depth in enumerate(depths):
                out = stem * 2 ** i
                blocks = [_BlockA(planes if j == 0 else out, out, 2 if i and j == 0 else 1) for j in range(depth)]
                stages.append(nn.Sequential(*blocks))
                planes = out
        else:
            from torchvision.models.resnet import BasicBlock, Bottleneck

            block = BasicBlock if arch["block"] == "basic" else Bottleneck
            self.stem = nn.Sequential(nn.Conv2d(in_channels, stem, 7, 2, 3, bias=False), nn.BatchNorm2d(stem),
                                      nn.ReLU(inplace=True), nn.MaxPool2d(3, 2, 1))
            planes, stages = stem, []
            for i, depth in enumerate(depths):
                mid, stride = stem * 2 ** i, 1 if i == 0 else 2
                out = mid * block.expansion
                down = None
                if stride != 1 or planes != out:
                    down = nn.Sequential(nn.Conv2d(planes, out, 1, stride, bias=False), nn.BatchNorm2d(out))
                blocks = [block(planes, mid, stride, down)] + [block(out, mid) for _ in range(depth - 1)]
                stages.append(nn.Sequential(*blocks))
                planes = out
        self.stages = nn.Sequential(*stages)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(planes, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.pool(self.stages(self.stem(x))), 1))


def check_arch(arch: dict[str, Any], source: str = "arch") -> dict[str, Any]:
    from ..errors import ConfigError

    design = arch.get("design")
    if design not in DESIGNS:
        raise ConfigError(source, "design", f"{design!r} is not a ResNet design", f"use one of {sorted(DESIGNS)}")
    spec = DESIGNS[design]
    block = arch.get("block", "basic")
    if block not in spec["blocks"]:
        raise ConfigError(source, "block", f"{block!r} is not a block of the {design} design",
                          f"use one of {list(spec['blocks'])}")
    depths = arch.get("depths")
    if not isinstance(depths, list) or len(depths) != spec["stages"] or \
            not all(isinstance(d, int) and not isinstance(d, bool) and d >= 1 for d in depths):
        raise ConfigError(source, "depths", f"{depths!r} must be {spec['stages']} positive integers (blocks per stage)")
    width = arch.get("width", 1.0)
    if isinstance(width, bool) or not isinstance(width, (int, float)) or not 0.1 <= width <= 4:
        raise ConfigError(source, "width", f"{width!r} must be a multiplier between 0.1 and 4")
    return {"design": design, "block": block, "depths": list(depths), "width": float(width)}
