# %% [markdown]
# # Export and benchmark
#
# One trained model, every runtime: TorchScript, ONNX (fp32 / fp16 / INT8), OpenVINO, TFLite,
# TVM... Each export is run in its own runtime here and compared with the PyTorch model on
# held-out images (a failed comparison is an error). The benchmark then times every format at
# batch 1 with the same thread count and prints one table: size, accuracy, pre / inference / post
# latency and the speed-up over PyTorch eager. Formats that need hardware not present here
# (TensorRT, Edge TPU, RKNN) get their build scripts for the target.

# %% [install notebook,export,tflite,openvino,tvm]

# %% [parameters]
workdir = "tango-export"
weights = ""             # a best.pt from tango training; empty: train a small digits model first
imgsz = 32
n_per_class = 20
epochs = 2
formats = "torchscript,onnx,openvino,tflite"   # formats to export and verify
int8 = True              # also an INT8 ONNX Runtime export, calibrated on the training images
benchmark_runs = 30      # timed runs per format

# %% [markdown]
# ## A model to export
# With no weights given, a ResNet-CIFAR-20 is trained for a moment on the digits sample (the
# accuracy is not the point here: the exports must agree with it).

# %%
from pathlib import Path

from tango_core import Project
from tango_core.data import make_sample
from tango_core.engine import train

project = Project.create(Path(workdir) / "project", task="classification", exist_ok=True)
if not project.config.dataset:
    project.attach_dataset(make_sample("digits", project.path("data"), n_per_class=n_per_class, size=imgsz))
if not weights:
    weights = str(project.trained_weights() or train(project, model="resnet-cifar20", epochs=epochs, imgsz=imgsz,
                                                     batch_size=32).best)
print("weights:", weights)

# %% [markdown]
# ## Export and verify
# `export(weights, format, ...)` writes the model and a metadata file (`*.tango.json`: classes,
# input shape, normalisation, thresholds, the verification result) that deploy code reads.

# %%
from tango_core.export import export
from tango_core.report import Table

rows = []
for fmt in [f.strip() for f in formats.split(",") if f.strip()] + (["onnx:int8"] if int8 else []):
    name, _, precision = fmt.partition(":")
    opts = {"precision": precision} if precision else {}
    res = export(weights, name, project=project, imgsz=imgsz, **opts)
    m = res.verification["metrics"]
    rows.append({"format": name, "precision": precision or "fp32", "file": res.path.name,
                 "size KB": round(res.size_bytes / 1024, 1), "verified": res.verification["passed"],
                 "max |diff|": m.get("max_abs_diff"), "top-1 agreement": m.get("top1_agreement"),
                 "accuracy": m.get("accuracy")})
Table(rows, title="exports, each compared with PyTorch on held-out images")

# %% [markdown]
# ## Formats for hardware that is not here
# TensorRT needs an NVIDIA GPU and its library: tango writes the ONNX, an engine build script
# and a runner to use on the target (for example a Jetson).

# %%
trt = export(weights, "tensorrt", project=project, imgsz=imgsz)
print(trt)
print(sorted(p.name for p in trt.path.iterdir()))

# %% [markdown]
# ## Benchmark
# Median latency at batch 1 (2 threads everywhere), split into pre-processing, inference and
# post-processing, and the speed-up over PyTorch eager.

# %%
from IPython.display import Markdown

from tango_core.export import benchmark

bench = benchmark(weights, project=project, imgsz=imgsz, runs=benchmark_runs, warmup=5,
                  out=str(project.path("runs", "benchmark")))
Markdown(bench.table() + f"\n\nfastest: **{bench.fastest()['label']}** ({bench.machine})")
