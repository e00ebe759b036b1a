"""Data-parallel training across GPUs and machines with ``torchrun`` (DistributedDataParallel).

One process per device; ``torchrun`` sets RANK / WORLD_SIZE / LOCAL_RANK / MASTER_ADDR for each::

    # one machine, 4 GPUs
    torchrun --standalone --nproc_per_node 4 -m tango_core.cli train data/digits --epochs 30
    # two machines, 8 GPUs each (run on both; node_rank 0 on the first)
    torchrun --nnodes 2 --nproc_per_node 8 --node_rank 0 --master_addr 10.0.0.1 --master_port 29500 \\
             -m tango_core.cli train data/digits

The engine's :class:`~tango_core.engine.Trainer` calls these hooks itself when it finds itself
under torchrun (docs/training.md, "Multi-GPU and multi-node training"); a script of its own uses
them the same way::

    ctx = setup()                            # join the process group (NCCL on CUDA, gloo on CPU)
    model = wrap(model.to(ctx.device), ctx)  # gradients are averaged across processes
    order = shard(order, ctx)                # each process takes its own slice of the epoch
    ...                                      # forward / backward / step as usual
    loss = all_reduce_mean(loss, ctx)        # the same metric on every process
    if ctx.is_main: save(...)                # one process writes checkpoints and logs
    cleanup(ctx)

Without torchrun every hook is the identity of a world of one, so a trainer needs no second path.
"""

from __future__ import annotations

import datetime
import os
import shlex
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
import torch.nn as nn

#: how long a collective may wait for the other processes: rank 0 validates and writes checkpoints
#: while the others wait in a broadcast, so this must cover a whole validation
TIMEOUT = datetime.timedelta(minutes=60)


@dataclass(frozen=True)
class DistContext:
    rank: int
    world_size: int
    local_rank: int
    device: torch.device
    backend: str | None  # None: not distributed (a world of one)

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.backend is not None

    @property
    def comm_device(self) -> torch.device:
        """Where the tensors of a collective live (NCCL reduces CUDA tensors only)."""
        return self.device if self.backend == "nccl" else torch.device("cpu")


