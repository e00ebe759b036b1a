"""YOLOv7 / YOLOv9 models: registry, parameter and FLOP counts against the published tables,
forward shapes, graph info and config errors."""

from __future__ import annotations

import pytest
import torch

from tango_core.errors import ConfigError, UnknownNameError
from tango_core.models import create_model, list_models, model_info
from tango_core.models.yolo import YoloModel, build_yolo, load_config
from tango_core.models.yolo._measure import measure
from tango_core.selection import load_rules

YOLO = list_models("yolov*")
DETECTION = ["yolov7-tiny", "yolov7", "yolov7-x", "yolov7-w6", "yolov7-e6", "yolov7-d6", "yolov7-e6e",
             "yolov9-t", "yolov9-s", "yolov9-m", "yolov9-c", "yolov9-e"]
SEGMENTATION = [f"yolov9-{s}-seg" for s in "tsmce"]


def test_every_variant_is_registered_with_its_metadata():
    assert sorted(YOLO) == sorted(DETECTION + SEGMENTATION)
    for name in DETECTION:
        meta = model_info(name)
        assert meta["task"] == "detection" and meta["input_size"] == 640 and meta["num_classes"] == 80
        assert meta["family"] == ("YOLOv7" if name.startswith("yolov7") else "YOLOv9")
        assert meta["params_form"] == "deploy" and meta["published_form"] in ("deploy", "train")
        assert (meta["anchors"] is None) == name.startswith("yolov9")
    for name in SEGMENTATION:
        assert model_info(name)["task"] == "segmentation"
    assert model_info("yolov7-e6e")["strides"] == [8, 16, 32, 64]
    assert model_info("yolov7-e6e")["native_input_size"] == 1280
    assert model_info("yolov9-c")["strides"] == [8, 16, 32]
    assert model_info("yolov9-c")["gflops"] == pytest.approx(102.1, abs=0.1)


def test_selection_table_names_only_creatable_yolo_models():
    table = load_rules()
    named = {m for rule in table.rules if rule.family.startswith("YOLO") for m in rule.models}
    assert named and named <= set(list_models())


@pytest.mark.parametrize("name", DETECTION + SEGMENTATION)
def test_counts_match_the_stored_and_published_figures(name):
    meta = model_info(name)
    # meta device: exact counts without memory; the training graph's FLOPs only where published
    counts = measure(load_config(name), train_flops=meta["published_form"] == "train")
    assert counts["params"] == meta["params"] and counts["train_params"] == meta["train_params"]
    assert counts["flops"] == meta["flops"] and counts["strides"] == meta["strides"]
    if meta["published_params"] is None:
        return
    if meta["published_matches_graph"]:
        ours = counts["params"] if meta["published_form"] == "deploy" else counts["train_params"]
        assert abs(ours - meta["published_params"]) <= 0.01 * meta["published_params"], (ours, meta)
        flops = counts["flops"] if meta["published_form"] == "deploy" else counts["train_flops"]
        published = meta["published_gflops"] * 1e9 * (640 / meta["published_input_size"]) ** 2
        assert abs(flops - published) <= 0.01 * published, (flops, published)
    else:  # the paper's row disagrees with the official graph; match the official code's count
        assert abs(counts["params"] - meta["reference_params"]) <= 0.01 * meta["reference_params"]


def test_published_counts_are_of_the_stated_form():
    # the tables count the deploy graph except YOLOv7-D6, whose published 154.7M is the training graph
    forms = {n: model_info(n)["published_form"] for n in DETECTION}
    assert [n for n, f in forms.items() if f == "train"] == ["yolov7-d6"]
    assert model_info("yolov9-c")["train_params"] > 2 * model_info("yolov9-c")["params"] * 0.99


