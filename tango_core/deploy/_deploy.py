"""``deploy()``: one function generates the package of any target.

It resolves the export and the target, checks the user's fields, builds the package in a
temporary folder beside ``out`` (shared parts here, the kind's own files by its registered
builder), measures the model's memory by running the package, writes ``tango-package.json``
with every file's checksum, then swaps the folder in: a failed deploy leaves the previous package
untouched.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .. import events as ev
from .._io import write_json
from ..errors import ConfigError, DataError
from ..targets import get_target
from . import _build
from ._android import ASSETS as ANDROID_ASSETS
from ._package import CONTAINER_PORT, Package, created, normalise_permissions, tango_version
from ._resolve import check_fits, choose_export, dns_name, export_format_for, read_export, resolve_fields
from ._table import BUILDERS, table

PACKAGE_FILE = "tango-package.json"


@dataclass
class DeployResult:
    target: str
    kind: str
    runtime: str
    path: Path
    record: dict[str, Any]

    @property
    def files(self) -> list[str]:
        return sorted(self.record["files"])

    def __repr__(self) -> str:
        mem = self.record["memory"]
        return (f"DeployResult({self.target!r}, {self.kind!r}, {self.runtime!r}, {str(self.path)!r}, "
                f"{len(self.record['files'])} files, memory {mem['request_mi']}Mi request)")


def _open_input(project_or_export: Any):
    """(project or None, export metadata path or None) from whatever the caller gave."""
    from ..project import CONFIG_NAME, Project

    if isinstance(project_or_export, Project):
        return project_or_export, None
    if project_or_export is None:
        raise ConfigError("deploy", "project_or_export", "nothing to deploy",
                          "pass a Project, a project folder, or an export (its .tango.json or ExportResult)")
    if hasattr(project_or_export, "metadata_path"):
        return None, Path(project_or_export.metadata_path)
    path = Path(project_or_export)
    if path.is_dir() and (path / CONFIG_NAME).is_file():
        return Project.open(path), None
    return None, path


def _resolve(project, meta_path, target_id, kind_hint):
    tab = table()
    target = get_target(target_id) if target_id else (project.target() if project is not None else None)
    if meta_path is not None:
        meta, meta_path = read_export(meta_path)
        if target is None:
            if not meta.get("target"):
                raise ConfigError(str(meta_path), "target", "the export names no target and none was given",
                                  "pass target='x86-cpu' (tango targets list shows them)")
            target = get_target(meta["target"])
        return target, meta, meta_path
    kind = (target.deploy or {}).get("package") or kind_hint
    found = choose_export(project, target, tab, kind)
    if found is None:
        from ..export import export

        fmt = export_format_for(target, tab, kind)
        result = export(format=fmt, project=project, events=project.events)
        found = result.metadata_path
    meta, meta_path = read_export(found)
    return target, meta, meta_path


def _start_period(memory: dict[str, Any], runtime: str) -> int:
    if runtime == "tensorrt":  # the engine is built at the first start: minutes on a big model
        return 900
    return int(min(600, max(30, 3 * memory.get("load_s", 0) + 30)))


def deploy(project_or_export: Any = None, target: str | None = None, out: str | os.PathLike | None = None, *,
           measure: bool = True, events: ev.EventBus | None = None, **user_fields: Any) -> DeployResult:
    """Generate the deploy package of ``project_or_export`` for ``target``.

    ``project_or_export``: a Project or project folder (its target and its best export for that
    target; the export is made when missing), or an export (``.tango.json``, the exported file,
    or an ``ExportResult``).  ``target``: a target id; default the project's, or the export's.
    ``out``: the package folder (default ``<project>/deploy/<target>``, or ``deploy/<target>``).
    ``user_fields``: the target's ``requires`` (registry, region...) and optional fields
    (docs/deploy.md); a project remembers them for the next deploy.
    """
    project, meta_path = _open_input(project_or_export)
    bus = events or (project.events if project is not None else ev.EventBus())
    stage = project.stage("deploy", target=target or project.config.target) if project is not None \
        else contextlib.nullcontext()
    with stage as st:
        target_obj, meta, meta_path = _resolve(project, meta_path, target, None)
        result = _generate(project, target_obj, meta, meta_path, out, measure, user_fields)
        if st is not None:
            st.info.update(target=result.target, path=os.path.relpath(result.path, project.root), kind=result.kind,
                           runtime=result.runtime, fields=result.record["fields"])
    bus.emit(ev.DEPLOY_END, target=result.target, path=str(result.path), kind=result.kind, runtime=result.runtime,
             files=len(result.record["files"]), memory_mi=result.record["memory"]["request_mi"])
    return result


def _generate(project, target, meta, meta_path: Path, out, measure: bool, user_fields: dict[str, Any]) -> DeployResult:
    tab = table()
    kind_name = (target.deploy or {}).get("package")
    if not kind_name:
        raise ConfigError(target.source or target.id, "deploy.package", "the target names no package kind",
                          f"set deploy.package to one of {list(tab.packages)}")
    kind = tab.packages[kind_name]
    check_fits(meta, meta_path, target, tab, kind_name)
    runtime = tab.runtimes[meta["runtime"]]
    stored = project.stages["deploy"].info.get("fields") if project is not None else None
    default_name = project.name if project is not None else (meta.get("model") or meta_path.name.split(".")[0])
    fields = resolve_fields(tab, target, user_fields, stored, dns_name(default_name))

    out = Path(out) if out is not None else (project.path("deploy", target.id) if project is not None
                                             else Path("deploy") / target.id)
    if out.exists() and any(out.iterdir()) and not (out / PACKAGE_FILE).is_file():
        raise DataError(out, "exists and is not a tango package", "choose another out= folder, or empty this one")
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        record = _fill(Package(staging, kind, tab, target, runtime, meta, meta_path, fields, fields["name"]),
                       measure)
        old = None
        if out.exists():
            old = out.with_name(f".{out.name}.old-{os.getpid()}")
            out.rename(old)
        staging.rename(out)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return DeployResult(target.id, kind_name, meta["runtime"], out, record)


def _fill(pkg: Package, measure: bool) -> dict[str, Any]:
    tab, kind, target, runtime, fields = pkg.table, pkg.kind, pkg.target, pkg.runtime, pkg.fields
    base_key = (target.deploy or {}).get("base_image")
    base = tab.base_image(base_key, runtime.name, target.source or target.id) if kind.docker else None
    python = str(base["python"]) if base else (_build.HOST_PYTHON if kind.python else None)
    gpu = target.gpu and base_key in ("cuda", "l4t")
    image = f"{fields['registry'].rstrip('/')}/{pkg.name}:{fields['tag']}" if fields.get("registry") \
        else f"{pkg.name}:{fields['tag']}"
    inp = pkg.meta["input"]
    input_hw = inp["shape"][1:3] if inp.get("layout") == "NHWC" else inp["shape"][2:4]
    pkg.values.update(
        name=pkg.name, description=kind.description, target=dict(target.to_dict(), source=target.source),
        kind=kind.name, provider=(target.deploy or {}).get("provider"), runtime=runtime.name, base=base or {},
        python=kind.python, docker=kind.docker, server=kind.server, gpu=gpu, meta=pkg.meta, fields=fields,
        image=image, port=CONTAINER_PORT, tango_version=tango_version(), created=created(),
        export_name=pkg.meta_path.name[: -len(".tango.json")], metadata_name=pkg.meta_path.name,
        input_hw=input_hw, server_requirements_file=None if kind.server else "requirements-server.txt",
        extra_files={}, deploy_script="", install_script="", device_notes="", host_step="")

    files = _build.copy_export(pkg) if kind.python else {"model": f"{ANDROID_ASSETS}/model.tflite"}
    entries, host = _build.backends(pkg, files)
    requirements: dict[str, list[str]] = {}
    if kind.python:
        _build.add_app(pkg, entries)
        requirements = _build.write_requirements(pkg, python, gpu, host)
        pkg.write(PACKAGE_FILE, "{}")  # the predictor reads it while memory is measured; rewritten below
    record = _build.package_record(pkg, files, entries, host, requirements, {}, python)
    write_json(pkg.path(PACKAGE_FILE), record)
    model_size = (pkg.meta_path.parent / pkg.meta["files"]["model"]).stat().st_size if not kind.python \
        else _build.model_bytes(pkg, files)
    arch = (pkg.meta.get("options") or {}).get("arch")
    if measure and kind.python and runtime.name == "tvm" and arch not in (None, "native"):
        measurement = {"measured": False, "reason": f"the TVM module is cross-compiled for {arch}: it runs on the "
                                                    "board only"}
    elif measure and kind.python and (host or not runtime.device_only):
        measurement = _build.measure_memory(pkg.root, host if runtime.device_only else None)
    else:
        measurement = {"measured": False, "reason": "measure=False" if kind.python else "not a Python package"}
    memory = _build.memory_plan(measurement, model_size, gpu=gpu and runtime.name in ("torchscript", "tensorrt",
                                                                            "onnxruntime"))
    pkg.values.update(
        memory=memory, start_period_s=_start_period(memory, runtime.name), backend=next(iter(entries)),
        host_backend=host, host_only=runtime.device_only, backends=list(entries),
        device_model=files.get("model", ""), cloudrun=_cloud_run(fields, memory, gpu), ecs=_ecs(fields))

    BUILDERS.get(kind.name)(pkg)
    if kind.docker:
        pkg.render("common/Dockerfile.j2", "Dockerfile")
        pkg.render("common/dockerignore.j2", ".dockerignore")
    pkg.render("common/README.md.j2", "README.md")
    normalise_permissions(pkg.root)
    record = _build.package_record(pkg, files, entries, host, requirements, memory, python)
    record["files"] = pkg.checksums()
    write_json(pkg.path(PACKAGE_FILE), record)
    return record


def _cloud_run(fields: dict[str, Any], memory: dict[str, Any], gpu: bool) -> dict[str, Any]:
    cpu = float(str(fields["cpu"]).rstrip("m")) / (1000 if str(fields["cpu"]).endswith("m") else 1)
    mem = max(memory["limit_mi"], 512)
    if gpu:  # Cloud Run's GPU instances need at least 4 CPUs and 16 GiB
        cpu, mem = max(cpu, 4.0), max(mem, 16384)
    return {"cpu": f"{cpu:g}", "memory": f"{mem}Mi", "concurrency": 8 if gpu else 16, "accelerator": "nvidia-l4"}


def _ecs(fields: dict[str, Any]) -> dict[str, Any]:
    cpu = str(fields["cpu"])
    vcpu = float(cpu[:-1]) / 1000 if cpu.endswith("m") else float(cpu)
    return {"cpu_units": max(128, int(round(vcpu * 1024)))}
