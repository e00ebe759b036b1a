"""Runtime backends: one module per runtime, each with a ``Backend`` class.

A backend loads the model file and runs one input already in the file's dtype and layout.  It
describes that input itself (``dtype``, ``layout``, ``quantization``, ``raw_pixels``) from the
file where the runtime can tell, so a package never trusts stale metadata over the model.

    backend = Backend(path, meta, threads)
    outputs = backend.run(x)          # list of numpy arrays, in the metadata's output order

Only the backends a package needs are copied into it; each imports its runtime lazily, so a
missing runtime gives a message that says what to install.
"""

from __future__ import annotations

import importlib


class RuntimeMissing(ImportError):
    """The runtime of a backend is not installed here."""


def load_backend(name: str):
    try:
        module = importlib.import_module(f"{__name__}.{name}")
    except ModuleNotFoundError as exc:
        if exc.name == f"{__name__}.{name}":
            raise RuntimeMissing(f"this package has no {name!r} backend") from None
        raise
    return module.Backend


def require(module: str, install: str):
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise RuntimeMissing(f"the runtime module {module!r} is not installed ({exc}); {install}") from None
