"""The trainer: one loop for every task, headless, reporting through named events.

Order of events: SYSTEM_INFO, DATASET_SUMMARY (per split), MODEL_SUMMARY, AUTOBATCH (when the
batch is measured), TRAIN_START, then per epoch EPOCH_START, TRAIN_BATCH (per batch), VAL_END,
EPOCH_END, CHECKPOINT (best when improved, then last), EARLY_STOP (when patience runs out);
OOM_RETRY whenever a batch does not fit; at the end VAL_PLOTS (of the best model) and TRAIN_END,
or TRAIN_ERROR when training fails.

Under ``torchrun`` (several processes) the same loop runs data-parallel: see ``_init_distributed``
and docs/training.md, "Multi-GPU and multi-node training".  ``batch_size`` is then the global
batch, every process takes its part of each batch, rank 0 validates, writes and emits events.
"""

from __future__ import annotations

import contextlib
import copy
import math
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from .. import events as ev
from .._io import write_yaml
from ..errors import ConfigError, TangoError
from ..models import model_info
from ..models.weights import load_weights
from . import _checkpoint as ckpt
from . import _ddp as ddp
from ._autobatch import (
    SAFETY,
    OutOfMemory,
    StepMeter,
    choose_batch,
    default_budget,
    fixed_bytes,
    is_oom_error,
    measure_line,
)
from ._device import amp_dtype, configure_threads, select_device, system_info
from ._hyp import load_hyp
from ._optim import ModelEMA, apply_schedule, build_optimizer
from .tasks import Task, ValResult, get_task

LEARNING_TYPES = ("normal", "transfer", "incremental")
MIN_BATCH = 2  # batch norm needs two samples
MAX_OOM_RETRIES = 8


@dataclass
class TrainResult:
    run_dir: Path
    best: Path | None  # the weights to use: best.pt, or the previous weights when incremental kept them
    last: Path | None
    best_fitness: float
    best_epoch: int
    metrics: dict[str, float]  # of the best model
    history: list[dict[str, Any]]
    epochs_run: int
    batch_size: int
    stopped_early: bool = False
    kept: str = "new"  # incremental learning: "previous" when the new model did not beat the stored one
    details: dict[str, Any] = field(default_factory=dict)


