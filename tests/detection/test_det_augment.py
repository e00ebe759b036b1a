"""Augmentation: mosaic (4 and 9 tiles), affine, flips, HSV, mixup; labels follow the pixels exactly.

Every object of the synthetic images is a filled rectangle (or polygon) of a colour no other
object has, so a label can be checked against the pixels of its own object."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from tango_core.detection._augment import (
    PAD_VALUE,
    DetectionAugment,
    Sample,
    apply_affine,
    augment_hsv,
    clip_polygon,
    flip,
    letterbox,
    mixup,
    mosaic4,
    mosaic9,
    random_affine_matrix,
)
from tango_core.detection._hyp import default_hyp, recipe_for
from tango_core.detection._paste import copy_paste, paste_in

PALETTE = [np.array(c) for c in itertools.product((60, 110, 160, 210, 250), repeat=3)
           if not all(abs(v - PAD_VALUE) < 40 for v in c)]
BACKGROUND = 0


def make_dataset(n: int = 12, seed: int = 0, polygons: bool = False):
    """Images of random sizes with up to 3 non-overlapping objects each, every object its own colour."""
    rng = np.random.default_rng(seed)
    colours = iter(PALETTE)
    samples = []
    for _ in range(n):
        h, w = int(rng.integers(40, 90)), int(rng.integers(40, 90))
        img = np.full((h, w, 3), BACKGROUND, dtype=np.uint8)
        labels, segs, cols = [], [], []
        for k in range(int(rng.integers(1, 4))):
            cw, ch = int(rng.integers(10, w // 3 + 10)), int(rng.integers(10, h // 3 + 10))
            x1 = int(min(k * w // 3, w - cw))
            y1 = int(rng.integers(0, h - ch))
            if any(x1 < b[3] and b[1] < x1 + cw for b in labels):
                continue
            colour = next(colours)
            if polygons:  # a triangle pointing up inside the rectangle
                tri = np.array([[x1, y1 + ch], [x1 + cw, y1 + ch], [x1 + cw / 2, y1]], dtype=float)
                _fill_polygon(img, tri, colour)
                segs.append(tri)
            else:
                img[y1:y1 + ch, x1:x1 + cw] = colour
            labels.append([len(cols) % 3, x1, y1, x1 + cw, y1 + ch])
            cols.append(colour)
        samples.append((Sample(img, np.array(labels, dtype=float), segs if polygons else None), cols))
    return samples


def _fill_polygon(img: np.ndarray, poly: np.ndarray, colour: np.ndarray) -> None:
    h, w = img.shape[:2]
    ys, xs = np.mgrid[0:h, 0:w] + 0.5
    inside = np.ones((h, w), dtype=bool)
    for (x1, y1), (x2, y2) in zip(poly, np.roll(poly, -1, 0), strict=True):
        inside &= (x2 - x1) * (ys - y1) - (y2 - y1) * (xs - x1) <= 0
    img[inside] = colour


def object_pixels(image: np.ndarray, colour: np.ndarray, tol: int = 3) -> np.ndarray:
    """(y, x) of the inner pixels of one object: its colour, with all 8 neighbours of its colour too
    (edge pixels blend with their neighbours when resized or warped)."""
    mask = np.abs(image.astype(int) - colour).max(-1) <= tol
    inner = mask.copy()
    padded = np.pad(mask, 1)
    h, w = mask.shape
    for dy, dx in itertools.product((-1, 0, 1), repeat=2):
        inner &= padded[1 + dy:1 + dy + h, 1 + dx:1 + dx + w]
    return np.argwhere(inner)


def colour_of(label: np.ndarray, sample: Sample, colours: dict) -> np.ndarray:
    """The colour that fills most of a label's box: identifies which object the label is."""
    x1, y1, x2, y2 = np.round(label[1:5]).astype(int)
    patch = sample.image[y1:y2, x1:x2].reshape(-1, 3)
    counts = {k: int((np.abs(patch.astype(int) - c).max(-1) <= 3).sum()) for k, c in colours.items()}
    return colours[max(counts, key=counts.get)]


