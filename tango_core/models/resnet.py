"""ResNet classifiers: the CIFAR design (6n+2 layers) and the ImageNet design (torchvision's builders).

No pretrained weights are downloaded; ``create_model(name, weights=path)`` loads a file the user
provides.  Every builder takes any class count and any number of input channels (1 for grayscale).

The metadata table below is what the registry, the model picker and the selection table read:
``params`` and ``flops`` are exact counts at the default class count and input size (FLOPs count a
multiply-add as two, as ``torch.utils.flop_counter`` does; papers that quote "FLOPs" for ResNet
usually mean multiply-adds, which is half of the figure here).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from ._registry import register_model

_HE2016 = "He et al., Deep Residual Learning for Image Recognition, CVPR 2016, arXiv:1512.03385"

#: depth -> metadata of the CIFAR design (3 stages of n basic blocks, 16/32/64 channels, 10 classes)
CIFAR_TABLE: dict[int, dict[str, Any]] = {
    20: {"params": 269_722, "flops": 81_102_080, "published_params": "0.27M"},
    32: {"params": 464_154, "flops": 137_725_184, "published_params": "0.46M"},
    44: {"params": 658_586, "flops": 194_348_288, "published_params": "0.66M"},
    56: {"params": 853_018, "flops": 250_971_392, "published_params": "0.85M"},
    110: {"params": 1_727_962, "flops": 505_775_360, "published_params": "1.7M"},
    152: {"params": 2_408_474, "flops": 703_956_224, "published_params": None},
    200: {"params": 3_186_202, "flops": 930_448_640, "published_params": None},
}

#: depth -> metadata of the ImageNet design (1000 classes, 224x224)
IMAGENET_TABLE: dict[int, dict[str, Any]] = {
    18: {"params": 11_689_512, "flops": 3_628_146_688, "published_params": "11.7M", "block": "basic"},
    34: {"params": 21_797_672, "flops": 7_327_522_816, "published_params": "21.8M", "block": "basic"},
    50: {"params": 25_557_032, "flops": 8_178_368_512, "published_params": "25.6M", "block": "bottleneck"},
    101: {"params": 44_549_160, "flops": 15_602_810_880, "published_params": "44.5M", "block": "bottleneck"},
    152: {"params": 60_192_808, "flops": 23_027_253_248, "published_params": "60.2M", "block": "bottleneck"},
}


class _BasicBlock(nn.Module):
    """Two 3x3 convs; when the stage widens, the shortcut subsamples and zero-pads the channels
    (option A of He et al.), which keeps it parameter-free as in the published CIFAR counts."""

    def __init__(self, in_planes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.pad = planes - in_planes
        self.stride = stride
        self.proj: nn.Conv2d | None = None  # set by reparameterize(): the same shortcut as one conv

    def reparameterize(self) -> None:
        """The option-A shortcut (subsample, zero-pad channels) as the 1x1 strided convolution it
        equals: weight 1 from input channel i to output channel ``pad // 2 + i``, 0 elsewhere.  The
        output is bit-identical; exporters see a convolution that INT8 runtimes quantise, instead of
        a Slice and a channel Pad (which the OpenVINO INT8 export keeps in float)."""
        if self.proj is not None or (self.stride == 1 and not self.pad):
            return
        cin = self.conv1.in_channels
        proj = nn.Conv2d(cin, cin + self.pad, 1, self.stride, 0, bias=False).to(self.conv1.weight)
        with torch.no_grad():
            proj.weight.zero_()
            idx = torch.arange(cin)
            proj.weight[idx + self.pad // 2, idx, 0, 0] = 1.0
        proj.weight.requires_grad_(False)
        self.proj = proj

    def shortcut(self, x: torch.Tensor) -> torch.Tensor:
        if self.proj is not None:
            return self.proj(x)
        if self.stride != 1:
            x = x[:, :, :: self.stride, :: self.stride]
        if self.pad:
            x = F.pad(x, (0, 0, 0, 0, self.pad // 2, self.pad - self.pad // 2))
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class CifarResNet(nn.Module):
    """ResNet for small images: a 3x3 stem, three stages of ``n`` blocks (16, 32, 64 channels,
    strides 1, 2, 2), global average pooling and one linear layer: 6n + 2 weighted layers."""

    def __init__(self, depth: int, num_classes: int = 10, in_channels: int = 3, width: int = 16) -> None:
        super().__init__()
        if (depth - 2) % 6 or depth < 8:
            raise ValueError(f"CIFAR ResNet depth must be 6n+2 with n >= 1, got {depth}")
        n = (depth - 2) // 6
        self.depth = depth
        self.conv1 = nn.Conv2d(in_channels, width, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        stages, planes = [], width
        for i, mult in enumerate((1, 2, 4)):
            out = width * mult
            blocks = [_BasicBlock(planes, out, 1 if i == 0 else 2)]
            blocks += [_BasicBlock(out, out) for _ in range(n - 1)]
            stages.append(nn.Sequential(*blocks))
            planes = out
        self.layer1, self.layer2, self.layer3 = stages
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(planes, num_classes)
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.kaiming_normal_(m.weight, mode="fan_out" if isinstance(m, nn.Conv2d) else "fan_in",
                                        nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def reparameterize(self) -> CifarResNet:
        """The inference form: every option-A shortcut as its equivalent fixed 1x1 convolution
        (:meth:`_BasicBlock.reparameterize`); the outputs do not change.  Returns the model."""
        for m in self.modules():
            if isinstance(m, _BasicBlock):
                m.reparameterize()
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        return self.fc(torch.flatten(self.pool(x), 1))


def _imagenet_resnet(depth: int, num_classes: int, in_channels: int, **kwargs: Any) -> nn.Module:
    import torchvision.models as tvm

    model = getattr(tvm, f"resnet{depth}")(weights=None, num_classes=num_classes, **kwargs)
    if in_channels != 3:
        old = model.conv1
        model.conv1 = nn.Conv2d(in_channels, old.out_channels, old.kernel_size, old.stride, old.padding, bias=False)
        nn.init.kaiming_normal_(model.conv1.weight, mode="fan_out", nonlinearity="relu")
    return model


def _register_cifar(depth: int) -> None:
    row = CIFAR_TABLE[depth]

    @register_model(f"resnet-cifar{depth}", task="classification", family="ResNet-CIFAR", size=depth,
                    input_size=32, num_classes=10, params=row["params"], flops=row["flops"],
                    published_params=row["published_params"], depth=depth, blocks_per_stage=(depth - 2) // 6,
                    source=f"{_HE2016}, Sec. 4.2 (CIFAR-10, 6n+2 layers, option A shortcuts)")
    def build(num_classes: int = 10, in_channels: int = 3, **kwargs: Any) -> nn.Module:
        return CifarResNet(depth, num_classes=num_classes, in_channels=in_channels, **kwargs)


def _register_imagenet(depth: int) -> None:
    row = IMAGENET_TABLE[depth]

    @register_model(f"resnet{depth}", task="classification", family="ResNet", size=depth, input_size=224,
                    num_classes=1000, params=row["params"], flops=row["flops"],
                    published_params=row["published_params"], depth=depth, block=row["block"],
                    source=f"{_HE2016}, Table 1 (ImageNet); built with torchvision.models.resnet{depth}")
    def build(num_classes: int = 1000, in_channels: int = 3, **kwargs: Any) -> nn.Module:
        return _imagenet_resnet(depth, num_classes, in_channels, **kwargs)


for _depth in CIFAR_TABLE:
    _register_cifar(_depth)
for _depth in IMAGENET_TABLE:
    _register_imagenet(_depth)
