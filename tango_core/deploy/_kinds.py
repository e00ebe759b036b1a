"""Each package kind's own files: cloud service definitions, Kubernetes manifests, device install
and build scripts.  The Python app, requirements, Dockerfile and README are shared (_deploy.py)."""

from __future__ import annotations

from ..errors import DataError
from ._package import Package
from ._table import package


def _render_listed(pkg: Package) -> None:
    """The kind's templates and the target provider's, as packages.yaml lists them."""
    listed = dict(pkg.kind.templates)
    provider = pkg.values.get("provider")
    listed.update(pkg.kind.providers.get(provider, {}))
    for relative, template in listed.items():
        pkg.render(template, relative)
    for name in ("deploy.sh", "install.sh"):
        if name in listed:
            pkg.values[f"{name.split('.')[0]}_script"] = pkg.path(name).read_text(encoding="utf-8").strip()


def _wrapper(pkg: Package, relative: str, role: str, what: str, python: bool = False) -> str | None:
    """A top-level script that runs one of the export's own scripts (build engine, compile, convert)."""
    script = pkg.meta["files"].get(role)
    if script is None:
        return None
    path = f"model/{script}"
    if not pkg.path(path).is_file():
        raise DataError(pkg.meta_path, f"the export lists {role} = {script!r} but the file is missing",
                        "export again")
    command = f'python3 "{path}"' if python else f'bash "{path}"'
    pkg.render("devices/wrapper.sh.j2", relative, purpose=what, script=path, command=command)
    pkg.values["extra_files"][relative] = what
    return relative


@package("server")
def build_server(pkg: Package) -> None:
    _render_listed(pkg)


@package("cloud")
def build_cloud(pkg: Package) -> None:
    _render_listed(pkg)
    files = pkg.values["extra_files"]
    files["deploy.sh"] = "the exact commands to build, push and start the service"
    for path in pkg.kind.providers.get(pkg.values.get("provider"), {}):
        files[path] = {"aws-ecs": "ECS task definition (register with deploy.sh)",
                       "gcp-cloud-run": "Cloud Run service (gcloud run services replace)",
                       "docker": "docker compose service for the server"}[pkg.values["provider"]]


@package("k8s")
def build_k8s(pkg: Package) -> None:
    _render_listed(pkg)
    files = pkg.values["extra_files"]
    files["deploy.sh"] = "the exact commands to build, push and apply"
    files["deploy/k8s/"] = "Deployment (probes, resources from the measured memory), Service, HorizontalPodAutoscaler"


def _device(pkg: Package) -> None:
    if pkg.values["runtime"] == "tensorrt":
        _wrapper(pkg, "build_engine.sh", "build_script_trtexec", "build the TensorRT engine on this device")
    elif pkg.values["runtime"] == "edgetpu":
        _wrapper(pkg, "compile_edgetpu.sh", "compile_script", "compile the INT8 TFLite for the Edge TPU (x86-64 host)")
        pkg.values["host_step"] = (f'[ -f "{pkg.values["device_model"]}" ] || ./compile_edgetpu.sh  '
                                   "# on this x86-64 host")
    elif pkg.values["runtime"] == "rknn":
        _wrapper(pkg, "convert_rknn.sh", "convert_script", "convert the ONNX to RKNN (x86-64 host)", python=True)
        pkg.values["host_step"] = (f'[ -f "{pkg.values["device_model"]}" ] || ./convert_rknn.sh  '
                                   "# on this x86-64 host, with rknn-toolkit2")
    _render_listed(pkg)
    files = pkg.values["extra_files"]
    files["install.sh"] = "install steps, run on the device"
    files["deploy.sh"] = "copy the package to the device (ssh) and run install.sh there"
    pkg.values["device_notes"] = pkg.render_text("devices/notes.md.j2").strip()


for _kind in ("jetson", "coral", "tvm-device", "rknn", "onnx-device"):
    package(_kind)(_device)