class Trainer:
    """Train ``model`` on ``data`` (a tango Dataset, its folder, or in-memory tensors).

    ``resume``: True (the run_dir's weights/last.pt) or a last.pt path; the run's own arguments
    are restored from it, so ``Trainer(None, resume="runs/train/3/weights/last.pt").fit()`` works.
    ``memory_budget_bytes``: the memory the run may use (default: a share of free GPU memory or
    available RAM); it decides the auto batch and is checked on the first step of every epoch.
    ``distributed``: "auto" trains data-parallel when torchrun started several processes (or the
    process joined a group already); False trains this process alone even then.
    """

    def __init__(self, data: Any, model: str = "resnet-cifar20", *, task: str | None = None, epochs: int = 30,
                 batch_size: int | str = "auto", imgsz: int | None = None, hyp: dict | str | None = None,
                 run_dir: str | Path | None = None, events: ev.EventBus | None = None, resume: bool | str = False,
                 device: str = "auto", amp: str | bool = "auto", seed: int = 0, patience: int = 50,
                 learning_type: str = "normal", weights: str | None = None, channels_last: bool | str = "auto",
                 memory_budget_bytes: int | None = None, max_batch: int = 128, loggers: Iterable[str] = ("csv",),
                 threads: int | None = None, channels: int | None = None, val_fraction: float = 0.2,
                 distributed: bool | str = "auto") -> None:
        self.events = events or ev.EventBus()
        self.resume_path: Path | None = None
        args = dict(model=model, task=task, epochs=epochs, batch_size=batch_size, imgsz=imgsz, seed=seed,
                    patience=patience, learning_type=learning_type, weights=weights, amp=amp,
                    channels_last=channels_last, channels=channels, val_fraction=val_fraction, max_batch=max_batch,
                    hyp=hyp if isinstance(hyp, dict) or hyp is None else str(hyp))
        if resume:
            self.resume_path = Path(resume) if isinstance(resume, (str, Path)) else None
            if self.resume_path is None:
                if run_dir is None:
                    raise ConfigError("train", "resume", "resume=True needs run_dir", "or pass the last.pt path")
                self.resume_path = Path(run_dir) / "weights" / "last.pt"
            self._resumed = ckpt.read_train_state(self.resume_path)
            saved = self._resumed["train_state"]["args"]
            args.update(saved)  # the run continues with its own arguments
            run_dir = run_dir or self.resume_path.parent.parent
            if data is None:
                data = saved.get("data")
        if type(data).__name__ == "Project":
            raise ConfigError("Trainer", "data", "is a Project", "call tango_core.engine.train(project) instead")
        if data is None or data == "<memory>":
            raise ConfigError("train", "data", "no data given", "pass a dataset, its folder, or tensors")
        args["data"] = str(data) if isinstance(data, (str, Path)) else getattr(data, "root", "<memory>")
        args["data"] = str(args["data"])
        if args["learning_type"] not in LEARNING_TYPES:
            raise ConfigError("train", "learning_type", f"{args['learning_type']!r} is not a learning type",
                              f"use one of {list(LEARNING_TYPES)}")
        if args["learning_type"] in ("transfer", "incremental") and not args["weights"]:
            raise ConfigError("train", "weights", f"{args['learning_type']} learning starts from a weights file",
                              "pass weights=<path to a .pt file> (e.g. an earlier run's best.pt)")
        if not isinstance(args["epochs"], int) or args["epochs"] < 1:
            raise ConfigError("train", "epochs", f"{args['epochs']!r} must be a positive integer")
        bs = args["batch_size"]
        if bs != "auto" and (not isinstance(bs, int) or bs < MIN_BATCH):
            raise ConfigError("train", "batch_size", f"{bs!r} must be 'auto' or an integer >= {MIN_BATCH}")
        self.args, self.data = args, data
        self.hyp = load_hyp(args["hyp"], model=args["model"])  # with the task's own names (a YOLO recipe)
        self.args["hyp"] = dict(self.hyp)
        self.run_dir = Path(run_dir) if run_dir is not None else next_run_dir(Path("runs") / "train")
        self.weights_dir = self.run_dir / "weights"
        self.device = select_device(device)
        if distributed not in ("auto", False):
            raise ConfigError("train", "distributed", f"{distributed!r} is not a choice",
                              "use 'auto' (data-parallel under torchrun) or False")
        self.distributed, self._device_arg = distributed, device
        self.ctx = ddp.world_of_one(self.device)  # this process's place in a DDP run (fit() joins the group)
        self.threads, self.loggers = threads, list(loggers)
        self.memory_budget_bytes = memory_budget_bytes
        self.epoch = self.step = 0
        self.best_fitness, self.best_epoch = -math.inf, -1
        self.baseline_fitness: float | None = None
        self.history: list[dict[str, Any]] = []
        self.stopped_early = False
        self.step_bytes = 0  # memory of the last measured step (activations on CPU, peak on CUDA)
        self._subscriptions: list[Any] = []

    # --- public --------------------------------------------------------------------------------
    def fit(self) -> TrainResult:
        self.t0 = time.time()
        owns_group = False
        try:
            owns_group = self._init_distributed()
            self._attach_loggers()
            self._setup()
            self._emit(ev.TRAIN_START, epochs=self.args["epochs"], batch_size=self.batch_size, device=str(self.device),
                       run_dir=str(self.run_dir), start_epoch=self.epoch, accumulate=self.accumulate,
                       resumed=self.resume_path is not None, learning_type=self.args["learning_type"],
                       processes=self.ctx.world_size)
            retries = 0
            while True:
                try:
                    self._epochs()
                    break
                except Exception as exc:
                    # under DDP only the budget guard's OutOfMemory is retried: every process raises it
                    # together; a real OOM in one process leaves the others inside a collective
                    retry = is_oom_error(exc) and (not self.ctx.distributed or isinstance(exc, OutOfMemory))
                    if not retry or retries >= MAX_OOM_RETRIES:
                        raise
                    retries += 1
                    self._shrink_batch(exc)
            return self._finish()
        except BaseException as exc:
            self._emit(ev.TRAIN_ERROR, error=f"{type(exc).__name__}: {exc}", type=type(exc).__name__,
                       epoch=self.epoch)
            raise
        finally:
            for unsubscribe in self._subscriptions:
                unsubscribe()
            if owns_group:
                ddp.cleanup(self.ctx)

    # --- data-parallel ---------------------------------------------------------------------------
    def _init_distributed(self) -> bool:
        """Join the process group torchrun describes (NCCL on CUDA, gloo on CPU), take this
        process's GPU (LOCAL_RANK) and rank 0's run folder.  True when this call created the group
        (fit() then destroys it at the end)."""
        if self.distributed is False or (ddp.env_world_size() == 1 and not ddp.initialized()):
            return False
        existed = ddp.initialized()
        self.ctx = ddp.setup(device=self._device_arg)
        self.device = self.ctx.device
        if not self.ctx.distributed:
            return False
        # every process must write to (and resume from) the folder rank 0 chose
        self.run_dir = Path(ddp.broadcast_object(str(self.run_dir), self.ctx))
        self.weights_dir = self.run_dir / "weights"
        return not existed

    def _no_sync(self, sync: bool):
        """DDP's gradient all-reduce only on the backward pass that completes an optimiser step."""
        if sync or not self.ctx.distributed:
            return contextlib.nullcontext()
        return self.net.no_sync()

    def _sync_state(self) -> None:
        """Rank 0's batch-norm statistics in the model and the EMA on every process.  Parameters
        agree already (DDP averages the gradients); buffers do not: each process's batch norms
        update from its own part of the batch (DDP copies rank 0's buffers at every forward)."""
        if self.ctx.distributed:
            ddp.broadcast_state(self.model, self.ctx, buffers_only=True)
            if self.ema is not None:
                ddp.broadcast_state(self.ema.module, self.ctx, buffers_only=True)

    # --- set-up ----------------------------------------------------------------------------------
    def _emit(self, event: str, /, **payload: Any) -> None:
        if self.ctx.is_main:  # under DDP rank 0 speaks for the run
            self.events.emit(event, **payload)

    def _attach_loggers(self) -> None:
        from .callbacks import create_logger

        if not self.ctx.is_main:
            return
        for name in self.loggers:
            logger = create_logger(name, self.run_dir)
            self._subscriptions.append(self.events.subscribe("*", logger))
            self._subscriptions.append(logger.close)

    def _setup(self) -> None:
        a = self.args
        configure_threads(self.threads)
        self.dtype = amp_dtype(self.device, a["amp"])
        cl = a["channels_last"]
        # channels-last lets oneDNN / cuDNN pick their fastest convolutions (measured: docs/benchmarks.md)
        self.channels_last = True if cl == "auto" else bool(cl)
        self._emit(ev.SYSTEM_INFO, **system_info(self.device, self.dtype), channels_last=self.channels_last,
                   processes=self.ctx.world_size, backend=self.ctx.backend)
        info = model_info(a["model"])
        task_name = a["task"] or info["task"]
        if a["task"] and a["task"] != info["task"]:
            raise ConfigError("train", "model", f"{a['model']!r} is a {info['task']} model, not {a['task']}")
        imgsz = a["imgsz"] or info["input_size"]
        self.task: Task = get_task(task_name)(self.data, imgsz=imgsz, hyp=self.hyp, seed=a["seed"],
                                             channels=a["channels"], val_fraction=a["val_fraction"])
        self.task.set_epochs(a["epochs"])
        world = self.ctx.world_size
        if self.ctx.distributed:
            self.task.set_shard(self.ctx.rank, world)
            if self.task.num_train() < MIN_BATCH * world:
                raise ConfigError("train", "data", f"{self.task.num_train()} training images cannot give each of "
                                  f"{world} processes {MIN_BATCH}", "use fewer processes or more images")
        for summary in self.task.dataset_summaries():
            self._emit(ev.DATASET_SUMMARY, **summary)
        self.model, weights_report = self._initial_model()
        summary = self.task.model_summary(self.model, a["model"])
        if weights_report is not None:
            summary["weights"] = weights_report
        self._emit(ev.MODEL_SUMMARY, **summary)
        self.ema = ModelEMA(self.model, self.hyp["ema_decay"]) if self.hyp["ema"] else None
        if self.memory_budget_bytes is None:
            self.memory_budget_bytes = default_budget(self.device)
        self.fixed_bytes = fixed_bytes(self.model, self.hyp["optimizer"], self.ema is not None)
        if self.resume_path is not None:  # the batch the run had reached (it may have shrunk after an OOM)
            self.batch_size = int(self._resumed["train_state"]["batch_size"])
        else:
            self.batch_size = self._auto_batch() if a["batch_size"] == "auto" else int(a["batch_size"])
        if self.batch_size < MIN_BATCH * world:
            raise ConfigError("train", "batch_size", f"{self.batch_size} is the global batch of {world} processes: "
                              f"each needs {MIN_BATCH} images", f"use a batch_size >= {MIN_BATCH * world}")
        self._build_optimizer()
        if self.resume_path is not None:
            self._load_state(self._resumed)
            del self._resumed
        elif a["learning_type"] == "incremental" and not weights_report["new"]:
            # the stored model is the one to beat; with new classes (a new head) there is nothing to compare
            self.baseline_fitness = self.best_fitness = self._validate().fitness
        if self.ctx.is_main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            write_yaml(self.run_dir / "args.yaml", {k: v for k, v in a.items() if k != "hyp"})
            write_yaml(self.run_dir / "hyp.yaml", self.hyp)
        # CUDA DDP: batch norms with the statistics of the whole batch (the same parameters and buffers,
        # so the optimiser and the EMA, built above, are unchanged; auto-batch probed a plain copy)
        self.model = ddp.sync_batchnorm(self.model, self.ctx)
        # the module that runs forward: DDP around the model (which the optimiser, EMA and checkpoints use)
        self.net = ddp.wrap(self.model, self.ctx, sync_bn=False)

    def _initial_model(self) -> tuple[torch.nn.Module, dict[str, Any] | None]:
        """The model training starts from: seeded initialisation, then the start weights if any."""
        a = self.args
        torch.manual_seed(a["seed"])
        model = self.task.build_model(a["model"]).to(self.device)
        model.tango_name = a["model"]
        report = None
        if a["weights"] and self.resume_path is None:
            # normal learning continues from a file of the same model; transfer / incremental accept a new head
            loaded = load_weights(model, a["weights"], strict=a["learning_type"] == "normal")
            report = {"path": str(a["weights"]), "loaded": len(loaded.loaded),
                      "new": [k.split(":")[0] for k in loaded.shape_mismatch] + loaded.missing}
        elif self.resume_path is None:  # from scratch: e.g. anchors fitted to the boxes (a resume loads its own)
            self.task.fit_to_data(model)
        if self.channels_last:
            model = model.to(memory_format=torch.channels_last)
        return model, report

    def _restart(self) -> None:
        """Back to where training began (rebuilt rather than kept in memory: a copy of a big model is costly)."""
        fresh, _ = self._initial_model()
        state = fresh.state_dict()
        self.model.load_state_dict(state)
        if self.ema is not None:
            self.ema.module.load_state_dict(state)
            self.ema.updates = 0
            self.ema.reset_cache()
        self.epoch = self.step = 0
        self.best_fitness = self.baseline_fitness if self.baseline_fitness is not None else -math.inf
        self.best_epoch, self.history = -1, []

    def _auto_batch(self) -> int:
        probe_model = copy.deepcopy(self.model)  # probing updates batch-norm statistics: keep them off the model

        def step(b: int) -> None:
            x, y = self.task.to_device(self.task.example_batch(b), self.device, self.channels_last)
            with self._autocast():
                loss, _ = self.task.loss(probe_model(x), y)
            loss.backward()
            probe_model.zero_grad(set_to_none=True)

        intercept, slope = measure_line(step, self.device)
        # small datasets learn faster with more, smaller steps: at least 8 batches an epoch; under
        # DDP each process measures its own device and the batch is its part of the global batch
        world = self.ctx.world_size
        cap = min(self.args["max_batch"], max(MIN_BATCH, self.task.num_train() // 8 // world))
        choice = choose_batch(self.fixed_bytes, intercept, slope, self.memory_budget_bytes, cap)
        per_process, fits = choice["batch_size"], choice["fits"]
        if self.ctx.distributed:  # the process with the least room decides for all
            per_process, fits = (int(v) for v in ddp.all_reduce([per_process, fits], self.ctx, "min"))
        if fits < MIN_BATCH:
            raise OutOfMemory(MIN_BATCH, int(SAFETY * (self.fixed_bytes + intercept + slope * MIN_BATCH)),
                              self.memory_budget_bytes, "even the smallest batch does not fit: use a smaller "
                                                        "model or imgsz, or raise memory_budget_bytes")
        self._emit(ev.AUTOBATCH, batch_size=per_process * world, budget_bytes=self.memory_budget_bytes,
                   per_sample_bytes=choice["per_sample_bytes"], device=str(self.device),
                   fixed_bytes=choice["fixed_bytes"], estimate_bytes=choice["estimate_bytes"], cap=cap,
                   per_process=per_process, processes=world)
        return per_process * world

    def _build_optimizer(self) -> None:
        self.accumulate = max(round(self.hyp["nbs"] / self.batch_size), 1)
        # losses are means over the batch (not sums as in YOLO), so weight decay needs no batch scaling
        self.optimizer = build_optimizer(self.model, self.hyp, self.hyp["weight_decay"])
        self.scaler = torch.amp.GradScaler("cuda") if self.dtype == torch.float16 else None

    def _autocast(self):
        return torch.autocast(self.device.type, dtype=self.dtype or torch.float32, enabled=self.dtype is not None)

    # --- the loop ----------------------------------------------------------------------------------
    def _epochs(self) -> None:
        a, task = self.args, self.task
        epochs = a["epochs"]
        meter = StepMeter(self.device)
        for epoch in range(self.epoch, epochs):
            nb = task.num_batches(self.batch_size)
            t_epoch, loss_sum, seen, pending = time.time(), 0.0, 0, 0
            lr = apply_schedule(self.optimizer, self.hyp, epoch, epochs)
            self._emit(ev.EPOCH_START, epoch=epoch, total_epochs=epochs, lr=lr, batch_size=self.batch_size,
                       batches=nb)
            self.model.train()
            self.optimizer.zero_grad(set_to_none=True)
            for i, batch in enumerate(task.train_batches(epoch, self.batch_size)):
                lr = apply_schedule(self.optimizer, self.hyp, epoch + i / nb, epochs)
                x, y = task.to_device(batch, self.device, self.channels_last)
                # batches in this optimiser step: the last group of an epoch may be shorter, and its
                # mean must not be shrunk by the full accumulation count
                group = min(self.accumulate, nb - (i - pending))
                sync = pending + 1 >= self.accumulate or i == nb - 1  # this backward completes a step
                if i == 0:  # the first step of every epoch is measured against the budget
                    with meter.measure():
                        loss, parts, n = self._forward_backward(x, y, group, sync)
                    self._check_memory(meter.bytes, epoch)
                else:
                    loss, parts, n = self._forward_backward(x, y, group, sync)
                pending += 1
                if pending >= self.accumulate or i == nb - 1:  # no gradient crosses an epoch boundary
                    self._optimizer_step()
                    pending = 0
                loss_value = loss.item()
                if not math.isfinite(loss_value):
                    raise TangoError(f"the loss became {loss_value} at epoch {epoch}, batch {i + 1}: lower lr0 "
                                     f"(now {self.hyp['lr0']}) or check the data")
                loss_sum, seen, self.step = loss_sum + loss_value * n, seen + n, self.step + 1
                self._emit(ev.TRAIN_BATCH, epoch=epoch, total_epochs=epochs, step=i + 1, total_step=nb,
                           loss=loss_value, losses={k: float(v) for k, v in parts.items()}, lr=lr,
                           time=time.time() - self.t0, global_step=self.step, batch_size=n)
            self._sync_state()
            val = self._validate()
            val_time = time.time()
            self._emit(ev.VAL_END, epoch=epoch, metrics=val.metrics, fitness=val.fitness, time=val_time - self.t0)
            improved = val.fitness > self.best_fitness
            if improved:
                self.best_fitness, self.best_epoch = val.fitness, epoch
            summary = {"epoch": epoch, "train_loss": loss_sum / max(seen, 1), "metrics": val.metrics,
                       "fitness": val.fitness, "lr": lr, "epoch_time": val_time - t_epoch,
                       "total_time": val_time - self.t0, "batch_size": self.batch_size,
                       "best_fitness": self.best_fitness, "best_epoch": self.best_epoch}
            self.history.append(summary)
            self._emit(ev.EPOCH_END, **summary)
            self.epoch = epoch + 1
            if improved:
                self._save_best(val)
            self._save_last()
            stop = ddp.broadcast_object(epoch - self.best_epoch >= a["patience"], self.ctx)  # rank 0 decides
            if stop:
                self.stopped_early = True
                self._emit(ev.EARLY_STOP, epoch=epoch, best_epoch=self.best_epoch, best_fitness=self.best_fitness,
                           patience=a["patience"])
                break

    def _forward_backward(self, x: torch.Tensor, y: Any, group: int,
                          sync: bool = True) -> tuple[torch.Tensor, dict[str, Any], int]:
        """Forward and backward of one batch (this process's part of it under DDP); returns the
        loss, its parts and the number of images, of the whole batch."""
        with self._no_sync(sync):
            with self._autocast():
                out = self.net(x)
            loss, parts = self.task.loss(out, y)
            n, weight = len(y), 1.0
            if self.ctx.distributed:
                loss_all, parts, n = self._batch_mean(loss, parts, n)
                # DDP averages the processes' gradients; weighting each process's mean by its share
                # of the images makes that the gradient of the mean over the whole batch (parts may
                # differ by one image)
                weight = self.ctx.world_size * len(y) / n
            scaled = loss * (weight / group)
            (self.scaler.scale(scaled) if self.scaler else scaled).backward()
        return (loss_all if self.ctx.distributed else loss), parts, n

    def _batch_mean(self, loss: torch.Tensor, parts: dict[str, Any], n: int) -> tuple[torch.Tensor, dict[str, Any], int]:
        """The loss and its parts over the whole batch (the image-weighted mean of the processes'),
        and its number of images: one all-reduce."""
        values = [loss.detach().float().cpu()] + [torch.as_tensor(v).detach().float().cpu() for v in parts.values()]
        total = ddp.all_reduce(torch.cat([torch.tensor([1.0]), torch.stack(values)]) * n, self.ctx)
        count = float(total[0])
        return total[1] / count, {k: total[2 + j] / count for j, k in enumerate(parts)}, int(round(count))

    def _optimizer_step(self) -> None:
        clip = float(self.hyp.get("clip_grad", 0.0))
        if clip > 0:  # on the true gradients: unscaled first under fp16 (the scaler then skips its own)
            if self.scaler:
                self.scaler.unscale_(self.optimizer)
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), clip)
        if self.scaler:
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        if self.ema is not None:
            self.ema.update(self.model)

    def _check_memory(self, measured: int, epoch: int) -> None:
        self.step_bytes = measured
        needed = int(SAFETY * (self.fixed_bytes + measured))
        over = needed > self.memory_budget_bytes
        if self.ctx.distributed:  # one process over its budget: every process shrinks the batch together
            over = bool(ddp.all_reduce(float(over), self.ctx, "max") > 0)
        if over:
            raise OutOfMemory(self.batch_size, needed, self.memory_budget_bytes,
                              f"measured on the first step of epoch {epoch}")

    def _validate(self) -> ValResult:
        """Validate (the EMA when there is one).  Under DDP only rank 0 validates, on the whole
        val split, and the others receive its metrics and fitness (not its details)."""
        val = None
        if self.ctx.is_main:
            model = self.ema.module if self.ema is not None else self.model
            val = self.task.validate(model, max(self.batch_size, 64), self.device, self.dtype, self.channels_last)
        if not self.ctx.distributed:
            return val
        metrics, fitness = ddp.broadcast_object((val.metrics, val.fitness) if val is not None else None, self.ctx)
        return val if val is not None else ValResult(metrics, fitness)

    # --- out of memory -----------------------------------------------------------------------------
    def _shrink_batch(self, exc: BaseException) -> None:
        old, smallest = self.batch_size, MIN_BATCH * self.ctx.world_size
        if old <= smallest:
            raise OutOfMemory(old, getattr(exc, "needed", None), self.memory_budget_bytes,
                              "the smallest batch does not fit: use a smaller model or imgsz") from exc
        self.optimizer.zero_grad(set_to_none=True)
        if self.device.type == "cuda":
            torch.cuda.empty_cache()
        last = self.weights_dir / "last.pt"
        # rank 0 wrote last.pt: its view decides (the run folder must be shared storage across nodes)
        from_checkpoint = ddp.broadcast_object(self.epoch > 0 and last.is_file(), self.ctx)
        self.batch_size = max(smallest, old // 2)
        self._build_optimizer()
        if from_checkpoint:
            self._load_state(ckpt.read_train_state(last))
        else:
            self._restart()
        self._emit(ev.OOM_RETRY, old_batch_size=old, new_batch_size=self.batch_size, epoch=self.epoch,
                   error=str(exc), resume_from=str(last) if from_checkpoint else "start")

    # --- checkpoints -------------------------------------------------------------------------------
    def _meta(self) -> dict[str, Any]:
        return {"model": self.args["model"], "num_classes": len(self.task.classes),
                **self.task.weights_meta(), "epoch": self.epoch - 1, "fitness": self.best_fitness}

    def _deploy_weights(self) -> dict[str, torch.Tensor]:
        return ckpt.cpu_state(self.ema.module if self.ema is not None else self.model)

    def _save_best(self, val: ValResult) -> None:
        if not self.ctx.is_main:
            return
        path = ckpt.write(self.weights_dir / "best.pt", self._deploy_weights(), dict(self._meta(), metrics=val.metrics))
        self._emit(ev.CHECKPOINT, path=str(path), kind="best", epoch=self.epoch - 1, fitness=val.fitness)

    def _train_state(self) -> dict[str, Any]:
        return {"model": ckpt.cpu_state(self.model), "optimizer": self.optimizer.state_dict(),
                "ema": ckpt.cpu_state(self.ema.module) if self.ema is not None else None,
                "ema_updates": self.ema.updates if self.ema is not None else 0,
                "epoch": self.epoch, "step": self.step, "best_fitness": self.best_fitness,
                "best_epoch": self.best_epoch, "baseline_fitness": self.baseline_fitness,
                "batch_size": self.batch_size, "history": self.history, "rng": ckpt.rng_state(),
                "scaler": self.scaler.state_dict() if self.scaler else None, "args": self.args,
                "processes": self.ctx.world_size}

    def _save_last(self) -> None:
        if not self.ctx.is_main:
            return
        path = ckpt.write(self.weights_dir / "last.pt", self._deploy_weights(), self._meta(), self._train_state())
        self._emit(ev.CHECKPOINT, path=str(path), kind="last", epoch=self.epoch - 1)

    def _load_state(self, data: dict[str, Any]) -> None:
        st = data["train_state"]
        self.model.load_state_dict(st["model"])
        if self.ema is not None and st["ema"] is not None:
            self.ema.module.load_state_dict(st["ema"])
            self.ema.updates = st["ema_updates"]
            self.ema.reset_cache()
        self.optimizer.load_state_dict(st["optimizer"])  # the groups do not depend on the batch size
        if self.scaler is not None and st.get("scaler"):
            self.scaler.load_state_dict(st["scaler"])
        self.epoch, self.step = st["epoch"], st["step"]
        self.best_fitness, self.best_epoch = st["best_fitness"], st["best_epoch"]
        self.baseline_fitness = st["baseline_fitness"]
        self.history = list(st["history"])
        ckpt.set_rng_state(st["rng"])

    # --- the end -------------------------------------------------------------------------------------
    def _finish(self) -> TrainResult:
        best = self.weights_dir / "best.pt"
        last = self.weights_dir / "last.pt"
        kept, shared = "new", None
        if self.ctx.is_main:  # under DDP rank 0 evaluates the best model; the others take its results
            if not best.is_file():  # incremental learning that never beat the stored model
                best, kept = Path(self.args["weights"]), "previous"
            final_model = self.task.build_model(self.args["model"]).to(self.device)
            load_weights(final_model, best, strict=True)
            if self.channels_last:
                final_model = final_model.to(memory_format=torch.channels_last)
            val = self.task.validate(final_model, max(self.batch_size, 64), self.device, self.dtype,
                                     self.channels_last)
            self._emit(ev.VAL_PLOTS, epoch=self.best_epoch, class_names=list(self.task.classes),
                       **self.task.plots(val))
            self._emit(ev.TRAIN_END, best_model=str(best), size_bytes=best.stat().st_size,
                       best_fitness=self.best_fitness, epochs_run=self.epoch, time=time.time() - self.t0,
                       best_epoch=self.best_epoch, metrics=val.metrics, last_model=str(last), kept=kept,
                       stopped_early=self.stopped_early, processes=self.ctx.world_size)
            shared = (str(best), kept, val.metrics, last.is_file())
        if self.ctx.distributed:
            shared = ddp.broadcast_object(shared, self.ctx)
        details = val.details if self.ctx.is_main else {}
        best_path, kept, metrics, has_last = shared
        return TrainResult(self.run_dir, Path(best_path), last if has_last else None, self.best_fitness,
                           self.best_epoch, metrics, self.history, self.epoch, self.batch_size, self.stopped_early,
                           kept, details)


def next_run_dir(parent: Path) -> Path:
    """``parent/<n>`` with n one more than the largest numbered run there (1 for the first)."""
    taken = [int(p.name) for p in parent.glob("*") if p.name.isdigit()] if parent.is_dir() else []
    return parent / str(max(taken, default=0) + 1)