@pytest.mark.parametrize("name,sizes", [
    ("yolov7-tiny", [(64, 64), (96, 160)]),
    ("yolov9-t", [(64, 96), (160, 128)]),
    ("yolov9-t-seg", [(64, 64)]),
])
def test_forward_shapes_with_any_class_count(name, sizes):
    model = create_model(name, num_classes=7, in_channels=1)
    meta = model_info(name)
    na = 3 if meta["anchors"] else 1
    for h, w in sizes:
        x = torch.rand(2, 1, h, w)
        cells = sum((h // s) * (w // s) for s in meta["strides"])
        model.eval()
        with torch.no_grad():
            out = model(x)
        if meta["task"] == "segmentation":
            pred, proto = out
            assert pred.shape == (2, cells, 4 + 7 + 32) and proto.shape == (2, 32, h // 4, w // 4)
        else:
            assert out.shape == (2, cells * na, 4 + 7)
            assert torch.all(out[..., 4:] >= 0) and torch.all(out[..., 4:] <= 1)
        model.train()
        raw = model(x)
        assert len(raw["main"]) == len(meta["strides"])
        for level, s in zip(raw["main"], meta["strides"], strict=True):
            if na == 3:
                assert level.shape == (2, 3, h // s, w // s, 5 + 7)
            else:
                assert level.shape == (2, 4 * 16 + 7, h // s, w // s)
        assert ("aux" in raw) == meta["aux_branch"]


@pytest.mark.slow
@pytest.mark.parametrize("name", [n for n in DETECTION + SEGMENTATION if n not in ("yolov7-tiny", "yolov9-t")])
def test_forward_of_every_model_at_a_small_size(name):
    meta = model_info(name)
    side = max(meta["strides"]) * (2 if max(meta["strides"]) == 32 else 1)
    model = create_model(name, num_classes=3).eval()
    with torch.no_grad():
        out = model(torch.rand(1, 3, side, side))
    pred = out[0] if meta["task"] == "segmentation" else out
    na = 3 if meta["anchors"] else 1
    assert pred.shape[:2] == (1, na * sum((side // s) ** 2 for s in meta["strides"]))
    assert torch.isfinite(pred).all()


def test_layers_info_describes_the_graph():
    model = build_yolo("yolov9-c")
    info = model.layers_info()
    assert [i["index"] for i in info] == list(range(len(info)))
    assert {i["part"] for i in info} == {"backbone", "neck", "aux", "head"}
    assert info[0]["inputs"] == (-1,) and info[0]["block"] == "Silence"
    first_elan = info[3]
    assert first_elan["block"] == "RepNCSPELAN4" and first_elan["args"] == {"c2": 256, "c3": 128, "c4": 64, "n": 1}
    assert first_elan["out_channels"] == 256 and first_elan["stride"] == 4
    head = info[-1]
    assert head["block"] == "DualDDetect" and head["inputs"] == (16, 19, 22, 31, 34, 37)
    assert sum(i["params"] for i in info) == sum(p.numel() for p in model.parameters())
    deployed = model.deploy().layers_info()
    assert {i["part"] for i in deployed} == {"backbone", "neck", "head"}
    assert deployed[-1]["block"] == "DDetect" and len(deployed) == 24


def test_yolov9_e_keeps_its_second_backbone_when_deployed():
    with torch.device("meta"):
        model = build_yolo("yolov9-e")
    blocks = [i["block"] for i in model.deploy().layers_info()]
    assert blocks.count("CBLinear") == 5 and blocks.count("CBFuse") == 5 and "SPPELAN" in blocks
    assert blocks.count("SPPELAN") == 1  # the auxiliary branch's pyramid pooling is gone


def test_input_that_does_not_fit_the_stride_gets_a_clear_error():
    model = create_model("yolov7-tiny", num_classes=2).eval()
    with pytest.raises(ValueError, match="divisible by 32"):
        model(torch.rand(1, 3, 70, 64))
    with pytest.raises(ValueError, match="takes 3 channels"):
        model(torch.rand(1, 1, 64, 64))


def _tiny_cfg(**changes):
    cfg = {"name": "t", "act": "silu", "backbone": [[-1, "Conv", [8, 3, 2]], [-1, "Conv", [8, 3, 2]],
                                                    [-1, "Conv", [8, 3, 2]]],
           "head": [[[0, 1, 2], "DDetect"]]}
    cfg.update(changes)
    return cfg


def test_config_errors_name_the_layer_and_what_to_fix():
    assert isinstance(YoloModel(_tiny_cfg(), 2), YoloModel)
    with pytest.raises(UnknownNameError, match="Did you mean 'Conv'"):
        YoloModel(_tiny_cfg(backbone=[[-1, "Cnv", [8, 3, 2]]]))
    with pytest.raises(ConfigError, match=r"layer 1\.from.*does not name an earlier layer"):
        YoloModel(_tiny_cfg(backbone=[[-1, "Conv", [8, 3, 2]], [5, "Conv", [8]], [-1, "Conv", [8]]]))
    with pytest.raises(ConfigError, match=r"layer 0 \(Conv\).*arguments are c2, k, s"):
        YoloModel(_tiny_cfg(backbone=[[-1, "Conv", [8, 3, 2, 1, "x", 0, 9]]]))
    with pytest.raises(ConfigError, match="must end with a 'head' part"):
        YoloModel({"backbone": [[-1, "Conv", [8]]]})
    with pytest.raises(ConfigError, match="activation"):
        YoloModel(_tiny_cfg(act="swish"))
    with pytest.raises(ConfigError, match="num_classes"):
        YoloModel(_tiny_cfg(), 0)
    with pytest.raises(UnknownNameError, match="yolov9-c"):
        load_config("yolov9-cc")
