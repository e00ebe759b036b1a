"""The parts every Python package shares: the model files, the app, pinned requirements, and the
model's memory measured by running the package itself."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from ._package import Package

APP_FILES = ("__init__.py", "processing.py", "predictor.py", "predict.py", "server.py")
#: the Python the host check runs with (a developer PC): its pins are the ones tested here
HOST_PYTHON = "3.11"


def copy_export(pkg: Package) -> dict[str, str]:
    """Every file and folder the metadata names goes to ``model/`` with the metadata beside it,
    keeping their relative paths; role -> path inside the package (files built on the device
    later are listed though absent)."""
    folder = pkg.meta_path.parent
    tops = []
    for rel in pkg.meta["files"].values():
        top = Path(rel).parts[0]
        if top not in tops:
            tops.append(top)
    for top in tops:
        src = folder / top
        if src.exists():
            pkg.copy_file(src, f"model/{top}")
    pkg.copy_file(pkg.meta_path, f"model/{pkg.meta_path.name}")
    return {role: f"model/{rel}" for role, rel in pkg.meta["files"].items()}


def backends(pkg: Package, files: dict[str, str]) -> tuple[dict[str, dict[str, str]], str | None]:
    """Backend name -> {file, module}; the first runs the model.  The host check is the file the
    export was verified with, in its runtime, when that differs from the model's own runtime."""
    table, runtime = pkg.table, pkg.runtime
    main = runtime.backends[0]
    entries = {main: {"file": pkg.meta["files"]["model"], "module": main}}
    host = None
    verify = pkg.meta.get("verify_with") or {}
    host_runtime = verify.get("runtime")
    if host_runtime and host_runtime != pkg.meta["runtime"] and host_runtime in table.runtimes \
            and verify.get("file") in pkg.meta["files"]:
        host = table.runtimes[host_runtime].backends[0]
        entries[host] = {"file": pkg.meta["files"][verify["file"]], "module": host}
    return entries, host


def add_app(pkg: Package, entries: dict[str, dict[str, str]]) -> None:
    for name in APP_FILES:
        pkg.copy_template(f"python/app/{name}", f"app/{name}")
    modules = {"__init__"}
    for entry in entries.values():
        modules.update(pkg.table.runtimes[_runtime_of(pkg, entry["module"])].backends)
    for module in sorted(modules):
        pkg.copy_template(f"python/app/backends/{module}.py", f"app/backends/{module}.py")
    pkg.copy_template("python/smoke_test.py", "smoke_test.py")


def _runtime_of(pkg: Package, backend: str) -> str:
    for name, spec in pkg.table.runtimes.items():
        if spec.backends[0] == backend:
            return name
    raise KeyError(backend)


def write_requirements(pkg: Package, python: str, gpu: bool, host: str | None) -> dict[str, list[str]]:
    table, runtime, kind = pkg.table, pkg.runtime, pkg.kind
    groups = table.requirements
    runtime_pip = list(runtime.gpu_pip) if gpu and runtime.gpu_pip else list(runtime.pip)
    main = groups["base"] + runtime_pip + (groups["server"] if kind.server else [])
    files = {"requirements.txt": main, "requirements-video.txt": groups["video"]}
    if not kind.server:
        files["requirements-server.txt"] = groups["server"]
    if host:
        files["requirements-host.txt"] = groups["base"] + list(table.runtimes[_runtime_of(pkg, host)].pip)
    header = {
        "requirements.txt": f"what the package needs to run ({pkg.runtime.name}); pinned for Python {python}",
        "requirements-video.txt": "video files and cameras for app.predict (OpenCV)",
        "requirements-server.txt": "the HTTP server (python -m app.server)",
        "requirements-host.txt": f"the host check on a PC (--backend {host}), Python {HOST_PYTHON}",
    }
    out = {}
    for name, reqs in files.items():
        py = HOST_PYTHON if name == "requirements-host.txt" else python
        lines = [table.pin(py, r) for r in dict.fromkeys(reqs)]
        system = "" if name != "requirements.txt" or not runtime.system else \
            f"# from the OS or base image, not pip: {', '.join(runtime.system)}\n"
        pkg.write(name, f"# {header[name]}\n{system}" + "".join(line + "\n" for line in lines))
        out[name] = lines
    return out


# The peak comes from /proc/self/status (VmHWM: this process image's own high-water mark).
# ru_maxrss is not usable on Linux: a child started by vfork + exec inherits the parent's peak, so
# a package measured from a 2 GB test or notebook process would report 2 GB.
_MEASURE = """
import json, resource, sys, time
t = time.perf_counter()
from app.predictor import Predictor
p = Predictor()
p.warmup(3)
def peak_kb():
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss // 1024 if sys.platform == "darwin" else rss  # bytes on macOS, KiB elsewhere
print("TANGO_MEASURE " + json.dumps({"peak_rss_kb": peak_kb(),
                                     "load_s": time.perf_counter() - t, "backend": p.backend_name}))
"""


