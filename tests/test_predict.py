"""Inference: windows of any number of recordings, streamed in batches, averaged per record."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ecg_gcn import labels as lbl
from ecg_gcn import predict, signal

WINDOW = 1000
SETTINGS = signal.Preprocess(window_seconds=WINDOW / signal.TARGET_FS)


@pytest.fixture(scope="module")
def predictor(untrained_predictor) -> predict.Predictor:
    return untrained_predictor(SETTINGS)


def by_hand(predictor: predict.Predictor, x: np.ndarray) -> np.ndarray:
    """The mean over the record's windows, each window run alone."""
    with torch.inference_mode():
        probs = [
            torch.sigmoid(predictor.model(torch.from_numpy(w[None]))).numpy()[0]
            for w in signal.windows(x, WINDOW)
        ]
    return np.mean(probs, axis=0)


def test_streamed_batches_give_each_record_the_mean_of_its_windows(predictor):
    rng = np.random.default_rng(1)
    # 1 window, exactly 1, 2, 3 (last aligned to the end), and more than a batch of windows.
    lengths = [300, WINDOW, 2 * WINDOW, 2 * WINDOW + 1, (predict.WINDOW_BATCH + 3) * WINDOW, 50]
    signals = [rng.normal(0, 0.3, (12, n)).astype(np.float32) for n in lengths]
    assert sum(len(signal.windows(x, WINDOW)) for x in signals) > predict.WINDOW_BATCH + 3

    many = predictor.probabilities_many(x for x in signals)  # a generator: streamed
    assert many.shape == (len(signals), lbl.NUM_CLASSES)
    for x, got in zip(signals, many, strict=True):
        np.testing.assert_allclose(got, by_hand(predictor, x), rtol=1e-4, atol=1e-6)
        np.testing.assert_allclose(predictor.probabilities(x), got, rtol=1e-4, atol=1e-6)


def test_no_recording_gives_no_rows(predictor):
    assert predictor.probabilities_many(iter([])).shape == (0, lbl.NUM_CLASSES)
