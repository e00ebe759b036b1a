"""Data-parallel training with ``torchrun``: the engine's DDP hooks, re-exported where AutoNN
scripts found them first.  The hooks live in :mod:`tango_core.engine._ddp`, next to the
:class:`~tango_core.engine.Trainer` that uses them (docs/training.md, "Multi-GPU and multi-node
training")."""

from __future__ import annotations

from ..engine._ddp import (
    TIMEOUT,
    DistContext,
    all_reduce,
    all_reduce_mean,
    barrier,
    broadcast_object,
    broadcast_state,
    cleanup,
    env_world_size,
    initialized,
    part,
    sampler,
    setup,
    shard,
    sync_batchnorm,
    torchrun_command,
    unwrap,
    world_of_one,
    wrap,
)

__all__ = ["TIMEOUT", "DistContext", "all_reduce", "all_reduce_mean", "barrier", "broadcast_object",
           "broadcast_state", "cleanup", "env_world_size", "initialized", "part", "sampler", "setup", "shard", "sync_batchnorm",
           "torchrun_command", "unwrap", "world_of_one", "wrap"]