def assert_labels_match_objects(sample: Sample, colours: dict, tight: bool, margin: float = 1.5,
                                min_area: float = 0.0) -> None:
    h, w = sample.hw
    boxes = sample.labels[:, 1:5]
    assert np.all(boxes >= 0) and np.all(boxes[:, [0, 2]] <= w) and np.all(boxes[:, [1, 3]] <= h)
    assert np.all(boxes[:, 2] > boxes[:, 0]) and np.all(boxes[:, 3] > boxes[:, 1])
    for i, label in enumerate(sample.labels):
        x1, y1, x2, y2 = label[1:5]
        if min(x2 - x1, y2 - y1) < 5:  # too small to have inner pixels
            continue
        if sample.segments is not None and polygon_area(sample.segments[i]) < min_area:
            continue
        px = object_pixels(sample.image, colour_of(label, sample, colours))
        assert len(px), "a label without its object"
        ys, xs = px[:, 0] + 0.5, px[:, 1] + 0.5  # pixel centres
        # every pixel of the object lies in its box ...
        assert xs.min() >= x1 - margin and xs.max() <= x2 + margin and ys.min() >= y1 - margin and ys.max() <= y2 + margin
        if tight:  # ... and the box does not reach past the object (inner pixels start a blur width in)
            slack = margin + 2
            assert xs.min() <= x1 + slack and xs.max() >= x2 - slack
            assert ys.min() <= y1 + slack and ys.max() >= y2 - slack


def palette_index(samples) -> dict:
    return {i: c for i, c in enumerate(c for _, cols in samples for c in cols)}


class Recolouring:
    """A loader that repaints every object in a fresh colour on each load, so that an image drawn
    twice into one mosaic still has objects of unique colours; ``colours`` are those handed out."""

    def __init__(self, data):
        self.data = data
        self.reset()

    def reset(self) -> None:
        self.palette = iter(PALETTE)
        self.colours: dict[int, np.ndarray] = {}

    def __call__(self, i: int) -> Sample:
        sample, cols = self.data[i]
        image = sample.image.copy()
        for old in cols:
            new = next(self.palette)
            image[(sample.image == old).all(-1)] = new
            self.colours[len(self.colours)] = new
        segs = None if sample.segments is None else [s.copy() for s in sample.segments]
        return Sample(image, sample.labels.copy(), segs)


@pytest.mark.parametrize("tiles", [4, 9])
def test_mosaic_keeps_every_box_inside_and_on_its_object(tiles):
    data = make_dataset()
    colours = palette_index(data)
    for seed in range(6):
        rng = np.random.default_rng(seed)
        picks = [data[i][0] for i in rng.choice(len(data), tiles, replace=False)]
        out = (mosaic9 if tiles == 9 else mosaic4)(picks, 64, rng)
        assert out.image.shape == (128, 128, 3) and len(out.labels) > 0
        assert_labels_match_objects(out, colours, tight=True)
        # every object visible on the canvas has its label
        labelled = {tuple(colour_of(lb, out, colours)) for lb in out.labels}
        for c in colours.values():
            if len(object_pixels(out.image, c)) > 4:
                assert tuple(c) in labelled


def test_mosaic_then_affine_as_in_training():
    load = Recolouring(make_dataset(seed=1))
    hyp = default_hyp("yolov7", mixup=0.0, paste_in=0.0, hsv_h=0.0, hsv_s=0.0, hsv_v=0.0)
    aug = DetectionAugment(load, len(load.data), 64, hyp)
    for seed in range(10):
        load.reset()
        out = aug(seed % len(load.data), np.random.default_rng(seed))
        assert out.image.shape == (64, 64, 3)
        assert_labels_match_objects(out, load.colours, tight=True, margin=2.0)


