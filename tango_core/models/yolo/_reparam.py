"""Inference form of a YOLO model: auxiliary branch removed, branches and batch norms fused.

``deploy(model)``:

1. keeps only the layers the main head reads (transitively): YOLOv7's auxiliary-head convs and
   YOLOv9's auxiliary reversible branch go away;
2. swaps the head for its single-branch form (IAuxDetect -> IDetect, DualDDetect -> DDetect,
   DualSegment -> Segment) holding the main branch's weights;
3. folds RepConv / RepConvN branches into one 3x3 conv, every batch norm into its conv, and
   YOLOv7's implicit add / multiply into the prediction convs.

The result computes what the training model's main head computes in eval mode (up to float
rounding), with the parameter counts the papers publish.
"""

from __future__ import annotations

import copy
import dataclasses
from typing import Any

import torch
import torch.nn as nn

from ._blocks import Conv, RepConvBase
from ._builder import YoloModel, _layers
from ._heads import SINGLE_HEAD, Head, IDetect


def _needed(model: YoloModel) -> list[int]:
    infos = model._infos
    head_inputs = list(infos[-1].inputs)
    if model.head.has_aux:
        head_inputs = head_inputs[: model.head.nl]
    need, stack = set(), list(head_inputs)
    while stack:
        i = stack.pop()
        if i < 0 or i in need:
            continue
        need.add(i)
        stack.extend(infos[i].inputs)
    return sorted(need)


def deploy_config(model: YoloModel) -> tuple[dict[str, Any], list[int]]:
    """The config of the inference graph and, per new layer, the old layer index it comes from."""
    rows = _layers(model.cfg, model.source)
    keep = _needed(model)
    new_index = {old: new for new, old in enumerate(keep)}
    cfg = {k: v for k, v in model.cfg.items() if k not in ("backbone", "neck", "aux", "head")}
    cfg["name"] = f"{model.cfg.get('name', 'yolo')}-deploy"
    for old in keep:
        part, frm, block, args = rows[old]
        inputs = [new_index.get(j, -1) for j in model._infos[old].inputs]
        cfg.setdefault(part, []).append([inputs if isinstance(frm, list) else inputs[0], block, args])
    part, frm, block, args = rows[-1]
    head_inputs = list(model._infos[-1].inputs)
    if model.head.has_aux:
        head_inputs = head_inputs[: model.head.nl]
        block = SINGLE_HEAD[type(model.head)]
    # parts keep their first-appearance order, which is graph order (each part is contiguous)
    cfg.setdefault("head", []).append([[new_index[j] for j in head_inputs], block, args])
    return cfg, keep + [len(rows) - 1]


def fuse(model: nn.Module) -> nn.Module:
    """Fold re-parameterisable branches, batch norms and implicit terms, in place."""
    modules = list(model.modules())
    for m in modules:  # RepConv first: it fuses its own convs' batch norms
        if isinstance(m, RepConvBase):
            m.fuse()
    for m in list(model.modules()):
        if isinstance(m, (Conv, IDetect)):
            m.fuse()
    if isinstance(model, YoloModel):
        model._infos = [dataclasses.replace(info, params=sum(p.numel() for p in layer.parameters()))
                        for info, layer in zip(model._infos, model.layers, strict=True)]
    return model


@torch.no_grad()
def deploy(model: YoloModel) -> YoloModel:
    """A new model for inference (the argument is left as it is); see the module docstring."""
    cfg, origin = deploy_config(model)
    device = next(model.parameters()).device
    with torch.device(device):
        out = YoloModel(cfg, model.num_classes, model.in_channels, source=f"{model.source} (deploy)")
    for new, old in enumerate(origin[:-1]):
        out.layers[new].load_state_dict(model.layers[old].state_dict())
    head = model.head.main if model.head.has_aux else model.head
    out.head.load_state_dict(copy.deepcopy(head.state_dict()))
    out.to(dtype=next(model.parameters()).dtype)
    fuse(out)
    out.eval()
    out.deployed = True  # type: ignore[attr-defined]
    return out


def reparameterize(model: YoloModel) -> YoloModel:
    """Alias of :func:`deploy` under the name the papers use."""
    return deploy(model)


__all__ = ["deploy", "deploy_config", "fuse", "reparameterize", "Head"]
