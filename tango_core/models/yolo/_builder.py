"""One builder for every YOLO config: YAML data -> ``YoloModel``.

A config names its layers in parts, in graph order (``backbone``, ``neck``, ``aux``, ``head``;
a part may be absent).  Each layer is ``[from, block, args]``:

* ``from``: ``-1`` (the previous layer), a negative offset, an absolute layer index, or a list of
  them; the first layer's ``-1`` is the image.
* ``block``: a name from ``_blocks.BLOCKS`` (heads included).
* ``args``: the block's arguments after its input channels, as a list or a mapping.

The builder infers every layer's input and output channels and its stride, injects the class
count and the config's ``anchors`` into the head, and records a :class:`LayerInfo` per layer for
the graph viewer.  Layers of the ``aux`` part train the model only: ``deploy`` drops them.
"""

from __future__ import annotations

import copy
import inspect
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from ...errors import ConfigError
from . import _heads  # noqa: F401  (registers the heads as blocks)
from ._blocks import ACTIVATIONS, BLOCKS

PARTS = ("backbone", "neck", "aux", "head")


@dataclass(frozen=True)
class LayerInfo:
    """One node of the graph: what the graph viewer draws."""

    index: int
    part: str
    block: str
    args: dict[str, Any]
    inputs: tuple[int, ...]  # absolute layer indices; -1 is the image
    in_channels: tuple[Any, ...]
    out_channels: Any  # int, a list (CBLinear), or None (the head)
    stride: float
    params: int

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _layers(cfg: dict[str, Any], source: str) -> list[tuple[str, Any, str, Any]]:
    unknown = [k for k in cfg if k in ("layers", "body")]
    if unknown:
        raise ConfigError(source, unknown[0], "is not a part name", f"use the parts {', '.join(PARTS)}")
    present = [p for p in cfg if p in PARTS]
    if not present or present[-1] != "head":
        raise ConfigError(source, "head", "the config must end with a 'head' part", "add the detection head last")
    out = []
    for part in present:
        rows = cfg[part]
        if not isinstance(rows, list):
            raise ConfigError(source, part, "must be a list of [from, block, args] rows")
        for row in rows:
            if not isinstance(row, list) or len(row) not in (2, 3):
                raise ConfigError(source, part, f"row {row!r} is not [from, block, args]")
            frm, block = row[0], row[1]
            args = row[2] if len(row) == 3 else []
            out.append((part, frm, block, args))
    return out


def _absolute(frm: Any, i: int, source: str) -> list[int]:
    items = frm if isinstance(frm, list) else [frm]
    out = []
    for f in items:
        if not isinstance(f, int):
            raise ConfigError(source, f"layer {i}.from", f"{f!r} is not a layer index")
        j = i + f if f < 0 else f
        if i == 0 and f == -1:
            j = -1
        elif not 0 <= j < i:
            raise ConfigError(source, f"layer {i}.from", f"{f} does not name an earlier layer")
        out.append(j)
    return out


def _bind(cls: type, c_in: Any, args: Any, extra: dict[str, Any], source: str, i: int) -> tuple[nn.Module, dict]:
    sig = inspect.signature(cls.__init__)
    # config args fill the block's own parameters; act / nc / anchors come from the model
    params = [p for p in list(sig.parameters)[2:] if p not in extra]
    try:
        if isinstance(args, dict):
            kwargs = dict(args)
        else:
            kwargs = dict(zip(params, args, strict=False))  # checked just below
            if len(args) > len(params):
                raise TypeError(f"takes at most {len(params)} arguments, got {len(args)}")
        for k, v in extra.items():
            if k in sig.parameters and k not in kwargs:
                kwargs[k] = v
        bound = sig.bind(None, c_in, **kwargs)
        module = cls(c_in, **kwargs)
    except (TypeError, ValueError) as exc:
        raise ConfigError(source, f"layer {i} ({cls.__name__})", str(exc),
                          f"arguments are {', '.join(params)}") from exc
    shown = {k: v for k, v in bound.arguments.items() if k not in ("self", "c1") and k not in extra}
    return module, shown


