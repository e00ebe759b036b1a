"""Base-model selection: the seed's rule table (task x class count x target memory), explained.

The table is data (``selection_rules.yaml``); :func:`recommend` returns a
:class:`Recommendation` that says which row and which memory tier were used and why, lists the
alternatives, and can be overridden by the user.  The table also says how each accelerator kind
is sized: CPU only -> the first tier; a GPU with memory of its own -> the memory tiers; an Edge
TPU, an NPU or a mobile GPU, whose target memory is only the host's RAM -> the memory tiers capped
at a small model of the row (its ``caps``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from functools import lru_cache
from pathlib import Path
from typing import Any

from ._io import read_yaml
from .errors import ConfigError, UnknownNameError

RULES_PATH = Path(__file__).with_name("selection_rules.yaml")


SIZINGS = ("cpu", "memory")  #: plus the table's cap columns


@dataclass(frozen=True)
class Rule:
    task: str
    max_classes: int | None
    family: str
    models: tuple[str, ...]
    nas: str | None = None
    #: (cap column, the largest model of this row for it), e.g. (("edge", "yolov7-tiny"), ...)
    caps: tuple[tuple[str, str], ...] = ()

    def cap_model(self, cap: str) -> str:
        return dict(self.caps)[cap]


@dataclass(frozen=True)
class AcceleratorRule:
    """How a target's accelerator kind is sized: ``cpu`` (first tier), ``memory`` (the memory
    tiers) or a cap column (the memory tiers, but never beyond the row's model in that column)."""

    sizing: str
    reason: str = ""


@dataclass(frozen=True)
class RuleTable:
    tiers_gb: tuple[float | None, ...]
    tier_labels: tuple[str, ...]
    rules: tuple[Rule, ...]
    source: str = ""
    #: (cap column, label), e.g. (("edge", "Edge TPU / NPU"), ("mobile", "mobile GPU"))
    caps: tuple[tuple[str, str], ...] = ()
    #: accelerator kind -> its sizing; tables made in code may leave it empty (everything by memory)
    accelerators: tuple[tuple[str, AcceleratorRule], ...] = ()

    def all_models(self) -> list[str]:
        seen: dict[str, None] = {}
        for rule in self.rules:
            for m in rule.models:
                seen.setdefault(m, None)
        return list(seen)

    def cap_label(self, cap: str) -> str:
        return dict(self.caps)[cap]

    def accelerator_rule(self, accelerator: str | None) -> AcceleratorRule:
        if accelerator is None:
            return AcceleratorRule("memory")
        rules = dict(self.accelerators)
        if accelerator not in rules:
            if not rules:
                return AcceleratorRule("cpu" if accelerator == "none" else "memory")
            raise UnknownNameError("accelerator", accelerator, list(rules))
        return rules[accelerator]


def _str_list(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(x, str) and x for x in value)


def load_rules(path: str | os.PathLike = RULES_PATH) -> RuleTable:
    from .targets import ACCELERATORS

    raw = read_yaml(path)
    src = str(path)
    if not isinstance(raw, dict):
        raise ConfigError(src, "<root>", "must be a mapping")
    tiers = raw.get("tiers_gb")
    labels = raw.get("tier_labels")
    if not isinstance(tiers, list) or not tiers or tiers[-1] is not None:
        raise ConfigError(src, "tiers_gb", "must be a list of GB limits ending with null (no limit)")
    if not isinstance(labels, list) or len(labels) != len(tiers):
        raise ConfigError(src, "tier_labels", f"must have one label per tier ({len(tiers)})")
    caps = raw.get("caps") or {}
    if not isinstance(caps, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in caps.items()):
        raise ConfigError(src, "caps", "must be a mapping of cap column -> label")
    for name in caps:
        if name in SIZINGS:
            raise ConfigError(src, f"caps.{name}", f"{name!r} is a sizing, not a cap column name")
    rules = []
    rows = raw.get("rules") or []
    if not isinstance(rows, list):
        raise ConfigError(src, "rules", "must be a list of rows")
    for i, r in enumerate(rows):
        where = f"rules[{i}]"
        if not isinstance(r, dict):
            raise ConfigError(src, where, "must be a mapping")
        for key in ("task", "family", "models"):
            if key not in r:
                raise ConfigError(src, f"{where}.{key}", "missing")
        if not _str_list(r["models"]):
            raise ConfigError(src, f"{where}.models", "must be a list of model names")
        if len(r["models"]) != len(tiers):
            raise ConfigError(src, f"{where}.models", f"needs one model per tier ({len(tiers)}), has {len(r['models'])}")
        row_caps = r.get("caps") or {}
        if not isinstance(row_caps, dict):
            raise ConfigError(src, f"{where}.caps", "must be a mapping of cap column -> model")
        for name in caps:
            if name not in row_caps:
                raise ConfigError(src, f"{where}.caps.{name}", "missing",
                                  f"every row needs its largest model for each cap column {sorted(caps)}")
        for name, model in row_caps.items():
            if name not in caps:
                raise ConfigError(src, f"{where}.caps.{name}", "unknown cap column", f"the table's caps are {sorted(caps)}")
            if model not in r["models"]:
                raise ConfigError(src, f"{where}.caps.{name}", f"{model!r} is not one of the row's models",
                                  "a cap is the largest of the row's sizes to use")
        rules.append(Rule(r["task"], r.get("max_classes"), r["family"], tuple(r["models"]), r.get("nas"),
                          tuple((name, row_caps[name]) for name in caps)))
    if not rules:
        raise ConfigError(src, "rules", "no rules")
    accel_raw = raw.get("accelerators")
    if not isinstance(accel_raw, dict):
        raise ConfigError(src, "accelerators", "missing or not a mapping of accelerator kind -> sizing",
                          f"list every kind of the target catalog: {list(ACCELERATORS)}")
    accelerators = []
    for kind in ACCELERATORS:
        if kind not in accel_raw:
            raise ConfigError(src, f"accelerators.{kind}", "missing", "every accelerator kind needs an explicit sizing")
    for kind, spec in accel_raw.items():
        where = f"accelerators.{kind}"
        if kind not in ACCELERATORS:
            raise ConfigError(src, where, "not an accelerator kind of the target catalog", f"use one of {list(ACCELERATORS)}")
        if not isinstance(spec, dict) or set(spec) - {"sizing", "reason"}:
            raise ConfigError(src, where, "must be a mapping with sizing (and reason)")
        sizing, reason = spec.get("sizing"), spec.get("reason") or ""
        if sizing not in (*SIZINGS, *caps):
            raise ConfigError(src, f"{where}.sizing", f"{sizing!r} is not a sizing", f"use one of {[*SIZINGS, *caps]}")
        if not isinstance(reason, str):
            raise ConfigError(src, f"{where}.reason", "must be text")
        if sizing in caps and not reason.strip():
            raise ConfigError(src, f"{where}.reason", "missing", "a capped accelerator must say why it is capped")
        accelerators.append((kind, AcceleratorRule(sizing, " ".join(reason.split()))))
    return RuleTable(tuple(tiers), tuple(labels), tuple(rules), src, tuple(caps.items()), tuple(accelerators))


@lru_cache(maxsize=1)
def default_rules() -> RuleTable:
    return load_rules(RULES_PATH)


@dataclass(frozen=True)
class Recommendation:
    task: str
    num_classes: int
    target: str | None
    memory_gb: float | None
    cpu_only: bool
    family: str
    tier: int
    tier_label: str
    model: str
    reason: str
    alternatives: tuple[str, ...] = field(default_factory=tuple)
    nas_space: str | None = None
    overridden_from: str | None = None
    #: the target's accelerator kind (None when sized by memory alone)
    accelerator: str | None = None
    #: the cap column that limited the size (e.g. "edge"), or None
    cap: str | None = None

    def override(self, model: str, check_registry: bool = True) -> Recommendation:
        """The user's choice instead of the rule's, keeping the rule's reasoning for the record."""
        known = default_rules().all_models()
        if check_registry:
            try:
                from .models import list_models

                known = sorted(set(known) | set(list_models()))
            except ImportError:
                pass
        if model not in known:
            raise UnknownNameError("model", model, known)
        return replace(self, model=model, overridden_from=self.overridden_from or self.model,
                       reason=f"chosen by the user instead of {self.overridden_from or self.model}; rule: {self.reason}")

    def to_dict(self) -> dict[str, Any]:
        from dataclasses import asdict

        return asdict(self)


def _memory_tier(table: RuleTable, memory_gb: float | None) -> tuple[int, str]:
    if memory_gb is None:
        return 0, "the target's memory is unknown, so the smallest tier is used (set memory_gb on the target for a larger model)"
    for i, limit in enumerate(table.tiers_gb):
        if limit is None or memory_gb <= limit:
            return i, f"the target has {memory_gb:g} GB of memory, which falls in tier {table.tier_labels[i]}"
    raise AssertionError("unreachable: the last tier has no limit")


def recommend(task: str, num_classes: int, target: Any = None, memory_gb: float | None = None,
              cpu_only: bool | None = None, table: RuleTable | None = None,
              accelerator: str | None = None) -> Recommendation:
    """Pick a base model.  ``target`` is a target id or :class:`~tango_core.targets.Target`;
    ``memory_gb`` / ``cpu_only`` / ``accelerator`` override what the target says.  The
    accelerator decides how the model is sized (``accelerators`` in the rule table): CPU only ->
    the first tier; a GPU with memory of its own -> the memory tier; an Edge TPU, NPU or mobile GPU
    -> the memory tier, capped at the row's small model for that accelerator."""
    table = table or default_rules()
    target_id = None
    accel_name = ""
    if target is not None:
        if isinstance(target, str):
            from .targets import get_target

            target = get_target(target)
        target_id = target.id
        memory_gb = target.memory_gb if memory_gb is None else memory_gb
        cpu_only = target.cpu_only if cpu_only is None else cpu_only
        accelerator = target.accelerator if accelerator is None else accelerator
        accel_name = target.accelerator_name if accelerator == target.accelerator else ""
    if not isinstance(num_classes, int) or isinstance(num_classes, bool) or num_classes < 1:
        raise ConfigError("recommend", "num_classes", f"{num_classes!r} must be a positive integer")
    tasks = sorted({r.task for r in table.rules})
    rows = [r for r in table.rules if r.task == task]
    if not rows:
        raise UnknownNameError("task", task, tasks)
    sizing = table.accelerator_rule(accelerator)
    cpu_only = bool(cpu_only) if cpu_only is not None else sizing.sizing == "cpu"
    rule = next(r for r in rows if r.max_classes is None or num_classes <= r.max_classes)
    cap = None
    if cpu_only:
        tier, why_tier = 0, "the target has no accelerator (CPU only), so the smallest tier is used"
        tier_label = table.tier_labels[tier]
    else:
        tier, why_tier = _memory_tier(table, memory_gb)
        tier_label = table.tier_labels[tier]
        if sizing.sizing not in SIZINGS:
            column, label = sizing.sizing, table.cap_label(sizing.sizing)
            cap_model = rule.cap_model(column)
            cap_tier = rule.models.index(cap_model)
            what = f"{accel_name} ({accelerator})" if accel_name and accel_name != accelerator else str(accelerator)
            why_cap = f"the target's accelerator is {what}: {sizing.reason}"
            if memory_gb is None:
                why_tier = f"{why_cap}; {why_tier}"
            elif tier <= cap_tier:
                why_tier = f"{why_cap}; {why_tier}, within the {label} cap ({cap_model})"
            else:
                why_tier = (f"{why_cap}; its {memory_gb:g} GB (tier {tier_label}) is host memory, so the size is "
                            f"capped at the {label} column")
                tier, tier_label, cap = cap_tier, label, column
        elif sizing.reason:
            why_tier = f"{sizing.reason}; {why_tier}"
    model = rule.models[tier]
    cls_part = (f"{num_classes} classes <= {rule.max_classes}" if rule.max_classes is not None
                else f"{num_classes} classes (more than the rows above allow)" if len(rows) > 1
                else f"{num_classes} classes")
    reason = f"{task} with {cls_part} -> {rule.family}; {why_tier} -> {model}"
    alternatives = [m for m in dict.fromkeys(rule.models) if m != model]
    for other in rows:
        if other is not rule:
            alternatives += [m for m in dict.fromkeys(other.models) if m not in alternatives and m != model]
    return Recommendation(task=task, num_classes=num_classes, target=target_id, memory_gb=memory_gb,
                          cpu_only=cpu_only, family=rule.family, tier=tier, tier_label=tier_label,
                          model=model, reason=reason, alternatives=tuple(alternatives), nas_space=rule.nas,
                          accelerator=accelerator, cap=cap)