def env_world_size() -> int:
    """The number of processes torchrun started (1 when not under torchrun)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def world_of_one(device: torch.device | str = "cpu") -> DistContext:
    return DistContext(0, 1, 0, torch.device(device), None)


def initialized() -> bool:
    """Whether this process has joined a process group already."""
    return dist.is_available() and dist.is_initialized()


def _device(device: torch.device | str | None, local: int) -> torch.device:
    """The device of this process: ``auto`` / ``cuda`` mean the GPU of its LOCAL_RANK."""
    if device in (None, "auto"):
        device = "cuda" if torch.cuda.is_available() else "cpu"
    dev = torch.device(device)
    if dev.type == "cuda" and dev.index is None:
        if local >= torch.cuda.device_count():
            from ..errors import ConfigError

            raise ConfigError("train", "device", f"process {local} of this machine has no GPU of its own "
                              f"({torch.cuda.device_count()} visible)", "start one process per GPU, or use device='cpu'")
        dev = torch.device("cuda", local)
    return dev


def setup(backend: str | None = None, device: torch.device | str | None = None,
          timeout: datetime.timedelta = TIMEOUT) -> DistContext:
    """Join the process group ``torchrun`` describes in the environment (or a world of one when
    it is not set).  ``device``: None / ``auto`` (this process's GPU, else the CPU), ``cuda``,
    ``cpu`` or ``cuda:N``; ``backend``: nccl on CUDA, gloo on CPU by default.  Joining twice
    returns the same context (the group is initialised once per process)."""
    world = env_world_size()
    local = int(os.environ.get("LOCAL_RANK", "0"))
    dev = _device(device, local)
    if world == 1 and not initialized():
        return DistContext(0, 1, 0, dev, None)
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    if not initialized():
        dist.init_process_group(backend=backend or ("nccl" if dev.type == "cuda" else "gloo"), timeout=timeout)
    return DistContext(dist.get_rank(), dist.get_world_size(), local, dev, str(dist.get_backend()))


def wrap(model: nn.Module, ctx: DistContext, sync_bn: bool = True, **kwargs: Any) -> nn.Module:
    """``model`` in DistributedDataParallel (unchanged in a world of one).  With ``sync_bn``,
    batch norms become SyncBatchNorm on CUDA so their statistics see the whole global batch (the
    trainer converts them itself with :func:`sync_batchnorm`, before it builds the EMA and the
    optimiser, and wraps with ``sync_bn=False``)."""
    if not ctx.distributed:
        return model
    from torch.nn.parallel import DistributedDataParallel

    if sync_bn:
        model = sync_batchnorm(model, ctx)
    if ctx.device.type == "cuda":
        return DistributedDataParallel(model, device_ids=[ctx.device.index], **kwargs)
    return DistributedDataParallel(model, **kwargs)


def sync_batchnorm(model: nn.Module, ctx: DistContext) -> nn.Module:
    """Batch norms as SyncBatchNorm on CUDA under DDP (the same parameters and buffers, so the
    state dict is unchanged); the model itself elsewhere (gloo has no SyncBatchNorm)."""
    if ctx.distributed and ctx.device.type == "cuda":
        return nn.SyncBatchNorm.convert_sync_batchnorm(model)
    return model


def unwrap(model: nn.Module) -> nn.Module:
    """The module inside a DDP wrapper (what checkpoints and exports save)."""
    return getattr(model, "module", model)


def shard(order: torch.Tensor | Sequence[int], ctx: DistContext) -> torch.Tensor:
    """This process's slice of an epoch's sample order (the same order on every process, e.g. a
    permutation seeded by (seed, epoch)): padded by wrapping around so every process gets the
    same number of samples and steps, as DistributedSampler does."""
    order = torch.as_tensor(order)
    if not ctx.distributed:
        return order
    n = len(order)
    per = -(-n // ctx.world_size)
    padded = torch.cat([order, order[: per * ctx.world_size - n]]) if per * ctx.world_size > n else order
    return padded[ctx.rank::ctx.world_size]


def part(n: int, rank: int, world: int) -> slice:
    """The contiguous part of ``n`` items that ``rank`` of ``world`` takes: sizes differ by at
    most one, the first ``n % world`` parts being the longer (as ``torch.tensor_split``)."""
    q, r = divmod(n, world)
    start = rank * q + min(rank, r)
    return slice(start, start + q + (rank < r))


def sampler(dataset: Any, ctx: DistContext, shuffle: bool = True, seed: int = 0):
    """A DistributedSampler for a map-style dataset (None in a world of one); call
    ``set_epoch(epoch)`` on it every epoch."""
    if not ctx.distributed:
        return None
    from torch.utils.data.distributed import DistributedSampler

    return DistributedSampler(dataset, num_replicas=ctx.world_size, rank=ctx.rank, shuffle=shuffle, seed=seed)


def all_reduce(value: torch.Tensor | float | Sequence[float], ctx: DistContext, op: str = "sum") -> torch.Tensor:
    """``value`` reduced over all processes (``sum``, ``max`` or ``min``), on every process, in float64 on the CPU."""
    t = torch.as_tensor(value, dtype=torch.float64).detach().to(ctx.comm_device, copy=True)
    if ctx.distributed:
        dist.all_reduce(t, op={"sum": dist.ReduceOp.SUM, "max": dist.ReduceOp.MAX, "min": dist.ReduceOp.MIN}[op])
    return t.cpu()


def all_reduce_mean(value: torch.Tensor | float, ctx: DistContext) -> torch.Tensor:
    """The mean of ``value`` over all processes (on every process)."""
    return all_reduce(value, ctx) / ctx.world_size


def broadcast_object(obj: Any, ctx: DistContext, src: int = 0) -> Any:
    """``obj`` from process ``src`` on every process (e.g. the run folder the main process chose)."""
    if not ctx.distributed:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src, device=ctx.comm_device if ctx.backend == "nccl" else None)
    return box[0]


@torch.no_grad()
def broadcast_state(module: nn.Module, ctx: DistContext, src: int = 0, buffers_only: bool = False) -> None:
    """Overwrite ``module``'s buffers (and parameters unless ``buffers_only``) with process ``src``'s, in place."""
    if not ctx.distributed:
        return
    tensors = list(module.buffers()) + ([] if buffers_only else list(module.parameters()))
    for t in tensors:
        if ctx.backend == "nccl" or t.device.type == "cpu":
            dist.broadcast(t.data, src=src)
        else:
            tmp = t.data.to(ctx.comm_device)
            dist.broadcast(tmp, src=src)
            t.data.copy_(tmp)


def barrier(ctx: DistContext) -> None:
    if ctx.distributed:
        if ctx.backend == "nccl":
            dist.barrier(device_ids=[ctx.device.index])
        else:
            dist.barrier()


def cleanup(ctx: DistContext) -> None:
    if ctx.distributed and initialized():
        dist.destroy_process_group()


def torchrun_command(script: str | Sequence[str], nproc_per_node: int | str = "gpu", nnodes: int = 1,
                     node_rank: int = 0, master_addr: str = "127.0.0.1", master_port: int = 29500) -> str:
    """The ``torchrun`` line that runs ``script`` (a path, or ``["-m", "module", args...]``) on
    ``nnodes`` machines with ``nproc_per_node`` processes each ("gpu": one per visible GPU)."""
    args = [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={nproc_per_node}"]
    if nnodes > 1:
        args += [f"--nnodes={nnodes}", f"--node_rank={node_rank}", f"--master_addr={master_addr}",
                 f"--master_port={master_port}"]
    else:
        args += ["--standalone"]
    args += [script] if isinstance(script, str) else list(script)
    return shlex.join(args)
