# %% [markdown]
# # Image classification, step by step
#
# You have folders of images, one folder per class (or any format tango reads). This notebook
# imports them, checks them, picks a base model for your target, trains it with a live dashboard,
# evaluates it (accuracy, per-class precision / recall, confusion matrix) and predicts on new images.
# Without your own images it uses the built-in digits sample.

# %% [install notebook,export,deploy]

# %% [parameters]
workdir = "tango-classification"
images = ""              # your dataset: a folder or .zip (ImageFolder, COCO, YOLO, VOC); empty: the digits sample
target = "x86-cpu"       # where the model will run (tango targets list)
n_per_class = 50         # digits sample size per class
imgsz = 16
epochs = 8
flip = False             # mirror images in augmentation (wrong for digits and text)
batch_size = 32          # or "auto"
model = ""               # empty: the recommendation; or any registered name, e.g. resnet-cifar32
seed = 0

# %% [markdown]
# ## Project and data
# Your images are copied into the project's own dataset store (`data/dataset.json`), so nothing
# you have is modified. Every problem found is listed with its file.

# %%
from pathlib import Path

from tango_core import Project
from tango_core.data import analyse, import_dataset, make_sample

project = Project.create(Path(workdir) / "project", task="classification", target=target, exist_ok=True)
if project.config.dataset:
    ds = project.dataset()
elif images:
    ds = import_dataset(images, project.path("data"), task="classification")
    ds.split(val=0.2, seed=seed)
    ds.save()
else:
    ds = make_sample("digits", project.path("data"), n_per_class=n_per_class, size=imgsz, seed=seed)
project.attach_dataset(ds)
project.set(hyp={**project.config.hyp, "fliplr": 0.5 if flip else 0.0})
report = analyse(ds)
print(report.summary())

# %% [markdown]
# ## Base model
# The picker shows the rule's recommendation and why, with the alternatives as cards. In a live
# notebook you can click another card; here the choice is saved as it stands.

# %%
from tango_widgets import ModelPicker

picker = ModelPicker(project)
picker

# %%
if model:
    picker.select(model)   # the same as clicking its card
choice = picker.apply()    # the same as clicking "Use": written to the project
print("model:", project.config.model, "|", choice.reason)

# %% [markdown]
# ## Training
# Auto-batch measures the largest batch that fits (`batch_size="auto"`); early stopping ends the
# run when validation accuracy stops improving; `best.pt` and `last.pt` are saved every epoch.

# %%
from IPython.display import display

from tango_core.engine import train
from tango_widgets import Dashboard

dashboard = Dashboard(project.events, title=f"Training {project.config.model}")
display(dashboard)
result = train(project, epochs=epochs, imgsz=imgsz, batch_size=batch_size, seed=seed)
dashboard.refresh()

# %% [markdown]
# ## Evaluation

# %%
from tango_core.report import Table

metrics = {k: round(v, 4) for k, v in result.metrics.items() if isinstance(v, float)}
Table([metrics], title=f"{project.config.model}, best epoch {result.best_epoch} of {result.epochs_run}")

# %% [markdown]
# ## Predict on new images
# `predict(weights, files_or_folder)` returns the class and its confidence for each image.

# %%
from tango_core.engine import predict

val = [ds.image_path(r) for r in ds.records_of("val")][:8]
preds = predict(result.best, val, topk=3)
Table([{"image": Path(p.source).name, "truth": ds.classes[r.label], "predicted": p.name,
        "confidence": round(p.confidence, 3)} for p, r in zip(preds, ds.records_of("val"))],
      title="predictions on held-out images")
