"""Architecture search spaces, one registry: each space turns a base model into searchable
choices (plain data, sampled like an HPO space), the choices into an architecture (plain data,
saved with a chosen model), and an architecture into a module.

``resnet-cifar``: blocks per stage (3 stages) and a width multiplier around a ``resnet-cifar*``
base; ``resnet``: the same for the 4 stages of ``resnet18`` … ``resnet152``; ``yolov7``: the depth
of every ELAN block (the original's supernet idea) and a width multiplier (tango_core.autonn._yolo_space).
"""

from __future__ import annotations

import fnmatch
import math
from typing import Any

import torch.nn as nn

from ..registry import Registry

_SPACES: Registry[NasSpace] = Registry("NAS space")


class NasSpace:
    """Subclass, set ``name`` / ``bases`` (glob patterns of base models) and register an instance
    with :func:`register_space`."""

    name = "space"
    bases: tuple[str, ...] = ()
    description = ""

    def applies_to(self, base: str) -> bool:
        return any(fnmatch.fnmatch(base, p) for p in self.bases)

    def params(self, base: str) -> dict[str, dict[str, Any]]:
        """The searchable choices around ``base``, in the HPO space format (``_space.py``)."""
        raise TypeError(f"{type(self).__name__} must define params()")

    def base_params(self, base: str) -> dict[str, Any]:
        """The choices that rebuild ``base`` itself (trial 0 of a search)."""
        raise TypeError(f"{type(self).__name__} must define base_params()")

    def arch(self, base: str, params: dict[str, Any]) -> dict[str, Any]:
        """The architecture (plain data) for a set of choices."""
        raise TypeError(f"{type(self).__name__} must define arch()")

    def build(self, arch: dict[str, Any], num_classes: int, in_channels: int = 3) -> nn.Module:
        raise TypeError(f"{type(self).__name__} must define build()")

    def describe(self, arch: dict[str, Any]) -> str:
        """A short text for tables: ``d2-3-1 w0.75``."""
        return str(arch)


def register_space(space: NasSpace, **meta: Any) -> NasSpace:
    """Add a space (an instance of a :class:`NasSpace` subclass); duplicate names fail."""
    return _SPACES.add(space.name, space, description=space.description, bases=list(space.bases), **meta)


def _ensure_loaded() -> None:
    if "yolov7" not in _SPACES:
        from . import _yolo_space  # noqa: F401  (registers the YOLO spaces)


def list_spaces(pattern: str = "*") -> list[str]:
    _ensure_loaded()
    return _SPACES.names(pattern)


def get_space(name: str) -> NasSpace:
    _ensure_loaded()
    return _SPACES.get(name)


def space_for(base: str) -> NasSpace:
    """The first registered space that searches around ``base``."""
    _ensure_loaded()
    for name in _SPACES.names():
        space = _SPACES.get(name)
        if space.applies_to(base):
            return space
    from ..errors import ConfigError

    known = {n: _SPACES.meta(n)["bases"] for n in _SPACES.names()}
    raise ConfigError("search", "model", f"no NAS space searches around {base!r}",
                      f"spaces and their base models: {known}; or pass space=<name>")


# --- ResNet -----------------------------------------------------------------------------------------
def _depth_range(n: int) -> tuple[int, int]:
    """Blocks per stage searched around a base stage of ``n`` blocks."""
    return max(1, n // 3), max(n + 1, math.ceil(1.5 * n))


WIDTHS = [0.5, 0.75, 1.0, 1.25, 1.5]


class _ResNetSpace(NasSpace):
    design = "cifar"

    def base_arch(self, base: str) -> dict[str, Any]:
        raise TypeError

    def params(self, base: str) -> dict[str, dict[str, Any]]:
        arch = self.base_arch(base)
        out: dict[str, dict[str, Any]] = {}
        for i, n in enumerate(arch["depths"]):
            low, high = _depth_range(n)
            out[f"depth{i + 1}"] = {"type": "int", "low": low, "high": high}
        out["width"] = {"choices": list(WIDTHS)}
        return out

    def base_params(self, base: str) -> dict[str, Any]:
        arch = self.base_arch(base)
        return {**{f"depth{i + 1}": n for i, n in enumerate(arch["depths"])}, "width": arch["width"]}

    def arch(self, base: str, params: dict[str, Any]) -> dict[str, Any]:
        arch = self.base_arch(base)
        depths = [int(params[f"depth{i + 1}"]) for i in range(len(arch["depths"]))]
        return {**arch, "depths": depths, "width": float(params["width"])}

    def build(self, arch: dict[str, Any], num_classes: int, in_channels: int = 3) -> nn.Module:
        from ._resnet_arch import ArchResNet

        return ArchResNet(arch, num_classes=num_classes, in_channels=in_channels)

    def describe(self, arch: dict[str, Any]) -> str:
        return f"d{'-'.join(map(str, arch['depths']))} w{arch['width']:g}"


class ResNetCifarSpace(_ResNetSpace):
    name = "resnet-cifar"
    bases = ("resnet-cifar*",)
    description = "blocks per stage (3 stages) and width around a 6n+2 CIFAR ResNet"

    def base_arch(self, base: str) -> dict[str, Any]:
        from ..models import model_info

        n = int(model_info(base)["blocks_per_stage"])
        return {"design": "cifar", "block": "basic", "depths": [n, n, n], "width": 1.0}


#: torchvision's blocks per stage of the ImageNet ResNets
IMAGENET_DEPTHS = {18: [2, 2, 2, 2], 34: [3, 4, 6, 3], 50: [3, 4, 6, 3], 101: [3, 4, 23, 3], 152: [3, 8, 36, 3]}


class ResNetSpace(_ResNetSpace):
    name = "resnet"
    bases = ("resnet[0-9]*",)
    description = "blocks per stage (4 stages) and width around an ImageNet ResNet"

    def base_arch(self, base: str) -> dict[str, Any]:
        from ..models import model_info

        info = model_info(base)
        return {"design": "imagenet", "block": info["block"], "depths": list(IMAGENET_DEPTHS[int(info["depth"])]),
                "width": 1.0}


register_space(ResNetCifarSpace())
register_space(ResNetSpace())
