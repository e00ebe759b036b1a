"""Losses: the YOLOv7 OTA loss and the YOLOv9 task-aligned loss decrease on a fixed batch (main and
auxiliary heads, segmentation masks), and their assignments behave as published."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

from tango_core.detection._boxes import ciou, flat_targets
from tango_core.detection._hyp import default_hyp
from tango_core.detection._loss import TaskAlignedAssigner, V7Loss, V9Loss, build_loss
from tango_core.errors import ConfigError
from tango_core.models import create_model
from tango_core.models.yolo import YoloModel

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "models"))
from test_yolo_reparam import MINI_V7, MINI_V9, mini_v9_seg  # noqa: E402  (small configs, shared)

TARGETS = [torch.tensor([[0, 8.0, 10, 40, 50], [1, 30, 5, 60, 30]]), torch.tensor([[2, 20.0, 20, 44, 60]])]


def box_masks(targets, hw=(64, 64)):
    out = []
    for t in targets:
        m = torch.zeros(len(t), *hw)
        for i, (_, x1, y1, x2, y2) in enumerate(t.tolist()):
            m[i, int(y1):int(y2), int(x1):int(x2)] = 1
        out.append(m)
    return out


def train_steps(model, loss_fn, steps: int, masks=None) -> list[float]:
    torch.manual_seed(0)
    x = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    model.train()
    losses = []
    for _ in range(steps):
        out = model(x)
        loss, parts = loss_fn(out, TARGETS, masks=masks) if masks is not None else loss_fn(out, TARGETS)
        assert torch.isfinite(loss) and all(v == v for v in parts.values())
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    return losses


def assert_decreases(losses: list[float]) -> None:
    first, last = sum(losses[:3]) / 3, sum(losses[-3:]) / 3
    assert last < 0.7 * first, losses


@pytest.mark.slow
@pytest.mark.parametrize("cfg,recipe,parts", [
    (MINI_V7, "yolov7-p6", {"box", "obj", "cls"}),   # IAuxDetect: lead + auxiliary OTA
    (MINI_V9, "yolov9", {"box", "cls", "dfl"}),      # DualDDetect: main + auxiliary branch
])
def test_loss_decreases_on_a_fixed_batch_with_auxiliary_heads(cfg, recipe, parts):
    torch.manual_seed(0)
    model = YoloModel(cfg, num_classes=3)
    loss_fn = build_loss(model, default_hyp(recipe), imgsz=64)
    assert isinstance(loss_fn, V7Loss if recipe.startswith("yolov7") else V9Loss)
    out = model.train()(torch.rand(2, 3, 64, 64))
    assert set(loss_fn(out, TARGETS)[1]) == parts
    assert_decreases(train_steps(model, loss_fn, 30))


@pytest.mark.slow
def test_segmentation_loss_decreases_with_masks():
    torch.manual_seed(0)
    model = YoloModel(mini_v9_seg(), num_classes=3)
    loss_fn = build_loss(model, default_hyp("yolov9"), imgsz=64)
    masks = box_masks(TARGETS)
    out = model.train()(torch.rand(2, 3, 64, 64))
    assert "seg" in loss_fn(out, TARGETS, masks=masks)[1]
    assert_decreases(train_steps(model, loss_fn, 20, masks=masks))


@pytest.mark.slow
def test_loss_decreases_for_a_real_model():
    # the small configs above cover every head; one full-size graph shows the scales work together
    torch.manual_seed(0)
    model = create_model("yolov9-t", num_classes=3)
    loss_fn = build_loss(model, default_hyp("yolov9-t"), imgsz=64)
    assert_decreases(train_steps(model, loss_fn, 20))


def test_empty_images_give_a_finite_loss_with_gradients():
    for name, hyp in (("yolov7-tiny", {}), ("yolov7-tiny", {"loss_ota": 0}), ("yolov9-t", {})):
        model = create_model(name, num_classes=2).train()
        loss_fn = build_loss(model, default_hyp(name, **hyp), imgsz=64)
        loss, _ = loss_fn(model(torch.rand(2, 3, 64, 64)), [torch.zeros(0, 5), torch.zeros(0, 5)])
        loss.backward()
        assert torch.isfinite(loss) and loss > 0  # objectness / classes still learn "nothing here"


def test_task_aligned_assignment():
    points = torch.tensor([[x + 0.5, y + 0.5] for y in range(8) for x in range(8)]) * 8  # 8x8 grid, stride 8
    n = len(points)
    gt_boxes = torch.tensor([[[4.0, 4.0, 28.0, 28.0], [36.0, 36.0, 60.0, 60.0]]])
    gt_labels = torch.tensor([[[1], [0]]])
    pd_boxes = gt_boxes[0, torch.zeros(n, dtype=torch.long)][None].clone()  # every prediction on box 0 ...
    pd_boxes[0, points[:, 0] > 32] = gt_boxes[0, 1]  # ... or on box 1 for the right half
    pd_scores = torch.full((1, n, 2), 0.5)
    assigner = TaskAlignedAssigner(topk=4, num_classes=2)
    labels, boxes, scores, fg, idx = assigner(pd_scores, pd_boxes, points, gt_labels, gt_boxes, torch.ones(1, 2, 1))
    inside = [((points[:, 0] > b[0]) & (points[:, 0] < b[2]) & (points[:, 1] > b[1]) & (points[:, 1] < b[3]))
              for b in gt_boxes[0]]
    assert fg.sum() == 8 and not (fg[0] & ~(inside[0] | inside[1])).any()  # 4 per box, all inside it
    assert (labels[0][fg[0] & inside[0]] == 1).all() and (labels[0][fg[0] & inside[1]] == 0).all()
    assert scores[0][~fg[0]].sum() == 0
    best = scores[0][fg[0]].amax(-1)
    assert best.max() == pytest.approx(1.0, abs=1e-4)  # normalised to the best CIoU, which is 1 here
    torch.testing.assert_close(boxes[0][fg[0] & inside[1]], gt_boxes[0, 1].expand(4, 4))


def test_ota_candidates_lead_and_auxiliary():
    model = create_model("yolov7-tiny", num_classes=2)
    loss_fn = build_loss(model, default_hyp("yolov7-tiny"), imgsz=128)
    levels = model.train()(torch.rand(1, 3, 128, 128))["main"]
    tgt = torch.tensor([[0, 0, 50.0, 46.0, 74.0, 70.0]])  # centre (62, 58): cell 7.75, 7.25 at stride 8
    lead = loss_fn._candidates(levels, tgt, 0.5)
    aux = loss_fn._candidates(levels, tgt, 1.0)
    b, a, gj, gi, t, _ = lead[0]
    cells = set(zip(gj.tolist(), gi.tolist(), strict=True))
    assert cells == {(7, 7), (7, 8), (6, 7)}  # the centre cell and its two nearest neighbours
    assert len(aux[0][0]) == 5 / 3 * len(b)  # five cells per matching anchor instead of three
    rows = loss_fn._ota(levels, tgt, 0.5)
    assert sum(len(r) for r in rows) >= 1 and all((r[:, 4] == 0).all() for r in rows if len(r))


def test_loss_ota_0_makes_every_candidate_a_positive():
    """YOLOv7's ``loss_ota: 0`` (its train.py's ComputeLoss): no OTA, each candidate (a matching
    anchor at the centre cell or one of its two nearest neighbours) is a positive; with OTA the
    positives are a subset of those candidates."""
    torch.manual_seed(0)
    model = create_model("yolov7-tiny", num_classes=2)
    levels = [x.detach().requires_grad_() for x in model.train()(torch.rand(1, 3, 128, 128))["main"]]
    tgt = [torch.tensor([[1, 50.0, 46.0, 74.0, 70.0]])]  # 24 px: P3 and P4 anchors within 4x

    def box_cells(hyp):
        loss_fn = build_loss(model, hyp, imgsz=128)
        for x in levels:
            x.grad = None
        loss_fn({"main": levels}, tgt)[0].backward()
        return [set(map(tuple, (x.grad[..., :4].abs().sum(-1) > 0).nonzero().tolist())) for x in levels]

    loss_fn = build_loss(model, default_hyp("yolov7-tiny", loss_ota=0), imgsz=128)
    flat = flat_targets(tgt, levels[0].device)
    candidates = [set(map(tuple, torch.stack(c[:4], 1).tolist())) for c in loss_fn._candidates(levels, flat, 0.5)]
    plain, ota = box_cells(default_hyp("yolov7-tiny", loss_ota=0)), box_cells(default_hyp("yolov7-tiny"))
    assert plain == candidates and sum(map(len, plain)) >= 6  # 3 cells x at least 2 anchors
    assert all(o <= c for o, c in zip(ota, candidates, strict=True)) and sum(map(len, ota)) < sum(map(len, plain))
    # classes are learnt at every positive too
    for x in levels:
        x.grad = None
    loss_fn({"main": levels}, tgt)[0].backward()
    assert [set(map(tuple, (x.grad[..., 5:].abs().sum(-1) > 0).nonzero().tolist())) for x in levels] == plain


def test_loss_ota_other_than_0_or_1_is_refused():
    model = create_model("yolov7-tiny", num_classes=2)
    with pytest.raises(ConfigError, match="loss_ota"):
        build_loss(model, default_hyp("yolov7-tiny", loss_ota=2), imgsz=64)


@pytest.mark.slow
def test_loss_ota_0_decreases_on_a_fixed_batch():
    torch.manual_seed(0)
    model = YoloModel(MINI_V7, num_classes=3)
    loss_fn = build_loss(model, default_hyp("yolov7-p6", loss_ota=0), imgsz=64)
    assert not loss_fn.ota
    assert_decreases(train_steps(model, loss_fn, 30))


def test_auxiliary_positives_are_assigned_from_the_lead_head():
    """aux-OTA is lead-guided (YOLOv7's coarse-to-fine assignment): the cells where the auxiliary
    head gets a box loss are OTA on the lead head's predictions, whatever the auxiliary head says."""
    torch.manual_seed(0)
    model = YoloModel(MINI_V7, num_classes=3)
    loss_fn = build_loss(model, default_hyp("yolov7-p6"), imgsz=64)
    out = model.train()(torch.rand(2, 3, 64, 64))
    main = [x.detach() for x in out["main"]]
    tgt = flat_targets(TARGETS, main[0].device)

    def aux_box_cells(aux):
        aux = [x.detach().clone().requires_grad_() for x in aux]
        loss_fn({"main": main, "aux": aux}, TARGETS)[0].backward()
        # box and class channels get gradients only at positives (objectness everywhere)
        return [set(map(tuple, (a.grad[..., :4].abs().sum(-1) > 0).nonzero().tolist())) for a in aux]

    def cells(rows):
        return [set(map(tuple, r[:, :4].tolist())) for r in rows]

    lead_guided = cells(loss_fn._ota(main, tgt, 1.0))
    own = [x.detach() * 0 + torch.randn_like(x) * 3 for x in out["aux"]]  # an auxiliary head that disagrees
    assert cells(loss_fn._ota(own, tgt, 1.0)) != lead_guided  # its own OTA would pick other cells
    assert aux_box_cells(own) == lead_guided
    assert aux_box_cells(out["aux"]) == lead_guided


def test_ciou_is_one_for_equal_boxes_and_penalises_distance():
    a = torch.tensor([[0.0, 0, 10, 10]])
    assert ciou(a, a).item() == pytest.approx(1.0, abs=1e-6)
    near, far = ciou(a, a + 2), ciou(a, a + 20)
    assert -1 < far < 0 < near < 1
