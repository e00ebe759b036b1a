"""Running a package here: its smoke test, and the runner with only its requirements importable
(what a fresh virtual environment would give), so a missing requirement fails here, not on the
device."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from ._checks import CheckResult


def _clean_env(backend: str | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "TANGO_MODEL_DIR", "TANGO_BACKEND")}
    env.setdefault("OMP_NUM_THREADS", "1")
    env["PYTHONDONTWRITEBYTECODE"] = "1"  # leave no __pycache__ in the package
    if backend:
        env["TANGO_BACKEND"] = backend
    return env


def run_smoke_test(root: Path, backend: str | None = None, timeout: float = 600) -> CheckResult:
    cmd = [sys.executable, "smoke_test.py"] + (["--backend", backend] if backend else [])
    proc = subprocess.run(cmd, cwd=root, env=_clean_env(None), capture_output=True, text=True, timeout=timeout)
    tail = (proc.stdout + proc.stderr).strip().splitlines()
    return CheckResult("smoke-test", "smoke_test.py", proc.returncode == 0, " | ".join(tail[-4:])[:800])


_AUDIT = r"""
import json, runpy, sys
args, allowed = json.loads(sys.argv[1]), set(json.loads(sys.argv[2]))
blocked = set()


class OnlyTheRequirements:
    # what a fresh venv with just the requirements would give: anything else is not importable
    def find_spec(self, name, path=None, target=None):
        top = name.partition(".")[0]
        if top in allowed or top in sys.stdlib_module_names or top in sys.builtin_module_names:
            return None
        blocked.add(top)
        raise ModuleNotFoundError(f"No module named {name!r} (not in the package's requirements)", name=name)


sys.meta_path.insert(0, OnlyTheRequirements())
sys.argv = ["app.predict"] + args
code = 0
try:
    runpy.run_module("app.predict", run_name="__main__", alter_sys=True)
except SystemExit as exc:
    code = exc.code
print("TANGO_AUDIT " + json.dumps({"code": code, "modules": sorted({m.split(".")[0] for m in sys.modules}),
                                    "blocked": sorted(blocked)}))
"""
#: modules the interpreter itself loads at start-up (site hooks of venvs and editable installs)
_STARTUP = ("sitecustomize", "usercustomize", "_distutils_hack", "_virtualenv", "__editable__", "__main__",
            "__mp_main__", "app")


def requirement_closure(requirements: list[str]) -> set[str]:
    """Normalised names of the requirements and everything they depend on (installed metadata)."""
    from importlib import metadata

    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    seen: set[str] = set()
    todo = [Requirement(r).name for r in requirements]
    while todo:
        name = canonicalize_name(todo.pop())
        if name in seen:
            continue
        seen.add(name)
        try:
            deps = metadata.requires(name) or []
        except metadata.PackageNotFoundError:
            continue
        for dep in deps:
            req = Requirement(dep)
            if req.marker is None or req.marker.evaluate({"extra": ""}):
                todo.append(req.name)
    return seen


def audit_imports(root: Path, backend: str | None = None, inputs: list[str] | None = None,
                  out: Path | None = None, requirement_files: tuple[str, ...] = ("requirements.txt",)) -> CheckResult:
    """Run the runner with only the modules of its requirements (and what they depend on)
    importable, as in a fresh virtual environment: it must still predict every input.  Optional
    imports a runtime tries when a package happens to be installed are blocked and listed.
    ``out``: keep the runner's predictions.json and pictures there."""
    import tempfile
    from importlib import metadata

    from packaging.utils import canonicalize_name

    reqs: list[str] = []
    files = list(requirement_files)
    record = json.loads((root / "tango-package.json").read_text(encoding="utf-8"))
    if backend and backend != record.get("backend"):
        files.append("requirements-host.txt")
    for name in files:
        f = root / name
        if f.is_file():
            reqs += [ln.split("#")[0].strip() for ln in f.read_text().splitlines() if ln.split("#")[0].strip()]
    closure = requirement_closure(reqs)
    importable = sorted({m for m, dists in metadata.packages_distributions().items()
                         if any(canonicalize_name(d) in closure for d in dists)} | set(_STARTUP))
    with tempfile.TemporaryDirectory() as tmp:
        if not inputs:
            from PIL import Image

            image = Path(tmp) / "audit.png"
            Image.new("RGB", (40, 30), (90, 140, 200)).save(image)
            inputs = [str(image)]
        out_dir = Path(out) if out is not None else Path(tmp) / "out"
        args = [*inputs, "--out", str(out_dir)] + (["--backend", backend] if backend else [])
        proc = subprocess.run([sys.executable, "-c", _AUDIT, json.dumps(args), json.dumps(importable)], cwd=root,
                              env=_clean_env(None), capture_output=True, text=True, timeout=600)
        summary = out_dir / "predictions.json"
        predictions = json.loads(summary.read_text())["summary"] if summary.is_file() else None
    line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("TANGO_AUDIT ")), None)
    if line is None:
        return CheckResult("imports", "app/predict.py", False, f"the runner did not finish: {proc.stderr[-800:]}")
    data = json.loads(line.split(" ", 1)[1])
    problems = []
    if data["code"] not in (0, None) or predictions is None or predictions["failed"]:
        problems.append(f"with only its requirements importable the runner failed (exit {data['code']}, "
                        f"blocked {data['blocked']}): {proc.stderr.strip()[-500:]}")
    tango = [m for m in data["modules"] if m.startswith("tango")]
    if tango:
        problems.append(f"imported {tango}: the package must not need tango")
    detail = "; ".join(problems) if problems else (
        f"{len(data['modules'])} modules, all from {', '.join(files)} and their dependencies"
        + (f"; optional imports blocked: {', '.join(data['blocked'])}" if data["blocked"] else ""))
    return CheckResult("imports", "app/predict.py", not problems, detail,
                       {"modules": data["modules"], "blocked": data["blocked"]})
