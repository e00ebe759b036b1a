"""Built-in samples: deterministic, exact labels, no download."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from tango_core.data import analyse, make_sample
from tango_core.data._samples import SAMPLES, SHAPE_CLASSES
from tango_core.errors import UnknownNameError

pytestmark = pytest.mark.unit


def _files(ds):
    return {r.id: ds.image_path(r).read_bytes() for r in ds}


def test_shapes_are_deterministic(tmp_path):
    a = make_sample("shapes", tmp_path / "a", n=8, size=48, seed=5)
    b = make_sample("shapes", tmp_path / "b", n=8, size=48, seed=5)
    c = make_sample("shapes", tmp_path / "c", n=8, size=48, seed=6)
    assert a.store_path.read_text() == b.store_path.read_text() and _files(a) == _files(b)
    assert _files(a) != _files(c)
    assert a.classes == SHAPE_CLASSES and a.task == "detection" and len(a) == 8
    assert {r.split for r in a} == {"train", "val"}


def test_shape_boxes_and_polygons_are_exact(tmp_path):
    # without overlap the detection and segmentation sets of one seed draw the same pictures
    det = make_sample("shapes", tmp_path / "det", n=15, size=64, seed=2, task="detection", max_overlap=0.0)
    seg = make_sample("shapes", tmp_path / "seg", n=15, size=64, seed=2, task="segmentation")
    assert _files(det) == _files(seg)
    checked = 0
    for rd in det:
        rs = seg.get(rd.id)
        pixels = np.asarray(Image.open(seg.image_path(rs)).convert("RGB")).astype(int)
        union = np.zeros((64, 64), bool)
        assert [b.cls for b in rd.boxes] == [p.cls for p in rs.polygons] and rs.boxes == [] and rd.polygons == []
        for box, poly in zip(rd.boxes, rs.polygons, strict=True):
            mask = poly.mask(64, 64)
            assert not (mask & union).any()  # segmentation shapes never cover each other
            union |= mask
            colours = np.unique(pixels[mask], axis=0)
            assert len(colours) == 1  # the polygon covers exactly one flat-coloured shape...
            ring = np.zeros_like(mask)
            ring[1:] |= mask[:-1]
            ring[:-1] |= mask[1:]
            ring[:, 1:] |= mask[:, :-1]
            ring[:, :-1] |= mask[:, 1:]
            ring &= ~mask
            same = (pixels[ring] == colours[0]).all(axis=1).mean()
            assert same < 0.2  # ...and the shape does not go on past it
            ys, xs = np.nonzero(mask)
            assert box.xyxy == (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1)  # tight around the pixels
            checked += 1
    assert checked >= 15


def test_shape_samples_are_clean(tmp_path):
    ds = make_sample("shapes", tmp_path / "s", n=20, size=48, seed=0, task="detection")
    assert analyse(ds).ok
    cls = make_sample("shapes", tmp_path / "c", n=10, size=32, task="classification")
    assert all(r.label is not None and not r.boxes for r in cls)


def test_digits(tmp_path):
    ds = make_sample("digits", tmp_path / "d", n_per_class=4, size=24, seed=1, val=0.25)
    assert ds.classes == [str(i) for i in range(10)] and len(ds) == 40
    assert ds.class_counts() == {str(i): 4 for i in range(10)}
    assert ds.class_counts("val") == {str(i): 1 for i in range(10)}  # stratified
    img = Image.open(ds.image_path(ds.records[0]))
    assert img.size == (24, 24) and img.mode == "RGB"
    assert analyse(ds).ok  # no duplicates, nothing corrupt, all labelled
    again = make_sample("digits", tmp_path / "e", n_per_class=4, size=24, seed=1, val=0.25)
    assert _files(ds) == _files(again)


@pytest.mark.slow
def test_digits_beyond_the_source_images_are_not_duplicates(tmp_path):
    gray = make_sample("digits", tmp_path / "g", n_per_class=200, size=16, mode="L", val=0)
    assert Image.open(gray.image_path(gray.records[0])).mode == "L"
    assert len(gray) == 2000
    assert analyse(gray).ok  # more draws than sklearn has per digit: augmentation keeps them apart


def test_unknown_sample(tmp_path):
    with pytest.raises(UnknownNameError, match="Did you mean 'digits'"):
        make_sample("digit", tmp_path / "x")
    assert set(SAMPLES.names()) == {"digits", "shapes"}
