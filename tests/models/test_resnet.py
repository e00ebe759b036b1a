"""ResNet designs and weights files: shapes, channels, saving and loading (strict and for transfer)."""

from __future__ import annotations

import pickle

import pytest
import torch

from tango_core.errors import DataError
from tango_core.models import create_model
from tango_core.models.resnet import CifarResNet
from tango_core.models.weights import load_weights, read_weights, save_weights


def test_cifar_resnet_is_6n_plus_2_weighted_layers():
    for depth in (20, 56, 200):
        model = CifarResNet(depth)
        weighted = [m for m in model.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))]
        assert len(weighted) == depth
        assert [m.out_channels for m in (model.layer1[0].conv1, model.layer2[0].conv1, model.layer3[0].conv1)] == [16, 32, 64]
    with pytest.raises(ValueError, match="6n\\+2"):
        CifarResNet(21)


def test_option_a_shortcut_subsamples_and_zero_pads():
    block = CifarResNet(20).layer2[0]
    x = torch.randn(2, 16, 8, 8)
    s = block.shortcut(x)
    assert s.shape == (2, 32, 4, 4)
    assert torch.equal(s[:, 8:24], x[:, :, ::2, ::2])
    assert s[:, :8].abs().sum() == 0 and s[:, 24:].abs().sum() == 0


def test_reparameterized_shortcut_is_a_conv_with_bit_identical_output():
    torch.manual_seed(0)
    model = CifarResNet(20, num_classes=7).eval()
    for m in model.modules():  # non-trivial statistics, so the check is not of zeros
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-1, 1)
            m.running_var.uniform_(0.5, 2)
            m.bias.data.uniform_(-1, 1)
    x = torch.randn(3, 3, 32, 32)
    before = model(x)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    assert model.reparameterize() is model
    projs = [b.proj for b in model.modules() if getattr(b, "proj", None) is not None]
    assert [(p.in_channels, p.out_channels, p.stride) for p in projs] == [(16, 32, (2, 2)), (32, 64, (2, 2))]
    assert torch.equal(model(x), before)
    # the exported graph has no Slice / Pad left for INT8 runtimes to keep in float
    graph = torch.fx.symbolic_trace(model).graph
    assert not any(n.op == "call_function" and n.target is torch.nn.functional.pad for n in graph.nodes)
    model.reparameterize()  # idempotent
    assert len([b for b in model.modules() if getattr(b, "proj", None) is not None]) == 2
    after = model.state_dict()
    assert all(torch.equal(v, after[k]) for k, v in state.items())


@pytest.mark.parametrize("name", ["resnet-cifar20", "resnet18"])
def test_saved_weights_round_trip(tmp_path, name):
    torch.manual_seed(1)
    model = create_model(name, num_classes=5, in_channels=1).eval()
    x = torch.randn(2, 1, 32, 32)
    path = save_weights(model, tmp_path / "w.pt", classes=list("abcde"), imgsz=32)
    data = read_weights(path)
    assert data["model"] == name and data["num_classes"] == 5 and data["in_channels"] == 1
    assert data["classes"] == list("abcde")
    torch.manual_seed(2)
    again = create_model(name, num_classes=5, in_channels=1, weights=str(path)).eval()
    with torch.no_grad():
        assert torch.equal(model(x), again(x))


def test_plain_state_dict_loads(tmp_path):
    model = create_model("resnet-cifar20").eval()
    torch.save(model.state_dict(), tmp_path / "sd.pt")
    report = load_weights(create_model("resnet-cifar20"), tmp_path / "sd.pt")
    assert report.complete and len(report.loaded) == len(model.state_dict())


def test_other_class_count_is_refused_strictly_and_loaded_for_transfer(tmp_path):
    src = create_model("resnet-cifar20", num_classes=10)
    path = save_weights(src, tmp_path / "ten.pt")
    with pytest.raises(DataError, match="ten.pt.*fc.weight.*transfer"):
        create_model("resnet-cifar20", num_classes=3, weights=str(path))
    dst = create_model("resnet-cifar20", num_classes=3)
    report = load_weights(dst, path, strict=False)
    assert sorted(k.split(":")[0] for k in report.shape_mismatch) == ["fc.bias", "fc.weight"]
    assert torch.equal(dst.conv1.weight, src.conv1.weight)
    assert dst.fc.weight.shape == (3, 64)


def test_unsafe_or_missing_files_give_clear_errors(tmp_path):
    model = create_model("resnet-cifar20")
    (tmp_path / "model.pt").write_bytes(pickle.dumps(model))  # a whole pickled module: refused safely
    with pytest.raises(DataError, match="model.pt.*weights_only=True"):
        load_weights(model, tmp_path / "model.pt")
    with pytest.raises(DataError, match="nope.pt.*not found"):
        load_weights(model, tmp_path / "nope.pt")
    torch.save({"step": torch.tensor(3), "name": "x"}, tmp_path / "odd.pt")
    with pytest.raises(DataError, match="odd.pt.*no state dict"):
        load_weights(model, tmp_path / "odd.pt")
    torch.save(create_model("resnet18").state_dict(), tmp_path / "other.pt")
    with pytest.raises(DataError, match="other.pt"):
        load_weights(model, tmp_path / "other.pt", strict=False)
