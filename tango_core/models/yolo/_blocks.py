"""Building blocks of the YOLOv7 and YOLOv9 graphs (written from the papers' block descriptions).

Every block takes its input channels first (``c1``, or a list of them for blocks with several
inputs), then the arguments a config lists, and sets ``self.c2`` (its output channels) and
``self.down`` (how much it shrinks the feature map: 2 for a stride-2 block, 0.5 for an
up-sampler).  Blocks that convolve take ``act``, the activation the model's config names.

Batch norm uses eps=1e-3 and momentum=0.03 as both reference implementations do.  ``fuse()`` on a
block folds its batch norms (and re-parameterisable branches) into plain convolutions for
inference; see ``_reparam.py``.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from ...registry import Registry

#: block name (as written in a config) -> class
BLOCKS: Registry[type[nn.Module]] = Registry("YOLO block")

ACTIVATIONS = {
    "silu": nn.SiLU,
    "leaky_relu": lambda: nn.LeakyReLU(0.1),
    "relu": nn.ReLU,
    "identity": nn.Identity,
}


def make_act(name: str) -> nn.Module:
    return ACTIVATIONS[name]()


def _block(cls: type[nn.Module]) -> type[nn.Module]:
    BLOCKS.add(cls.__name__, cls)
    return cls


def fuse_conv_bn(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> nn.Conv2d:
    """A conv with bias that computes ``bn(conv(x))`` in inference mode."""
    fused = nn.Conv2d(conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding,
                      conv.dilation, conv.groups, bias=True, device=conv.weight.device, dtype=conv.weight.dtype)
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    bias = conv.bias if conv.bias is not None else torch.zeros_like(bn.running_mean)
    with torch.no_grad():
        fused.weight.copy_(conv.weight * scale.reshape(-1, 1, 1, 1))
        fused.bias.copy_((bias - bn.running_mean) * scale + bn.bias)
    return fused


def _bn(c: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(c, eps=1e-3, momentum=0.03)


# --- plain layers -------------------------------------------------------------------------------


@_block
class Conv(nn.Module):
    """Convolution, batch norm, activation; 'same' padding."""

    def __init__(self, c1: int, c2: int, k: int = 1, s: int = 1, g: int = 1, act: str = "silu",
                 p: int | None = None) -> None:
        super().__init__()
        self.conv = nn.Conv2d(c1, c2, k, s, k // 2 if p is None else p, groups=g, bias=False)
        self.bn: nn.Module = _bn(c2)
        self.act = make_act(act)
        self.c2, self.down = c2, s

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.bn(self.conv(x)))

    def fuse(self) -> None:
        if isinstance(self.bn, nn.BatchNorm2d):
            self.conv, self.bn = fuse_conv_bn(self.conv, self.bn), nn.Identity()


@_block
class Upsample(nn.Module):
    """Nearest-neighbour up-sampling by 2."""

    def __init__(self, c1: int) -> None:
        super().__init__()
        self.c2, self.down = c1, 0.5

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.interpolate(x, scale_factor=2.0, mode="nearest")


@_block
class MaxPool(nn.Module):
    """Max pooling; ``s=1`` keeps the size ('same' padding), ``s=k`` downsamples."""

    def __init__(self, c1: int, k: int = 2, s: int | None = None) -> None:
        super().__init__()
        s = k if s is None else s
        self.m = nn.MaxPool2d(k, s, k // 2 if s == 1 else 0)
        self.c2, self.down = c1, s

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.m(x)


@_block
class Concat(nn.Module):
    """Channel concatenation of several inputs (all at one resolution)."""

    def __init__(self, c1: list[int]) -> None:
        super().__init__()
        self.c2, self.down = sum(c1), 1

    def forward(self, xs: list[torch.Tensor]) -> torch.Tensor:
        return torch.cat(xs, 1)


@_block
class Shortcut(nn.Module):
    """Sum of two inputs: joins the two ELANs of YOLOv7's E-ELAN."""

    def __init__(self, c1: list[int]) -> None:
        super().__init__()
        if len(set(c1)) != 1:
            raise ValueError(f"Shortcut needs inputs of equal width, got {c1}")
        self.c2, self.down = c1[0], 1

    def forward(self, xs: list[torch.Tensor]) -> torch.Tensor:
        return xs[0] + xs[1]


