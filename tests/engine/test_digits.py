"""A real learning test: the built-in digits sample, and the predictor on what was learned."""

from __future__ import annotations

import pytest

from tango_core import events as ev
from tango_core.data import make_sample
from tango_core.engine import Predictor, train
from tango_core.errors import DataError
from tango_core.events import EventBus, Recorder


@pytest.fixture(scope="module")
def digits_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("digits")
    ds = make_sample("digits", root / "ds", n_per_class=50, size=16, mode="L", seed=0)
    bus = EventBus()
    rec = Recorder(bus)
    result = train(ds, "resnet-cifar20", epochs=8, batch_size=32, run_dir=root / "run", events=bus, amp="off",
                   hyp={"fliplr": 0.0})
    return ds, result, rec


@pytest.mark.slow
def test_digits_reach_90_percent(digits_run):
    ds, result, rec = digits_run
    assert result.metrics["top1"] >= 0.90, result.history
    assert result.metrics["top5"] >= result.metrics["top1"]
    assert result.metrics["precision"] >= 0.85 and result.metrics["recall"] >= 0.85
    first, last = result.history[0], result.history[-1]
    assert last["train_loss"] < 0.5 * first["train_loss"]  # it learned, it did not just get lucky
    summary = rec.of(ev.DATASET_SUMMARY)
    assert {s["split"]: s["found"] for s in summary} == {"train": 400, "val": 100}
    assert rec.of(ev.MODEL_SUMMARY)[0]["in_channels"] == 1  # the grayscale sample trains a 1-channel model


@pytest.mark.slow
def test_predictor_agrees_with_validation(digits_run):
    ds, result, rec = digits_run
    val = ds.records_of("val")
    predictor = Predictor(result.best)
    preds = predictor([ds.image_path(r) for r in val], topk=3)
    assert [p.source for p in preds] == [str(ds.image_path(r)) for r in val]
    accuracy = sum(p.label == r.label for p, r in zip(preds, val, strict=True)) / len(val)
    assert accuracy == pytest.approx(result.metrics["top1"])  # same decoding, same model, same answer
    for p in preds:
        assert p.name == ds.classes[p.label] and 0 < p.confidence <= 1
        assert [c for c, _ in p.top][0] == p.name and len(p.top) == 3
        assert p.top[0][1] >= p.top[1][1] >= p.top[2][1]
    # a folder works too (recursively, sorted), as do in-memory images
    folder = predictor(ds.root / "images" / "3")
    assert len(folder) == 50 and sum(p.name == "3" for p in folder) >= 40
    from PIL import Image

    img = Image.open(ds.image_path(val[0]))
    assert predictor(img)[0].label == preds[0].label
    with pytest.raises(DataError, match="not found"):
        predictor(ds.root / "nope.png")
