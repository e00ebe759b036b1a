"""Errors that tell the user which file or field is wrong and what to do about it."""

from __future__ import annotations


class TangoError(Exception):
    """Base class of every error tango raises on purpose."""


class ConfigError(TangoError, ValueError):
    """A config (project, target, rule table, options) has a bad or missing field."""

    def __init__(self, source: str, field: str, problem: str, hint: str = ""):
        self.source, self.field, self.problem, self.hint = str(source), field, problem, hint
        msg = f"{source}: field '{field}': {problem}"
        if hint:
            msg += f" ({hint})"
        super().__init__(msg)


class DataError(TangoError, ValueError):
    """A data file (image, label file, dataset) is unreadable or inconsistent."""

    def __init__(self, path: str, problem: str, hint: str = ""):
        self.path, self.problem, self.hint = str(path), problem, hint
        msg = f"{path}: {problem}"
        if hint:
            msg += f" ({hint})"
        super().__init__(msg)


class MissingExtraError(TangoError, ImportError):
    """An optional backend is not installed."""

    def __init__(self, package: str, extra: str, purpose: str = ""):
        self.package, self.extra = package, extra
        what = f" for {purpose}" if purpose else ""
        super().__init__(
            f"'{package}' is needed{what} but is not installed. "
            f"Install it with: pip install 'tango[{extra}]'"
        )


class UnknownNameError(TangoError, KeyError):
    """A name (model, format, target, option) that no registry knows, with close matches."""

    def __init__(self, kind: str, name: str, known: list[str]):
        import difflib

        self.kind, self.name = kind, name
        close = difflib.get_close_matches(str(name), known, n=3, cutoff=0.5)
        hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
        shown = ", ".join(sorted(known)[:30]) + (" …" if len(known) > 30 else "")
        self.message = f"unknown {kind} {name!r}.{hint} Known: {shown}"
        super().__init__(self.message)

    def __str__(self) -> str:  # KeyError quotes its message otherwise
        return self.message


def require(module: str, extra: str, purpose: str = ""):
    """Import an optional backend lazily, or raise an error naming the extra to install."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise MissingExtraError(module.split(".")[0], extra, purpose) from exc
