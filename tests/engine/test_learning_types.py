"""Learning types (normal, transfer, incremental), early stopping, and bad data named clearly."""

from __future__ import annotations

import pytest
import torch
from engine_data import quadrant_data

from tango_core import events as ev
from tango_core.engine import Trainer, train
from tango_core.errors import DataError
from tango_core.events import EventBus, Recorder
from tango_core.models import create_model
from tango_core.models.weights import read_weights, save_weights

FAST = dict(imgsz=16, batch_size=16, amp="off", loggers=(), hyp={"fliplr": 0.0})


def test_transfer_to_another_class_count_keeps_the_body_and_trains_a_new_head(tmp_path):
    four = train(quadrant_data(classes=4), "resnet-cifar20", epochs=1, run_dir=tmp_path / "a", **FAST)
    two = quadrant_data(classes=2, seed=1)
    bus = EventBus()
    rec = Recorder(bus)
    started = {}
    bus.subscribe(ev.TRAIN_START, lambda e: started.update(conv1=trainer.model.conv1.weight.detach().clone(),
                                                           fc=trainer.model.fc.weight.shape))
    trainer = Trainer(two, "resnet-cifar20", epochs=1, run_dir=tmp_path / "b", events=bus, learning_type="transfer",
                      weights=str(four.best), **FAST)
    result = trainer.fit()
    report = rec.of(ev.MODEL_SUMMARY)[0]["weights"]
    assert sorted(report["new"]) == ["fc.bias", "fc.weight"]
    assert report["loaded"] == len(create_model("resnet-cifar20").state_dict()) - 2
    source = read_weights(four.best)["state_dict"]
    assert torch.equal(started["conv1"], source["conv1.weight"]) and started["fc"] == (2, 64)
    assert read_weights(result.best)["classes"] == two["classes"]
    with pytest.raises(DataError, match="transfer"):  # normal learning refuses a file of another class count
        train(two, "resnet-cifar20", epochs=1, run_dir=tmp_path / "c", weights=str(four.best), **FAST)


@pytest.mark.slow
def test_incremental_keeps_the_stored_model_unless_the_new_one_is_better(tmp_path):
    data = quadrant_data()
    first = train(data, "resnet-cifar20", epochs=6, run_dir=tmp_path / "first", **FAST)
    assert first.best_fitness == 1.0  # the task is easy: nothing can beat a perfect stored model
    bus = EventBus()
    rec = Recorder(bus)
    again = train(data, "resnet-cifar20", epochs=1, run_dir=tmp_path / "again", events=bus,
                  learning_type="incremental", weights=str(first.best), **FAST)
    assert again.kept == "previous" and again.best == first.best and again.best_fitness == 1.0
    assert not (tmp_path / "again" / "weights" / "best.pt").exists()
    assert rec.of(ev.TRAIN_END)[0]["kept"] == "previous"

    untrained = save_weights(create_model("resnet-cifar20", num_classes=4), tmp_path / "untrained.pt")
    better = train(data, "resnet-cifar20", epochs=2, run_dir=tmp_path / "better", learning_type="incremental",
                   weights=str(untrained), **FAST)
    assert better.kept == "new" and better.best == tmp_path / "better" / "weights" / "best.pt"
    assert better.best_fitness > 0.25 + 1e-9


def test_early_stop_fires_after_patience_epochs_without_improvement(tmp_path):
    # random labels: validation accuracy over 8 images can improve at most 8 times, so with
    # patience 1 the run must stop long before 12 epochs
    g = torch.Generator().manual_seed(0)
    data = {"train": (torch.randint(0, 256, (32, 3, 16, 16), generator=g, dtype=torch.uint8),
                      torch.randint(0, 2, (32,), generator=g)),
            "val": (torch.randint(0, 256, (8, 3, 16, 16), generator=g, dtype=torch.uint8),
                    torch.randint(0, 2, (8,), generator=g)),
            "classes": ["a", "b"]}
    bus = EventBus()
    rec = Recorder(bus)
    result = train(data, "resnet-cifar20", epochs=12, patience=1, run_dir=tmp_path / "r", events=bus,
                   **dict(FAST, batch_size=8))
    stop = rec.of(ev.EARLY_STOP)
    assert len(stop) == 1 and result.stopped_early
    assert stop[0]["epoch"] - stop[0]["best_epoch"] == 1 and stop[0]["patience"] == 1
    assert result.epochs_run == stop[0]["epoch"] + 1 < 12
    fits = [h["fitness"] for h in result.history]
    assert max(fits) == result.best_fitness == fits[result.best_epoch]
    assert fits[-1] <= result.best_fitness
    assert read_weights(result.best)["epoch"] == result.best_epoch
    assert rec.names()[-3:] == [ev.EARLY_STOP, ev.VAL_PLOTS, ev.TRAIN_END]


def test_a_corrupt_image_gives_an_error_naming_it(image_dataset, tmp_path):
    victim = image_dataset.records[4]
    path = image_dataset.image_path(victim)
    path.write_bytes(path.read_bytes()[:40])  # truncated PNG
    bus = EventBus()
    rec = Recorder(bus)
    with pytest.raises(DataError, match=f"{path.name}.*cannot be decoded"):
        train(image_dataset, "resnet-cifar20", epochs=1, run_dir=tmp_path / "r", events=bus, **FAST)
    assert path.name in rec.of(ev.TRAIN_ERROR)[0]["error"]
    path.unlink()
    with pytest.raises(DataError, match=f"{path.name}.*not found"):
        train(image_dataset, "resnet-cifar20", epochs=1, run_dir=tmp_path / "r2", **FAST)


def test_images_from_a_dataset_on_disk_train_and_validate_on_its_splits(image_dataset, tmp_path):
    bus = EventBus()
    rec = Recorder(bus)
    result = train(image_dataset.root, "resnet-cifar20", epochs=1, run_dir=tmp_path / "r", events=bus,
                   **dict(FAST, batch_size=4))
    summaries = {e["split"]: e.payload for e in rec.of(ev.DATASET_SUMMARY)}
    n_val = len(image_dataset.records_of("val"))
    assert summaries["val"]["found"] == n_val and summaries["train"]["found"] == 18 - n_val
    assert summaries["train"]["split_from"] == "from the dataset"
    samples = rec.of(ev.VAL_PLOTS)[0]["samples"]
    assert len(samples) == n_val and all(s["file"].endswith(".png") for s in samples)
    assert read_weights(result.best)["in_channels"] == 3
