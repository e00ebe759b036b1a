"""tango_core.graph: structure, numbers, insides, folding and layout of real models."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn
from torch.utils.flop_counter import FlopCounterMode

from tango_core.errors import ConfigError, UnknownNameError
from tango_core.graph import fold_repeats, model_graph
from tango_core.models import create_model, model_info

pytestmark = pytest.mark.unit


def _edges(graph):
    return {(e.src, e.dst) for e in graph.edges}


def _check_layout(graph):
    pos = {n.id: n for n in graph.nodes}
    for e in graph.edges:  # arrows point down the page: data flows top to bottom
        assert pos[e.dst].y > pos[e.src].y, (e.src, e.dst)
    boxes = {(round(n.x), round(n.y)) for n in graph.nodes}
    assert len(boxes) == len(graph.nodes)  # no two nodes on the same spot


def test_resnet_cifar_graph_numbers_match_the_model_and_registry():
    g = model_graph("resnet-cifar20")
    info = model_info("resnet-cifar20")
    model = create_model("resnet-cifar20")
    assert g.params == sum(p.numel() for p in model.parameters()) == info["params"]
    with FlopCounterMode(display=False) as fc:
        model(torch.zeros(1, 3, 32, 32))
    assert g.flops == fc.get_total_flops() == info["flops"]
    ids = [n.id for n in g.nodes]
    assert ids[0] == "x" and ids[-1] == "output"
    chain = ["conv1", "bn1", "relu", "layer1", "layer2", "layer3", "pool", "flatten", "fc", "output"]
    assert all((a, b) in _edges(g) for a, b in zip(chain, chain[1:], strict=False))
    assert g.node("layer2").shape == [1, 32, 16, 16] and g.node("fc").shape == [1, 10]
    assert g.node("relu").kind == "function" and g.node("layer1").kind == "module"
    _check_layout(g)


def test_block_insides_are_folded_and_show_the_skip_connection():
    g = model_graph("resnet-cifar20", depth=3)
    stage1 = g.node("layer1").children
    blocks = [n for n in stage1.nodes if n.kind == "module"]
    assert [b.label for b in blocks] == ["_BasicBlock ×3"]  # three identical blocks, one node
    assert blocks[0].members == ["_0", "_1", "_2"]
    assert blocks[0].params == g.node("layer1").params
    stage2 = g.node("layer2").children
    # the first block of a stage subsamples, so it differs from the other two
    assert [b.label for b in stage2.nodes if b.kind == "module"] == ["_BasicBlock", "_BasicBlock ×2"]
    block = g.find(["layer1", blocks[0].id])
    inside = block.children
    types = [n.type for n in inside.nodes]
    assert {"Conv2d", "BatchNorm2d", "add", "relu"} <= set(types)
    add = next(n for n in inside.nodes if n.type == "add")
    sources = {e.src for e in inside.edges if e.dst == add.id}
    assert inside.nodes[0].id in sources  # the identity shortcut: block input straight into the add
    _check_layout(inside)


def test_imagenet_resnet_bottlenecks_fold_by_stage():
    g = model_graph("resnet50", input_size=64, depth=2)
    assert [n.label for n in g.node("layer3").children.nodes if n.kind == "module"] == ["Bottleneck", "Bottleneck ×5"]
    assert g.node("layer4").shape == [1, 2048, 2, 2]
    assert g.params == model_info("resnet50")["params"]


class _ConfigNet(nn.Module):
    """A small model in the layer-config protocol of the YOLO builder (``layers_info()``)."""

    def __init__(self) -> None:
        super().__init__()
        self.layers = nn.ModuleList([
            nn.Conv2d(3, 8, 3, 2, 1),                  # 0 backbone
            nn.Conv2d(8, 16, 3, 2, 1),                 # 1 backbone
            nn.Conv2d(16, 16, 3, 1, 1),                # 2 neck
            nn.Upsample(scale_factor=2),               # 3 neck
            _Cat(),                                    # 4 neck: [3, 0]
            nn.Conv2d(24, 5, 1),                       # 5 head
        ])
        self._inputs = [-1, 0, 1, 2, (3, 0), 4]
        self._parts = ["backbone", "backbone", "neck", "neck", "neck", "head"]

    def layers_info(self):
        out = []
        for i, (layer, frm, part) in enumerate(zip(self.layers, self._inputs, self._parts, strict=False)):
            inputs = list(frm) if isinstance(frm, tuple) else [frm]
            out.append({"index": i, "part": part, "block": type(layer).__name__, "args": {}, "inputs": inputs,
                        "stride": 1.0})
        return out

    def forward(self, x):
        outs = []
        for layer, frm in zip(self.layers, self._inputs, strict=False):
            x = layer([outs[j] for j in frm]) if isinstance(frm, tuple) else layer(x if frm < 0 else outs[frm])
            outs.append(x)
        return x


class _Cat(nn.Module):
    def forward(self, xs):
        return torch.cat(xs, 1)


def test_config_models_get_lanes_and_edges_from_their_config():
    model = _ConfigNet()
    g = model_graph(model, input_size=32)
    assert g.lanes == ["backbone", "neck", "head"]
    assert [n.lane for n in g.nodes[1:]] == model._parts
    assert ("3", "4") in _edges(g) and ("0", "4") in _edges(g) and ("input", "0") in _edges(g)
    assert g.node("4").shape == [1, 24, 16, 16] and g.node("5").shape == [1, 5, 16, 16]
    assert g.params == sum(p.numel() for p in model.parameters())
    xs = {lane: [n.x for n in g.nodes if n.lane == lane and n.kind == "module"] for lane in g.lanes}
    assert max(xs["backbone"]) < min(xs["neck"]) and max(xs["neck"]) < min(xs["head"])
    _check_layout(g)


class _Branchy(nn.Module):
    """Control flow on tensor values: torch.fx cannot trace it."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Conv2d(3, 4, 3, padding=1)
        self.b = nn.Conv2d(4, 4, 3, padding=1)
        self.head = nn.Linear(4, 2)

    def forward(self, x):
        x = self.a(x)
        if x.sum() > -1e9:  # data-dependent branch
            x = self.b(x)
        return self.head(x.mean((2, 3)))


