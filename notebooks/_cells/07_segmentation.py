# %% [markdown]
# # Instance segmentation
#
# Polygons in, a model that outlines each object out: YOLOv9 with a segmentation head
# (prototype masks and per-object mask coefficients). Import COCO (polygons or RLE) or YOLO
# segmentation labels, or label polygons yourself in the labeler; without data the built-in
# shapes sample (exact polygons) is used.

# %% [install notebook,export,detection]

# %% [parameters]
workdir = "tango-segmentation"
images = ""           # a COCO / YOLO segmentation dataset folder or .zip; empty: the shapes sample
target = "x86-cpu"
n_images = 32
imgsz = 64
epochs = 2
batch_size = 8
model = ""            # empty: the recommendation (YOLOv9-seg sized for the target)
seed = 0

# %% [markdown]
# ## Project, data and analysis

# %%
from pathlib import Path

from tango_core import Project
from tango_core.data import analyse, import_dataset, make_sample

project = Project.create(Path(workdir) / "project", task="segmentation", target=target, exist_ok=True)
if project.config.dataset:
    ds = project.dataset()
elif images:
    ds = import_dataset(images, project.path("data"), task="segmentation")
    ds.split(val=0.2, seed=seed)
    ds.save()
else:
    ds = make_sample("shapes", project.path("data"), n=n_images, size=imgsz, task="segmentation", seed=seed)
project.attach_dataset(ds)
print(analyse(ds).summary())

# %% [markdown]
# The labeler shows the polygons (edit vertices in a live notebook: drag to move, click an edge
# to insert, Delete to remove).

# %%
from tango_widgets import Labeler

Labeler(ds)

# %% [markdown]
# ## Model and training

# %%
from IPython.display import display

from tango_core import recommend
from tango_core.engine import train
from tango_widgets import Dashboard

rec = recommend("segmentation", len(ds.classes), target=target)
project.set(model=model or rec.model)
print("model:", project.config.model, "|", rec.reason)
dashboard = Dashboard(project.events, title=f"Training {project.config.model}")
display(dashboard)
result = train(project, epochs=epochs, imgsz=imgsz, batch_size=batch_size, seed=seed)
dashboard.refresh()

# %%
from tango_core.report import Table

Table([{k: (round(v, 4) if isinstance(v, float) else v) for k, v in result.metrics.items()
        if not isinstance(v, (list, dict))}], title=f"{project.config.model}: validation metrics (best epoch)")