def measure_memory(root: Path, backend: str | None, timeout: float = 300.0) -> dict[str, Any]:
    """Peak resident memory of the package's own process loading the model and predicting three
    times (what a container needs), or None when its runtime is not installed here."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "TANGO_MODEL_DIR", "TANGO_BACKEND")}
    env.setdefault("OMP_NUM_THREADS", "1")
    env["PYTHONDONTWRITEBYTECODE"] = "1"  # leave no __pycache__ in the package
    if backend:
        env["TANGO_BACKEND"] = backend
    try:
        proc = subprocess.run([sys.executable, "-c", _MEASURE], cwd=root, env=env, capture_output=True, text=True,
                              timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"measured": False, "reason": f"the package did not load within {timeout:.0f} s"}
    for line in proc.stdout.splitlines():
        if line.startswith("TANGO_MEASURE "):
            data = json.loads(line.split(" ", 1)[1])
            return {"measured": True, **data}
    lines = proc.stderr.strip().splitlines() or ["no output"]
    # the exception line says why (a missing runtime, a file that is not for this machine)
    reason = next((ln for ln in reversed(lines) if ln.split(":")[0].endswith(("Error", "Exception", "Missing"))),
                  lines[-1])
    return {"measured": False, "reason": reason[:300]}


def memory_plan(measurement: dict[str, Any], model_bytes: int, gpu: bool = False) -> dict[str, Any]:
    """Requests and limits from the peak: request = peak + 25 %, limit = 2 x peak (in MiB, rounded
    up to 32); without a measurement, 300 MB plus four times the model file.  On a GPU target the
    CUDA context adds host memory the CPU measurement cannot see: 512 MiB more, estimated."""
    if measurement.get("measured"):
        peak_mb = measurement["peak_rss_kb"] / 1024
        how = f"measured: the package's own process loading the model, 3 predictions, {measurement['backend']}"
    else:
        peak_mb = 300 + 4 * model_bytes / 2**20
        how = f"estimated as 300 MB + 4 x the model file; not measured: {measurement.get('reason', 'no runtime')}"

    def up(mb: float, floor: int) -> int:
        return max(floor, int(math.ceil(mb / 32) * 32))

    extra = 512 if gpu else 0
    if gpu:
        how += "; plus 512 MiB for the CUDA context"
    request = up(peak_mb * 1.25 + extra, 128)
    return {"peak_mb": round(peak_mb, 1), "request_mi": request,
            "limit_mi": max(up(peak_mb * 2 + extra, 256), request),
            "measured": bool(measurement.get("measured")), "how": how,
            "load_s": round(measurement.get("load_s", 0.0), 3)}


def model_bytes(pkg: Package, files: dict[str, str]) -> int:
    total = 0
    for rel in files.values():
        p = pkg.root / rel
        if p.is_file():
            total += p.stat().st_size
    return total


def package_record(pkg: Package, files: dict[str, str], entries: dict[str, dict[str, str]], host: str | None,
                   requirements: dict[str, list[str]], memory: dict[str, Any], python: str | None) -> dict[str, Any]:
    v = pkg.values
    return {
        "schema": "tango.package", "schema_version": 1, "tango_version": v["tango_version"], "created": v["created"],
        "name": pkg.name, "version": str(pkg.fields["tag"]), "target": pkg.target.id, "kind": pkg.kind.name,
        "provider": (pkg.target.deploy or {}).get("provider"), "runtime": pkg.meta["runtime"],
        "format": pkg.meta["format"], "task": pkg.meta["task"], "model_dir": "model",
        "metadata": pkg.meta_path.name, "backend": next(iter(entries)), "host_backend": host, "backends": entries,
        "model_files": files, "image": v["image"], "base_image": (v.get("base") or {}).get("image"),
        "python": python, "port": v["port"], "requirements": requirements, "memory": memory,
        "fields": {k: val for k, val in pkg.fields.items() if val is not None},
        "export": {"metadata": f"model/{pkg.meta_path.name}",
                   "source": pkg.meta.get("source"), "verification": _verification(pkg.meta)},
    }


def _verification(meta: dict[str, Any]) -> dict[str, Any] | None:
    v = meta.get("verification")
    if not v:
        return None
    return {k: v.get(k) for k in ("passed", "reference", "data", "metrics", "thresholds", "verified_file")
            if k in v}