def test_rotation_and_shear_keep_objects_inside_their_boxes():
    data = make_dataset(seed=2)
    colours = palette_index(data)
    for seed in range(6):
        rng = np.random.default_rng(seed)
        sample = letterbox(data[seed][0], 64)
        m = random_affine_matrix(rng, sample.hw, (64, 64), degrees=30, translate=0.1, scale=0.3, shear=5)
        out = apply_affine(sample, m, (64, 64))
        assert_labels_match_objects(out, colours, tight=False, margin=2.0, min_area=40)


def test_polygons_move_exactly_and_give_tight_boxes():
    load = Recolouring(make_dataset(seed=3, polygons=True))
    hyp = default_hyp("yolov9", degrees=25.0, mixup=0.0, copy_paste=0.0, hsv_h=0.0, hsv_s=0.0, hsv_v=0.0)
    aug = DetectionAugment(load, len(load.data), 64, hyp, mosaic9_fraction=0.5)
    for seed in range(10):
        load.reset()
        out = aug(seed % len(load.data), np.random.default_rng(seed))
        colours = load.colours
        assert out.segments is not None and len(out.segments) == len(out.labels)
        for label, poly in zip(out.labels, out.segments, strict=True):
            assert poly.min() >= 0 and poly[:, 0].max() <= 64 and poly[:, 1].max() <= 64
            np.testing.assert_allclose(label[1:5], [*poly.min(0), *poly.max(0)])  # the tight box
            if polygon_area(poly) < 40:  # too small or thin to have inner pixels
                continue
            # the polygon lies on its object: inner pixels inside it, and it is no larger than the object
            colour = colour_of(label, out, colours)
            inner = object_pixels(out.image, colour)[:, ::-1] + 0.5
            assert len(inner) and inside_polygon(inner, poly).all()
            solid = (np.abs(out.image.astype(int) - colour).max(-1) <= 3).sum()
            assert polygon_area(poly) <= solid + 2 * perimeter(poly) + 2  # edges blur by up to 2 px
        assert_labels_match_objects(out, colours, tight=False, margin=2.0, min_area=40)


def polygon_area(p: np.ndarray) -> float:
    return 0.5 * abs(np.dot(p[:, 0], np.roll(p[:, 1], 1)) - np.dot(p[:, 1], np.roll(p[:, 0], 1)))


def perimeter(p: np.ndarray) -> float:
    return float(np.linalg.norm(p - np.roll(p, 1, 0), axis=1).sum())


def inside_polygon(points: np.ndarray, poly: np.ndarray) -> np.ndarray:
    """Even-odd rule."""
    x, y = points[:, 0:1], points[:, 1:2]
    x1, y1 = poly[:, 0][None], poly[:, 1][None]
    x2, y2 = np.roll(poly[:, 0], -1)[None], np.roll(poly[:, 1], -1)[None]
    crosses = ((y1 > y) != (y2 > y)) & (x < (x2 - x1) * (y - y1) / (y2 - y1 + 1e-12) + x1)
    return crosses.sum(1) % 2 == 1


def test_one_mosaic_in_five_has_nine_tiles_and_mosaic_can_be_switched_off():
    data = make_dataset(n=10, seed=4)
    calls = []

    def load(i):
        calls.append(i)
        return data[i][0]

    aug = DetectionAugment(load, len(data), 64, default_hyp("yolov7", mixup=0.0, paste_in=0.0))
    nine = 0
    for seed in range(300):
        calls.clear()
        aug(0, np.random.default_rng(seed))
        assert len(calls) in (4, 9) and calls[0] == 0
        nine += len(calls) == 9
    assert 0.13 < nine / 300 < 0.27
    calls.clear()
    out = aug(3, np.random.default_rng(0), mosaic=False)  # the last epochs: one letterboxed image
    assert calls == [3] and out.image.shape == (64, 64, 3)
    yolov9 = DetectionAugment(load, len(data), 64, default_hyp("yolov9", mixup=0.0), mosaic9_fraction=0.0)
    calls.clear()
    yolov9(0, np.random.default_rng(1))
    assert len(calls) == 4


