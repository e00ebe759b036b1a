"""The YOLOv7 search space: the depth of every ELAN block and a width multiplier.

This is the original TANGO's supernet idea (each ELAN block keeps 1 … n of its 3x3 chain) on
any YOLOv7 config, plus a channel multiplier.  An architecture is the base's own YAML config
with the new depths and widths written in, so a chosen one is an ordinary YOLO config: the graph
viewer draws it and the YOLO builder builds it.

When an ELAN's depth changes, its concatenation keeps the base's pattern: every chain output
(the tiny model and the neck blocks) or every second one from the end (the base backbone,
``[-1, -3, -5, -6]``), always with the two 1x1 branches.
"""

from __future__ import annotations

import copy
from typing import Any

import torch.nn as nn

from ._nas_spaces import NasSpace, register_space

#: how many leading arguments of a block are channel counts (scaled by the width multiplier)
CHANNEL_ARGS = {"Conv": 1, "RepConv": 1, "ELAN": 3, "MPConv": 1, "DownC": 1, "SPPCSPC": 1, "SPPCSPTiny": 1}
#: blocks without channel arguments
NO_CHANNELS = {"Concat", "Upsample", "MaxPool", "ReOrg", "Shortcut", "IDetect", "IAuxDetect", "Detect"}
WIDTHS = [0.5, 0.75, 1.0, 1.25]
PARTS = ("backbone", "neck", "aux", "head")


def _rows(cfg: dict[str, Any]):
    for part in PARTS:
        for i, row in enumerate(cfg.get(part) or []):
            yield part, i, row


def elan_depths(cfg: dict[str, Any]) -> list[int]:
    """The chain depth of each ELAN row of a config, in graph order."""
    return [int(row[2][3]) for _, _, row in _rows(cfg) if row[1] == "ELAN"]


def _cat(depth: int, base_depth: int, base_cat: list[int]) -> list[int]:
    if len(base_cat) == base_depth + 2:  # every tensor of the block
        return [-(j + 1) for j in range(depth + 2)]
    # tensors a, b, c_1 … c_depth; c_k is tensor k + 1, i.e. offset k + 1 - n from the end
    n = depth + 2
    return [k + 1 - n for k in range(depth, 0, -2)] + [1 - n, -n]


def make_divisible(c: float, divisor: int = 8) -> int:
    return max(divisor, int(round(c / divisor)) * divisor)


def apply_arch(base_cfg: dict[str, Any], depths: list[int], width: float) -> dict[str, Any]:
    """``base_cfg`` with ELAN depths ``depths`` and every channel count times ``width``."""
    cfg = copy.deepcopy(base_cfg)
    base = elan_depths(base_cfg)
    if len(depths) != len(base):
        from ..errors import ConfigError

        raise ConfigError("arch", "depths", f"{len(depths)} depths for {len(base)} ELAN blocks of "
                          f"{base_cfg.get('name', 'the config')}")
    k = 0
    for _, _, row in _rows(cfg):
        block = row[1]
        args = list(row[2]) if len(row) > 2 and isinstance(row[2], list) else None
        if block == "ELAN":
            out, mid, chain, d0, cat0 = args
            args = [out, mid, chain, int(depths[k]), _cat(int(depths[k]), d0, list(cat0))]
            k += 1
        if width != 1.0 and block not in NO_CHANNELS:
            if block not in CHANNEL_ARGS:
                from ..errors import ConfigError

                raise ConfigError("arch", "width", f"the width search does not know the channels of block {block}",
                                  f"it knows {sorted(CHANNEL_ARGS)}; search depths only (width 1.0)")
            n = CHANNEL_ARGS[block]
            args = [make_divisible(a * width) for a in args[:n]] + args[n:]
        if args is not None:
            row[2] = args
    return cfg


class YoloV7Space(NasSpace):
    name = "yolov7"
    bases = ("yolov7*",)
    description = "depth of every ELAN block (1 … base + 1) and a width multiplier around a YOLOv7"

    def _cfg(self, base: str) -> dict[str, Any]:
        from ..models.yolo import load_config

        return load_config(base)

    def params(self, base: str) -> dict[str, dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {
            f"elan{i + 1}": {"type": "int", "low": 1, "high": d + 1} for i, d in enumerate(elan_depths(self._cfg(base)))}
        out["width"] = {"choices": list(WIDTHS)}
        return out

    def base_params(self, base: str) -> dict[str, Any]:
        return {**{f"elan{i + 1}": d for i, d in enumerate(elan_depths(self._cfg(base)))}, "width": 1.0}

    def arch(self, base: str, params: dict[str, Any]) -> dict[str, Any]:
        n = len(elan_depths(self._cfg(base)))
        return {"base": base, "depths": [int(params[f"elan{i + 1}"]) for i in range(n)],
                "width": float(params["width"])}

    def config(self, arch: dict[str, Any]) -> dict[str, Any]:
        """The full YOLO config of an architecture (what a chosen model saves)."""
        cfg = apply_arch(self._cfg(arch["base"]), arch["depths"], arch["width"])
        cfg["name"] = arch.get("name", f"{arch['base']}-nas")
        return cfg

    def build(self, arch: dict[str, Any], num_classes: int, in_channels: int = 3) -> nn.Module:
        from ..models.yolo import YoloModel

        return YoloModel(self.config(arch), num_classes, in_channels, source=f"NAS {arch['base']}")

    def describe(self, arch: dict[str, Any]) -> str:
        return f"elan {'-'.join(map(str, arch['depths']))} w{arch['width']:g}"


register_space(YoloV7Space())
