"""Post-processing: decoding raw outputs of both families, batched NMS, box scaling, masks."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn

from tango_core.detection import decode, non_max_suppression, postprocess, process_masks, scale_boxes
from tango_core.detection._nms import letterbox_params
from tango_core.models import create_model


def _pred(rows: list[list[float]], nc: int) -> torch.Tensor:
    """Predictions (1, N, 4 + nc) from rows [x1, y1, x2, y2, class, score]."""
    p = torch.zeros(1, len(rows), 4 + nc)
    for i, (x1, y1, x2, y2, c, s) in enumerate(rows):
        p[0, i, :4] = torch.tensor([x1, y1, x2, y2])
        p[0, i, 4 + int(c)] = s
    return p


def test_overlapping_boxes_of_one_class_are_suppressed_other_classes_kept():
    pred = _pred([[0, 0, 10, 10, 0, 0.9], [1, 1, 11, 11, 0, 0.8], [0, 0, 10, 10, 1, 0.7],
                  [50, 50, 60, 60, 0, 0.6], [0, 0, 10, 10, 0, 0.1]], nc=2)
    (det,) = non_max_suppression(pred, conf_thres=0.25, iou_thres=0.5)
    assert det[:, 4].tolist() == pytest.approx([0.9, 0.7, 0.6])  # best first
    assert det[:, 5].tolist() == [0, 1, 0]
    (agn,) = non_max_suppression(pred, conf_thres=0.25, iou_thres=0.5, agnostic=True)
    assert agn[:, 4].tolist() == pytest.approx([0.9, 0.6])
    (top,) = non_max_suppression(pred, conf_thres=0.25, iou_thres=0.5, max_det=2)
    assert len(top) == 2
    (only1,) = non_max_suppression(pred, conf_thres=0.25, iou_thres=0.5, classes=[1])
    assert only1[:, 5].tolist() == [1]


def test_multi_label_keeps_every_class_above_the_threshold():
    pred = torch.zeros(1, 1, 4 + 3)
    pred[0, 0, :4] = torch.tensor([0, 0, 5, 5])
    pred[0, 0, 4:] = torch.tensor([0.6, 0.05, 0.4])
    (single,) = non_max_suppression(pred, conf_thres=0.1)
    (multi,) = non_max_suppression(pred, conf_thres=0.1, multi_label=True)
    assert single[:, 5].tolist() == [0]
    assert sorted(multi[:, 5].tolist()) == [0, 2]


def test_batches_and_mask_coefficients_pass_through():
    pred = torch.rand(3, 50, 4 + 2 + 8)
    pred[..., 2:4] += pred[..., :2] + 1
    protos = torch.rand(3, 8, 16, 16)
    dets = postprocess((pred, protos), conf_thres=0.5, iou_thres=0.6)
    assert len(dets) == 3
    for p, d in zip(pred, dets, strict=True):
        assert d.shape[1] == 6 + 8
        for row in d:  # the coefficients travel with their box
            src = (p[:, :4] == row[:4]).all(1).nonzero()[0, 0]
            assert torch.equal(p[src, 6:], row[6:])
    with pytest.raises(ValueError, match="conf_thres"):
        non_max_suppression(pred, conf_thres=2.0)


def _raw_with_eval_batch_norm(model: nn.Module, x: torch.Tensor):
    model.train()
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.eval()
    with torch.no_grad():
        return model(x)


@pytest.mark.parametrize("name", ["yolov7-tiny", "yolov9-t", "yolov9-t-seg"])
def test_decoding_raw_outputs_gives_the_eval_predictions(name):
    torch.manual_seed(0)
    model = create_model(name, num_classes=3)
    x = torch.rand(2, 3, 64, 96)
    raw = _raw_with_eval_batch_norm(model, x)
    model.eval()
    with torch.no_grad():
        expected = model(x)
    expected = expected[0] if isinstance(expected, tuple) else expected
    torch.testing.assert_close(decode(raw, model.head), expected, rtol=1e-5, atol=1e-4)
    boxes = expected[..., :4]
    assert (boxes[..., 2] >= boxes[..., 0]).all() and (boxes[..., 3] >= boxes[..., 1]).all()


def test_decoding_an_auxiliary_head_uses_its_main_branch():
    torch.manual_seed(1)
    model = create_model("yolov9-s", num_classes=2)
    x = torch.rand(1, 3, 64, 64)
    raw = _raw_with_eval_batch_norm(model, x)
    model.eval()
    with torch.no_grad():
        torch.testing.assert_close(decode(raw, model.head), model(x), rtol=1e-5, atol=1e-4)


def test_boxes_scale_back_through_the_letterbox():
    image_hw, model_hw = (300, 500), (320, 320)
    gain, (pw, ph) = letterbox_params(image_hw, model_hw)
    assert gain == pytest.approx(0.64) and pw == 0 and ph == pytest.approx((320 - 192) / 2)
    original = torch.tensor([[10.0, 20.0, 110.0, 220.0], [400.0, 0.0, 500.0, 300.0]])
    letterboxed = original * gain + torch.tensor([pw, ph, pw, ph])
    torch.testing.assert_close(scale_boxes(letterboxed, model_hw, image_hw), original)
    outside = torch.tensor([[-5.0, -5.0, 600.0, 400.0]]) * gain + torch.tensor([pw, ph, pw, ph])
    assert scale_boxes(outside, model_hw, image_hw).tolist() == [[0.0, 0.0, 500.0, 300.0]]


def test_masks_are_cut_to_their_boxes():
    protos = torch.ones(2, 8, 8) * 4.0  # every prototype strongly positive
    coefs = torch.tensor([[1.0, 0.0], [0.0, -1.0]])
    boxes = torch.tensor([[0.0, 0.0, 16.0, 16.0], [8.0, 8.0, 24.0, 32.0]])
    masks = process_masks(protos, coefs, boxes, (32, 32))
    assert masks.shape == (2, 32, 32) and masks.dtype == torch.bool
    assert masks[0].sum() == 16 * 16 and masks[0, :16, :16].all()
    assert masks[1].sum() == 0  # negative coefficient: sigmoid below the threshold