@_block
class Silence(nn.Module):
    """Passes the image through; YOLOv9 starts its graphs with it so that the auxiliary branch
    can also start from the image (layer 0)."""

    def __init__(self, c1: int) -> None:
        super().__init__()
        self.c2, self.down = c1, 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


@_block
class ReOrg(nn.Module):
    """Space-to-depth by 2 (the P6 models' stem): four pixel phases stacked as channels."""

    def __init__(self, c1: int) -> None:
        super().__init__()
        self.c2, self.down = 4 * c1, 2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([x[..., ::2, ::2], x[..., 1::2, ::2], x[..., ::2, 1::2], x[..., 1::2, 1::2]], 1)


# --- YOLOv7 ---------------------------------------------------------------------------------------


class RepConvBase(nn.Module):
    """Shared fusing of parallel conv+BN branches (3x3, 1x1, identity BN) into one 3x3 conv."""

    dense: Conv
    pointwise: Conv
    identity: nn.BatchNorm2d | None
    fused: nn.Conv2d | None  # set by fuse(); an instance attribute so nn.Module registers it

    def fuse(self) -> None:
        if self.fused is not None:
            return
        dense = fuse_conv_bn(self.dense.conv, self.dense.bn)
        point = fuse_conv_bn(self.pointwise.conv, self.pointwise.bn)
        weight = dense.weight + F.pad(point.weight, [1, 1, 1, 1])
        bias = dense.bias + point.bias
        if self.identity is not None:
            c, groups = dense.in_channels, dense.groups
            eye = torch.zeros_like(dense.weight)
            per_group = c // groups
            idx = torch.arange(dense.out_channels, device=eye.device)
            eye[idx, idx % per_group, 1, 1] = 1.0
            bn = self.identity
            scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
            weight = weight + eye * scale.reshape(-1, 1, 1, 1)
            bias = bias + bn.bias - bn.running_mean * scale
        with torch.no_grad():
            dense.weight.copy_(weight)
            dense.bias.copy_(bias)
        self.fused = dense
        del self.dense, self.pointwise
        self.identity = None


@_block
class RepConv(RepConvBase):
    """YOLOv7's planned re-parameterised conv: 3x3 conv+BN, 1x1 conv+BN and (when the shape is
    kept) an identity BN, summed, then the activation; one 3x3 conv after ``fuse()``."""

    def __init__(self, c1: int, c2: int, k: int = 3, s: int = 1, act: str = "silu", identity: bool = True) -> None:
        super().__init__()
        if k != 3:
            raise ValueError("RepConv is defined for 3x3 kernels")
        self.dense = Conv(c1, c2, 3, s, act="identity")
        self.pointwise = Conv(c1, c2, 1, s, act="identity", p=0)
        self.identity = _bn(c1) if identity and c1 == c2 and s == 1 else None
        self.fused = None
        self.act = make_act(act)
        self.c2, self.down = c2, s

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.fused is not None:
            return self.act(self.fused(x))
        out = self.dense(x) + self.pointwise(x)
        if self.identity is not None:
            out = out + self.identity(x)
        return self.act(out)


