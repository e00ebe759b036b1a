"""Run by torchrun in test_ddp.py: a few DDP steps of ResNet-CIFAR-20 on digits, gloo on CPU.

Each process starts from a different random initialisation and reads its own shard of the data;
DDP must give both the same weights after every step.  Writes rank<k>.json to the folder in argv.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch
import torch.distributed as dist
import torch.nn.functional as F

from tango_core.autonn import ddp
from tango_core.models import create_model


def flat(model) -> torch.Tensor:
    return torch.cat([p.detach().reshape(-1) for p in ddp.unwrap(model).parameters()])


def main(out: Path) -> None:
    from sklearn.datasets import load_digits

    torch.set_num_threads(1)
    ctx = ddp.setup()
    digits = load_digits()
    x = F.interpolate(torch.tensor(digits.images, dtype=torch.float32)[:, None] / 16.0, size=16, mode="bilinear")
    y = torch.tensor(digits.target)
    torch.manual_seed(100 + ctx.rank)  # a different initialisation on each process
    model = create_model("resnet-cifar20", num_classes=10, in_channels=1)
    before = flat(model)
    model = ddp.wrap(model, ctx)  # rank 0's weights are broadcast here
    synced = flat(model)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    order = torch.randperm(len(y), generator=torch.Generator().manual_seed(0))  # the same on every process
    mine = ddp.shard(order, ctx)
    seen, losses = [], []
    for step in range(3):
        idx = mine[step * 16:(step + 1) * 16]
        seen += idx.tolist()
        loss = F.cross_entropy(model(x[idx]), y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(ddp.all_reduce_mean(loss.detach(), ctx)))
    after = flat(model)
    gathered = [torch.zeros_like(after) for _ in range(ctx.world_size)]
    dist.all_gather(gathered, after)
    result = {"rank": ctx.rank, "world": ctx.world_size, "backend": ctx.backend, "seen": seen, "losses": losses,
              "init_differs": bool((before - synced).abs().max() > 0) if ctx.rank else False,
              "max_diff_to_rank0": float((after - gathered[0]).abs().max()),
              "moved": float((after - synced).abs().max()), "shard": len(mine)}
    (out / f"rank{ctx.rank}.json").write_text(json.dumps(result))
    ddp.cleanup(ctx)


if __name__ == "__main__":
    main(Path(sys.argv[1]))
