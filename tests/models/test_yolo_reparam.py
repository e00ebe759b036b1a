"""Re-parameterisation: RepConv / conv+BN / implicit fusing and auxiliary-head removal give the
same detections as the training model's main head (numerically), on small configs that use every
block and on real variants."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn as nn
import yaml

from tango_core.models import create_model
from tango_core.models.yolo import YoloModel, deploy, fuse
from tango_core.models.yolo._blocks import Conv, RepConv, RepConvBase, fuse_conv_bn
from tango_core.models.yolo._heads import IDetect

# small configs that use every YOLO block (data, like the real configs)

MINI_V7 = yaml.safe_load("""
name: mini-v7-aux
act: silu
anchors:
  - [4, 5, 8, 10, 12, 16]
  - [16, 20, 24, 30, 32, 40]
  - [40, 50, 60, 70, 80, 90]
  - [100, 110, 120, 130, 140, 150]
backbone:
  - [-1, ReOrg]                                  # 0  /2
  - [-1, Conv, [8, 3, 1]]                        # 1
  - [-1, DownC, [16]]                            # 2  /4
  - [2, ELAN, [16, 8, 8, 2, [-1, -3, -4]]]       # 3
  - [2, ELAN, [16, 8, 8, 2, [-1, -2, -3, -4]]]   # 4
  - [[-1, -2], Shortcut]                         # 5
  - [-1, MPConv, [16]]                           # 6  /8
  - [-1, ELAN, [32, 16, 16, 2, [-1, -2, -3, -4]]]  # 7
  - [-1, DownC, [48]]                            # 8  /16
  - [-1, Conv, [64, 3, 2]]                       # 9  /32
  - [-1, MaxPool, [2]]                           # 10 /64
neck:
  - [-1, SPPCSPC, [32]]                          # 11 /64
  - [-1, Upsample]                               # 12
  - [[-1, 9], Concat]                            # 13 /32
  - [-1, Conv, [32, 1, 1]]                       # 14
  - [-1, Upsample]                               # 15
  - [[-1, 8], Concat]                            # 16 /16
  - [-1, Conv, [24, 1, 1]]                       # 17
  - [-1, Upsample]                               # 18
  - [[-1, 7], Concat]                            # 19 /8
  - [-1, SPPCSPTiny, [16]]                       # 20
aux:
  - [20, Conv, [8, 3, 1]]                        # 21
  - [17, Conv, [8, 3, 1]]                        # 22
  - [14, Conv, [8, 3, 1]]                        # 23
  - [11, Conv, [8, 3, 1]]                        # 24
head:
  - [20, RepConv, [16, 3, 1]]                    # 25 (with the identity branch)
  - [17, RepConv, [24, 3, 1]]                    # 26
  - [14, RepConv, [32, 3, 1]]                    # 27
  - [11, RepConv, [40, 3, 1]]                    # 28 (no identity: widens)
  - [[25, 26, 27, 28, 21, 22, 23, 24], IAuxDetect]
""")

MINI_V9 = yaml.safe_load("""
name: mini-v9-pgi
act: silu
backbone:
  - [-1, Silence]                                # 0
  - [-1, Conv, [8, 3, 2]]                        # 1  /2
  - [-1, ELAN1, [16, 16, 8]]                     # 2
  - [-1, ADown, [16]]                            # 3  /4
  - [-1, RepNCSPELAN4, [16, 16, 8, 1]]           # 4
  - [-1, AConv, [24]]                            # 5  /8
  - [-1, RepNCSPELAN4, [24, 24, 12, 2]]          # 6
  - [-1, ADown, [32]]                            # 7  /16
  - [-1, RepNCSPELAN4, [32, 32, 16, 1]]          # 8
  - [-1, AConv, [32]]                            # 9  /32
neck:
  - [-1, SPPELAN, [32, 16]]                      # 10
  - [-1, Upsample]                               # 11
  - [[-1, 8], Concat]                            # 12 /16
  - [-1, RepNCSPELAN4, [24, 24, 12, 1]]          # 13
  - [-1, Upsample]                               # 14
  - [[-1, 6], Concat]                            # 15 /8
  - [-1, RepNCSPELAN4, [16, 16, 8, 1]]           # 16
aux:
  - [6, CBLinear, [[16]]]                        # 17
  - [8, CBLinear, [[16, 24]]]                    # 18
  - [0, Conv, [8, 3, 2]]                         # 19 /2
  - [-1, ADown, [16]]                            # 20 /4
  - [-1, AConv, [16]]                            # 21 /8
  - [[17, 18, -1], CBFuse, [[0, 0]]]             # 22
  - [-1, AConv, [24]]                            # 23 /16
  - [[18, -1], CBFuse, [[1]]]                    # 24
  - [-1, AConv, [32]]                            # 25 /32
head:
  - [[16, 13, 10, 22, 24, 25], DualDDetect]
""")


def mini_v9_seg():
    cfg = copy.deepcopy(MINI_V9)
    cfg["name"] = "mini-v9-seg"
    cfg["head"][-1] = [cfg["head"][-1][0], "DualSegment", [8, 16]]
    return cfg


def randomize(model: nn.Module, seed: int = 0) -> nn.Module:
    """Batch-norm statistics and affine terms away from their initial values, so that fusing
    them is actually exercised; implicit terms too."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                n = m.num_features
                m.running_mean.copy_(torch.randn(n, generator=g) * 0.2)
                m.running_var.copy_(torch.rand(n, generator=g) + 0.5)
                m.weight.copy_(torch.rand(n, generator=g) + 0.5)
                m.bias.copy_(torch.randn(n, generator=g) * 0.2)
        for name, p in model.named_parameters():
            if "implicit" in name:
                p.add_(torch.randn(p.shape, generator=g) * 0.1)
        # prediction biases: spread the scores over (0, 1) instead of the tiny initial priors
        for m in model.modules():
            if isinstance(m, nn.Conv2d) and m.bias is not None and m.out_channels < 300:
                m.bias.copy_(torch.randn(m.out_channels, generator=g))
    return model.eval()


