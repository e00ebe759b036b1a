"""Object detection (and YOLOv9 instance segmentation) with the YOLO models.

Data is decoded once and augmented per sample (mosaic, affine, mixup, HSV, flips: see
``tango_core.detection._augment``); the last ``close_mosaic`` epochs of the run (the trainer calls
``set_epochs``) train on letterboxed images.  The loss is the model family's (YOLOv7 OTA /
YOLOv9 task-aligned), per image, times the nominal batch ``nbs``, so one optimiser step moves the
weights as far as the reference's (which multiplies by the batch and accumulates to ``nbs``).
Validation: letterboxed images, NMS (confidence 0.001, IoU 0.7 for YOLOv9 / 0.65 for YOLOv7,
several labels per box), COCO-style mAP; fitness = 0.1 mAP@0.5 + 0.9 mAP@0.5:0.95.

The recipe of the model (``tango_core/detection/hyp.yaml``; a NAS architecture's is its base
model's) supplies the loss gains and the augmentation, and under SGD the optimiser schedule (lr0
0.01, momentum 0.937, 3 warm-up epochs): its names are hyper-parameters of a detection training
(``hyp_defaults``; the trainer's ``load_hyp(..., model=)`` fills in those the user did not set,
and a value set is kept even when it equals the engine's default).  The nominal batch (nbs)
shrinks on small training sets so that every epoch makes at least 8 optimiser steps (see
``nominal_batch``).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
import torch.nn as nn

from ...detection import DetectionEvaluator, non_max_suppression, process_masks
from ...detection._augment import DetectionAugment
from ...detection._autoanchor import check_anchors
from ...detection._data import load_splits, memory_splits, rasterise, stack_images
from ...detection._hyp import default_hyp
from ...detection._loss import build_loss
from ...errors import ConfigError, UnknownNameError
from .._hyp import default_hyp as engine_defaults
from . import register_task
from ._base import Batch, Task, ValResult
from .classification import _open_dataset, mix_seed

SAMPLES_IN_PLOTS = 8
#: engine settings that take the recipe's value unless the user changed them
_OPTIMISER_KEYS = ("lr0", "lrf", "momentum", "weight_decay", "warmup_epochs", "warmup_momentum", "warmup_bias_lr")
#: engine settings that take the recipe's value (whatever the optimiser) unless the user set them:
#: the augmentation both have, and gradient clipping
_RECIPE_ENGINE_KEYS = ("translate", "fliplr", "flipud", "hsv_v", "clip_grad")
NOMINAL_BATCH = 64  # the YOLO recipes' nominal batch
MIN_STEPS_PER_EPOCH = 8


def recipe_model(name: str) -> str:
    """The model whose recipe ``name`` trains with: itself, or for an architecture found by NAS
    (``yolov7-tiny-nas3``, or any name ``choose`` gave it) the base model it was searched around."""
    from ...models import model_info

    try:
        info = model_info(name)
    except UnknownNameError:  # an unregistered name: its own (recipe_for reports it)
        return name
    return str(info.get("base") or name) if info.get("searched") else name


def nominal_batch(num_train: int, reference: int = NOMINAL_BATCH) -> int:
    """The recipe's nominal batch, shrunk so that an epoch still makes ``MIN_STEPS_PER_EPOCH`` optimiser steps.

    The reference accumulates gradients over 64 images; on a set of a few hundred images that is a
    handful of steps an epoch (the trainer never carries gradients across epochs), and a short run
    barely moves the weights.  The loss is scaled by the nominal batch, so a smaller one keeps the
    step per image (the linear scaling rule): the same learning rate, more and smaller steps.
    """
    return max(2, min(reference, num_train // MIN_STEPS_PER_EPOCH))


@register_task("detection", fitness="0.1 mAP50 + 0.9 mAP50-95")
class DetectionTask(Task):
    name = "detection"
    fitness_name = "fitness"
    segmentation = False

    def __init__(self, data: Any, *, imgsz: int, hyp: dict[str, Any], seed: int = 0, channels: int | None = None,
                 val_fraction: float = 0.2, epochs: int | None = None) -> None:
        self.hyp, self.seed, self.imgsz, self.epochs = hyp, seed, int(imgsz), epochs
        if isinstance(data, dict):
            self.classes, self.in_channels, self.train, self.val = memory_splits(data, self.imgsz, self.segmentation)
        else:
            ds = data if hasattr(data, "records") else _open_dataset(data)
            self.classes, self.in_channels, self.train, self.val = load_splits(
                ds, self.imgsz, channels, seed, val_fraction, self.segmentation)
        self.recipe: dict[str, Any] = {}
        self.model_name: str | None = None
        self._loss = None
        self._augment: DetectionAugment | None = None
        self.anchor_report: dict[str, Any] | None = None

    # --- model and recipe ---------------------------------------------------------------------------
    def build_model(self, name: str) -> nn.Module:
        model = super().build_model(name)
        stride = int(getattr(model, "stride", 32))
        if self.imgsz % stride:
            raise ConfigError("train", "imgsz", f"{self.imgsz} is not a multiple of {name}'s stride {stride}",
                              f"use {stride * max(1, round(self.imgsz / stride))}")
        if name != self.model_name:
            self._set_recipe(name)
        self._loss = build_loss(model, self.recipe, self.imgsz)
        return model

    def fit_to_data(self, model: nn.Module) -> dict[str, Any] | None:
        """YOLOv7 (``autoanchor`` 1 in its recipes): anchors re-fitted when their best possible
        recall of the training boxes is under 0.98 (``tango_core.detection._autoanchor``)."""
        head = getattr(model, "head", None)
        if head is None or getattr(head, "anchor_free", True) or not self.recipe.get("autoanchor", 0):
            return None
        self.anchor_report = check_anchors(getattr(head, "main", head), [s.labels for s in self.train.samples],
                                           float(self.recipe.get("anchor_t", 4.0)), seed=self.seed)
        return self.anchor_report

    def model_summary(self, model: nn.Module, name: str) -> dict[str, Any]:
        summary = super().model_summary(model, name)
        if self.anchor_report is not None:
            summary["anchors"] = self.anchor_report
        return summary

    @classmethod
    def hyp_defaults(cls, model: str, overrides: dict[str, Any]) -> dict[str, Any]:
        """The hyper-parameters of ``model``'s recipe that training uses where the user set
        nothing (``tango_core.engine._hyp.load_hyp(..., model=)`` fills them in): every recipe
        name the engine does not have (loss gains, mosaic, mixup, scale...), the shared
        augmentation names (translate, fliplr, flipud, hsv_v), gradient clipping (YOLOv9's 10),
        and under SGD the optimiser schedule (lr0, lrf, momentum, weight decay, warm-up).  These
        names are what a detection hyp may set, and what HPO may search."""
        recipe = default_hyp(recipe_model(model))
        engine = engine_defaults()
        out = {k: v for k, v in recipe.items() if k not in engine or k in _RECIPE_ENGINE_KEYS}
        if overrides.get("optimizer", engine["optimizer"]) == "SGD":
            out.update({k: recipe[k] for k in _OPTIMISER_KEYS})
        return out

    def _set_recipe(self, name: str) -> None:
        self.model_name = name
        recipe = default_hyp(recipe_model(name))
        defaults = engine_defaults()
        if any(k not in self.hyp for k in recipe if k not in defaults):
            # a hyp of the engine's names only (a task built outside the trainer): what still has
            # the engine's default value was not set, and takes the recipe's
            auto_lr = defaults.get("lr0") == "auto" and self.hyp.get("lr0") == {"SGD": 0.05, "AdamW": 0.001}.get(
                self.hyp.get("optimizer", "SGD"))
            given = {k: v for k, v in self.hyp.items()
                     if (not auto_lr if k == "lr0" else k not in defaults or v != defaults[k])}
            for key, value in self.hyp_defaults(name, given).items():
                if key not in given:
                    self.hyp[key] = value
        # the trainer's hyp (load_hyp(model=)) holds every recipe value already, the user's included
        recipe.update({k: self.hyp[k] for k in recipe if k in self.hyp})
        if self.hyp.get("nbs") == defaults.get("nbs"):
            self.hyp["nbs"] = nominal_batch(self.num_train())
        self.recipe = recipe
        self._augment = DetectionAugment(lambda i: self.train.samples[i], len(self.train.samples), self.imgsz,
                                         recipe, mosaic9_fraction=recipe.get("mosaic9_fraction", 0.0))

    # --- data -------------------------------------------------------------------------------------
    def dataset_summaries(self) -> list[dict[str, Any]]:
        return [self.train.summary, self.val.summary]

    def num_train(self) -> int:
        return len(self.train.samples)

    def mosaic_on(self, epoch: int) -> bool:
        close = int(self.recipe.get("close_mosaic", 0))
        return not (self.epochs is not None and close and epoch >= self.epochs - close)

    def train_batches(self, epoch: int, batch_size: int) -> Iterator[Batch]:
        if self._augment is None:
            raise ConfigError("train", "model", "build_model() must run before train_batches()")
        order = torch.randperm(self.num_train(), generator=torch.Generator().manual_seed(mix_seed(self.seed, epoch)))
        mosaic = self.mosaic_on(epoch)
        for i, batch, mine in self.shard_batches(order, batch_size):
            # samples are augmented one after another from one generator: under DDP each process
            # draws from its own (seeded by rank too), its images being those of the batch's part
            seeds = (self.seed, epoch, i + 1) if self.world == 1 else (self.seed, epoch, i + 1, self.rank)
            rng = np.random.default_rng(mix_seed(*seeds))
            samples = [self._augment(int(j), rng, mosaic) for j in batch[mine]]
            yield self._batch(samples)

    def _batch(self, samples: list) -> Batch:
        x = stack_images(samples).float() / 255
        targets = [torch.from_numpy(s.labels).float() for s in samples]
        if not self.segmentation:
            return x, targets
        hw = (self.imgsz // 4, self.imgsz // 4)
        return x, [(t, rasterise(s.segments or [], hw, 0.25)) for t, s in zip(targets, samples, strict=True)]

    def example_batch(self, batch_size: int) -> Batch:
        g = torch.Generator().manual_seed(batch_size)
        s = self.imgsz
        x = torch.rand(batch_size, self.in_channels, s, s, generator=g)
        boxes = []
        for _ in range(batch_size):
            xy = torch.rand(3, 2, generator=g) * s * 0.6
            wh = torch.rand(3, 2, generator=g) * s * 0.3 + 8
            cls = torch.randint(0, len(self.classes), (3, 1), generator=g).float()
            boxes.append(torch.cat([cls, xy, xy + wh], 1))
        if not self.segmentation:
            return x, boxes
        return x, [(b, torch.zeros(len(b), s // 4, s // 4, dtype=torch.uint8)) for b in boxes]

    # --- loss and validation -----------------------------------------------------------------------
    def loss(self, output: Any, targets: Any) -> tuple[torch.Tensor, dict[str, Any]]:
        if self._loss is None:
            raise ConfigError("train", "model", "build_model() must run before loss()")
        bs = len(targets)
        if self.segmentation:
            boxes = [t[0] for t in targets]
            total, parts = self._loss(output, boxes, masks=[t[1] for t in targets])
        else:
            total, parts = self._loss(output, targets)
        scale = float(self.hyp.get("nbs", 64)) / bs
        return total * scale, {k: v * float(self.hyp.get("nbs", 64)) for k, v in parts.items()}

    def nms_iou(self) -> float:
        return 0.65 if recipe_model(self.model_name or "").startswith("yolov7") else 0.7

    @torch.inference_mode()
    def predict_split(self, model: nn.Module, batch_size: int, device: torch.device, dtype: torch.dtype | None,
                      channels_last: bool, conf: float = 0.001) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """Detections of the val split (rows x1, y1, x2, y2, score, class [, mask coefficients]) and,
        for segmentation, each image's instance masks at a quarter of the input size."""
        was_training = model.training
        model.eval()
        dets, masks = [], []
        samples = self.val.samples
        for i in range(0, len(samples), batch_size):
            x = stack_images(samples[i:i + batch_size]).to(device).float() / 255
            if channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            with torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
                out = model(x)
            pred, protos = out if isinstance(out, tuple) else (out, None)
            batch = non_max_suppression(pred.float(), conf, self.nms_iou(), max_det=300, multi_label=True,
                                        num_classes=len(self.classes))
            for j, d in enumerate(batch):
                if protos is not None:
                    p = protos[j].float()
                    masks.append(process_masks(p, d[:, 6:], d[:, :4] * p.shape[1] / x.shape[2], tuple(p.shape[1:])).cpu())
                dets.append(d[:, :6].cpu())
        model.train(was_training)
        return dets, masks

    def validate(self, model: nn.Module, batch_size: int, device: torch.device, dtype: torch.dtype | None,
                 channels_last: bool) -> ValResult:
        dets, masks = self.predict_split(model, min(batch_size, 32), device, dtype, channels_last)
        targets = [s.labels for s in self.val.samples]
        evaluator = DetectionEvaluator(len(self.classes), self.classes)
        evaluator.update(dets, targets)
        res = evaluator.compute()
        m = res["metrics"]
        metrics = {"precision": m["precision"], "recall": m["recall"], "mAP50": m["mAP50"], "mAP50-95": m["mAP50-95"]}
        fit = m["fitness"]
        if self.segmentation:  # mask AP at the prototypes' resolution (a quarter of the input), as YOLO does
            side = self.imgsz // 4
            gt_masks = [rasterise(s.segments or [], (side, side), side / self.imgsz).bool() for s in self.val.samples]
            mask_eval = DetectionEvaluator(len(self.classes), self.classes)
            mask_eval.update(dets, targets, masks, gt_masks)
            mm = mask_eval.compute()["metrics"]
            metrics.update({"mask_precision": mm["precision"], "mask_recall": mm["recall"],
                            "mask_mAP50": mm["mAP50"], "mask_mAP50-95": mm["mAP50-95"]})
            fit += mm["fitness"]  # box + mask fitness, as the YOLO segmentation trainers rank models
        details = dict(res, classes=list(self.classes), detections=[d.tolist() for d in dets[:SAMPLES_IN_PLOTS]])
        return ValResult(metrics, fit, details)

    def plots(self, result: ValResult) -> dict[str, Any]:
        d = result.details
        out: dict[str, Any] = {
            "confusion_matrix": d["confusion_matrix"], "confusion_labels": d["confusion_labels"],
            "pr_curve": dict(d["pr_curve"], ap=[c["ap50"] if c["ap50"] is not None else -1 for c in d["per_class"]]),
            "conf_curves": d["conf_curves"], "per_class": d["per_class"]}
        samples = []
        for i, det in enumerate(d["detections"]):
            s = self.val.samples[i]
            kept = np.array([r for r in det if r[4] >= 0.25]).reshape(-1, 6)
            if i < len(self.val.files):  # boxes on the original file
                root = self.val.summary.get("source", "")
                gt = np.concatenate([s.labels[:, :1], self.val.to_original(i, s.labels[:, 1:5])], 1)
                pred = np.concatenate([kept[:, 5:6], self.val.to_original(i, kept[:, :4]), kept[:, 4:5]], 1)
                item: dict[str, Any] = {"file": f"{root}/{self.val.files[i]}" if root else self.val.files[i]}
            else:  # in-memory data: the letterboxed image itself
                gt = s.labels
                pred = np.concatenate([kept[:, 5:6], kept[:, :4], kept[:, 4:5]], 1)
                item = {"image": s.image.tolist()}
            item.update(boxes=np.round(gt, 2).tolist(), pred_boxes=np.round(pred, 4).tolist())
            samples.append(item)
        out["samples"] = samples
        return out

    def weights_meta(self) -> dict[str, Any]:
        return dict(super().weights_meta(), preprocess={
            "resize": "letterbox", "pad_value": 114, "interpolation": "bilinear",
            "color": "L" if self.in_channels == 1 else "RGB", "layout": "NCHW", "scale": 1 / 255,
            "mean": [0.0] * self.in_channels, "std": [1.0] * self.in_channels},
            postprocess={"output": "boxes_xyxy_scores", "nms_iou": self.nms_iou(), "conf": 0.25,
                         "recipe": self.model_name},
            **({"anchors": self._fitted_anchors()} if self.anchor_report and self.anchor_report["refitted"] else {}))

    def _fitted_anchors(self) -> list[list[float]]:
        """The re-fitted anchors as a config writes them: per level, w, h, w, h... in pixels."""
        return [[v for wh in level for v in wh] for level in self.anchor_report["anchors"]]
