"""The deploy table (``targets/templates/packages.yaml``) and the templates beside it.

Package kinds, runtimes, pins, base images and user fields are plain data a reader can see in
one file; the code that adds each kind's own files registers itself under the kind's name with
:func:`package`, and a row without a builder (or the reverse) fails loudly.  Templates are
looked up in the user's override folders first (``TANGO_TEMPLATES_PATH``, then
``~/.config/tango/targets/templates``), then in the built-in folder.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .._io import read_yaml
from ..errors import ConfigError, UnknownNameError
from ..registry import Registry
from ..targets import PACKAGES, builtin_targets_dir


@dataclass(frozen=True)
class RuntimeSpec:
    name: str
    backends: tuple[str, ...]
    pip: tuple[str, ...]
    gpu_pip: tuple[str, ...] = ()
    system: tuple[str, ...] = ()

    @property
    def device_only(self) -> bool:
        """The runtime needs the device's accelerator (TensorRT, Edge TPU, NPU): not runnable here."""
        return bool(self.system)


@dataclass(frozen=True)
class PackageKind:
    name: str
    description: str
    runtimes: tuple[str, ...]
    python: bool
    docker: bool
    server: bool
    templates: dict[str, str]
    providers: dict[str, dict[str, str]] = field(default_factory=dict)


@dataclass(frozen=True)
class Table:
    path: Path
    runtimes: dict[str, RuntimeSpec]
    requirements: dict[str, list[str]]
    pins: dict[str, dict[str, str]]
    base_images: dict[str, dict[str, dict[str, Any]]]
    fields: dict[str, dict[str, Any]]
    packages: dict[str, PackageKind]

    def base_image(self, base: str | None, runtime: str, source: str) -> dict[str, Any] | None:
        if base is None:
            return None
        images = self.base_images.get(base)
        if images is None:
            raise ConfigError(source, "deploy.base_image", f"{base!r} has no base images in {self.path.name}",
                              f"use one of {sorted(self.base_images)}")
        chosen = dict(images.get(runtime) or images["default"])
        return {"apt_python": False, **chosen, "python": str(chosen["python"])}

    def pin(self, python: str, name: str) -> str:
        versions = self.pins.get(python)
        if versions is None:
            raise ConfigError(str(self.path), "pins", f"no pins for Python {python}", f"pins exist for {sorted(self.pins)}")
        if name not in versions:
            raise ConfigError(str(self.path), f"pins.{python}.{name}", "missing",
                              "add the version this package was checked with")
        return f"{name}=={versions[name]}"


def template_dirs() -> list[Path]:
    """Override folders first, the built-in templates last."""
    dirs = [Path(p) for p in os.environ.get("TANGO_TEMPLATES_PATH", "").split(os.pathsep) if p]
    user = Path(os.environ.get("XDG_CONFIG_HOME", Path.home() / ".config")) / "tango" / "targets" / "templates"
    dirs.append(user)
    dirs.append(builtin_targets_dir() / "templates")
    return [d for d in dirs if d.is_dir()]


def find_template(relative: str) -> Path:
    for folder in template_dirs():
        candidate = folder / relative
        if candidate.exists():
            return candidate
    raise ConfigError("deploy templates", relative, "template not found",
                      f"looked in {[str(d) for d in template_dirs()]}")


def _strings(value: Any, source: str, where: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ConfigError(source, where, "must be a list of names")
    return tuple(value)


def load_table(path: Path | None = None) -> Table:
    path = path or find_template("packages.yaml")
    raw = read_yaml(path)
    src = str(path)
    for key in ("runtimes", "requirements", "pins", "base_images", "fields", "packages"):
        if not isinstance((raw or {}).get(key), dict):
            raise ConfigError(src, key, "missing or not a mapping", "see docs/deploy.md")
    runtimes = {}
    for name, row in raw["runtimes"].items():
        if not isinstance(row, dict) or not row.get("backends"):
            raise ConfigError(src, f"runtimes.{name}.backends", "every runtime names at least one backend")
        runtimes[name] = RuntimeSpec(name, _strings(row["backends"], src, f"runtimes.{name}.backends"),
                                     _strings(row.get("pip"), src, f"runtimes.{name}.pip"),
                                     _strings(row.get("gpu_pip"), src, f"runtimes.{name}.gpu_pip"),
                                     _strings(row.get("system"), src, f"runtimes.{name}.system"))
    pins = {str(py): {k: str(v) for k, v in (versions or {}).items()} for py, versions in raw["pins"].items()}
    for base, images in raw["base_images"].items():
        if not isinstance(images, dict) or "default" not in images:
            raise ConfigError(src, f"base_images.{base}.default", "missing", "every base lists a default image")
        for rt, image in images.items():
            if not isinstance(image, dict) or not image.get("image") or str(image.get("python")) not in pins:
                raise ConfigError(src, f"base_images.{base}.{rt}", "needs 'image' and a 'python' that has pins",
                                  f"pins exist for {sorted(pins)}")
    packages = {}
    required = ("description", "runtimes", "python", "docker", "server", "templates")
    for name, row in raw["packages"].items():
        if name not in PACKAGES:
            raise ConfigError(src, f"packages.{name}", "is not a package kind of the target catalog",
                              f"kinds: {list(PACKAGES)}")
        for key in required:
            if key not in (row or {}):
                raise ConfigError(src, f"packages.{name}.{key}", "missing", f"every kind declares {', '.join(required)}")
        kind_runtimes = _strings(row["runtimes"], src, f"packages.{name}.runtimes")
        for rt in kind_runtimes:
            if rt not in runtimes:
                raise ConfigError(src, f"packages.{name}.runtimes", f"{rt!r} is not under 'runtimes'")
        packages[name] = PackageKind(name, row["description"], kind_runtimes, bool(row["python"]), bool(row["docker"]),
                                     bool(row["server"]), dict(row["templates"] or {}),
                                     {k: dict(v) for k, v in (row.get("providers") or {}).items()})
    missing = set(PACKAGES) - set(packages)
    if missing:
        raise ConfigError(src, "packages", f"no row for {sorted(missing)}", "every package kind of targets.py needs one")
    return Table(path, runtimes, {k: list(v) for k, v in raw["requirements"].items()}, pins, raw["base_images"],
                 {k: dict(v or {}) for k, v in raw["fields"].items()}, packages)


_TABLE: Table | None = None


def table() -> Table:
    global _TABLE
    if _TABLE is None:
        _TABLE = load_table()
    return _TABLE


def reload_table() -> None:
    global _TABLE
    _TABLE = None


# --- builders: each kind's own files ---------------------------------------------------------------
#: kind -> build(pkg) that adds the kind's own files to a package being generated
BUILDERS: Registry[Callable[..., None]] = Registry("deploy package")


def package(name: str) -> Callable[[Callable[..., None]], Callable[..., None]]:
    if name not in PACKAGES:
        raise ValueError(f"builder for {name!r}, which is not a package kind ({list(PACKAGES)})")
    return BUILDERS.register(name)


def list_packages() -> list[str]:
    """Package kinds, in the catalog's order."""
    return [k for k in PACKAGES if k in table().packages]


def get_package(name: str) -> PackageKind:
    kinds = table().packages
    if name not in kinds:
        raise UnknownNameError("deploy package", name, list(kinds))
    return kinds[name]
