"""One small registry class behind every extension axis (models, exporters, targets, NAS spaces)."""

from __future__ import annotations

import fnmatch
from collections.abc import Callable
from typing import Any, Generic, TypeVar

from .errors import UnknownNameError

T = TypeVar("T")


class Registry(Generic[T]):
    """Name -> entry, with metadata kept as plain data beside each entry."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, T] = {}
        self._meta: dict[str, dict[str, Any]] = {}

    def add(self, name: str, entry: T, **meta: Any) -> T:
        if name in self._entries:
            raise ValueError(f"{self.kind} {name!r} is already registered")
        self._entries[name] = entry
        self._meta[name] = dict(meta)
        return entry

    def register(self, name: str | None = None, **meta: Any) -> Callable[[T], T]:
        def deco(entry: T) -> T:
            return self.add(name or entry.__name__, entry, **meta)

        return deco

    def get(self, name: str) -> T:
        try:
            return self._entries[name]
        except KeyError:
            raise UnknownNameError(self.kind, name, list(self._entries)) from None

    def meta(self, name: str) -> dict[str, Any]:
        self.get(name)
        return self._meta[name]

    def names(self, pattern: str = "*", **filters: Any) -> list[str]:
        out = []
        for name in self._entries:
            if not fnmatch.fnmatch(name, pattern):
                continue
            meta = self._meta[name]
            if all(meta.get(k) == v for k, v in filters.items()):
                out.append(name)
        return out

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __len__(self) -> int:
        return len(self._entries)
