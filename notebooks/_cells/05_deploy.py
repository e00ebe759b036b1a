# %% [markdown]
# # Deploy to your target
#
# tango turns the trained model into a package for the target chosen in the project: the
# export for the target's runtime, standalone pre- / post-processing, a runner for images, folders,
# videos and cameras, an HTTP server (with the KServe v2 protocol), pinned requirements, a
# Dockerfile and, per target, Kubernetes / Cloud Run / ECS files or the device's install scripts
# (Jetson, Android, Raspberry Pi + Coral, Odroid, Comma 3X). Each package is checked here
# (schemas, lint, syntax), and packages whose runtime runs on this machine are run.

# %% [install notebook,export,deploy]

# %% [parameters]
workdir = "tango-deploy"
target = "x86-cpu"          # the project's target: its package kind and runtime follow from it
also = "k8s,galaxy-s23"     # other targets to generate packages for (comma-separated; may be empty)
imgsz = 32
n_per_class = 20
epochs = 2
registry = "registry.example.com/tango"   # container registry for cloud / cluster targets

# %% [markdown]
# ## A trained model

# %%
from pathlib import Path

from tango_core import Project
from tango_core.data import make_sample
from tango_core.engine import train

project = Project.create(Path(workdir) / "project", task="classification", target=target, exist_ok=True)
if not project.config.dataset:
    project.attach_dataset(make_sample("digits", project.path("data"), n_per_class=n_per_class, size=imgsz))
if project.trained_weights() is None:
    train(project, model="resnet-cifar20", epochs=epochs, imgsz=imgsz, batch_size=32)
print(project)

# %% [markdown]
# ## The package for the project's target
# `deploy(project)` exports for the target's preferred runtime when needed, generates the
# package and records it in the project.

# %%
from tango_core.deploy import check_package, deploy
from tango_core.targets import get_target

fields = {"registry": registry, "project_id": "my-project", "region": "europe-west1", "cluster": "tango",
          "namespace": "default", "nfs_server": "10.0.0.2", "nfs_path": "/exports/tango", "host": "0.0.0.0",
          "port": 8080}


def needed(target_id):
    return {k: v for k, v in fields.items() if k in get_target(target_id).requires}


pkg = deploy(project, **needed(project.config.target))
print(pkg)
print("\n".join(pkg.files))

# %% [markdown]
# ## Checked, and run here when its runtime is here

# %%
from tango_core.report import Table

runs_here = get_target(project.config.target).cpu == "x86_64" and get_target(project.config.target).cpu_only
report = check_package(pkg.path, run=runs_here)
Table([{"check": r.check, "file": r.path, "ok": r.ok, "detail": r.detail[:80]} for r in report],
      title=f"checks of the {pkg.kind} package for {pkg.target}")

# %%
assert report.ok, "a package check failed: see the table above"

# %% [markdown]
# ## Packages for other targets

# %%
rows = []
for tid in [t.strip() for t in also.split(",") if t.strip()]:
    other = deploy(project, target=tid, out=project.path("deploy", tid), **needed(tid))
    checks = check_package(other.path)
    rows.append({"target": tid, "kind": other.kind, "runtime": other.runtime, "files": len(other.files),
                 "checks passed": f"{sum(c.ok for c in checks)}/{len(checks)}", "folder": str(other.path)})
Table(rows, title="other targets")
