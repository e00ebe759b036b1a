"""Every registered model builds, matches its metadata and trains one step; the selection table's names exist."""

from __future__ import annotations

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from tango_core.errors import UnknownNameError
from tango_core.models import create_model, list_models, model_info
from tango_core.models._registry import REQUIRED_META
from tango_core.selection import default_rules

ALL = list_models()
CLASSIFIERS = list_models(task="classification")


def test_registry_lists_and_filters():
    assert "resnet-cifar20" in ALL and "resnet18" in ALL
    # searched=None: the built-in models, not architectures a NAS run registered in this process
    assert list_models("resnet-cifar*", searched=None) == [f"resnet-cifar{d}" for d in (20, 32, 44, 56, 110, 152, 200)]
    assert list_models(family="ResNet", searched=None) == [f"resnet{d}" for d in (18, 34, 50, 101, 152)]
    with pytest.raises(UnknownNameError, match="resnet-cifar20"):
        create_model("resnet-cifar21")


def _heavy(name: str) -> bool:
    return model_info(name)["params"] > 30_000_000


def _cases(names):
    return [pytest.param(n, marks=pytest.mark.slow) if _heavy(n) else n for n in names]


@pytest.mark.parametrize("name", ALL)
def test_metadata_matches_the_built_model(name):
    info = model_info(name)
    assert all(k in info for k in REQUIRED_META)
    size = info["input_size"]
    with torch.device("meta"):  # exact counts without allocating big models
        model = create_model(name)
        x = torch.empty(1, 3, size, size)
    # create_model builds the training form; a family whose `params` is its deploy form says so
    expected = info["train_params"] if info.get("params_form") == "deploy" else info["params"]
    assert sum(p.numel() for p in model.parameters()) == expected
    if info["task"] == "classification":  # detection FLOPs (deploy form) are checked by the YOLO tests
        with FlopCounterMode(display=False) as counter:
            model(x)
        assert counter.get_total_flops() == info["flops"]


def _float_outputs(out):
    if isinstance(out, torch.Tensor):
        return [out] if out.is_floating_point() else []
    if isinstance(out, dict):
        out = list(out.values())
    if isinstance(out, (list, tuple)):
        return [t for o in out for t in _float_outputs(o)]
    return []


@pytest.mark.parametrize("name", _cases(ALL))
def test_forward_and_one_training_step(name):
    torch.manual_seed(0)
    info = model_info(name)
    size = 32 if info["task"] == "classification" else 64  # the smallest input every family accepts
    model = create_model(name, num_classes=3, in_channels=1)  # grayscale, not the default class count
    x = torch.randn(2, 1, size, size)
    model.eval()
    with torch.no_grad():
        out = model(x)
    if info["task"] == "classification":
        assert out.shape == (2, 3)
    assert _float_outputs(out) and all(torch.isfinite(t).all() for t in _float_outputs(out))
    model.train()
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    before = [p.detach().clone() for p in model.parameters()]
    out = model(x)
    if info["task"] == "classification":
        loss = torch.nn.functional.cross_entropy(out, torch.tensor([0, 2]))
    else:  # the family's own loss lives in its task adapter; any scalar of every output trains the graph
        loss = sum(t.float().square().mean() for t in _float_outputs(out))
    loss.backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())
    opt.step()
    assert any(not torch.equal(a, p) for a, p in zip(before, model.parameters(), strict=True))


def test_every_classification_name_in_the_selection_table_creates_a_model():
    table = default_rules()
    names = {m for rule in table.rules if rule.task == "classification" for m in rule.models}
    assert names
    for name in sorted(names):
        assert model_info(name)["task"] == "classification"


def test_selection_table_rows_of_registered_families_are_complete():
    # a row whose family has any registered model must have all of its models registered
    table = default_rules()
    registered_families = {model_info(n)["family"] for n in ALL}
    assert {"ResNet-CIFAR", "ResNet"} <= registered_families
    for rule in table.rules:
        if rule.family in registered_families:
            missing = [m for m in rule.models if m not in ALL]
            assert not missing, f"{rule.family}: {missing} are in the selection table but not registered"
            assert {model_info(m)["task"] for m in rule.models} == {rule.task}