@_block
class ELAN(nn.Module):
    """YOLOv7's efficient layer aggregation block.

    Two 1x1 convs of ``mid`` channels read the input (``a`` and ``b``); a chain of ``depth`` 3x3
    convs of ``chain`` channels grows from ``b``; the outputs listed in ``cat`` (offsets from the
    end of the sequence ``a, b, c1 … c_depth``, as the official configs write them, e.g.
    ``[-1, -3, -5, -6]``) are concatenated and mixed by a 1x1 conv to ``c2`` channels.
    """

    def __init__(self, c1: int, c2: int, mid: int, chain: int, depth: int, cat: list[int],
                 act: str = "silu") -> None:
        super().__init__()
        self.a = Conv(c1, mid, 1, act=act)
        self.b = Conv(c1, mid, 1, act=act)
        self.chain = nn.ModuleList(Conv(mid if i == 0 else chain, chain, 3, act=act) for i in range(depth))
        n = depth + 2
        self.cat = [n + j if j < 0 else j for j in cat]
        if any(not 0 <= j < n for j in self.cat):
            raise ValueError(f"ELAN cat offsets {cat} fall outside the {n} tensors of the block")
        widths = [mid, mid] + [chain] * depth
        self.out = Conv(sum(widths[j] for j in self.cat), c2, 1, act=act)
        self.c2, self.down = c2, 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        ys = [self.a(x), self.b(x)]
        for conv in self.chain:
            ys.append(conv(ys[-1]))
        return self.out(torch.cat([ys[j] for j in self.cat], 1))


@_block
class MPConv(nn.Module):
    """YOLOv7's MP-1 down-sampling: [1x1 -> 3x3 stride 2] beside [max-pool -> 1x1], concatenated
    (conv branch first), ``2 * c`` channels out."""

    def __init__(self, c1: int, c: int, act: str = "silu") -> None:
        super().__init__()
        self.pool = nn.MaxPool2d(2, 2)
        self.pool_conv = Conv(c1, c, 1, act=act)
        self.reduce = Conv(c1, c, 1, act=act)
        self.down_conv = Conv(c, c, 3, 2, act=act)
        self.c2, self.down = 2 * c, 2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.down_conv(self.reduce(x)), self.pool_conv(self.pool(x))], 1)


@_block
class DownC(nn.Module):
    """Down-sampling of the E6/D6/E6E models: [1x1 (c1) -> 3x3 stride 2 (c2/2)] beside
    [max-pool -> 1x1 (c2/2)], concatenated."""

    def __init__(self, c1: int, c2: int, act: str = "silu") -> None:
        super().__init__()
        self.reduce = Conv(c1, c1, 1, act=act)
        self.down_conv = Conv(c1, c2 // 2, 3, 2, act=act)
        self.pool = nn.MaxPool2d(2, 2)
        self.pool_conv = Conv(c1, c2 // 2, 1, act=act)
        self.c2, self.down = c2, 2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.down_conv(self.reduce(x)), self.pool_conv(self.pool(x))], 1)


