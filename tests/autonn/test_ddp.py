"""Data-parallel training: the DDP hooks, the trainer's sharding, and the real thing on CPU: the
engine's Trainer under torchrun, two gloo processes (ddp_worker.py), compared with one process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tango_core.autonn import ddp
from tango_core.engine import _ddp

HERE = Path(__file__).parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(ROOT / "tests" / "engine"))

from engine_data import make_image_dataset, quadrant_data  # noqa: E402


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR")}
    return dict(env, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1", CUDA_VISIBLE_DEVICES="")


# --- the hooks ------------------------------------------------------------------------------------
def test_a_world_of_one_needs_no_second_code_path(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    ctx = ddp.setup()
    assert not ctx.distributed and ctx.is_main and ctx.world_size == 1
    model = torch.nn.Linear(2, 2)
    assert ddp.wrap(model, ctx) is model and ddp.unwrap(model) is model
    assert ddp.shard([3, 1, 2], ctx).tolist() == [3, 1, 2]
    assert float(ddp.all_reduce_mean(2.5, ctx)) == 2.5 and ddp.sampler(range(4), ctx) is None
    assert ddp.broadcast_object({"a": 1}, ctx) == {"a": 1}
    assert ddp.setup is _ddp.setup  # autonn re-exports the engine's hooks


def test_shards_split_an_epoch_evenly():
    shards = [ddp.shard(torch.arange(7), ddp.DistContext(r, 3, r, torch.device("cpu"), "gloo")).tolist()
              for r in range(3)]
    assert shards == [[0, 3, 6], [1, 4, 0], [2, 5, 1]]  # padded by wrapping, as DistributedSampler does


def test_parts_of_a_batch_cover_it_once():
    for n in (2, 7, 16, 17):
        for world in (1, 2, 3):
            parts = [list(range(n))[_ddp.part(n, r, world)] for r in range(world)]
            assert sum(parts, []) == list(range(n)) and max(map(len, parts)) - min(map(len, parts)) <= 1


def test_torchrun_command():
    one = ddp.torchrun_command("train.py", nproc_per_node=4)
    assert "-m torch.distributed.run --nproc_per_node=4 --standalone train.py" in one
    two = ddp.torchrun_command(["-m", "tango_core.cli", "train", "p"], 8, nnodes=2, node_rank=1,
                               master_addr="10.0.0.1")
    assert "--nnodes=2 --node_rank=1 --master_addr=10.0.0.1 --master_port=29500 -m tango_core.cli train p" in two


# --- the trainer's sharding, in one process -------------------------------------------------------
def _task(n_train: int, **hyp):
    from tango_core.engine._hyp import load_hyp
    from tango_core.engine.tasks import get_task

    return get_task("classification")(quadrant_data(n_train=n_train, n_val=4, size=8), imgsz=8,
                                      hyp=load_hyp({"hsv_v": 0.3, "flipud": 0.5, **hyp}), seed=5)


def test_each_process_gets_its_part_of_every_batch_augmented_as_in_one_process():
    single = _task(75)
    parts = [_task(75) for _ in range(2)]
    for rank, task in enumerate(parts):
        task.set_shard(rank, 2)
    for epoch in (0, 1):
        whole = list(single.train_batches(epoch, 16))
        mine = [list(t.train_batches(epoch, 16)) for t in parts]
        assert len(whole) == len(mine[0]) == len(mine[1]) == single.num_batches(16) == 5
        for (x, y), (x0, y0), (x1, y1) in zip(whole, *mine, strict=True):
            assert len(y0) - len(y1) in (0, 1)  # the last batch of 11 splits 6 + 5
            assert torch.equal(torch.cat([x0, x1]), x) and torch.equal(torch.cat([y0, y1]), y)


def test_a_last_batch_too_short_for_every_process_joins_the_one_before():
    task = _task(67)  # batches of 16: 16 16 16 16 3
    assert task.batch_bounds(16)[-1] == (64, 67)
    task.set_shard(0, 2)  # 3 images cannot give two processes 2 each
    assert task.batch_bounds(16) == [(0, 16), (16, 32), (32, 48), (48, 67)]
    lone = _task(65)  # a lone last image is left out, as in one process
    lone.set_shard(1, 2)
    assert lone.batch_bounds(16)[-1] == (48, 64)


def test_the_trainer_refuses_a_bad_distributed_choice():
    from tango_core.engine import Trainer
    from tango_core.errors import ConfigError

    with pytest.raises(ConfigError, match="distributed"):
        Trainer(quadrant_data(n_train=8, n_val=4, size=8), distributed="yes")


# --- two processes under torchrun -----------------------------------------------------------------
@pytest.fixture(scope="module")
def ddp_runs(tmp_path_factory):
    out = tmp_path_factory.mktemp("ddp")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           str(HERE / "ddp_worker.py"), str(out)]
    proc = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-5000:] + proc.stderr[-5000:]
    ranks = [json.loads((out / f"rank{r}.json").read_text())["runs"] for r in (0, 1)]
    return out, ranks


@pytest.mark.slow
def test_both_processes_end_with_identical_weights_ema_and_optimiser(ddp_runs):
    _, ranks = ddp_runs
    for name in ("resnet", "linear", "resume", "stop"):
        for rank in ranks:
            assert rank[name]["world"] == 2 and rank[name]["backend"] == "gloo"
            assert rank[name]["max_diff_to_rank0"] == 0.0, name  # parameters, BN buffers, EMA, momentum
        assert ranks[0][name]["metrics"] == ranks[1][name]["metrics"]  # rank 0's validation, on both


@pytest.mark.slow
def test_each_process_saw_its_half_of_every_batch_of_the_seeded_order(ddp_runs):
    from tango_core.engine.tasks.classification import mix_seed

    _, ranks = ddp_runs
    r0, r1 = (r["resnet"]["epochs"] for r in ranks)
    assert len(r0) == len(r1) == 2  # epochs
    for epoch, (b0, b1) in enumerate(zip(r0, r1, strict=True)):
        order = torch.randperm(64, generator=torch.Generator().manual_seed(mix_seed(0, epoch))).tolist()
        assert len(b0) == len(b1) == 4  # half of each of the 4 batches of 16 (not half of the batches)
        for i, (p0, p1) in enumerate(zip(b0, b1, strict=True)):
            assert p0 == order[16 * i:16 * i + 8] and p1 == order[16 * i + 8:16 * i + 16]
        seen0, seen1 = sum(b0, []), sum(b1, [])
        assert len(seen0) == len(seen1) == 32 and not set(seen0) & set(seen1)
        assert sorted(seen0 + seen1) == list(range(64))  # together: every training image once
    linear = [r["linear"]["per_process_batch"] for r in ranks]
    assert linear == [[8, 8, 8, 8, 6], [8, 8, 8, 8, 5]]  # 75 images: the last batch of 11 splits 6 + 5


@pytest.mark.slow
def test_only_rank_0_writes_files_and_emits_events(ddp_runs):
    out, ranks = ddp_runs
    for name in ("resnet", "linear", "resume", "stop"):
        assert ranks[1][name]["writes"] == [] and ranks[1][name]["events"] == 0, name
    writes = set(ranks[0]["resnet"]["writes"])
    assert {"resnet/weights/best.pt", "resnet/weights/last.pt", "resnet/results.csv", "resnet/args.yaml",
            "resnet/hyp.yaml"} <= writes
    assert ranks[0]["resnet"]["names"][-1] == "train_end"
    rows = (out / "resnet" / "results.csv").read_text().strip().splitlines()
    assert len(rows) == 3 and rows[0].startswith("epoch,train_loss")  # header + two epochs, written once


@pytest.mark.slow
def test_best_pt_predicts_as_validated(ddp_runs):
    from tango_core.engine import Predictor
    from tango_core.models.weights import read_weights

    out, ranks = ddp_runs
    best = out / "resnet" / "weights" / "best.pt"
    x, y = quadrant_data(n_train=64, n_val=16, size=16)["val"]
    preds = Predictor(best)([img.permute(1, 2, 0).numpy() for img in x])
    top1 = sum(p.label == int(t) for p, t in zip(preds, y, strict=True)) / len(y)
    assert top1 == read_weights(best)["metrics"]["top1"] == ranks[0]["resnet"]["best_fitness"]


@pytest.fixture
def linear_model():
    from ddp_worker import LINEAR, register_linear

    from tango_core.models import _registry

    register_linear()
    yield LINEAR
    _registry._MODELS._entries.pop(LINEAR, None)
    _registry._MODELS._meta.pop(LINEAR, None)


@pytest.mark.slow
def test_two_processes_train_as_one_with_the_same_global_batch(ddp_runs, linear_model, tmp_path):
    from ddp_worker import LINEAR_ARGS, LINEAR_DATA

    from tango_core import events as ev
    from tango_core.engine import Trainer
    from tango_core.models.weights import read_weights

    out, ranks = ddp_runs
    bus = ev.EventBus()
    recorder = ev.Recorder(bus, ev.TRAIN_BATCH)
    result = Trainer(quadrant_data(**LINEAR_DATA), linear_model, run_dir=tmp_path / "one", events=bus,
                     loggers=(), **LINEAR_ARGS).fit()
    one = [e["loss"] for e in recorder.events]
    two = ranks[0]["linear"]["losses"]
    assert len(one) == len(two) == 10
    assert two[0] == pytest.approx(one[0], abs=1e-6)  # the first step: the same images, the same weights
    assert two == pytest.approx(one, abs=1e-5)
    ddp_last, one_last = (read_weights(p / "weights" / "last.pt") for p in (out / "linear", tmp_path / "one"))
    for part in ("model", "ema"):
        for k, v in one_last["train_state"][part].items():
            torch.testing.assert_close(ddp_last["train_state"][part][k], v, rtol=1e-5, atol=1e-6)
    assert ranks[0]["linear"]["history_fitness"] == [h["fitness"] for h in result.history]


@pytest.mark.slow
def test_a_resumed_ddp_run_repeats_the_uninterrupted_one(ddp_runs):
    from tango_core.models.weights import read_weights

    out, ranks = ddp_runs
    assert all(r["interrupted"]["interrupted"] for r in ranks)
    assert ranks[0]["resume"]["losses"] == ranks[0]["linear"]["losses"][5:]  # epoch 1 again, bit for bit
    a, b = (read_weights(out / name / "weights" / "last.pt")["train_state"] for name in ("linear", "resume"))
    for part in ("model", "ema"):
        assert all(torch.equal(a[part][k], b[part][k]) for k in a[part])


@pytest.mark.slow
def test_rank_0_decides_the_early_stop_for_both(ddp_runs):
    _, ranks = ddp_runs
    for rank in ranks:
        assert rank["stop"]["stopped_early"] and rank["stop"]["epochs_run"] == 2  # of 4, patience 1
    assert "early_stop" in ranks[0]["stop"]["names"]


@pytest.mark.slow
def test_tango_train_nproc_per_node_trains_a_project_with_ddp(project_factory):
    from tango_core.project import Project

    project = project_factory("p")
    make_image_dataset(project.path("data"), n_per_class=8)
    project.set(dataset="data", hyp={"fliplr": 0.0})
    cmd = [sys.executable, "-m", "tango_core.cli", "train", "--project", str(project.root), "--model",
           "resnet-cifar20", "--epochs", "1", "--batch-size", "8", "--imgsz", "16", "--amp", "off", "--device",
           "cpu", "--nproc-per-node", "2"]
    proc = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=300, cwd=project.root)
    assert proc.returncode == 0, proc.stdout[-5000:] + proc.stderr[-5000:]
    assert "torch.distributed.run --nproc_per_node=2" in proc.stderr
    assert proc.stdout.count("best: ") == 1  # rank 0 reports
    runs = sorted(p.name for p in project.path("runs", "train").iterdir())
    assert runs == ["1"]  # both processes trained in the folder rank 0 chose
    st = Project.open(project.root).stages["training"]
    assert st.status == "completed" and Path(st.info["best_model"]).is_file()
    assert st.info["run_dir"] == str(project.path("runs", "train", "1"))
