"""The DDP code path on CPU: two gloo processes under torchrun keep identical weights."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tango_core.autonn import ddp

HERE = Path(__file__).parent


def test_a_world_of_one_needs_no_second_code_path(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    ctx = ddp.setup()
    assert not ctx.distributed and ctx.is_main and ctx.world_size == 1
    model = torch.nn.Linear(2, 2)
    assert ddp.wrap(model, ctx) is model and ddp.unwrap(model) is model
    assert ddp.shard([3, 1, 2], ctx).tolist() == [3, 1, 2]
    assert float(ddp.all_reduce_mean(2.5, ctx)) == 2.5 and ddp.sampler(range(4), ctx) is None


def test_shards_split_an_epoch_evenly():
    shards = [ddp.shard(torch.arange(7), ddp.DistContext(r, 3, r, torch.device("cpu"), "gloo")).tolist()
              for r in range(3)]
    assert shards == [[0, 3, 6], [1, 4, 0], [2, 5, 1]]  # padded by wrapping, as DistributedSampler does


def test_torchrun_command():
    one = ddp.torchrun_command("train.py", nproc_per_node=4)
    assert "-m torch.distributed.run --nproc_per_node=4 --standalone train.py" in one
    two = ddp.torchrun_command(["-m", "tango_core.cli", "train", "p"], 8, nnodes=2, node_rank=1,
                               master_addr="10.0.0.1")
    assert "--nnodes=2 --node_rank=1 --master_addr=10.0.0.1 --master_port=29500 -m tango_core.cli train p" in two


@pytest.mark.slow
def test_two_gloo_processes_keep_identical_weights(tmp_path):
    root = HERE.parents[1]
    env = dict(os.environ, PYTHONPATH=str(root), OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           str(HERE / "ddp_worker.py"), str(tmp_path)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    r0, r1 = (json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1))
    assert r0["world"] == r1["world"] == 2 and r0["backend"] == "gloo"
    assert r1["init_differs"]  # rank 1 started elsewhere; wrap() gave it rank 0's weights
    assert r0["max_diff_to_rank0"] == r1["max_diff_to_rank0"] == 0.0  # identical after three steps
    assert r0["moved"] > 0
    assert not set(r0["seen"]) & set(r1["seen"])  # each process read its own samples
    assert r0["losses"] == r1["losses"] and r0["shard"] == r1["shard"] == 899
