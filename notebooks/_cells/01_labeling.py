# %% [markdown]
# # Label your own images
#
# Point tango at a folder of images (or upload them), then label them in the notebook: a class
# per image, boxes, or polygons. Every change is saved to the dataset store at once, so nothing
# is lost if the kernel stops. Keys: **1–9** pick a class, **b** box, **g** polygon, **v** select,
# **n / p** next / previous image, **Delete** removes, **Ctrl+Z / Ctrl+Y** undo / redo, the arrow
# keys nudge the selected shape, the mouse wheel zooms, and dragging with the middle button (or Space + drag, or dragging the empty background with the select tool) pans.
#
# A model you trained can pre-label the images: its predictions appear as suggestions you accept,
# correct or reject. Finally the labels are exported as COCO, YOLO, Pascal VOC or ImageFolder.

# %% [install notebook]

# %% [parameters]
workdir = "tango-labeling"
images = ""          # a folder or .zip of your images; empty: unlabeled digits made here
task = "classification"   # classification | detection | segmentation
classes = "0,1,2,3,4,5,6,7,8,9"   # comma-separated class names
n_unlabeled = 30     # how many unlabeled sample images to make when no folder is given
prelabel_model = "auto"   # a tango weights file to pre-label with; auto: train a small one on the digits sample
export_format = "imagefolder"   # coco | yolo | voc | imagefolder

# %% [markdown]
# ## Your images in a dataset store
# The images are copied into `data/images/`; the labels live in `data/dataset.json`.

# %%
import shutil
from pathlib import Path

from tango_core.data import import_dataset, load_dataset, make_sample

work = Path(workdir)
store = work / "data"
if (store / "dataset.json").exists():
    ds = load_dataset(store)
else:
    if not images:
        sample = make_sample("digits", work / "_pool", n_per_class=max(1, n_unlabeled // 10), size=32, seed=7)
        images = work / "my_images"
        images.mkdir(parents=True, exist_ok=True)
        for rec in sample.records:
            shutil.copy(sample.image_path(rec), images / f"img_{len(list(images.iterdir())):04d}.png")
    ds = import_dataset(images, store, format="images", task=task)
    for name in [c.strip() for c in classes.split(",") if c.strip()]:
        if name not in ds.classes:
            ds.add_class(name)
    ds.save()
print(f"{len(ds)} images, classes {ds.classes}")

# %% [markdown]
# ## The labeler
# Label in the widget below. (Upload instead of a folder: `ipywidgets.FileUpload(multiple=True)`,
# then `import_dataset(upload.value, store)`.)

# %%
from tango_widgets import Labeler

labeler = Labeler(ds)
labeler

# %% [markdown]
# ## Pre-labels from a model
# With `prelabel_model = "auto"` a ResNet-CIFAR-20 is trained for a moment on the digits sample
# (a stand-in for a model you trained on the first images you labeled). Its predictions become
# suggestions, drawn dashed in the labeler; review them there. Here they are accepted as they are.

# %%
if prelabel_model == "auto" and task == "classification":
    from tango_core.engine import train

    seed_set = make_sample("digits", work / "_seed", n_per_class=40, size=16, seed=0)
    prelabel_model = str(train(seed_set, "resnet-cifar20", epochs=6, imgsz=16, batch_size=32,
                               run_dir=work / "_seed_run", hyp={"fliplr": 0.0}).best)
if prelabel_model and prelabel_model != "auto":
    suggested = labeler.prelabel(prelabel_model)
    print(f"suggestions for {suggested} images")
    for rec in list(labeler.dataset.records):   # "accept all" on every image, as after a review
        labeler.session.go(rec.id)
        labeler.session.accept()
labeled = sum(1 for r in labeler.dataset.records if r.is_labelled)
print(f"labeled: {labeled} of {len(labeler.dataset)}")
labeler

# %% [markdown]
# ## Check and export
# The analysis lists images still without labels and any other problem, each with its file.

# %%
from tango_core.data import analyse

print(analyse(load_dataset(store)).summary())   # read back from disk: the autosaved labels
out = labeler.export(work / f"export_{export_format}", export_format)
print("exported to", out)
