"""The comparison rules of export verification, on hand-made outputs."""

import numpy as np
import pytest

from tango_core.export._data import Samples
from tango_core.export._verify import _quality_failures, compare, rules_min_images, verification_rules

pytestmark = pytest.mark.unit


def _check(reference, exported, precision="bf16"):
    rule = verification_rules()[precision]
    samples = Samples(np.zeros((len(reference), 1, 2, 2), np.float32))
    metrics, failures = compare([reference], [exported], samples, "classification", {}, rule, precision)
    return metrics, failures


def _logits(n=8, seed=0):
    rng = np.random.default_rng(seed)
    ref = rng.normal(size=(n, 5)).astype(np.float32)
    ref[np.arange(n), rng.integers(0, 5, n)] += 2.0  # every image decided by a wide margin
    return ref


def test_a_swap_of_two_nearly_tied_logits_is_not_a_defect():
    ref = _logits()
    ref[0, :2] = [3.000, 2.999] + ref[0, :2] * 0  # image 0: a near-tie for PyTorch
    ref[0, 2:] = 0
    out = ref + 0.03  # not close (0.03 > 1e-2 x scale), so quality is checked
    out[0, :2] = [2.995, 3.005]  # the tie flips
    metrics, failures = _check(ref, out)
    assert metrics["top1_agreement"] == pytest.approx(7 / 8) and metrics["near_ties"] == 1
    assert metrics["top1_agreement_decided"] == 1.0 and failures == []


def test_a_flip_of_a_decided_image_fails_and_says_so():
    ref = _logits()
    out = ref + 0.03
    k = int(ref[1].argmax())
    out[1, k] -= 10.0  # PyTorch's clear winner loses
    metrics, failures = _check(ref, out)
    assert metrics["near_ties"] == 0 and metrics["top1_agreement_decided"] == pytest.approx(7 / 8)
    assert len(failures) == 1 and "top-1 agreement with PyTorch 0.875 < 0.98" in failures[0]


def test_only_near_ties_cannot_be_judged_and_ask_for_data():
    ref = np.zeros((4, 3), np.float32)
    ref[:, 0] = 0.001
    out = ref + 0.05
    metrics, failures = _check(ref, out)
    assert metrics["near_ties"] == 4 and metrics["top1_agreement_decided"] is None
    assert len(failures) == 1 and "pass labelled images (data=)" in failures[0]


def test_int8_keeps_the_plain_agreement_rule():
    ref = _logits()
    out = ref.copy()
    out[2, int(ref[2].argmax())] -= 10.0
    metrics, failures = _check(ref, out, "int8")
    # INT8 has no output tolerance to define a tie by: every image counts (0.875 < 0.9)
    assert "near_ties" not in metrics and metrics["top1_agreement"] == pytest.approx(7 / 8)
    assert len(failures) == 1 and "0.875 < 0.9" in failures[0]
    assert not _quality_failures({"top1_agreement": 0.95}, verification_rules()["int8"], rules_min_images())
