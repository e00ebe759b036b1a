"""Builds the guided notebooks from the cell lists in notebooks/_cells/*.py.

Each source file holds cells separated by lines ``# %% [markdown]``, ``# %%`` or
``# %% [parameters]`` (a code cell tagged ``parameters`` for papermill); ``# %% [install EXTRAS]``
stands for the install cell of ``_install_cell.py`` with the notebook's extras.  Run
``python notebooks/_make.py`` after editing a source; tests check the .ipynb files are current.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import nbformat

HERE = Path(__file__).resolve().parent
MARK = re.compile(r"^# %%(?: \[(markdown|parameters|install) ?([\w,]*)\])?\s*$")
INSTALL = HERE / "_install_cell.py"  # one install cell for every notebook, with its extras


def parse(source: str) -> list[nbformat.NotebookNode]:
    cells, kind, lines, extras = [], None, [], ""

    def flush():
        if kind is None:
            return
        text = "\n".join(lines).strip("\n")
        if kind == "install":
            body = INSTALL.read_text().split("\n# %%\n", 1)[1]
            text = body.strip("\n").replace("{extras}", extras)
            cells.append(nbformat.v4.new_code_cell(text))
            return
        if kind == "markdown":
            text = "\n".join(line[2:] if line.startswith("# ") else line.lstrip("#") for line in text.splitlines())
            cells.append(nbformat.v4.new_markdown_cell(text))
        else:
            cell = nbformat.v4.new_code_cell(text)
            if kind == "parameters":
                cell.metadata["tags"] = ["parameters"]
            cells.append(cell)

    for line in source.splitlines():
        m = MARK.match(line)
        if m:
            flush()
            kind, lines, extras = (m.group(1) or "code"), [], m.group(2) or ""
        else:
            lines.append(line)
    flush()
    return cells


def build(src: Path) -> nbformat.NotebookNode:
    nb = nbformat.v4.new_notebook()
    nb.cells = parse(src.read_text())
    for i, cell in enumerate(nb.cells):
        cell.id = f"{src.stem[:20]}-{i}"
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.metadata["language_info"] = {"name": "python"}
    return nb


def main(check: bool = False) -> int:
    stale = []
    for src in sorted((HERE / "_cells").glob("*.py")):
        out = HERE / f"{src.stem}.ipynb"
        text = nbformat.writes(build(src)) + "\n"
        if check:
            if not out.exists() or out.read_text() != text:
                stale.append(out.name)
        else:
            out.write_text(text)
    if stale:
        print("stale notebooks (run python notebooks/_make.py):", ", ".join(stale))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(check="--check" in sys.argv))