class YoloModel(nn.Module):
    """A YOLOv7 / YOLOv9 network built from a config; see the module docstring for the format.

    ``layers_info()`` lists the graph; ``deploy()`` returns the inference form (auxiliary
    branch removed, re-parameterised convs and batch norms fused).
    """

    def __init__(self, cfg: dict[str, Any], num_classes: int = 80, in_channels: int = 3,
                 source: str = "<config>") -> None:
        super().__init__()
        if num_classes < 1:
            raise ConfigError(source, "num_classes", f"must be at least 1, got {num_classes}")
        self.cfg = copy.deepcopy(cfg)
        self.source = str(source)
        self.num_classes, self.in_channels = num_classes, in_channels
        act = cfg.get("act", "silu")
        if act not in ACTIVATIONS:
            raise ConfigError(source, "act", f"unknown activation {act!r}", f"use one of {sorted(ACTIVATIONS)}")
        extra = {"act": act, "nc": num_classes}
        if "anchors" in cfg:
            extra["anchors"] = cfg["anchors"]

        layers, infos, channels, strides, self._inputs = [], [], [], [], []
        for i, (part, frm, block, args) in enumerate(_layers(cfg, source)):
            cls = BLOCKS.get(block)
            inputs = _absolute(frm, i, source)
            c_in = [in_channels if j < 0 else channels[j] for j in inputs]
            s_in = [1.0 if j < 0 else strides[j] for j in inputs]
            module, shown = _bind(cls, c_in if isinstance(frm, list) else c_in[0], args, extra, source, i)
            stride = s_in[-1] * module.down
            self._inputs.append(tuple(inputs) if isinstance(frm, list) else inputs[0])
            layers.append(module)
            channels.append(module.c2)
            strides.append(stride)
            n_params = sum(p.numel() for p in module.parameters())
            infos.append(LayerInfo(i, part, block, shown, tuple(inputs), tuple(c_in), module.c2, stride, n_params))
        self.layers = nn.ModuleList(layers)
        self._infos = infos
        used = {j for info in infos[1:] for j in info.inputs}
        self._keep = [i in used for i in range(len(infos))]

        head = self.layers[-1]
        if not isinstance(head, _heads.Head):
            raise ConfigError(source, "head", f"the last layer is {infos[-1].block}, not a detection head")
        head.set_strides([strides[j] for j in infos[-1].inputs])
        self.stride = int(max(strides[j] for j in infos[-1].inputs))

    # -- graph --------------------------------------------------------------------------------------
    @property
    def head(self) -> _heads.Head:
        return self.layers[-1]  # type: ignore[return-value]

    def layers_info(self) -> list[dict[str, Any]]:
        """Per-layer records: index, part, block, args, inputs, in/out channels, stride, params."""
        return [info.as_dict() for info in self._infos]

    @property
    def strides(self) -> list[float]:
        return list(self.head.level_strides)

    def forward(self, image: torch.Tensor):
        if not torch.jit.is_tracing() and not torch.compiler.is_compiling():
            h, w = image.shape[-2:]
            if h % self.stride or w % self.stride or image.shape[1] != self.in_channels:
                raise ValueError(
                    f"{self.cfg.get('name', 'model')}: input of shape {tuple(image.shape)} does not fit: the model "
                    f"takes {self.in_channels} channels and sides divisible by {int(self.stride)} "
                    f"(letterbox or resize the image, e.g. to {int(self.stride) * max(1, round(max(h, w) / self.stride))})")
        outs: list[Any] = []
        y: Any = image
        for module, frm, keep in zip(self.layers, self._inputs, self._keep, strict=True):
            if isinstance(frm, tuple):
                y = module([image if j < 0 else outs[j] for j in frm])
            else:
                y = module(image if frm < 0 else outs[frm])
            outs.append(y if keep else None)
        return y

    def deploy(self) -> YoloModel:
        """The inference form of this model; see ``_reparam.deploy``."""
        from ._reparam import deploy

        return deploy(self)

    def extra_repr(self) -> str:
        return f"{self.cfg.get('name', '?')}: {len(self.layers)} layers, {self.num_classes} classes"


CONFIG_DIR = Path(__file__).with_name("configs")
_NOT_INHERITED = ("extends", "head_block", "published", "reference", "measured", "name", "source")


def load_config(name_or_path: str | Path) -> dict[str, Any]:
    """Read a config by variant name (``"yolov9-c"``) or path, resolving ``extends``.

    A config that ``extends`` another takes its graph and settings; ``head_block: [block, args]``
    swaps the block of the head row (same inputs), e.g. a segmentation head on a detection graph.
    """
    from ..._io import read_yaml

    path = Path(name_or_path)
    if path.suffix not in (".yaml", ".yml"):
        path = CONFIG_DIR / f"{name_or_path}.yaml"
    if not path.is_file():
        from ...errors import UnknownNameError

        raise UnknownNameError("YOLO config", str(name_or_path), sorted(p.stem for p in CONFIG_DIR.glob("*.yaml")))
    cfg = read_yaml(path)
    if not isinstance(cfg, dict):
        raise ConfigError(path, "<root>", "a YOLO config must be a mapping")
    if "extends" not in cfg:
        return cfg
    base = load_config(CONFIG_DIR / f"{cfg['extends']}.yaml")
    merged = {k: v for k, v in base.items() if k not in _NOT_INHERITED}
    merged.update({k: v for k, v in cfg.items() if k not in ("extends", "head_block")})
    for part in PARTS:  # parts come after the settings, in the base's order
        if part in base:
            merged[part] = copy.deepcopy(base[part])
    if "head_block" in cfg:
        block = cfg["head_block"]
        if not (isinstance(block, list) and len(block) == 2):
            raise ConfigError(path, "head_block", f"{block!r} is not [block, args]")
        frm = merged["head"][-1][0]
        merged["head"][-1] = [frm, block[0], block[1]]
    return merged
