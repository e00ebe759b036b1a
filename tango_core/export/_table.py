"""The export format table: rows read from ``formats.yaml``, builders registered by decorator.

The table (suffix, runtime, extra, GPU need, precisions, accepted options) is plain data so a
reader sees every format in one file; the code that builds each format registers itself with
:func:`builder` under the same name, and a row without a builder (or the reverse) fails loudly.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .._io import read_yaml
from ..errors import ConfigError, UnknownNameError
from ..registry import Registry

TABLE_PATH = Path(__file__).with_name("formats.yaml")
OPTION_TYPES = ("bool", "int", "float", "str", "imgsz")


@dataclass(frozen=True)
class OptionSpec:
    name: str
    type: str
    default: Any = None
    choices: tuple[Any, ...] | None = None
    min: float | None = None
    max: float | None = None
    help: str = ""


@dataclass(frozen=True)
class FormatSpec:
    name: str
    description: str
    suffix: str
    runtime: str
    extra: str | None
    gpu: bool
    runs_here: bool
    precisions: tuple[str, ...]
    options: tuple[str, ...]
    verify_with: str | None = None
    option_specs: dict[str, OptionSpec] = field(default_factory=dict, compare=False, repr=False)

    @property
    def is_folder(self) -> bool:
        """Formats whose suffix has no dot write a folder (``best_openvino/``)."""
        return not self.suffix.startswith(".")

    def defaults(self) -> dict[str, Any]:
        out = {name: self.option_specs[name].default for name in self.options}
        if "precision" in out:
            out["precision"] = self.precisions[0]
        return out

    def validate(self, options: dict[str, Any], source: str = "export options") -> dict[str, Any]:
        """Defaults filled in, every value checked; unknown names get the closest known ones."""
        resolved = self.defaults()
        for key, value in options.items():
            if key not in self.options:
                others = sorted(n for n, f in _formats().items() if key in f.options)
                err = UnknownNameError(f"{self.name} option", key, list(self.options))
                if others:
                    err.message += f" ({key!r} is an option of {', '.join(others)})"
                raise err
            resolved[key] = _check_value(self.option_specs[key], value, source)
        if resolved.get("precision") not in (None, *self.precisions):
            raise ConfigError(source, "precision", f"{resolved['precision']!r} is not available for {self.name}",
                              f"use one of {list(self.precisions)}")
        return resolved


def _check_value(spec: OptionSpec, value: Any, source: str) -> Any:
    if value is None:
        return None
    kind = spec.type
    bad = ConfigError(source, spec.name, f"{value!r} is not a valid {kind}", spec.help)
    if kind == "bool":
        if isinstance(value, str) and value.lower() in ("true", "false", "1", "0", "yes", "no"):
            value = value.lower() in ("true", "1", "yes")
        if not isinstance(value, bool):
            raise bad
    elif kind in ("int", "float"):
        if isinstance(value, bool):
            raise bad
        try:
            cast = int(value) if kind == "int" else float(value)
        except (TypeError, ValueError):
            raise bad from None
        if kind == "int" and isinstance(value, float) and value != cast:
            raise bad
        value = cast
    elif kind == "str":
        value = str(value)
    elif kind == "imgsz":
        value = _imgsz(value, bad)
    if spec.choices is not None and value not in spec.choices:
        raise ConfigError(source, spec.name, f"{value!r} is not allowed", f"use one of {list(spec.choices)}")
    lo, hi = spec.min, spec.max
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if (lo is not None and value < lo) or (hi is not None and value > hi):
            raise ConfigError(source, spec.name, f"{value!r} is out of range",
                              f"allowed: {lo if lo is not None else '-inf'} .. {hi if hi is not None else 'inf'}")
    return value


def _imgsz(value: Any, bad: ConfigError) -> list[int]:
    if isinstance(value, str):
        parts = [p for p in value.replace("x", ",").replace(" ", ",").split(",") if p]
        value = parts[0] if len(parts) == 1 else parts
    if isinstance(value, (list, tuple)):
        if len(value) != 2:
            raise bad
        try:
            out = [int(v) for v in value]
        except (TypeError, ValueError):
            raise bad from None
    else:
        try:
            out = [int(value)] * 2
        except (TypeError, ValueError):
            raise bad from None
    if min(out) < 8 or any(v % 1 for v in out):
        raise bad
    return out


# --- loading the table --------------------------------------------------------------------------
_TABLE: dict[str, FormatSpec] | None = None


def _flatten(items: Any) -> list[Any]:
    out: list[Any] = []
    for item in items or []:
        out.extend(_flatten(item) if isinstance(item, list) else [item])
    return out


def load_table(path: Path = TABLE_PATH) -> dict[str, FormatSpec]:
    raw = read_yaml(path)
    src = str(path)
    if not isinstance(raw, dict) or not isinstance(raw.get("options"), dict) or not isinstance(raw.get("formats"), dict):
        raise ConfigError(src, "<root>", "needs the mappings 'options' and 'formats'")
    specs = {}
    for name, o in raw["options"].items():
        if not isinstance(o, dict) or o.get("type") not in OPTION_TYPES:
            raise ConfigError(src, f"options.{name}.type", f"must be one of {list(OPTION_TYPES)}")
        choices = o.get("choices")
        specs[name] = OptionSpec(name, o["type"], o.get("default"), tuple(choices) if choices else None,
                                 o.get("min"), o.get("max"), o.get("help", ""))
    table = {}
    required = ("description", "suffix", "runtime", "extra", "gpu", "runs_here", "precisions", "options")
    for name, row in raw["formats"].items():
        where = f"formats.{name}"
        if not isinstance(row, dict):
            raise ConfigError(src, where, "must be a mapping")
        for key in required:
            if key not in row:
                raise ConfigError(src, f"{where}.{key}", "missing", f"every format declares {', '.join(required)}")
        options = tuple(_flatten(row["options"]))
        for opt in options:
            if opt not in specs:
                raise ConfigError(src, f"{where}.options", f"{opt!r} is not declared under 'options'")
        table[name] = FormatSpec(
            name=name, description=row["description"], suffix=row["suffix"], runtime=row["runtime"],
            extra=row["extra"], gpu=bool(row["gpu"]), runs_here=bool(row["runs_here"]),
            precisions=tuple(row["precisions"]), options=options, verify_with=row.get("verify_with"),
            option_specs=specs)
    for name, spec in table.items():
        if spec.verify_with is not None and spec.verify_with not in table:
            raise ConfigError(src, f"formats.{name}.verify_with", f"{spec.verify_with!r} is not a format")
    return table


def _formats() -> dict[str, FormatSpec]:
    global _TABLE
    if _TABLE is None:
        _TABLE = load_table()
    return _TABLE


def verification_rules() -> dict[str, Any]:
    """The ``verification`` block of the table: thresholds by precision and sample counts."""
    rules = read_yaml(TABLE_PATH).get("verification")
    if not isinstance(rules, dict):
        raise ConfigError(str(TABLE_PATH), "verification", "missing or not a mapping")
    return rules


# --- builders -------------------------------------------------------------------------------------
#: format name -> build(ctx) -> Artifacts; each format module registers its builder
BUILDERS: Registry[Callable[..., Any]] = Registry("export format")


def builder(name: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    if name not in _formats():
        raise ValueError(f"builder for {name!r}, which is not a row of {TABLE_PATH.name}")
    return BUILDERS.register(name)


def list_formats(runs_here: bool | None = None) -> list[str]:
    """Format names in table order; ``runs_here=True`` keeps those verified on this CPU."""
    return [n for n, f in _formats().items() if runs_here is None or f.runs_here == runs_here]


def get_format(name: str) -> FormatSpec:
    table = _formats()
    if name not in table:
        raise UnknownNameError("export format", name, list(table))
    return table[name]
