# %% [markdown]
# # tango quickstart: from images to a verified, deployable model
#
# This notebook walks the whole path on a built-in sample dataset, with no clicks needed:
# **project → data → analysis → model selection → graph → training → export → deploy → summary**.
# Run it top to bottom (or headless: `tango demo`). Every step prints what it did; each widget
# also leaves a picture, so the saved notebook reads as a report.

# %% [install notebook,export,deploy]

# %% [parameters]
# Parameters (papermill sets these; the defaults are small so the whole notebook runs in minutes).
workdir = "tango-quickstart"   # where the project is created
task = "classification"        # classification (digits sample) or detection (shapes sample)
target = "x86-cpu"             # a target id: see `tango targets list`
n_per_class = 50               # sample images per class (classification)
n_images = 120                 # sample images (detection)
imgsz = 16                     # image size used for the sample and training
epochs = 8
batch_size = 32                # an integer, or "auto" to measure the largest batch that fits
export_formats = "auto"        # "auto": the target's runtimes that run here (first 3); or e.g. "onnx,openvino"
seed = 0

# %% [markdown]
# ## 1. Project
# A project is a folder with a readable `tango.yaml`: task, target, classes, chosen model and the
# status of each stage. Reopening the folder later continues where you stopped.

# %%
from pathlib import Path

from tango_core import Project, get_target

project = Project.create(Path(workdir) / "project", name="quickstart", task=task, target=target, exist_ok=True)
t = get_target(project.config.target)
print(project)
print(f"target: {t.name} | {t.cpu}, accelerator {t.accelerator}, memory {t.memory_gb or 'unknown'} GB | runtimes {t.runtimes}")

# %% [markdown]
# ## 2. Data
# tango ships sample datasets generated on the spot (nothing is downloaded): handwritten digits
# for classification, coloured shapes with exact boxes and polygons for detection.

# %%
from tango_core.data import analyse, make_sample

if task == "classification":
    ds = make_sample("digits", project.path("data"), n_per_class=n_per_class, size=imgsz, seed=seed)
else:
    ds = make_sample("shapes", project.path("data"), n=n_images, size=imgsz, task=task, seed=seed)
project.attach_dataset(ds)   # records the dataset and its classes; labels are complete too
if task == "classification":
    project.set(hyp={"fliplr": 0.0})   # a mirrored digit is another symbol: no flip augmentation
print(f"{len(ds)} images, classes {ds.classes}")

# %% [markdown]
# ## 3. Analysis
# Class counts, image sizes, box statistics and every problem found (corrupt images, boxes
# outside the image, duplicates...), each naming its file.

# %%
report = analyse(ds)
print(report.summary())

# %% [markdown]
# ## 4. Base model selection
# The seed's rule table picks a model from the task, the number of classes and the target's
# memory, and says why. You can override it (`rec.override("name")`).

# %%
from tango_core import recommend

rec = recommend(project.task, len(project.config.classes), target=project.config.target)
with project.stage("model_selection", reason=rec.reason):
    project.set(model=rec.model)
print("recommended:", rec.model)
print("why:", rec.reason)
print("alternatives:", ", ".join(rec.alternatives))

# %% [markdown]
# ## 5. The model's graph
# Blocks are collapsed; click one in the live notebook to see inside. Detection models are laid
# out as backbone, neck and head.

# %%
from tango_widgets import GraphViewer

GraphViewer(project.config.model, input_size=imgsz)

# %% [markdown]
# ## 6. Training
# The dashboard follows the training live: losses, learning rate, validation metrics, progress.
# Checkpoints are written every epoch; `train(project, resume=True)` continues an interrupted run.

# %%
from IPython.display import display

from tango_core.engine import train
from tango_widgets import Dashboard

dashboard = Dashboard(project.events, title=f"Training {project.config.model}")
display(dashboard)
result = train(project, epochs=epochs, imgsz=imgsz, batch_size=batch_size, seed=seed)
dashboard.refresh()
print(f"best epoch {result.best_epoch}: " + ", ".join(f"{k} {v:.3f}" for k, v in result.metrics.items()
                                                       if isinstance(v, float)))
print("weights:", result.best)

# %% [markdown]
# ## 7. Export for the target, each export verified
# Every export runs in its own runtime here and is compared with the PyTorch model on held-out
# images; a failed comparison stops the notebook.

# %%
from tango_core.export import export, get_format
from tango_core.report import Table

if export_formats == "auto":
    formats = [r for r in t.runtimes if r != "pytorch" and get_format(r).runs_here][:3]
else:
    formats = [f.strip() for f in export_formats.split(",") if f.strip()]
rows = []
with project.stage("export", formats=formats):
    for fmt in formats:
        res = export(None, fmt, project=project, imgsz=imgsz)
        v = res.verification or {}
        m = v.get("metrics", {})
        rows.append({"format": fmt, "file": res.path.name, "size KB": round(res.size_bytes / 1024, 1),
                     "export s": round(res.time, 2), "verified": v.get("passed"),
                     "max |diff|": m.get("max_abs_diff"), "top-1 agreement": m.get("top1_agreement")})
exports_table = Table(rows, title=f"Exports for {t.name}")
exports_table

# %% [markdown]
# ## 8. Deploy package for the target
# The package holds the export, standalone pre- / post-processing, a runner, an HTTP server
# (KServe v2 protocol included), pinned requirements and a Dockerfile, plus the target's own
# files (Kubernetes manifests, device scripts...). It is checked here, and run when its runtime
# runs on this machine.

# %%
from tango_core.deploy import check_package, deploy

package = deploy(project)
checks = check_package(package.path, run=t.cpu_only and t.cpu == "x86_64")
print(package)
print(f"checks: {sum(c.ok for c in checks)} of {len(checks)} passed")
assert checks.ok, "\n".join(str(c) for c in checks if not c.ok)

# %% [markdown]
# ## Summary

# %%
print(project)
for stage, status in project.summary().items():
    print(f"  {stage:16s} {status}")
print(f"\nmodel {project.config.model}: " + ", ".join(f"{k} {v:.3f}" for k, v in result.metrics.items()
                                                    if isinstance(v, float)))
print("exports:", ", ".join(r["format"] for r in rows), "| all verified:", all(r["verified"] for r in rows))
print("deploy package:", package.path)