def test_code_torch_fx_cannot_trace_is_recorded_while_it_runs():
    model = _Branchy()
    g = model_graph(model, input_size=16)
    assert not g.approximate
    # the branch test (sum > -1e9) feeds nothing: it is not drawn
    assert [n.id for n in g.nodes] == ["input", "a", "b", "mean", "head", "output"]
    assert ("b", "mean") in _edges(g) and ("mean", "head") in _edges(g)
    assert g.node("b").shape == [1, 4, 16, 16] and g.node("head").shape == [1, 2]
    assert g.params == sum(p.numel() for p in model.parameters())


class _RunsOnce(_Branchy):
    """A stateful block that refuses a second call, so it cannot be recorded again."""

    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    def forward(self, x):
        self.calls += 1
        if self.calls > 1:
            raise RuntimeError("already consumed")
        return super().forward(x)


def test_a_model_that_cannot_be_traced_or_rerun_still_gets_an_approximate_graph():
    g = model_graph(nn.Sequential(nn.Conv2d(3, 3, 3, padding=1), _RunsOnce()), input_size=16)
    assert g.approximate and [n.id for n in g.nodes] == ["input", "0", "1", "output"]
    assert g.node("1").shape == [1, 2] and g.node("0").params == 84  # numbers from the one run


def test_tracing_leaves_a_real_model_unchanged():
    model = create_model("resnet-cifar20").train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    model_graph(model, input_size=32, depth=3)
    assert model.training
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_meta_trace_equals_a_real_run():
    model = create_model("resnet-cifar20")
    real = model_graph(model, input_size=32)
    meta = model_graph(model, input_size=32, device="meta")
    assert next(model.parameters()).device.type == "cpu"  # the caller's model is untouched
    assert [(n.id, n.shape, n.params, n.flops) for n in real.nodes] == \
        [(n.id, n.shape, n.params, n.flops) for n in meta.nodes]