def test_flips_and_mixup():
    data = make_dataset(seed=5)
    colours = palette_index(data)
    sample = letterbox(data[0][0], 64)
    for horizontal in (True, False):
        out = flip(sample, horizontal)
        assert_labels_match_objects(out, colours, tight=True, margin=0.6)
        back = flip(out, horizontal)
        np.testing.assert_array_equal(back.image, sample.image)
        np.testing.assert_allclose(back.labels, sample.labels)
    other = letterbox(data[1][0], 64)
    mixed = mixup(sample, other, np.random.default_rng(0))
    assert len(mixed.labels) == len(sample.labels) + len(other.labels)
    assert mixed.image.shape == sample.image.shape


def test_hsv_gains():
    img = np.random.default_rng(0).integers(0, 256, (16, 16, 3), dtype=np.uint8)
    np.testing.assert_array_equal(augment_hsv(img, np.random.default_rng(0), 0, 0, 0), img)
    same_gain = augment_hsv(img, np.random.default_rng(1), 0.0, 0.0, 0.4)  # value only: hue, saturation kept
    ratio = same_gain.astype(float).max(-1) / np.maximum(img.astype(float).max(-1), 1)
    bright = img.max(-1) > 60
    assert np.ptp(ratio[bright & (same_gain.max(-1) < 255)]) < 0.05
    grey = np.full((4, 4, 3), 100, dtype=np.uint8)
    out = augment_hsv(grey, np.random.default_rng(2), 0.5, 0.7, 0.0)
    np.testing.assert_array_equal(out, grey)  # no colour to change


def test_polygon_clipping():
    square = np.array([[-5.0, -5.0], [5.0, -5.0], [5.0, 5.0], [-5.0, 5.0]])
    clipped = clip_polygon(square, 10, 10)
    assert clipped.min() == 0 and clipped.max() == 5
    area = 0.5 * abs(np.dot(clipped[:, 0], np.roll(clipped[:, 1], 1)) - np.dot(clipped[:, 1], np.roll(clipped[:, 0], 1)))
    assert area == pytest.approx(25)
    assert len(clip_polygon(square + 100, 10, 10)) == 0


def test_recipes():
    assert recipe_for("yolov7-e6e") == "yolov7-p6" and recipe_for("yolov9-c-seg") == "yolov9"
    assert default_hyp("yolov9")["close_mosaic"] == 15 and default_hyp("yolov7")["mosaic9_fraction"] == 0.2
    with pytest.raises(KeyError, match="Did you mean 'mixup'"):
        default_hyp("yolov7", mixupp=0.1)


