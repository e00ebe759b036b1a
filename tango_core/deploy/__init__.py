"""Deploy packages for every target, generated from the templates in ``targets/templates``.

>>> result = deploy("exports/best.onnx.tango.json", target="x86-cpu", out="deploy/x86-cpu")
>>> report = check_package(result.path)          # lint, schemas, compile; run=True also runs it here

Each package holds the export, standalone pre- / post-processing, a runner, an HTTP server
(KServe v2 included), pinned requirements, a Dockerfile and what its kind needs (Kubernetes
manifests, a Cloud Run service, an ECS task definition, device install scripts, an Android Studio
project).  docs/deploy.md describes every kind and field.
"""

from __future__ import annotations

from . import _android, _kinds  # noqa: F401  each registers its package builders
from ._checks import CheckResult, check_package
from ._deploy import DeployResult, deploy
from ._table import get_package, list_packages

__all__ = ["CheckResult", "DeployResult", "check_package", "deploy", "get_package", "list_packages"]