@_block
class SPPCSPC(nn.Module):
    """Spatial pyramid pooling (5, 9, 13) inside a cross-stage-partial split (YOLOv7's neck)."""

    def __init__(self, c1: int, c2: int, act: str = "silu") -> None:
        super().__init__()
        c = c2  # hidden width: 2 * c2 * 0.5 in the reference
        self.cv1 = Conv(c1, c, 1, act=act)
        self.cv2 = Conv(c1, c, 1, act=act)
        self.cv3 = Conv(c, c, 3, act=act)
        self.cv4 = Conv(c, c, 1, act=act)
        self.pools = nn.ModuleList(nn.MaxPool2d(k, 1, k // 2) for k in (5, 9, 13))
        self.cv5 = Conv(4 * c, c, 1, act=act)
        self.cv6 = Conv(c, c, 3, act=act)
        self.cv7 = Conv(2 * c, c2, 1, act=act)
        self.c2, self.down = c2, 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x1 = self.cv4(self.cv3(self.cv1(x)))
        y1 = self.cv6(self.cv5(torch.cat([x1] + [m(x1) for m in self.pools], 1)))
        return self.cv7(torch.cat([y1, self.cv2(x)], 1))


@_block
class SPPCSPTiny(nn.Module):
    """YOLOv7-tiny's pyramid pooling: 1x1 ``a`` and ``b``; max-pools 5/9/13 of ``b``, concatenated
    (largest first) and reduced; concatenated with ``a`` and reduced again."""

    def __init__(self, c1: int, c2: int, act: str = "silu") -> None:
        super().__init__()
        self.a = Conv(c1, c2, 1, act=act)
        self.b = Conv(c1, c2, 1, act=act)
        self.pools = nn.ModuleList(nn.MaxPool2d(k, 1, k // 2) for k in (13, 9, 5))
        self.mix = Conv(4 * c2, c2, 1, act=act)
        self.out = Conv(2 * c2, c2, 1, act=act)
        self.c2, self.down = c2, 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b = self.b(x)
        y = self.mix(torch.cat([m(b) for m in self.pools] + [b], 1))
        return self.out(torch.cat([y, self.a(x)], 1))


# --- YOLOv9 ---------------------------------------------------------------------------------------


class RepConvN(RepConvBase):
    """YOLOv9's re-parameterised conv: 3x3 conv+BN plus 1x1 conv+BN (no identity branch)."""

    def __init__(self, c1: int, c2: int, act: str = "silu") -> None:
        super().__init__()
        self.dense = Conv(c1, c2, 3, act="identity")
        self.pointwise = Conv(c1, c2, 1, act="identity", p=0)
        self.identity = None
        self.fused = None
        self.act = make_act(act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.fused is not None:
            return self.act(self.fused(x))
        return self.act(self.dense(x) + self.pointwise(x))


class RepNBottleneck(nn.Module):
    """RepConvN then a 3x3 conv, with a residual sum."""

    def __init__(self, c: int, act: str) -> None:
        super().__init__()
        self.cv1 = RepConvN(c, c, act=act)
        self.cv2 = Conv(c, c, 3, act=act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.cv2(self.cv1(x))


class RepNCSP(nn.Module):
    """Cross-stage-partial stack of ``n`` RepN bottlenecks (half width inside)."""

    def __init__(self, c1: int, c2: int, n: int, act: str) -> None:
        super().__init__()
        c = c2 // 2
        self.cv1 = Conv(c1, c, 1, act=act)
        self.cv2 = Conv(c1, c, 1, act=act)
        self.m = nn.Sequential(*(RepNBottleneck(c, act) for _ in range(n)))
        self.cv3 = Conv(2 * c, c2, 1, act=act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.cv3(torch.cat([self.m(self.cv1(x)), self.cv2(x)], 1))


@_block
class RepNCSPELAN4(nn.Module):
    """GELAN block: a 1x1 conv to ``c3`` split in two halves; two stages (RepNCSP of depth ``n``
    then a 3x3 conv, ``c4`` wide) grow from the second half; all four are concatenated and mixed
    by a 1x1 conv to ``c2``."""

    def __init__(self, c1: int, c2: int, c3: int, c4: int, n: int = 1, act: str = "silu") -> None:
        super().__init__()
        self.cv1 = Conv(c1, c3, 1, act=act)
        self.cv2 = nn.Sequential(RepNCSP(c3 // 2, c4, n, act), Conv(c4, c4, 3, act=act))
        self.cv3 = nn.Sequential(RepNCSP(c4, c4, n, act), Conv(c4, c4, 3, act=act))
        self.cv4 = Conv(c3 + 2 * c4, c2, 1, act=act)
        self.c2, self.down = c2, 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        ys = list(self.cv1(x).chunk(2, 1))
        ys.append(self.cv2(ys[-1]))
        ys.append(self.cv3(ys[-1]))
        return self.cv4(torch.cat(ys, 1))


@_block
class ELAN1(nn.Module):
    """The light GELAN block of YOLOv9-T/S: as RepNCSPELAN4 with plain 3x3 convs as stages."""

    def __init__(self, c1: int, c2: int, c3: int, c4: int, act: str = "silu") -> None:
        super().__init__()
        self.cv1 = Conv(c1, c3, 1, act=act)
        self.cv2 = Conv(c3 // 2, c4, 3, act=act)
        self.cv3 = Conv(c4, c4, 3, act=act)
        self.cv4 = Conv(c3 + 2 * c4, c2, 1, act=act)
        self.c2, self.down = c2, 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        ys = list(self.cv1(x).chunk(2, 1))
        ys.append(self.cv2(ys[-1]))
        ys.append(self.cv3(ys[-1]))
        return self.cv4(torch.cat(ys, 1))


@_block
class ADown(nn.Module):
    """YOLOv9 down-sampling: 2x2 average (stride 1), split channels; half through a 3x3 stride-2
    conv, half through a 3x3 stride-2 max-pool and a 1x1 conv; concatenated."""

    def __init__(self, c1: int, c2: int, act: str = "silu") -> None:
        super().__init__()
        self.cv1 = Conv(c1 // 2, c2 // 2, 3, 2, act=act, p=1)
        self.cv2 = Conv(c1 // 2, c2 // 2, 1, 1, act=act, p=0)
        self.c2, self.down = c2, 2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x1, x2 = F.avg_pool2d(x, 2, 1, 0, False, True).chunk(2, 1)
        return torch.cat([self.cv1(x1), self.cv2(F.max_pool2d(x2, 3, 2, 1))], 1)


@_block
class AConv(nn.Module):
    """The light down-sampling of YOLOv9-T/S/M: 2x2 average (stride 1), then a 3x3 stride-2 conv."""

    def __init__(self, c1: int, c2: int, act: str = "silu") -> None:
        super().__init__()
        self.cv1 = Conv(c1, c2, 3, 2, act=act, p=1)
        self.c2, self.down = c2, 2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.cv1(F.avg_pool2d(x, 2, 1, 0, False, True))


@_block
class SPPELAN(nn.Module):
    """Pyramid pooling as an ELAN: 1x1 conv to ``c3``, three chained 5x5 max-pools, all four
    concatenated and reduced to ``c2``."""

    def __init__(self, c1: int, c2: int, c3: int, act: str = "silu") -> None:
        super().__init__()
        self.cv1 = Conv(c1, c3, 1, act=act)
        self.pool = nn.MaxPool2d(5, 1, 2)
        self.cv5 = Conv(4 * c3, c2, 1, act=act)
        self.c2, self.down = c2, 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        ys = [self.cv1(x)]
        for _ in range(3):
            ys.append(self.pool(ys[-1]))
        return self.cv5(torch.cat(ys, 1))


@_block
class CBLinear(nn.Module):
    """Routing of PGI's auxiliary reversible branch: one 1x1 conv (with bias, no BN) whose
    output is split into the widths ``c2s`` for the levels the branch feeds."""

    def __init__(self, c1: int, c2s: list[int]) -> None:
        super().__init__()
        self.c2s = list(c2s)
        self.conv = nn.Conv2d(c1, sum(self.c2s), 1, 1, 0, bias=True)
        self.c2, self.down = list(self.c2s), 1

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return tuple(self.conv(x).split(self.c2s, 1))


@_block
class CBFuse(nn.Module):
    """Fusion in PGI's auxiliary branch: picks part ``idx[i]`` of each routed input, resizes it
    (nearest) to the last input's size, and sums everything."""

    def __init__(self, c1: list, idx: list[int]) -> None:
        super().__init__()
        self.idx = list(idx)
        for c, i in zip(c1[:-1], self.idx, strict=True):
            if c[i] != c1[-1]:
                raise ValueError(f"CBFuse: routed part {i} has {c[i]} channels, the target has {c1[-1]}")
        self.c2, self.down = c1[-1], 1

    def forward(self, xs: list) -> torch.Tensor:
        size = xs[-1].shape[2:]
        out = xs[-1]
        for x, i in zip(xs[:-1], self.idx, strict=True):
            out = out + F.interpolate(x[i], size=size, mode="nearest")
        return out
