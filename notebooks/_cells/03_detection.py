# %% [markdown]
# # Object detection with YOLOv7 / YOLOv9
#
# Boxes in, a trained detector out: import a detection dataset (COCO, YOLO, Pascal VOC, or a
# tango store), check it, pick the YOLO size for your target, train with mosaic augmentation and a
# live dashboard (losses, precision / recall / mAP, PR curve, confusion matrix at the end), then
# export it with NMS inside the ONNX graph and verify the export's mAP against PyTorch.
# Without your own data it uses the built-in shapes sample.

# %% [install notebook,export,detection]

# %% [parameters]
workdir = "tango-detection"
images = ""            # your dataset folder or .zip (COCO, YOLO, VOC); empty: the shapes sample
target = "x86-cpu"     # where the model will run (tango targets list)
n_images = 48          # shapes sample size
imgsz = 64             # training / export image size (a multiple of the model's largest stride)
epochs = 3
batch_size = 8
model = ""             # empty: the recommendation; or e.g. yolov9-t
hyp = {}               # over the model's recipe; a short CPU run (docs/detection.md), YOLOv7:
                       # {"optimizer": "AdamW", "lr0": 0.002, "warmup_epochs": 1, "nbs": 8, "loss_ota": 0}
seed = 0

# %% [markdown]
# ## Project, data and analysis

# %%
from pathlib import Path

from tango_core import Project
from tango_core.data import analyse, import_dataset, make_sample

project = Project.create(Path(workdir) / "project", task="detection", target=target, exist_ok=True)
if project.config.dataset:
    ds = project.dataset()
elif images:
    ds = import_dataset(images, project.path("data"), task="detection")
    ds.split(val=0.2, seed=seed)
    ds.save()
else:
    ds = make_sample("shapes", project.path("data"), n=n_images, size=imgsz, task="detection", seed=seed)
project.attach_dataset(ds)
print(analyse(ds).summary())

# %% [markdown]
# ## Base model
# Up to 50 classes the seed's rule picks YOLOv7 (tiny on small devices), beyond that YOLOv9.

# %%
from tango_widgets import GraphViewer, ModelPicker

picker = ModelPicker(project)
if model:
    picker.select(model)
choice = picker.apply()
print("model:", project.config.model, "|", choice.reason)
picker

# %% [markdown]
# The model's graph, laid out as backbone, neck and head (click a block in a live notebook to
# see inside; repeated blocks are folded).

# %%
GraphViewer(project.config.model, input_size=imgsz)

# %% [markdown]
# ## Training
# Mosaic (4 and 9 tiles), random affine, HSV and flips; mosaic is switched off for the last
# epochs. Fitness is 0.1 · mAP@0.5 + 0.9 · mAP@0.5:0.95, as in the original. The published
# recipes are made for long GPU runs; `hyp` changes any of their values (on a CPU, the short
# recipe of docs/detection.md reaches mAP@0.5 0.9 on the 320-px shapes sample in 6-7 minutes).

# %%
from IPython.display import display

from tango_core.engine import train
from tango_widgets import Dashboard

dashboard = Dashboard(project.events, title=f"Training {project.config.model}")
display(dashboard)
result = train(project, epochs=epochs, imgsz=imgsz, batch_size=batch_size, seed=seed, hyp=hyp)
dashboard.refresh()

# %%
from tango_core.report import Table

Table([{k: (round(v, 4) if isinstance(v, float) else v) for k, v in result.metrics.items()
        if not isinstance(v, (list, dict))}],
      title=f"{project.config.model}: validation metrics of the best epoch ({result.best_epoch})")

# %% [markdown]
# ## Export with NMS in the graph, verified
# The auxiliary heads are removed and RepConv / BatchNorm are folded before export; the export's
# detections are compared with PyTorch's on the validation images (mAP of both).

# %%
from tango_core.export import export

res = export(None, "onnx", project=project, imgsz=imgsz, nms=True)
v = res.verification
Table([{"file": res.path.name, "size KB": round(res.size_bytes / 1024, 1), "verified": v["passed"],
        **{k: (round(x, 4) if isinstance(x, float) else x) for k, x in v["metrics"].items()
           if not isinstance(x, (list, dict))}}], title="ONNX export (NMS inside)")
