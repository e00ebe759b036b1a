"""Base-model selection: the seed's rule table (task x class count x target memory), explained.

The table is data (``selection_rules.yaml``); :func:`recommend` returns a
:class:`Recommendation` that says which row and which memory tier were used and why, lists the
alternatives, and can be overridden by the user.
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


@dataclass(frozen=True)
class Rule:
    task: str
    max_classes: int | None
    family: str
    models: tuple[str, ...]
    nas: str | None = None


@dataclass(frozen=True)
class RuleTable:
    tiers_gb: tuple[float | None, ...]
    tier_labels: tuple[str, ...]
    rules: tuple[Rule, ...]
    source: str = ""

    def all_models(self) -> list[str]:
        seen: dict[str, None] = {}
        for rule in self.rules:
            for m in rule.models:
                seen.setdefault(m, None)
        return list(seen)


def load_rules(path: str | os.PathLike = RULES_PATH) -> RuleTable:
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
    rules = []
    for i, r in enumerate(raw.get("rules") or []):
        where = f"rules[{i}]"
        for key in ("task", "family", "models"):
            if key not in r:
                raise ConfigError(src, f"{where}.{key}", "missing")
        if len(r["models"]) != len(tiers):
            raise ConfigError(src, f"{where}.models", f"needs one model per tier ({len(tiers)}), has {len(r['models'])}")
        rules.append(Rule(r["task"], r.get("max_classes"), r["family"], tuple(r["models"]), r.get("nas")))
    if not rules:
        raise ConfigError(src, "rules", "no rules")
    return RuleTable(tuple(tiers), tuple(labels), tuple(rules), src)


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


def _tier(table: RuleTable, memory_gb: float | None, cpu_only: bool) -> tuple[int, str]:
    if cpu_only:
        return 0, "the target has no accelerator (CPU only), so the smallest tier is used"
    if memory_gb is None:
        return 0, "the target's memory is unknown, so the smallest tier is used (set memory_gb on the target for a larger model)"
    for i, limit in enumerate(table.tiers_gb):
        if limit is None or memory_gb <= limit:
            return i, f"the target has {memory_gb:g} GB of memory, which falls in tier {table.tier_labels[i]}"
    raise AssertionError("unreachable: the last tier has no limit")


def recommend(task: str, num_classes: int, target: Any = None, memory_gb: float | None = None,
              cpu_only: bool | None = None, table: RuleTable | None = None) -> Recommendation:
    """Pick a base model.  ``target`` is a target id or :class:`~tango_core.targets.Target`;
    ``memory_gb`` / ``cpu_only`` override what the target says."""
    table = table or default_rules()
    target_id = None
    if target is not None:
        if isinstance(target, str):
            from .targets import get_target

            target = get_target(target)
        target_id = target.id
        memory_gb = target.memory_gb if memory_gb is None else memory_gb
        cpu_only = target.cpu_only if cpu_only is None else cpu_only
    cpu_only = bool(cpu_only)
    if not isinstance(num_classes, int) or num_classes < 1:
        raise ConfigError("recommend", "num_classes", f"{num_classes!r} must be a positive integer")
    tasks = sorted({r.task for r in table.rules})
    rows = [r for r in table.rules if r.task == task]
    if not rows:
        raise UnknownNameError("task", task, tasks)
    rule = next(r for r in rows if r.max_classes is None or num_classes <= r.max_classes)
    tier, why_tier = _tier(table, memory_gb, cpu_only)
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
                          cpu_only=cpu_only, family=rule.family, tier=tier, tier_label=table.tier_labels[tier],
                          model=model, reason=reason, alternatives=tuple(alternatives), nas_space=rule.nas)
