"""YOLOv7 and YOLOv9 detectors (and YOLOv9 instance segmentation), built from YAML configs.

Every file in ``configs/`` is one registered model: ``create_model("yolov9-c", num_classes=3)``.
The configs follow the official layer graphs (see each file's header); ``YoloModel.layers_info()``
lists the graph for the viewer, and ``deploy(model)`` returns the inference form (auxiliary
branch removed, re-parameterised convs and batch norms fused).

Registry metadata: ``params`` / ``flops`` are exact counts of the *deploy* graph at 80 classes and
640 x 640 (FLOPs count a multiply-add as two, the unit of the other families; ``gflops`` is the
same in billions, the unit of the YOLO tables); ``train_params`` / ``train_flops`` those of the
training graph; ``published_*`` the paper's table with ``published_form`` saying which graph the
published count is of.  The P6 models (w6, e6, d6, e6e) are published at 1280 x 1280
(``native_input_size``); every model accepts any size divisible by its largest stride.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .._registry import register_model
from ._builder import CONFIG_DIR, LayerInfo, YoloModel, load_config
from ._reparam import deploy, fuse, reparameterize

__all__ = ["YoloModel", "LayerInfo", "deploy", "fuse", "reparameterize", "load_config", "build_yolo"]


def build_yolo(name_or_path: str | Path, num_classes: int = 80, in_channels: int = 3,
               deploy: bool = False) -> YoloModel:
    """Build a model from a config name (``"yolov7-tiny"``) or a YAML file of the same format."""
    model = YoloModel(load_config(name_or_path), num_classes, in_channels, source=str(name_or_path))
    return model.deploy() if deploy else model


def _metadata(cfg: dict[str, Any], path: Path) -> dict[str, Any]:
    pub = cfg.get("published") or {}
    ref = cfg.get("reference") or {}
    measured = cfg["measured"]
    strides = measured["strides"]
    return {
        "task": cfg.get("task", "detection"),
        "family": cfg["family"],
        "size": cfg["size"],
        "input_size": 640,
        "num_classes": 80,
        "params": measured["params"],
        "flops": measured["flops"],
        "gflops": round(measured["flops"] / 1e9, 2),
        "params_form": "deploy",
        "train_params": measured["train_params"],
        "train_flops": measured["train_flops"],
        "source": cfg["source"],
        "strides": strides,
        "anchors": cfg.get("anchors"),
        "anchor_free": "anchors" not in cfg,
        "aux_branch": "aux" in cfg or cfg["head"][-1][1] in ("IAuxDetect", "DualDDetect", "DualSegment"),
        "native_input_size": 1280 if max(strides) == 64 else 640,
        "published_params": pub.get("params"),
        "published_gflops": pub.get("gflops"),
        "published_form": pub.get("form"),
        "published_input_size": pub.get("input_size"),
        "published_matches_graph": pub.get("matches_graph", True) if pub else None,
        "reference_params": ref.get("params"),
        "config": str(path),
    }


def _register(path: Path) -> None:
    cfg = load_config(path)

    def build(num_classes: int = 80, in_channels: int = 3, deploy: bool = False) -> YoloModel:
        return build_yolo(path, num_classes, in_channels, deploy)

    build.__name__ = f"build_{cfg['name'].replace('-', '_')}"
    register_model(cfg["name"], **_metadata(cfg, path))(build)


for _path in sorted(CONFIG_DIR.glob("*.yaml")):
    _register(_path)
