"""One package being generated: its folder, the values templates see, and the files written.

Builders of each kind call :meth:`Package.render`, :meth:`Package.copy_template` and
:meth:`Package.write` and never touch paths themselves, so every file lands in
``tango-package.json`` with its checksum and a template a user overrides is picked up everywhere.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import __version__
from ..errors import ConfigError, require
from ._table import PackageKind, RuntimeSpec, Table, find_template

#: the port every package's server listens on inside its container (the ``port`` field publishes it)
CONTAINER_PORT = 8080


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _environment():
    jinja2 = require("jinja2", "deploy", "rendering deploy templates")
    from ._table import template_dirs

    loader = jinja2.ChoiceLoader([jinja2.FileSystemLoader(str(d)) for d in template_dirs()])
    # StrictUndefined: a template naming a value deploy() does not provide fails, naming it
    return jinja2.Environment(loader=loader, undefined=jinja2.StrictUndefined, keep_trailing_newline=True,
                              autoescape=False)


@dataclass
class Package:
    root: Path
    kind: PackageKind
    table: Table
    target: Any
    runtime: RuntimeSpec
    meta: dict[str, Any]
    meta_path: Path
    fields: dict[str, Any]
    name: str
    values: dict[str, Any] = field(default_factory=dict)
    written: list[str] = field(default_factory=list)
    executables: set[str] = field(default_factory=set)
    descriptions: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._env = _environment()

    # --- writing files ---------------------------------------------------------------------------
    def path(self, relative: str) -> Path:
        rel = Path(relative)
        if rel.is_absolute() or ".." in rel.parts:
            raise ConfigError("deploy templates", relative, "an output path must stay inside the package")
        return self.root / rel

    def write(self, relative: str, content: str | bytes, executable: bool = False, what: str = "") -> Path:
        path = self.path(relative)
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, str):
            path.write_text(content, encoding="utf-8")
        else:
            path.write_bytes(content)
        if executable or relative.endswith(".sh"):
            path.chmod(0o755)
            self.executables.add(relative)
        if relative not in self.written:
            self.written.append(relative)
        if what:
            self.descriptions[relative] = what
        return path

    def render_text(self, template: str, **extra: Any) -> str:
        try:
            return self._env.get_template(template).render(**self.values, **extra)
        except Exception as exc:  # jinja2 raises its own types; say which template and value
            if type(exc).__name__ in ("UndefinedError", "TemplateSyntaxError", "TemplateNotFound"):
                raise ConfigError(f"deploy template {template}", getattr(exc, "lineno", None) or "<render>",
                                  str(exc), "fix the template, or remove your override of it") from exc
            raise

    def render(self, template: str, relative: str, what: str = "", **extra: Any) -> Path:
        return self.write(relative, self.render_text(template, **extra), what=what)

    def copy_template(self, source: str, relative: str, what: str = "") -> Path:
        """Copy a template file verbatim (the Python of the package, which is valid Python as stored)."""
        return self.write(relative, find_template(source).read_bytes(), what=what)

    def copy_file(self, src: Path, relative: str) -> None:
        dst = self.path(relative)
        dst.parent.mkdir(parents=True, exist_ok=True)
        if src.is_dir():
            shutil.copytree(src, dst, dirs_exist_ok=True)
            for p in sorted(dst.rglob("*")):
                if p.is_file():
                    self.written.append(p.relative_to(self.root).as_posix())
        else:
            shutil.copy2(src, dst)
            self.written.append(relative)

    # --- the record --------------------------------------------------------------------------------
    def checksums(self, skip: tuple[str, ...] = ("tango-package.json",)) -> dict[str, str]:
        out = {}
        for p in sorted(self.root.rglob("*")):
            rel = p.relative_to(self.root).as_posix()
            if p.is_file() and rel not in skip and "__pycache__" not in p.parts:
                out[rel] = sha256(p)
        return out


def created() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def tango_version() -> str:
    return __version__


def normalise_permissions(root: Path) -> None:
    """Readable by all (the container user is not the builder; exports are written 0600), scripts
    executable: shell scripts and Python files with a #! line."""
    root.chmod(0o755)
    for p in root.rglob("*"):
        if p.is_dir():
            p.chmod(0o755)
        elif p.suffix == ".sh" or (p.suffix == ".py" and p.read_bytes()[:2] == b"#!"):
            p.chmod(0o755)
        else:
            p.chmod(0o644)
