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
    assert list_models("resnet-cifar*") == [f"resnet-cifar{d}" for d in (20, 32, 44, 56, 110, 152, 200)]
    assert list_models(family="ResNet") == [f"resnet{d}" for d in (18, 34, 50, 101, 152)]
    with pytest.raises(UnknownNameError, match="resnet-cifar20"):
        create_model("resnet-cifar21")


@pytest.mark.parametrize("name", ALL)
def test_metadata_matches_the_built_model(name):
    info = model_info(name)
    assert all(k in info for k in REQUIRED_META)
    size = info["input_size"]
    with torch.device("meta"):  # exact counts without allocating big models
        model = create_model(name)
        x = torch.empty(1, 3, size, size)
    # the built model is the training form; `params` may describe the deploy form (aux heads
    # removed, RepConv merged), and then the training form's figures are given beside it
    assert sum(p.numel() for p in model.parameters()) == info.get("train_params", info["params"])
    with FlopCounterMode(display=False) as counter:
        model(x)
    assert counter.get_total_flops() == info.get("train_flops", info["flops"])


@pytest.mark.parametrize("name", CLASSIFIERS)
def test_forward_and_one_training_step(name):
    torch.manual_seed(0)
    model = create_model(name, num_classes=3, in_channels=1)  # grayscale, not the default class count
    x, y = torch.randn(2, 1, 32, 32), torch.tensor([0, 2])
    model.eval()
    with torch.no_grad():
        assert model(x).shape == (2, 3)
    model.train()
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    before = [p.detach().clone() for p in model.parameters()]
    loss = torch.nn.functional.cross_entropy(model(x), y)
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
