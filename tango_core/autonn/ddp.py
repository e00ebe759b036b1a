"""Data-parallel training across GPUs and machines with ``torchrun`` (DistributedDataParallel).

One process per device; ``torchrun`` sets RANK / WORLD_SIZE / LOCAL_RANK / MASTER_ADDR for each::

    # one machine, 4 GPUs
    torchrun --nproc_per_node 4 my_train.py
    # two machines, 8 GPUs each (run on both; node_rank 0 on the first)
    torchrun --nnodes 2 --nproc_per_node 8 --node_rank 0 --master_addr 10.0.0.1 --master_port 29500 my_train.py

:func:`torchrun_command` writes these lines.  Inside the script, the hooks a trainer calls::

    ctx = ddp.setup()                            # init the process group (NCCL on CUDA, gloo on CPU)
    model = ddp.wrap(model.to(ctx.device), ctx)  # gradients are averaged across processes
    order = ddp.shard(order, ctx)                # each process takes its own slice of the epoch
    ...                                          # forward / backward / step as usual
    loss = ddp.all_reduce_mean(loss, ctx)        # the same metric on every process
    if ctx.is_main: save(...)                    # one process writes checkpoints and logs
    ddp.cleanup(ctx)

``sampler(dataset, ctx)`` is the ``DistributedSampler`` for map-style datasets.  The same code
runs without torchrun (a world of one), so a trainer needs no second code path.
"""

from __future__ import annotations

import os
import shlex
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
import torch.nn as nn


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


def setup(backend: str | None = None, device: str | None = None) -> DistContext:
    """Join the process group ``torchrun`` describes in the environment (or a world of one when
    it is not set).  ``backend``: nccl on CUDA, gloo on CPU by default."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    cuda = torch.cuda.is_available() and device != "cpu"
    dev = torch.device(f"cuda:{local}") if cuda else torch.device("cpu")
    if world == 1:
        return DistContext(0, 1, 0, dev, None)
    backend = backend or ("nccl" if cuda else "gloo")
    if cuda:
        torch.cuda.set_device(dev)
    if not dist.is_initialized():
        dist.init_process_group(backend=backend)
    return DistContext(dist.get_rank(), dist.get_world_size(), local, dev, backend)


def wrap(model: nn.Module, ctx: DistContext, **kwargs: Any) -> nn.Module:
    """``model`` in DistributedDataParallel (unchanged in a world of one).  Batch norms become
    SyncBatchNorm on CUDA so their statistics see the whole global batch."""
    if not ctx.distributed:
        return model
    from torch.nn.parallel import DistributedDataParallel

    if ctx.device.type == "cuda":
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
        return DistributedDataParallel(model, device_ids=[ctx.device.index], **kwargs)
    return DistributedDataParallel(model, **kwargs)


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


def sampler(dataset: Any, ctx: DistContext, shuffle: bool = True, seed: int = 0):
    """A DistributedSampler for a map-style dataset (None in a world of one); call
    ``set_epoch(epoch)`` on it every epoch."""
    if not ctx.distributed:
        return None
    from torch.utils.data.distributed import DistributedSampler

    return DistributedSampler(dataset, num_replicas=ctx.world_size, rank=ctx.rank, shuffle=shuffle, seed=seed)


def all_reduce_mean(value: torch.Tensor | float, ctx: DistContext) -> torch.Tensor:
    """The mean of ``value`` over all processes (on every process)."""
    t = torch.as_tensor(value, dtype=torch.float64, device=ctx.device if ctx.backend == "nccl" else "cpu").clone()
    if ctx.distributed:
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
        t /= ctx.world_size
    return t


def broadcast_object(obj: Any, ctx: DistContext, src: int = 0) -> Any:
    """``obj`` from process ``src`` on every process (e.g. the run folder the main process chose)."""
    if not ctx.distributed:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def barrier(ctx: DistContext) -> None:
    if ctx.distributed:
        dist.barrier()


def cleanup(ctx: DistContext) -> None:
    if ctx.distributed and dist.is_initialized():
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
