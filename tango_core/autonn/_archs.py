"""Searched architectures as ordinary registered models.

A chosen architecture is saved as a small YAML file in the project's ``models/`` folder (name,
NAS space, base model, the architecture as plain data, and where it came from).  The model
registry registers every such file it can see: the folders of the projects opened in this
process (``Project`` announces its ``models/`` folder) and those listed in ``TANGO_MODELS_PATH``
(``os.pathsep``-separated), so ``create_model("resnet-cifar20-nas7")`` works in a new process
and the model trains, exports and deploys like a base model.

This module stays light (no torch, no Optuna at import): the registry calls it on every lookup.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .._io import read_yaml, write_yaml
from ..errors import ConfigError

MODELS_DIR = "models"
_DIRS: list[Path] = []
_LOADED: dict[str, tuple[str, Any]] = {}  # name -> (file, arch)
_SEEN: dict[Path, float] = {}  # file -> mtime when last registered


def add_model_dir(path: str | os.PathLike) -> None:
    """Register the architectures saved in ``path`` (now and whenever the registry is consulted)."""
    path = Path(path).resolve()
    if path not in _DIRS:
        _DIRS.append(path)


def model_dirs() -> list[Path]:
    env = [Path(p).resolve() for p in os.environ.get("TANGO_MODELS_PATH", "").split(os.pathsep) if p]
    return env + [d for d in _DIRS if d not in env]


def register_saved() -> list[str]:
    """Register every saved architecture not registered yet; returns the new names."""
    new = []
    for folder in model_dirs():
        if not folder.is_dir():
            continue
        for path in sorted(folder.glob("*.yaml")):
            mtime = path.stat().st_mtime
            if _SEEN.get(path) == mtime:
                continue
            _SEEN[path] = mtime
            try:
                name = register_file(path)
            except ConfigError as exc:  # one bad file must not break every registry lookup
                import warnings

                warnings.warn(f"architecture file skipped: {exc}", stacklevel=2)
                continue
            if name:
                new.append(name)
    return new


def _check(cfg: Any, source: str) -> dict[str, Any]:
    if not isinstance(cfg, dict):
        raise ConfigError(source, "<root>", "an architecture file must be a mapping")
    for key in ("name", "space", "base", "arch", "task", "num_classes", "input_size"):
        if key not in cfg:
            raise ConfigError(source, key, "missing", "architecture files are written by SearchResult.choose()")
    return cfg


def register_file(path: str | os.PathLike) -> str | None:
    """Register the architecture saved in ``path``; None when this exact one is registered already."""
    path = Path(path)
    cfg = _check(read_yaml(path), str(path))
    return register_arch(cfg, source=str(path))


def _name_is_free(cfg: dict[str, Any], source: str) -> bool:
    """False when this very architecture is registered under the name already; an error when the
    name belongs to another architecture or to a built-in model."""
    from ..models._registry import _MODELS

    name = cfg["name"]
    if name in _LOADED:
        if _LOADED[name][1] == cfg["arch"]:
            return False
        raise ConfigError(source, "name", f"model {name!r} is registered already with another architecture "
                          f"(from {_LOADED[name][0]})", "rename one of the two files (its 'name' field)")
    if name in _MODELS:
        raise ConfigError(source, "name", f"{name!r} is the name of a built-in model", "pick another name")
    return True


def register_arch(cfg: dict[str, Any], source: str = "<arch>") -> str | None:
    if not _name_is_free(cfg, source):
        return None
    name = cfg["name"]
    _register(name, cfg, source)
    _LOADED[name] = (source, cfg["arch"])
    return name


def measure(cfg: dict[str, Any]) -> dict[str, int]:
    """Parameters and FLOPs (at ``input_size``, a multiply-add counted as two) of an architecture."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from ._nas_spaces import get_space

    model = get_space(cfg["space"]).build(cfg["arch"], cfg["num_classes"], cfg.get("in_channels", 3)).eval()
    size = cfg["input_size"]
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(torch.zeros(1, cfg.get("in_channels", 3), size, size))
    return {"params": sum(p.numel() for p in model.parameters()), "flops": int(counter.get_total_flops())}


def _meta(cfg: dict[str, Any], source: str) -> dict[str, Any]:
    """Registry metadata of an architecture, beside its base's.  Saved files carry their counts,
    so registering one builds nothing (the FLOP counter alone takes seconds to import)."""
    from ..models import model_info
    from ._nas_spaces import get_space

    counts = {k: cfg[k] for k in ("params", "flops") if k in cfg}
    if len(counts) < 2:
        counts = measure(cfg)
    base = model_info(cfg["base"])
    search = cfg.get("search") or {}
    where = f"study {search.get('study')!r} trial {search.get('trial')}" if search else "a saved architecture"
    return {"task": cfg["task"], "family": f"{base['family']} (NAS)", "size": get_space(cfg["space"]).describe(
                cfg["arch"]), "input_size": cfg["input_size"], "num_classes": cfg["num_classes"], **counts,
            "source": f"tango NAS around {cfg['base']} ({where}; {source})", "base": cfg["base"],
            "nas_space": cfg["space"], "arch": cfg["arch"], "searched": True,
            **{k: base[k] for k in ("strides", "anchors") if k in base}}


def _register(name: str, cfg: dict[str, Any], source: str) -> None:
    from ..models import register_model
    from ._nas_spaces import get_space

    space, arch = get_space(cfg["space"]), cfg["arch"]

    def build(num_classes: int = cfg["num_classes"], in_channels: int = cfg.get("in_channels", 3), **kwargs: Any):
        if kwargs:
            raise TypeError(f"model {name!r} takes no options {sorted(kwargs)} (its architecture is fixed)")
        return space.build(arch, num_classes, in_channels)

    register_model(name, **_meta(cfg, source))(build)


@contextlib.contextmanager
def temporary_model(name: str, cfg: dict[str, Any]) -> Iterator[str]:
    """Register a candidate for the length of one trial: the engine trains registered names, and a
    candidate must not stay in ``list_models()`` (pickers list it) after its trial."""
    from ..models._registry import _MODELS

    if name in _MODELS:
        yield name
        return
    _register(name, cfg, "NAS candidate")
    try:
        yield name
    finally:  # the registry has no public removal: only candidates are ever taken out
        _MODELS._entries.pop(name, None)
        _MODELS._meta.pop(name, None)


def save_arch(folder: str | os.PathLike, cfg: dict[str, Any]) -> Path:
    """Write an architecture file ``<folder>/<name>.yaml`` (atomically) and register it."""
    _check(cfg, "arch")
    path = Path(folder) / f"{cfg['name']}.yaml"
    if path.exists():
        old = read_yaml(path) or {}
        if old.get("arch") != cfg["arch"]:
            raise ConfigError(str(path), "name", f"another architecture is saved as {cfg['name']!r}",
                              "pass another name")
    _name_is_free(cfg, str(path))  # refuse before anything is written
    cfg = {**cfg, **measure(cfg)}
    write_yaml(path, cfg)
    _SEEN[path.resolve()] = path.stat().st_mtime  # before registering: the registry's own scan skips it
    add_model_dir(folder)
    register_arch(cfg, source=str(path))
    return path
