"""Accuracy and fidelity metrics against hand-computed values."""

from __future__ import annotations

import math

import numpy as np
import pytest

from workbench.core.evaluation.metrics import FidelityAccumulator, topk_correct
from workbench.errors import DataError

LOGITS = np.array([
    [0.1, 0.9, 0.0, 0.5],   # top1 = 1, top2 = {1, 3}
    [0.8, 0.1, 0.7, 0.0],   # top1 = 0, top2 = {0, 2}
    [0.2, 0.3, 0.1, 0.4],   # top1 = 3, top2 = {3, 1}
])


def test_topk_by_hand():
    labels = np.array([1, 2, 0])
    assert topk_correct(LOGITS, labels, 1) == 1  # only row 0
    assert topk_correct(LOGITS, labels, 2) == 2  # rows 0 and 1
    assert topk_correct(LOGITS, labels, 4) == 3
    assert topk_correct(LOGITS, labels, 10) == 3  # k larger than classes


def test_topk_rejects_out_of_range_labels_and_non_classifier():
    with pytest.raises(DataError, match="label 7 is out of range for 4 classes"):
        topk_correct(LOGITS, np.array([0, 1, 7]), 1)
    with pytest.raises(DataError, match="classes"):
        topk_correct(np.zeros((2, 3, 4)), np.array([0, 1]), 1)


def test_fidelity_by_hand():
    ref = np.array([[1.0, 0.0], [0.0, 2.0]])
    test = np.array([[1.0, 1.0], [0.0, 2.0]])
    acc = FidelityAccumulator("y")
    acc.update(ref, test)
    r = acc.result()
    # Row 0: cos = 1 / (1 * sqrt 2); row 1 identical.
    assert r.cosine == pytest.approx((1 / math.sqrt(2) + 1) / 2)
    assert r.min_cosine == pytest.approx(1 / math.sqrt(2))
    assert r.max_abs == 1.0 and r.mean_abs == pytest.approx(0.25)
    # signal = 1 + 4 = 5, noise = 1 -> 10 log10 5.
    assert r.sqnr_db == pytest.approx(10 * math.log10(5))
    assert r.top1_agreement == 1.0  # row 0's tie [1, 1] resolves to index 0, as the reference
    assert r.samples == 2


def test_fidelity_accumulates_over_batches_like_one_batch():
    rng = np.random.default_rng(0)
    ref = rng.standard_normal((10, 6))
    test = ref + 0.1 * rng.standard_normal((10, 6))
    one, two = FidelityAccumulator("y"), FidelityAccumulator("y")
    one.update(ref, test)
    two.update(ref[:3], test[:3])
    two.update(ref[3:], test[3:])
    a, b = one.result(), two.result()
    for k in ("cosine", "max_abs", "mean_abs", "sqnr_db", "top1_agreement"):
        assert getattr(a, k) == pytest.approx(getattr(b, k))
    assert a.top1_agreement == float(np.mean(ref.argmax(1) == test.argmax(1)))


def test_identical_outputs():
    x = np.arange(12.0).reshape(3, 4)
    acc = FidelityAccumulator("y")
    acc.update(x, x.copy())
    r = acc.result()
    assert r.sqnr_db == math.inf and r.max_abs == 0 and r.cosine == pytest.approx(1.0)
    assert r.top1_agreement == 1.0


def test_shape_mismatch_and_empty():
    acc = FidelityAccumulator("y")
    with pytest.raises(DataError, match="shape"):
        acc.update(np.zeros((2, 3)), np.zeros((2, 4)))
    with pytest.raises(DataError, match="no samples"):
        acc.result()
