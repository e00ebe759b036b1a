"""The target catalog: one YAML file per device or cloud, as plain data.

Built-in targets live in the repository's ``targets/`` folder (shipped inside the package as
``tango_core/_targets``).  Users add their own by dropping a file in a folder named by
``TANGO_TARGETS_PATH`` (``:``-separated) or ``~/.config/tango/targets``, or by calling
:func:`register_target`.  A malformed file gives an error naming the file and the field.
"""

from __future__ import annotations

import os
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ._io import read_yaml, write_yaml
from .errors import ConfigError
from .registry import Registry

KINDS = ("cloud", "k8s", "pc", "ondevice")
CPUS = ("x86_64", "aarch64", "armv7l")
ACCELERATORS = ("none", "nvidia-gpu", "adreno-gpu", "mali-gpu", "edge-tpu", "rknn-npu", "other")
#: every runtime a target may name, in no particular order (export formats use the same names)
RUNTIMES = ("pytorch", "torchscript", "onnx", "openvino", "tflite", "tvm", "tensorrt", "edgetpu", "rknn")
PACKAGES = ("cloud", "k8s", "server", "jetson", "android", "coral", "tvm-device", "rknn", "onnx-device")


@dataclass
class Target:
    id: str
    name: str
    kind: str
    cpu: str
    accelerator: str
    runtimes: list[str]
    memory_gb: float | None = None
    accelerator_name: str = ""
    os: str = ""
    deploy: dict[str, Any] = field(default_factory=dict)
    requires: list[str] = field(default_factory=list)
    #: exports measured on this machine: {candidates: ["openvino", "onnx:int8", ...], max_drop,
    #: prefer_within}; ``tango export`` without a format picks the fastest (export/_select.py)
    select: dict[str, Any] = field(default_factory=dict)
    notes: str = ""
    source: str = ""

    @property
    def cpu_only(self) -> bool:
        return self.accelerator == "none"

    @property
    def gpu(self) -> bool:
        return self.accelerator == "nvidia-gpu"

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("source")
        return d


_REQUIRED = ("id", "name", "kind", "cpu", "accelerator", "runtimes")


def target_from_dict(data: Any, source: str = "<dict>") -> Target:
    """Validate a mapping and build a :class:`Target`; errors name ``source`` and the field."""
    if not isinstance(data, dict):
        raise ConfigError(source, "<root>", "a target must be a mapping of fields")
    known = set(Target.__dataclass_fields__) - {"source"}
    for key in data:
        if key not in known:
            raise ConfigError(source, key, "unknown field", f"known fields: {sorted(known)}")
    for key in _REQUIRED:
        if data.get(key) in (None, "", []):
            raise ConfigError(source, key, "missing", "every target needs " + ", ".join(_REQUIRED))
    if not re.fullmatch(r"[a-z0-9][a-z0-9_.\-]*", str(data["id"])):
        raise ConfigError(source, "id", f"{data['id']!r} must be lower-case letters, digits, '-', '_' or '.'")
    checks = (("kind", KINDS), ("cpu", CPUS), ("accelerator", ACCELERATORS))
    for key, allowed in checks:
        if data[key] not in allowed:
            raise ConfigError(source, key, f"{data[key]!r} is not allowed", f"use one of {list(allowed)}")
    runtimes = data["runtimes"]
    if not isinstance(runtimes, list):
        raise ConfigError(source, "runtimes", "must be a list, most preferred first")
    for i, rt in enumerate(runtimes):
        if rt not in RUNTIMES:
            raise ConfigError(source, f"runtimes[{i}]", f"{rt!r} is not a runtime", f"use one of {list(RUNTIMES)}")
    mem = data.get("memory_gb")
    if mem is not None and (isinstance(mem, bool) or not isinstance(mem, (int, float)) or mem <= 0):
        raise ConfigError(source, "memory_gb", f"{mem!r} must be a positive number of GB or null (unknown)")
    deploy = data.get("deploy") or {}
    if not isinstance(deploy, dict):
        raise ConfigError(source, "deploy", "must be a mapping")
    if deploy.get("package") is not None and deploy["package"] not in PACKAGES:
        raise ConfigError(source, "deploy.package", f"{deploy['package']!r} is not a package kind",
                          f"use one of {list(PACKAGES)}")
    requires = data.get("requires") or []
    if not isinstance(requires, list) or not all(isinstance(r, str) for r in requires):
        raise ConfigError(source, "requires", "must be a list of field names the user supplies")
    select = _check_select(data.get("select"), runtimes, source)
    fields = {k: v for k, v in data.items() if v is not None or k == "memory_gb"}
    fields["select"] = select
    fields.setdefault("deploy", {})
    fields["deploy"] = dict(deploy)
    fields["requires"] = list(requires)
    return Target(source=source, **fields)


