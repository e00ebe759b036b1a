"""Small building blocks for readable notebook reports (no pandas needed)."""

from __future__ import annotations

import html
from collections.abc import Iterable
from typing import Any


class Table:
    """Rows of dicts shown as an HTML table in notebooks (and as text elsewhere)."""

    def __init__(self, rows: Iterable[dict[str, Any]], title: str | None = None) -> None:
        self.rows = [dict(r) for r in rows]
        self.title = title
        self.columns: list[str] = []
        for row in self.rows:
            self.columns += [c for c in row if c not in self.columns]

    @staticmethod
    def _fmt(value: Any) -> str:
        if isinstance(value, float):
            return f"{value:.4g}"
        if value is None:
            return "–"
        if value is True:
            return "yes"
        if value is False:
            return "no"
        return str(value)

    def _repr_html_(self) -> str:
        head = "".join(f"<th>{html.escape(c)}</th>" for c in self.columns)
        body = "".join("<tr>" + "".join(f"<td>{html.escape(self._fmt(r.get(c)))}</td>" for c in self.columns) + "</tr>"
                       for r in self.rows)
        cap = f"<caption>{html.escape(self.title)}</caption>" if self.title else ""
        return f'<table class="tango-table">{cap}<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'

    def __str__(self) -> str:
        cells = [[self._fmt(r.get(c)) for c in self.columns] for r in self.rows]
        widths = [max([len(c)] + [len(row[i]) for row in cells]) for i, c in enumerate(self.columns)]
        lines = ["  ".join(c.ljust(w) for c, w in zip(self.columns, widths, strict=True))]
        lines += ["  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)) for row in cells]
        return "\n".join(([self.title] if self.title else []) + lines)

    __repr__ = __str__
