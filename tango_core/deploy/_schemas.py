"""The cloud files against the providers' own machine-readable definitions, read offline from
the PyPI packages that ship them (both in the ``dev`` extra):

- the ECS task definition against the ``RegisterTaskDefinitionRequest`` shape of the ECS service
  model botocore carries (``botocore/data/ecs/<api version>/service-2.json.gz``, the file the AWS
  CLI and SDKs are generated from): required members, types, enumerations, lengths, ranges,
  patterns, unknown and deprecated keys;
- the Cloud Run service against the ``Service`` schema of the Cloud Run Admin API v1 discovery
  document google-api-python-client bundles (``googleapiclient/discovery_cache/documents/run.v1.json``):
  types, int32 ranges, enumerations, unknown and output-only keys.

Neither is imported: the data files are found with ``importlib.util.find_spec`` and read as JSON,
so their packages' own dependencies play no part.  What the references state only in prose (health
check ranges, awslogs options, Cloud Run's port names and reserved variables) stays in tango's
JSON schemas (targets/templates/schemas), applied on top.
"""

from __future__ import annotations

import difflib
import gzip
import importlib.util
import json
import re
import unicodedata
from functools import lru_cache
from importlib import metadata
from pathlib import Path
from typing import Any


def _package_dir(name: str) -> Path | None:
    try:
        spec = importlib.util.find_spec(name)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0])


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "?"


# --- ECS: botocore's service model --------------------------------------------------------------------
@lru_cache(maxsize=1)
def ecs_model() -> dict[str, Any] | None:
    """botocore's ECS service model (the newest API version it ships), or None without botocore."""
    root = _package_dir("botocore")
    if root is None or not (root / "data" / "ecs").is_dir():
        return None
    versions = sorted(p for p in (root / "data" / "ecs").iterdir() if p.is_dir())
    for folder in reversed(versions):
        for name, opener in (("service-2.json.gz", gzip.open), ("service-2.json", open)):
            if (folder / name).is_file():
                with opener(folder / name, "rt", encoding="utf-8") as f:
                    model = json.load(f)
                model["_source"] = (f"botocore {_version('botocore')} ECS model "
                                    f"{model.get('metadata', {}).get('apiVersion', folder.name)}")
                return model
    return None


def _unicode_pattern(pattern: str, value: str) -> tuple[str, str]:
    """botocore patterns are Java regexes with ``\\p{L}`` / ``\\p{Z}`` / ``\\p{N}`` classes, which
    Python's re lacks: each class becomes a private-use character, and each character of the value
    in that Unicode category the same character."""
    marks = {}
    for n, cls in enumerate(sorted(set(re.findall(r"\\p\{(\w)\}", pattern)))):
        marks[cls] = chr(0xE000 + n)
        pattern = pattern.replace(f"\\p{{{cls}}}", marks[cls])
    if marks:
        value = "".join(marks.get(unicodedata.category(ch)[0], ch) for ch in value)
    return pattern, value


def shape_problems(value: Any, shape_name: str, shapes: dict[str, Any], path: str = "") -> list[str]:
    """Problems of ``value`` as the botocore shape ``shape_name`` (empty when it conforms)."""
    shape = shapes[shape_name]
    kind = shape["type"]
    where = path or "<root>"
    problems: list[str] = []
    if kind == "structure":
        if not isinstance(value, dict):
            return [f"{where}: {type(value).__name__}, not an object ({shape_name})"]
        members = shape.get("members", {})
        for name in shape.get("required", []):
            if name not in value:
                problems.append(f"{where}: required member {name!r} of {shape_name} is missing")
        if shape.get("union") and len(value) != 1:
            problems.append(f"{where}: {shape_name} takes exactly one of {sorted(members)}")
        for key, item in value.items():
            sub = f"{path}/{key}" if path else key
            if key not in members:
                close = difflib.get_close_matches(key, members, n=2)
                problems.append(f"{sub}: unknown key {key!r}, not a member of {shape_name}"
                                + (f" (did you mean {' or '.join(map(repr, close))}?)" if close else ""))
                continue
            if members[key].get("deprecated"):
                problems.append(f"{sub}: {shape_name}.{key} is deprecated"
                                + (f": {members[key]['deprecatedMessage']}" if members[key].get("deprecatedMessage")
                                   else ""))
            problems += shape_problems(item, members[key]["shape"], shapes, sub)
    elif kind == "list":
        if not isinstance(value, list):
            return [f"{where}: {type(value).__name__}, not a list ({shape_name})"]
        problems += _length(where, len(value), shape, "items")
        for i, item in enumerate(value):
            problems += shape_problems(item, shape["member"]["shape"], shapes, f"{path}/{i}")
    elif kind == "map":
        if not isinstance(value, dict):
            return [f"{where}: {type(value).__name__}, not an object ({shape_name})"]
        problems += _length(where, len(value), shape, "entries")
        for key, item in value.items():
            problems += shape_problems(key, shape["key"]["shape"], shapes, f"{path}/{key} (key)")
            problems += shape_problems(item, shape["value"]["shape"], shapes, f"{path}/{key}")
    elif kind == "string":
        if not isinstance(value, str):
            return [f"{where}: {value!r} is not a string ({shape_name})"]
        if "enum" in shape and value not in shape["enum"]:
            problems.append(f"{where}: {value!r} is not one of {shape['enum']} ({shape_name})")
        problems += _length(where, len(value), shape, "characters")
        if "pattern" in shape:
            pattern, text = _unicode_pattern(shape["pattern"], value)
            if not re.fullmatch(pattern, text):
                problems.append(f"{where}: {value!r} does not match {shape['pattern']} ({shape_name})")
    elif kind in ("integer", "long"):
        if isinstance(value, bool) or not isinstance(value, int):
            return [f"{where}: {value!r} is not an integer ({shape_name})"]
        if "min" in shape and value < shape["min"] or "max" in shape and value > shape["max"]:
            problems.append(f"{where}: {value} is outside [{shape.get('min')}, {shape.get('max')}] ({shape_name})")
    elif kind in ("double", "float"):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            problems.append(f"{where}: {value!r} is not a number ({shape_name})")
    elif kind == "boolean":
        if not isinstance(value, bool):
            problems.append(f"{where}: {value!r} is not true or false ({shape_name})")
    elif kind in ("timestamp", "blob"):
        if not isinstance(value, (str, int, float)) or isinstance(value, bool):
            problems.append(f"{where}: {value!r} is not a {kind} ({shape_name})")
    return problems