def _check_select(select: Any, runtimes: list[str], source: str) -> dict[str, Any]:
    if select in (None, {}):
        return {}
    if not isinstance(select, dict):
        raise ConfigError(source, "select", "must be a mapping: {candidates: [format or format:precision, ...]}")
    unknown = set(select) - {"by", "candidates", "max_drop", "prefer_within"}
    if unknown:
        raise ConfigError(source, f"select.{sorted(unknown)[0]}", "unknown field",
                          "known: by, candidates, max_drop, prefer_within")
    if select.get("by", "latency") != "latency":
        raise ConfigError(source, "select.by", f"{select['by']!r} is not a rule", "use latency")
    cands = select.get("candidates")
    if not isinstance(cands, list) or not cands or not all(isinstance(c, str) for c in cands):
        raise ConfigError(source, "select.candidates", "must be a non-empty list of 'format' or 'format:precision'")
    for i, c in enumerate(cands):
        fmt = c.partition(":")[0]
        if fmt not in runtimes:
            raise ConfigError(source, f"select.candidates[{i}]", f"{fmt!r} is not one of the target's runtimes",
                              f"use one of {runtimes}")
    for key, low, high in (("max_drop", 0.0, 1.0), ("prefer_within", 0.0, 1.0)):
        v = select.get(key)
        if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float)) or not low <= v <= high):
            raise ConfigError(source, f"select.{key}", f"{v!r} must be a number from {low} to {high}")
    return dict(select)


def load_target_file(path: str | os.PathLike) -> Target:
    return target_from_dict(read_yaml(path), str(path))


def builtin_targets_dir() -> Path:
    here = Path(__file__).resolve().parent
    for candidate in (here.parent / "targets", here / "_targets"):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError("the built-in target catalog (targets/) is missing from this installation")


def _search_dirs() -> list[Path]:
    dirs = [builtin_targets_dir()]
    for part in os.environ.get("TANGO_TARGETS_PATH", "").split(os.pathsep):
        if part:
            dirs.append(Path(part))
    user = Path(os.environ.get("XDG_CONFIG_HOME", Path.home() / ".config")) / "tango" / "targets"
    dirs.append(user)
    return dirs


_registry: Registry[Target] | None = None


def _catalog() -> Registry[Target]:
    global _registry
    if _registry is None:
        reg: Registry[Target] = Registry("target")
        for folder in _search_dirs():
            if not folder.is_dir():
                continue
            for path in sorted(folder.glob("*.yaml")):
                target = load_target_file(path)
                if target.id in reg:
                    raise ConfigError(str(path), "id", f"target {target.id!r} is defined twice",
                                      f"also in {reg.get(target.id).source}")
                reg.add(target.id, target, kind=target.kind)
        _registry = reg
    return _registry


def reload_catalog() -> None:
    """Forget the loaded catalog (after adding files)."""
    global _registry
    _registry = None


def list_targets(kind: str | None = None) -> list[str]:
    reg = _catalog()
    return reg.names(kind=kind) if kind else reg.names()


def get_target(target_id: str) -> Target:
    return _catalog().get(target_id)


def register_target(spec: Target | dict[str, Any], save_to: str | os.PathLike | None = None) -> Target:
    """Add a custom target for this process; with ``save_to`` (a folder) also write its YAML file."""
    target = spec if isinstance(spec, Target) else target_from_dict(spec, "<register_target>")
    if save_to is not None:
        path = Path(save_to) / f"{target.id}.yaml"
        write_yaml(path, target.to_dict())
        target.source = str(path)
    _catalog().add(target.id, target, kind=target.kind)
    return target