def test_opencv_and_torch_backends_agree(monkeypatch):
    import tango_core.detection._augment as aug

    rng = np.random.default_rng(7)
    img = rng.integers(0, 256, (50, 70, 3), dtype=np.uint8)
    m = random_affine_matrix(np.random.default_rng(3), (50, 70), (40, 40), degrees=20, scale=0.3, shear=3)
    fast_warp = aug._warp(img, m, (40, 40))
    fast_hsv = augment_hsv(img, np.random.default_rng(1))
    smooth = np.kron(rng.integers(0, 256, (5, 7, 3)), np.ones((10, 10, 1))).astype(np.uint8)
    fast_small, fast_big = aug._resize(smooth, (25, 35)), aug._resize(smooth, (80, 112))
    monkeypatch.setattr(aug, "_cv2", lambda: None)
    slow_warp = aug._warp(img, m, (40, 40))
    slow_hsv = augment_hsv(img, np.random.default_rng(1))
    for fast, size in ((fast_small, (25, 35)), (fast_big, (80, 112))):  # area vs antialiased bilinear
        diff = np.abs(fast.astype(int) - aug._resize(smooth, size))
        step = size[0] // 5  # the filters differ only where the colour blocks meet
        assert diff.mean() < 10 and diff[step // 2::step, step // 2::step].max() <= 1
    assert np.abs(fast_warp.astype(int) - slow_warp).max() <= 1  # same sampling, rounding apart
    # OpenCV quantises hue to 180 steps: allow that much, on average the images agree closely
    assert np.abs(fast_hsv.astype(int) - slow_hsv).mean() < 3
    identity = aug._warp(img, np.eye(3), (50, 70))
    np.testing.assert_array_equal(identity, img)


def _covered(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    iw = np.clip(np.minimum(box[2], boxes[:, 2]) - np.maximum(box[0], boxes[:, 0]), 0, None)
    ih = np.clip(np.minimum(box[3], boxes[:, 3]) - np.maximum(box[1], boxes[:, 1]), 0, None)
    return iw * ih / ((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]))


def test_paste_in_adds_objects_of_another_image_with_exact_boxes():
    data = make_dataset(n=12, seed=5)
    colours = {tuple(c) for _, cols in data for c in cols}
    pasted = 0
    for seed in range(20):
        rng = np.random.default_rng(seed)
        (base, _), (donor, donor_cols) = data[seed % 12], data[(seed + 5) % 12]
        base = letterbox(base, 96)
        out = paste_in(base, donor, rng)
        old, new = out.labels[:len(base.labels)], out.labels[len(base.labels):]
        np.testing.assert_array_equal(old, base.labels)  # existing labels unchanged ...
        for label in new:
            pasted += 1
            x1, y1, x2, y2 = label[1:5].astype(int)
            patch = out.image[y1:y2, x1:x2].reshape(-1, 3)
            assert {tuple(c) for c in patch} <= colours  # one of the donor's objects, scaled
            assert tuple(patch[0]) in {tuple(c) for c in donor_cols}
            # ... and covered by no paste more than the 0.30 rule allows
            assert (_covered(label[1:5], old[:, 1:5]) <= 0.30 + 1e-9).all()
    assert pasted > 20


def test_copy_paste_mirrors_polygons_with_labels_that_match_their_pixels():
    from tango_core.data._masks import polygon_mask

    added = 0
    for sample, _ in make_dataset(n=10, seed=6, polygons=True):
        out = copy_paste(sample, np.random.default_rng(0), p=1.0)
        n = len(sample.labels)
        assert len(out.labels) == len(out.segments) >= n
        np.testing.assert_array_equal(out.labels[:n], sample.labels)
        h, w = sample.hw
        for label, poly in zip(out.labels[n:], out.segments[n:], strict=True):
            added += 1
            mask = polygon_mask(poly, w, h)
            np.testing.assert_allclose(label[1:5], [*poly.min(0), *poly.max(0)])  # the polygon's extent
            np.testing.assert_array_equal(out.image[mask], sample.image[:, ::-1][mask])  # mirrored pixels
            source = next(i for i in range(n) if np.allclose(sample.segments[i] * [-1, 1] + [w, 0], poly))
            assert label[0] == sample.labels[source, 0]
            assert (_covered(label[1:5], sample.labels[:, 1:5]) <= 0.30 + 1e-9).all()
    assert added >= 3
    boxes_only = make_dataset(n=1, seed=6)[0][0]
    assert copy_paste(boxes_only, np.random.default_rng(0), p=1.0) is boxes_only  # needs polygons


def test_the_recipe_keys_paste_in_and_copy_paste_are_used():
    data = make_dataset(n=10, seed=7, polygons=True)
    calls = []

    def load(i):
        calls.append(i)
        return data[i][0]

    hyp = dict(default_hyp("yolov9", mosaic=0.0, mixup=0.0, copy_paste=0.0, fliplr=0.0), paste_in=1.0)
    DetectionAugment(load, len(data), 64, hyp)(0, np.random.default_rng(0), mosaic=False)
    assert len(calls) == 2  # the image and a donor
    hyp.update(paste_in=0.0, copy_paste=1.0, scale=0.0, translate=0.0)
    plain = DetectionAugment(load, len(data), 64, dict(hyp, copy_paste=0.0))(0, np.random.default_rng(1), mosaic=False)
    more = DetectionAugment(load, len(data), 64, hyp)(0, np.random.default_rng(1), mosaic=False)
    assert len(more.labels) > len(plain.labels)