def assert_same_predictions(a: torch.Tensor, b: torch.Tensor) -> None:
    """Boxes (first 4 values) within a thousandth of a pixel, scores within 1e-5."""
    assert a.shape == b.shape
    torch.testing.assert_close(a[..., :4], b[..., :4], rtol=1e-5, atol=1e-3)
    torch.testing.assert_close(a[..., 4:], b[..., 4:], rtol=1e-4, atol=1e-5)


def test_conv_bn_fusing_is_exact():
    torch.manual_seed(0)
    block = randomize(Conv(6, 5, 3, 2, g=1))
    x = torch.randn(2, 6, 11, 13)
    expected = block(x)
    fused = fuse_conv_bn(block.conv, block.bn)
    torch.testing.assert_close(block.act(fused(x)), expected, rtol=1e-5, atol=1e-5)
    block.fuse()
    assert isinstance(block.bn, nn.Identity) and block.conv.bias is not None
    torch.testing.assert_close(block(x), expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("c1,c2,s", [(8, 8, 1), (8, 12, 1), (8, 8, 2)])
def test_repconv_fuses_its_three_branches_into_one_conv(c1, c2, s):
    torch.manual_seed(1)
    block = randomize(RepConv(c1, c2, 3, s))
    assert (block.identity is not None) == (c1 == c2 and s == 1)
    x = torch.randn(2, c1, 10, 10)
    expected = block(x)
    block.fuse()
    convs = [m for m in block.modules() if isinstance(m, nn.Conv2d)]
    assert len(convs) == 1 and convs[0].kernel_size == (3, 3)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in block.modules())
    torch.testing.assert_close(block(x), expected, rtol=1e-5, atol=1e-5)


def test_implicit_terms_fold_into_the_prediction_conv():
    torch.manual_seed(2)
    head = IDetect([8, 16], nc=3, anchors=[[4, 5, 8, 10, 12, 16], [16, 20, 24, 30, 32, 40]])
    head.set_strides([8, 16])
    randomize(head)
    xs = [torch.randn(1, 8, 8, 8), torch.randn(1, 16, 4, 4)]
    expected = head.raw(xs)
    head.fuse()
    assert head.ia is None and sum(p.numel() for p in head.parameters()) == sum(
        c.weight.numel() + c.bias.numel() for c in head.m)
    for got, want in zip(head.raw(xs), expected, strict=True):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("cfg,single_head,size", [
    (MINI_V7, "IDetect", (128, 64)),
    (MINI_V9, "DDetect", (64, 96)),
    (mini_v9_seg(), "Segment", (64, 64)),
])
def test_deploy_keeps_the_main_head_detections(cfg, single_head, size):
    torch.manual_seed(3)
    model = randomize(YoloModel(cfg, num_classes=5))
    x = torch.rand(2, 3, *size)
    with torch.no_grad():
        expected = model(x)
        deployed = deploy(model)
        got = deployed(x)
    # the auxiliary branch is gone, no batch norm or re-parameterisable branch is left
    infos = deployed.layers_info()
    assert "aux" not in {i["part"] for i in infos} and infos[-1]["block"] == single_head
    assert not any(isinstance(m, nn.BatchNorm2d) for m in deployed.modules())
    assert all(m.fused is not None for m in deployed.modules() if isinstance(m, RepConvBase))
    assert sum(p.numel() for p in deployed.parameters()) < sum(p.numel() for p in model.parameters())
    if isinstance(expected, tuple):  # segmentation: predictions with mask coefficients, protos
        for a, b in zip(got, expected, strict=True):
            assert_same_predictions(a, b)
    else:
        assert_same_predictions(got, expected)
    # the training model is untouched and still trains both branches
    model.train()
    assert "aux" in model(x)


def test_fuse_in_place_keeps_outputs_and_graph():
    torch.manual_seed(4)
    cfg = copy.deepcopy(MINI_V9)
    model = randomize(YoloModel(cfg, num_classes=2))
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        expected = model(x)
        fuse(model)
        got = model(x)
    assert_same_predictions(got, expected)
    assert [i["block"] for i in model.layers_info()][-1] == "DualDDetect"


@pytest.mark.slow
@pytest.mark.parametrize("name,side", [("yolov7", 64), ("yolov7-w6", 128), ("yolov9-c", 64), ("yolov9-t", 96),
                                       ("yolov9-c-seg", 64)])
def test_deploy_of_real_variants_gives_the_same_detections(name, side):
    torch.manual_seed(5)
    model = randomize(create_model(name, num_classes=4))
    x = torch.rand(1, 3, side, side)
    with torch.no_grad():
        expected = model(x)
        got = deploy(model)(x)
    if isinstance(expected, tuple):
        for a, b in zip(got, expected, strict=True):
            assert_same_predictions(a, b)
    else:
        assert_same_predictions(got, expected)


def test_create_model_can_build_the_deploy_form_directly():
    model = create_model("yolov7-tiny", num_classes=3, deploy=True)
    assert getattr(model, "deployed", False)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in model.modules())
