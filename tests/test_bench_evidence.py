"""bench/bench_evidence.py: single-event records, the chance rate, and the measured rows."""

from __future__ import annotations

import numpy as np
import pytest

from bench import bench_evidence
from ecg_gcn import signal, synth


def test_single_event_records_hold_exactly_one_ectopic_beat_at_the_stated_time():
    records = bench_evidence.single_event_records(synth.PVC, "V", 3, 10.0, seed=4)
    assert len(records) == 3
    for x, event in records:
        assert x.shape == (12, 5000) and 0 < event < 10
        # The PVC is the widest, tallest beat: the largest swing over the leads sits near it.
        swing = np.abs(x - np.median(x, axis=1, keepdims=True)).sum(axis=0)
        assert abs(np.argmax(swing) / 500 - event) < 0.15


def test_the_chance_rate_is_the_share_of_the_strip_near_the_event():
    assert bench_evidence.chance(5.0, 10.0) == pytest.approx(0.03)
    assert bench_evidence.chance(0.05, 10.0) == pytest.approx(0.02)  # cut at the start


def test_measure_gives_a_row_per_class_and_method(untrained_predictor):
    predictor = untrained_predictor(signal.Preprocess(window_seconds=10.0))
    rows = bench_evidence.measure(predictor, n=2, seed=0)
    assert [(r["class"], r["method"]) for r in rows] == [
        (c, m) for c in ("PVC", "PAC") for m in ("integrated", "gradient", "gradcam")
    ]
    for r in rows:
        assert r["records"] == 2 and 0 <= r["peak within 150 ms"] <= 1 and r["chance"] < 0.1