def _length(where: str, n: int, shape: dict[str, Any], unit: str) -> list[str]:
    if "min" in shape and n < shape["min"]:
        return [f"{where}: {n} {unit}, fewer than {shape['min']}"]
    if "max" in shape and n > shape["max"]:
        return [f"{where}: {n} {unit}, more than {shape['max']}"]
    return []


def ecs_problems(doc: Any) -> tuple[list[str], str | None]:
    """(problems, source) of a task definition against RegisterTaskDefinitionRequest; source is
    None when botocore is not installed (nothing was checked)."""
    model = ecs_model()
    if model is None:
        return [], None
    return shape_problems(doc, "RegisterTaskDefinitionRequest", model["shapes"]), model["_source"]


# --- Cloud Run: the Admin API v1 discovery document ----------------------------------------------------
@lru_cache(maxsize=1)
def cloud_run_discovery() -> dict[str, Any] | None:
    root = _package_dir("googleapiclient")
    path = root / "discovery_cache" / "documents" / "run.v1.json" if root else None
    if path is None or not path.is_file():
        return None
    doc = json.loads(path.read_text(encoding="utf-8"))
    doc["_source"] = (f"google-api-python-client {_version('google-api-python-client')} run.v1 discovery "
                      f"revision {doc.get('revision', '?')}")
    return doc


_INT_RANGES = {"int32": (-2**31, 2**31 - 1), "uint32": (0, 2**32 - 1)}


def discovery_problems(value: Any, schema: dict[str, Any], schemas: dict[str, Any], path: str = "",
                       name: str = "") -> list[str]:
    """Problems of ``value`` as a Google discovery-document schema (empty when it conforms)."""
    where = path or "<root>"
    if "$ref" in schema:
        name = schema["$ref"]
        schema = schemas[name]
    kind = schema.get("type")
    label = f" ({name})" if name else ""
    if kind == "object":
        if not isinstance(value, dict):
            return [f"{where}: {type(value).__name__}, not an object{label}"]
        problems = []
        props = schema.get("properties")
        extra = schema.get("additionalProperties")
        for key, item in value.items():
            sub = f"{path}/{key}" if path else str(key)
            if props is not None and key in props:
                if props[key].get("readOnly"):
                    problems.append(f"{sub}: {name or 'object'}.{key} is output only (set by Cloud Run)")
                problems += discovery_problems(item, props[key], schemas, sub)
            elif extra is not None:
                problems += discovery_problems(item, extra, schemas, sub)
            elif props is not None:
                close = difflib.get_close_matches(str(key), props, n=2)
                problems.append(f"{sub}: unknown key {key!r}, not a field of {name or 'this object'}"
                                + (f" (did you mean {' or '.join(map(repr, close))}?)" if close else ""))
        return problems
    if kind == "array":
        if not isinstance(value, list):
            return [f"{where}: {type(value).__name__}, not a list{label}"]
        return [p for i, item in enumerate(value) for p in discovery_problems(item, schema["items"], schemas,
                                                                                f"{path}/{i}")]
    if kind == "string":
        if not isinstance(value, str):
            return [f"{where}: {value!r} is not a string{label} (quote it in YAML)"]
        if "enum" in schema and value not in schema["enum"]:
            return [f"{where}: {value!r} is not one of {schema['enum']}{label}"]
        if schema.get("format") in ("int64", "uint64") and not re.fullmatch(r"-?\d+", value):
            return [f"{where}: {value!r} is not an {schema['format']} (a string of digits)"]
        return []
    if kind == "integer":
        if isinstance(value, bool) or not isinstance(value, int):
            return [f"{where}: {value!r} is not an integer{label}"]
        low, high = _INT_RANGES.get(schema.get("format"), (None, None))
        if low is not None and not low <= value <= high:
            return [f"{where}: {value} is outside the {schema['format']} range"]
        return []
    if kind == "number":
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return [f"{where}: {value!r} is not a number{label}"]
        return []
    if kind == "boolean":
        return [] if isinstance(value, bool) else [f"{where}: {value!r} is not true or false{label}"]
    return []  # "any"


def cloud_run_problems(doc: Any) -> tuple[list[str], str | None]:
    """(problems, source) of a Cloud Run service YAML against the discovery document's Service;
    source is None when google-api-python-client is not installed (nothing was checked)."""
    discovery = cloud_run_discovery()
    if discovery is None:
        return [], None
    schemas = discovery["schemas"]
    return discovery_problems(doc, {"$ref": "Service"}, schemas), discovery["_source"]


def without_closed_objects(schema: Any) -> Any:
    """A JSON schema with every ``additionalProperties: false`` dropped: once the provider's own
    definition decides which keys exist, tango's subset only adds its rules."""
    if isinstance(schema, dict):
        return {k: without_closed_objects(v) for k, v in schema.items()
                if not (k == "additionalProperties" and v is False)}
    if isinstance(schema, list):
        return [without_closed_objects(v) for v in schema]
    return schema
