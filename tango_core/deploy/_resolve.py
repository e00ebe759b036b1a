"""What to package: the export (from a project, a metadata file or an export result), the target,
and the user's fields, each checked with an error that names what to change."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from .._io import read_json
from ..errors import ConfigError, DataError, UnknownNameError
from ._table import Table

#: runtimes of the export metadata that no package can carry, and what to export instead
_NOT_PACKAGED = {
    "pytorch": "a PyTorch weights file needs tango's model code: export to torchscript (or onnx) for the target",
    "tensorflow": "SavedModels are not packaged: export to tflite (or onnx) for the target",
}
_SAFE = re.compile(r"^[A-Za-z0-9._:/@+\-]+$")  # values that go into shell scripts and manifests as they are


def read_export(path: str | os.PathLike) -> tuple[dict[str, Any], Path]:
    """The metadata of an export, given its ``.tango.json``, the exported file or folder, or an ExportResult."""
    meta_path = getattr(path, "metadata_path", None)
    path = Path(meta_path or path)
    if not path.name.endswith(".tango.json"):
        path = path.with_name(path.name.rstrip("/") + ".tango.json")
    if not path.is_file():
        raise DataError(path, "export metadata not found", "export first: tango_core.export.export(...) or tango export")
    meta = read_json(path)
    if not isinstance(meta, dict) or meta.get("schema") != "tango.export":
        raise DataError(path, "is not a tango export metadata file (schema != 'tango.export')")
    for key in ("format", "runtime", "files", "input", "task"):
        if key not in meta:
            raise DataError(path, f"the metadata has no {key!r} field", "re-export with this version of tango")
    for role, rel in meta["files"].items():
        p = Path(rel)
        if p.is_absolute() or ".." in p.parts:
            raise DataError(path, f"files.{role} = {rel!r} points outside the export folder")
    return meta, path


def project_exports(project: Any) -> dict[str, Path]:
    """Export key (format, or format_precision) -> metadata path, as the export stage recorded them."""
    info = project.stages["export"].info.get("exports") or {}
    return {key: project.root / rel for key, rel in info.items()}


def choose_export(project: Any, target: Any, table: Table, kind: str) -> Path | None:
    """The project's export that ``tango export`` selected for this target by measuring (when it
    did, and the package kind carries it), else the one for the target's most preferred runtime."""
    exports = project_exports(project)
    allowed = table.packages[kind].runtimes
    selected = project.stages["export"].info.get("selected") or {}
    chosen = exports.get(selected.get("export", "")) if selected.get("target") == target.id else None
    if chosen is not None and chosen.is_file() and read_json(chosen).get("runtime") in allowed:
        return chosen
    for fmt in target.runtimes:
        candidates = [p for key, p in exports.items() if key == fmt or key.startswith(f"{fmt}_")]
        for meta_path in sorted(candidates, key=lambda p: (p.name.count("_"), str(p))):
            if meta_path.is_file() and read_json(meta_path).get("runtime") in allowed:
                return meta_path
    return None


def export_format_for(target: Any, table: Table, kind: str) -> str:
    """The first of the target's runtimes whose export a package of ``kind`` can carry."""
    from ..export import get_format

    for fmt in target.runtimes:
        try:
            runtime = get_format(fmt).runtime
        except UnknownNameError:
            continue
        if runtime in table.packages[kind].runtimes:
            return fmt
    raise ConfigError(target.source or target.id, "runtimes",
                      f"none of {target.runtimes} can go into a {kind!r} package",
                      f"a {kind} package carries {list(table.packages[kind].runtimes)}")


def check_fits(meta: dict[str, Any], meta_path: Path, target: Any, table: Table, kind: str) -> None:
    runtime = meta["runtime"]
    if runtime in _NOT_PACKAGED:
        raise ConfigError(str(meta_path), "runtime", f"{runtime!r} exports are not packaged", _NOT_PACKAGED[runtime])
    if meta["format"] not in target.runtimes:
        raise ConfigError(str(meta_path), "format",
                          f"a {meta['format']!r} export does not run on target {target.id!r}",
                          f"export to one of {target.runtimes}, or add {meta['format']!r} to 'runtimes' in "
                          f"{target.source or 'the target file'}")
    if runtime not in table.packages[kind].runtimes:
        raise ConfigError(str(meta_path), "runtime", f"a {kind!r} package cannot carry a {runtime!r} export",
                          f"it carries {list(table.packages[kind].runtimes)}")
    arch = (meta.get("options") or {}).get("arch")
    if runtime == "tvm":
        built_for = "x86_64" if arch in (None, "native") else arch
        if built_for != target.cpu:
            raise ConfigError(str(meta_path), "options.arch",
                              f"the TVM module was compiled for {built_for}, the target is {target.cpu}",
                              f"export again with arch={target.cpu!r}")


def dns_name(text: str) -> str:
    """A DNS-1123 label (what Kubernetes, Cloud Run and ECS accept as a name)."""
    name = re.sub(r"[^a-z0-9-]+", "-", str(text).lower()).strip("-")
    name = re.sub(r"-{2,}", "-", name)
    if not name or not name[0].isalpha():
        name = f"tango-{name}".rstrip("-")
    return name[:63].rstrip("-")


def resolve_fields(table: Table, target: Any, given: dict[str, Any], stored: dict[str, Any] | None,
                   default_name: str) -> dict[str, Any]:
    """Defaults, then what an earlier deploy of the project stored, then the caller's values; checked."""
    known = table.fields
    for key in given:
        if key not in known:
            raise UnknownNameError("deploy field", key, list(known))
    values = {k: spec.get("default") for k, spec in known.items()}
    values.update({k: v for k, v in (stored or {}).items() if k in known and v is not None})
    values.update({k: v for k, v in given.items() if v is not None})
    source = target.source or f"target {target.id}"
    for req in target.requires:
        if values.get(req) in (None, ""):
            help_text = known.get(req, {}).get("help", "")
            raise ConfigError(source, "requires", f"target {target.id!r} needs {req!r} ({help_text})",
                              f"pass {req}=... to deploy(), or -f {req}=... to tango deploy")
    for key in ("port", "replicas", "max_replicas", "gpus"):
        try:
            values[key] = int(values[key])
        except (TypeError, ValueError):
            raise ConfigError("deploy fields", key, f"{values[key]!r} is not a whole number") from None
        if values[key] < (0 if key == "gpus" else 1):
            raise ConfigError("deploy fields", key, f"{values[key]} is out of range")
    if values["max_replicas"] < values["replicas"]:
        raise ConfigError("deploy fields", "max_replicas", f"{values['max_replicas']} is below replicas "
                                                           f"{values['replicas']}")
    if values["threads"] is not None:
        values["threads"] = int(values["threads"])
    for key, value in values.items():
        if isinstance(value, str) and not _SAFE.match(value):
            raise ConfigError("deploy fields", key, f"{value!r} has characters that are not allowed",
                              "use letters, digits and . _ : / @ + -")
    if not re.fullmatch(r"[0-9]+(\.[0-9]+)?m?", str(values["cpu"])):
        raise ConfigError("deploy fields", "cpu", f"{values['cpu']!r} is not a CPU quantity", "e.g. 1, 0.5 or 500m")
    values["name"] = dns_name(values["name"] or default_name)
    if not re.fullmatch(r"[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+", values["android_package"]):
        raise ConfigError("deploy fields", "android_package", f"{values['android_package']!r} is not a Java package "
                                                              "name", "e.g. org.example.detector")
    return values
