"""bench/bench_evidence.py: single-event records, the chance rate, and the measured rows."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from bench import bench_evidence
from ecg_gcn import config, graph, nets, predict, signal, synth
from ecg_gcn import labels as lbl


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


def test_measure_gives_a_row_per_class_and_method():
    torch.manual_seed(0)
    model_config = config.profile("smoke")[0]
    labels = np.random.default_rng(0).random((200, lbl.NUM_CLASSES)) < 0.2
    model = nets.build_model(model_config, graph.adjacency(labels, 0.4, 0.25)).eval()
    settings = signal.Preprocess(window_seconds=10.0)
    predictor = predict.Predictor(
        model, model_config, np.full(lbl.NUM_CLASSES, 0.5), settings, torch.device("cpu")
    )
    rows = bench_evidence.measure(predictor, n=2, seed=0)
    assert [(r["class"], r["method"]) for r in rows] == [
        (c, m) for c in ("PVC", "PAC") for m in ("integrated", "gradient", "gradcam")
    ]
    for r in rows:
        assert r["records"] == 2 and 0 <= r["peak within 150 ms"] <= 1 and r["chance"] < 0.1
