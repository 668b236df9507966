"""Threshold tuning on the challenge metric, and the empty-set fallback."""

from __future__ import annotations

import numpy as np
import pytest

from ecg_gcn import labels as lbl
from ecg_gcn.scoring import challenge_metric
from ecg_gcn.thresholds import binarize, cap_firing_rate, decide, tune


def constructed(seed: int, n: int = 400) -> tuple[np.ndarray, np.ndarray]:
    """Predictions whose best cut point differs by class: some classes are under-confident
    (positives around 0.35), others over-confident (negatives around 0.6)."""
    rng = np.random.default_rng(seed)
    labels = rng.random((n, lbl.NUM_CLASSES)) < 0.08
    labels[:, lbl.NORMAL_INDEX] |= ~labels.any(axis=1)
    centre_pos = np.where(np.arange(lbl.NUM_CLASSES) % 2 == 0, 0.35, 0.85)
    centre_neg = np.where(np.arange(lbl.NUM_CLASSES) % 2 == 0, 0.1, 0.6)
    noise = rng.normal(0, 0.07, labels.shape)
    probabilities = np.clip(np.where(labels, centre_pos, centre_neg) + noise, 0, 1)
    return probabilities, labels


def test_binarize_never_leaves_a_recording_without_a_label():
    probabilities = np.array([[0.1, 0.3, 0.2], [0.9, 0.1, 0.7], [0.0, 0.0, 0.0]])
    outputs = binarize(probabilities, 0.5)
    assert outputs.tolist() == [[False, True, False], [True, False, True], [True, False, False]]
    assert binarize(probabilities, 0.5, fallback=2)[0].tolist() == [False, False, True]


def test_the_entry_answers_sinus_rhythm_where_no_class_is_confident():
    probabilities = np.full((2, lbl.NUM_CLASSES), 0.2)
    probabilities[0, 3] = 0.45  # the most probable class, but under its threshold
    probabilities[1, 5] = 0.7
    outputs = decide(probabilities, 0.5)
    assert np.flatnonzero(outputs[0]).tolist() == [lbl.NORMAL_INDEX]
    assert np.flatnonzero(outputs[1]).tolist() == [5]


@pytest.mark.parametrize("mode", ["global", "per_class", "global_then_per_class"])
def test_tuned_thresholds_beat_one_half_on_the_data_they_were_tuned_on(mode):
    probabilities, labels = constructed(0)
    at_half = challenge_metric(labels, decide(probabilities, 0.5))
    thresholds, reached = tune(probabilities, labels, mode=mode)
    assert thresholds.shape == (lbl.NUM_CLASSES,)
    achieved = challenge_metric(labels, decide(probabilities, thresholds))
    assert achieved == pytest.approx(reached, abs=1e-9)
    assert achieved > at_half + 0.05
    assert decide(probabilities, thresholds).any(axis=1).all()


def test_per_class_thresholds_follow_each_class():
    probabilities, labels = constructed(1)
    thresholds, _ = tune(probabilities, labels, mode="per_class")
    common = labels.sum(axis=0) >= 20
    even = np.arange(lbl.NUM_CLASSES) % 2 == 0
    # Under-confident classes need a low cut, over-confident ones a high cut.
    assert np.all(thresholds[common & even] < 0.35)
    assert np.all(thresholds[common & ~even] > 0.6)


def test_tune_rejects_mismatched_shapes_and_unknown_modes():
    probabilities, labels = constructed(2, n=20)
    with pytest.raises(ValueError, match="differ"):
        tune(probabilities[:, :5], labels)
    with pytest.raises(ValueError, match="threshold mode"):
        tune(probabilities, labels, mode="best")


def test_a_class_with_few_validation_positives_keeps_the_global_cut():
    probabilities, labels = constructed(3)
    rare = 3  # an under-confident class, cut to two positives
    labels[np.flatnonzero(labels[:, rare])[2:], rare] = False
    assert labels[:, rare].sum() == 2
    free, _ = tune(probabilities, labels, mode="global_then_per_class")
    kept, _ = tune(probabilities, labels, mode="global_then_per_class", min_positives=5)
    cut, _ = tune(probabilities, labels, mode="global")
    assert kept[rare] == cut[rare] and free[rare] != cut[rare]
    common = labels.sum(axis=0) >= 5
    assert np.any(kept[common] != cut[common])  # the others are still tuned per class


def test_the_firing_cap_raises_a_class_that_fires_far_beyond_its_prevalence():
    rng = np.random.default_rng(3)
    n = 200
    labels = np.zeros((n, 3), dtype=bool)
    labels[:10, 0] = True  # 5 %: may fire on max(15 %, 4 x 5 %) = 20 %
    labels[:80, 1] = True  # 40 %: 4 x 40 % is every record, so never capped
    probabilities = rng.uniform(0.3, 1.0, (n, 3))  # every class fires on most records at 0.2
    probabilities[:, 2] = rng.uniform(0.0, 0.1, n)  # fires on none
    cutoffs = np.array([0.2, 0.2, 0.2])
    capped = cap_firing_rate(probabilities, labels, cutoffs, share=0.15, prevalence_factor=4)
    fired = (probabilities >= capped).mean(axis=0)
    assert fired[0] == pytest.approx(0.20, abs=0.01)
    assert capped[1] == capped[2] == 0.2  # within their allowance: left as they were
    assert np.all(capped >= cutoffs)  # a cut-off is only ever raised
    np.testing.assert_array_equal(cutoffs, [0.2, 0.2, 0.2])  # the input is not modified
    # A class no record carries may fire on the share alone.
    none = cap_firing_rate(probabilities, np.zeros_like(labels), cutoffs, 0.15, 4)
    assert (probabilities[:, 0] >= none[0]).mean() == pytest.approx(0.15, abs=0.01)


def test_the_firing_cap_can_be_turned_off():
    probabilities = np.random.default_rng(4).uniform(size=(50, 4))
    cutoffs = np.full(4, 0.1)
    labels = np.zeros((50, 4), dtype=bool)
    np.testing.assert_array_equal(cap_firing_rate(probabilities, labels, cutoffs, 0.0, 4), cutoffs)
    empty = cap_firing_rate(np.zeros((0, 4)), labels[:0], cutoffs, 0.15, 4)
    np.testing.assert_array_equal(empty, cutoffs)