def test_folding_can_be_turned_off():
    g = model_graph("resnet-cifar20", fold=False)
    labels = [n.label for n in g.node("layer1").children.nodes]
    assert labels.count("_BasicBlock") == 3 and not any("×" in label for label in labels)
    assert fold_repeats(g.node("layer1").children).nodes[1].repeat == 3


def test_to_dict_is_plain_json_with_nested_insides():
    import json

    g = model_graph("resnet-cifar20", depth=3)
    d = json.loads(json.dumps(g.to_dict()))
    assert d["params"] == g.params and d["width"] > 0 and d["height"] > 0
    layer1 = next(n for n in d["nodes"] if n["id"] == "layer1")
    assert layer1["children"]["nodes"][1]["label"] == "_BasicBlock ×3"
    assert layer1["children"]["nodes"][1]["children"]["nodes"]


def test_summary_table():
    text = model_graph("resnet-cifar20").summary()
    assert "layer3" in text and "1×64×8×8" in text and "269,722" in text and "81,102,080" in text


def test_bad_input_gets_clear_errors():
    with pytest.raises(UnknownNameError, match="resnet-cifar20"):
        model_graph("resnet-cifar21")
    with pytest.raises(ConfigError, match="input_size.*pass input_size"):
        model_graph(_Branchy())
    g = model_graph("resnet-cifar20")
    with pytest.raises(UnknownNameError, match="graph node"):
        g.find("layer1/nope")


@pytest.mark.parametrize("name", ["yolov7-tiny", "yolov9-t"])
def test_yolo_graphs_follow_the_config_in_backbone_neck_head_lanes(name):
    g = model_graph(name, input_size=64, depth=2)
    with torch.device("meta"):
        model = create_model(name)
    layers = model.layers_info()
    assert g.lanes[0] == "backbone" and g.lanes[-1] == "head" and "neck" in g.lanes
    assert [n.lane for n in g.nodes[1:]] == [info["part"] for info in layers]
    assert g.params == sum(p.numel() for p in model.parameters())
    edges = _edges(g)
    for info in layers:
        for j in info["inputs"]:
            assert ("input" if j < 0 else str(j), str(info["index"])) in edges
    _check_layout(g)
    block = next(n for n in g.nodes if n.type in ("ELAN", "RepNCSPELAN4"))
    assert block.children is not None and block.children.params == block.params
    assert any(n.type == "cat" for n in block.children.nodes)  # the aggregation inside the block


@pytest.mark.slow
def test_the_largest_yolo_graph_stays_small_enough_to_draw():
    import json

    g = model_graph("yolov7-e6e", input_size=1280, depth=3)
    assert len(g.nodes) > 60 and set(g.lanes) >= {"backbone", "neck", "head"}
    assert len(json.dumps(g.to_dict())) < 1_000_000  # sent to the browser once
    deepest = [n for n in g.nodes if n.lane == "backbone" and n.kind == "module"][-1]
    assert deepest.shape[-2:] == [20, 20]            # stride 64 at 1280 px
    _check_layout(g)


def test_cli_prints_the_graph():
    import json

    from typer.testing import CliRunner

    from tango_core.cli import app

    runner = CliRunner()
    out = runner.invoke(app, ["graph", "resnet-cifar20"])
    assert out.exit_code == 0, out.output
    assert "layer3" in out.output and "81,102,080" in out.output
    out = runner.invoke(app, ["graph", "resnet-cifar20", "--size", "64", "--json"])
    data = json.loads(out.output)
    assert data["input_shape"] == [1, 3, 64, 64] and data["flops"] == 4 * 81_102_080 - 3 * 1_280  # the fc layer does not scale
