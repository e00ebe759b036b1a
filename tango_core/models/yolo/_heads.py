"""Detection and segmentation heads, and the decoding of their raw outputs into boxes.

In training mode a head returns a dict of raw outputs for the loss: ``main`` (one tensor per
level), plus ``aux`` for heads that train an auxiliary branch, plus ``mask_coef`` / ``proto``
for segmentation.  In eval mode it returns decoded predictions of its *main* branch only:
``(B, N, 4 + nc)`` — boxes as x1, y1, x2, y2 in input pixels, then per-class scores in [0, 1]
(for YOLOv7, objectness times class probability).  Segmentation adds ``nm`` mask coefficients
per box and returns ``(predictions, protos)``.

Heads with an auxiliary branch hold the single-branch head as ``self.main``; removing the aux
branch for inference (``_reparam.deploy``) keeps exactly that module, so the deployed model
gives the same detections as the training model's main head.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn

from ._blocks import BLOCKS, Conv, _block


def _grid(ny: int, nx: int, device: torch.device, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    ys = torch.arange(ny, device=device, dtype=dtype)
    xs = torch.arange(nx, device=device, dtype=dtype)
    gy, gx = torch.meshgrid(ys, xs, indexing="ij")
    return gx, gy


def decode_anchor_based(raw: list[torch.Tensor], anchors: torch.Tensor, strides: torch.Tensor) -> torch.Tensor:
    """YOLOv7 outputs ``(B, na, ny, nx, 5 + nc)`` per level -> ``(B, N, 4 + nc)``.

    Centre: ``(2 sigmoid(t) - 0.5 + cell) * stride``; size: ``(2 sigmoid(t))^2 * anchor`` (anchors in
    pixels); scores: objectness times class probability.
    """
    out = []
    for level, p in enumerate(raw):
        b, na, ny, nx, no = p.shape
        y = p.float().sigmoid()  # float32: half precision cannot hold pixel coordinates of large inputs
        gx, gy = _grid(ny, nx, p.device, p.dtype)
        cx = (y[..., 0] * 2 - 0.5 + gx) * strides[level]
        cy = (y[..., 1] * 2 - 0.5 + gy) * strides[level]
        wh = (y[..., 2:4] * 2) ** 2 * anchors[level].view(1, na, 1, 1, 2)
        w, h = wh[..., 0], wh[..., 1]
        boxes = torch.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], -1)
        scores = y[..., 5:] * y[..., 4:5]
        out.append(torch.cat([boxes, scores], -1).reshape(b, -1, 4 + no - 5))
    return torch.cat(out, 1)


def anchor_points(shapes: list[tuple[int, int]], strides: torch.Tensor, device: torch.device,
                  dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """Cell centres ``(N, 2)`` in grid units of each level and the stride of each ``(N, 1)``."""
    points, stride_col = [], []
    for (ny, nx), s in zip(shapes, strides, strict=True):
        gx, gy = _grid(ny, nx, device, dtype)
        points.append(torch.stack([gx + 0.5, gy + 0.5], -1).view(-1, 2))
        stride_col.append(torch.ones((ny * nx, 1), device=device, dtype=dtype) * s)
    return torch.cat(points), torch.cat(stride_col)


def dfl_expectation(box: torch.Tensor, reg_max: int) -> torch.Tensor:
    """Distribution focal loss decoding: ``(B, 4 * reg_max, N)`` logits -> ``(B, 4, N)`` expected
    distances (in grid cells) to the left, top, right and bottom box sides."""
    b, _, n = box.shape
    prob = box.view(b, 4, reg_max, n).softmax(2)
    bins = torch.arange(reg_max, device=box.device, dtype=box.dtype).view(1, 1, reg_max, 1)
    return (prob * bins).sum(2)


def decode_anchor_free(raw: list[torch.Tensor], strides: torch.Tensor, nc: int, reg_max: int = 16) -> torch.Tensor:
    """YOLOv9 outputs ``(B, 4 * reg_max + nc, ny, nx)`` per level -> ``(B, N, 4 + nc)``."""
    b = raw[0].shape[0]
    # float32: half precision cannot hold pixel coordinates of large inputs
    flat = torch.cat([p.float().view(b, p.shape[1], -1) for p in raw], 2)
    box, cls = flat.split((4 * reg_max, nc), 1)
    points, stride = anchor_points([p.shape[2:] for p in raw], strides, flat.device, flat.dtype)
    dist = dfl_expectation(box, reg_max).transpose(1, 2)  # (B, N, 4)
    xy1 = points - dist[..., :2]
    xy2 = points + dist[..., 2:]
    boxes = torch.cat([xy1, xy2], -1) * stride
    return torch.cat([boxes, cls.sigmoid().transpose(1, 2)], -1)


class Head(nn.Module):
    """Common part of every head: the strides of its levels, set by the builder."""

    has_aux = False
    anchor_free = True

    def __init__(self, nl: int) -> None:
        super().__init__()
        self.nl = nl
        self.register_buffer("stride", torch.ones(nl))
        self.c2, self.down = None, 1

    def set_strides(self, strides: list[float]) -> None:
        self.level_strides = [float(s) for s in strides[: self.nl]]  # also readable on the meta device
        self.stride.copy_(torch.tensor(self.level_strides, dtype=self.stride.dtype))
        for m in self.children():
            if isinstance(m, Head):
                m.set_strides(strides)
        self.init_biases()

    def init_biases(self) -> None:  # heads with a prior override this
        pass


# --- YOLOv7: anchor based ---------------------------------------------------------------------------


class ImplicitAdd(nn.Module):
    """YOLOR implicit knowledge added to the input of a prediction conv."""

    def __init__(self, c: int) -> None:
        super().__init__()
        self.implicit = nn.Parameter(torch.empty(1, c, 1, 1).normal_(0.0, 0.02))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.implicit


class ImplicitMul(nn.Module):
    """YOLOR implicit knowledge multiplying the output of a prediction conv."""

    def __init__(self, c: int) -> None:
        super().__init__()
        self.implicit = nn.Parameter(torch.empty(1, c, 1, 1).normal_(1.0, 0.02))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.implicit


def _anchor_bias(conv: nn.Conv2d, na: int, nc: int, stride: float) -> None:
    # priors: about 8 objects per 640 image, and a uniform class prior of 0.6 / nc
    with torch.no_grad():
        b = conv.bias.view(na, -1)
        b[:, 4] += math.log(8 / (640 / stride) ** 2)
        b[:, 5:] += math.log(0.6 / (nc - 0.99)) if nc > 1 else 0.0


@_block
class IDetect(Head):
    """YOLOv7's head: per level, implicit add -> 1x1 conv -> implicit multiply, ``na`` anchors.
    ``fuse()`` folds the implicit terms into the conv (the plain ``Detect`` of deploy configs)."""

    anchor_free = False

    def __init__(self, c1: list[int], nc: int, anchors: list[list[float]]) -> None:
        super().__init__(len(anchors))
        if len(c1) != len(anchors):
            raise ValueError(f"IDetect has {len(anchors)} anchor levels but {len(c1)} inputs")
        self.nc, self.na, self.no = nc, len(anchors[0]) // 2, nc + 5
        self.register_buffer("anchors", torch.tensor(anchors, dtype=torch.float32).view(self.nl, self.na, 2))
        self.m = nn.ModuleList(nn.Conv2d(c, self.no * self.na, 1) for c in c1)
        self.ia: nn.ModuleList | None = nn.ModuleList(ImplicitAdd(c) for c in c1)
        self.im: nn.ModuleList | None = nn.ModuleList(ImplicitMul(self.no * self.na) for _ in c1)

    def init_biases(self) -> None:
        for conv, s in zip(self.m, self.level_strides, strict=True):
            _anchor_bias(conv, self.na, self.nc, s)

    def raw(self, xs: list[torch.Tensor]) -> list[torch.Tensor]:
        out = []
        for i, x in enumerate(xs):
            if self.ia is not None:
                x = self.im[i](self.m[i](self.ia[i](x)))
            else:
                x = self.m[i](x)
            b, _, ny, nx = x.shape
            out.append(x.view(b, self.na, self.no, ny, nx).permute(0, 1, 3, 4, 2).contiguous())
        return out

    def forward(self, xs: list[torch.Tensor]):
        raw = self.raw(xs)
        if self.training:
            return {"main": raw}
        return decode_anchor_based(raw, self.anchors, self.stride)

    def fuse(self) -> None:
        if self.ia is None:
            return
        with torch.no_grad():
            for conv, ia, im in zip(self.m, self.ia, self.im, strict=True):
                w = conv.weight.view(conv.out_channels, conv.in_channels)
                conv.bias.add_(w @ ia.implicit.view(-1))
                scale = im.implicit.view(-1)
                conv.bias.mul_(scale)
                conv.weight.mul_(scale.view(-1, 1, 1, 1))
        self.ia = self.im = None


@_block
class IAuxDetect(Head):
    """YOLOv7's lead head (``main``, an IDetect on the first ``nl`` inputs) plus the auxiliary
    head trained with coarse labels (a 1x1 conv per level on the other ``nl`` inputs)."""

    has_aux = True
    anchor_free = False

    def __init__(self, c1: list[int], nc: int, anchors: list[list[float]]) -> None:
        nl = len(anchors)
        super().__init__(nl)
        if len(c1) != 2 * nl:
            raise ValueError(f"IAuxDetect needs {2 * nl} inputs (lead then auxiliary), got {len(c1)}")
        self.main = IDetect(c1[:nl], nc, anchors)
        self.nc, self.na, self.no = nc, self.main.na, self.main.no
        self.aux = nn.ModuleList(nn.Conv2d(c, self.no * self.na, 1) for c in c1[nl:])

    def init_biases(self) -> None:
        for conv, s in zip(self.aux, self.level_strides, strict=True):
            _anchor_bias(conv, self.na, self.nc, s)

    def forward(self, xs: list[torch.Tensor]):
        if not self.training:
            return self.main(xs[: self.nl])
        aux = []
        for conv, x in zip(self.aux, xs[self.nl:], strict=True):
            y = conv(x)
            b, _, ny, nx = y.shape
            aux.append(y.view(b, self.na, self.no, ny, nx).permute(0, 1, 3, 4, 2).contiguous())
        return {"main": self.main.raw(xs[: self.nl]), "aux": aux}


# --- YOLOv9: anchor free ----------------------------------------------------------------------------


def _round4(x: int) -> int:
    return int(math.ceil(x / 4) * 4)


@_block
class DDetect(Head):
    """YOLOv9's decoupled head: per level a box branch (DFL over ``reg_max`` bins, grouped convs)
    and a class branch; anchor points at cell centres.  ``grouped=False`` is the plain variant
    the official segmentation head builds on."""

    def __init__(self, c1: list[int], nc: int, reg_max: int = 16, grouped: bool = True) -> None:
        super().__init__(len(c1))
        self.nc, self.reg_max = nc, reg_max
        self.no = nc + 4 * reg_max
        g = 4 if grouped else 1
        c2 = max(c1[0] // 4, 4 * reg_max, 16)
        c2 = _round4(c2) if grouped else c2
        c3 = max(c1[0], min(nc * 2, 128))
        self.box = nn.ModuleList(
            nn.Sequential(Conv(c, c2, 3), Conv(c2, c2, 3, g=g), nn.Conv2d(c2, 4 * reg_max, 1, groups=g)) for c in c1)
        self.cls = nn.ModuleList(nn.Sequential(Conv(c, c3, 3), Conv(c3, c3, 3), nn.Conv2d(c3, nc, 1)) for c in c1)

    def init_biases(self) -> None:
        with torch.no_grad():
            for box, cls, s in zip(self.box, self.cls, self.level_strides, strict=True):
                box[-1].bias.fill_(1.0)
                cls[-1].bias.fill_(math.log(5 / self.nc / (640 / s) ** 2))

    def raw(self, xs: list[torch.Tensor]) -> list[torch.Tensor]:
        return [torch.cat([b(x), c(x)], 1) for b, c, x in zip(self.box, self.cls, xs, strict=True)]

    def forward(self, xs: list[torch.Tensor]):
        raw = self.raw(xs)
        if self.training:
            return {"main": raw}
        return decode_anchor_free(raw, self.stride, self.nc, self.reg_max)


@_block
class DualDDetect(Head):
    """YOLOv9's head under programmable gradient information: ``main`` on the first ``nl``
    inputs, ``aux`` (the auxiliary reversible branch's head) on the others."""

    has_aux = True

    def __init__(self, c1: list[int], nc: int, reg_max: int = 16) -> None:
        nl = len(c1) // 2
        super().__init__(nl)
        self.main = DDetect(c1[:nl], nc, reg_max)
        self.aux = DDetect(c1[nl:], nc, reg_max)
        self.nc, self.reg_max, self.no = nc, reg_max, self.main.no

    def forward(self, xs: list[torch.Tensor]):
        if not self.training:
            return self.main(xs[: self.nl])
        return {"main": self.main.raw(xs[: self.nl]), "aux": self.aux.raw(xs[self.nl:])}


class Proto(nn.Module):
    """Mask prototypes at stride 4 from the stride-8 features: 3x3 conv, 2x up-sample, 3x3 conv,
    1x1 conv to ``nm`` prototypes."""

    def __init__(self, c1: int, c: int, nm: int) -> None:
        super().__init__()
        self.cv1 = Conv(c1, c, 3)
        self.cv2 = Conv(c, c, 3)
        self.cv3 = Conv(c, nm, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = nn.functional.interpolate(self.cv1(x), scale_factor=2.0, mode="nearest")
        return self.cv3(self.cv2(x))


@_block
class Segment(Head):
    """YOLOv9 instance segmentation (as gelan-c-seg): the plain DDetect branches, ``nm`` mask
    coefficients per anchor point, and ``nm`` prototypes from the first level."""

    def __init__(self, c1: list[int], nc: int, nm: int = 32, npr: int = 256, reg_max: int = 16) -> None:
        super().__init__(len(c1))
        self.nc, self.nm, self.reg_max = nc, nm, reg_max
        self.detect = DDetect(c1, nc, reg_max, grouped=False)
        self.no = self.detect.no
        self.proto = Proto(c1[0], npr, nm)
        c4 = max(c1[0] // 4, nm)
        self.coef = nn.ModuleList(nn.Sequential(Conv(c, c4, 3), Conv(c4, c4, 3), nn.Conv2d(c4, nm, 1)) for c in c1)

    def raw(self, xs: list[torch.Tensor]) -> dict:
        b = xs[0].shape[0]
        coef = torch.cat([m(x).view(b, self.nm, -1) for m, x in zip(self.coef, xs, strict=True)], 2)
        return {"main": self.detect.raw(xs), "mask_coef": coef, "proto": self.proto(xs[0])}

    def forward(self, xs: list[torch.Tensor]):
        out = self.raw(xs)
        if self.training:
            return out
        det = decode_anchor_free(out["main"], self.stride, self.nc, self.reg_max)
        return torch.cat([det, out["mask_coef"].transpose(1, 2)], -1), out["proto"]


@_block
class DualSegment(Head):
    """Segmentation under PGI: a ``main`` Segment head and an ``aux`` one on the auxiliary branch."""

    has_aux = True

    def __init__(self, c1: list[int], nc: int, nm: int = 32, npr: int = 256, reg_max: int = 16) -> None:
        nl = len(c1) // 2
        super().__init__(nl)
        self.main = Segment(c1[:nl], nc, nm, npr, reg_max)
        self.aux = Segment(c1[nl:], nc, nm, npr, reg_max)
        self.nc, self.nm, self.reg_max, self.no = nc, nm, reg_max, self.main.no

    def forward(self, xs: list[torch.Tensor]):
        if not self.training:
            return self.main(xs[: self.nl])
        main, aux = self.main.raw(xs[: self.nl]), self.aux.raw(xs[self.nl:])
        return dict(main, aux=aux["main"], aux_mask_coef=aux["mask_coef"], aux_proto=aux["proto"])


#: head class -> the class of its single-branch (inference) form
SINGLE_HEAD = {IAuxDetect: "IDetect", DualDDetect: "DDetect", DualSegment: "Segment"}
HEADS = tuple(BLOCKS.get(n) for n in ("IDetect", "IAuxDetect", "DDetect", "DualDDetect", "Segment", "DualSegment"))
