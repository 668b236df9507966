"""bench/bench_rate.py: resampling, and the rows it measures."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from bench import bench_rate
from ecg_gcn import records, signal, synth


def test_resampled_keeps_a_slow_wave_at_the_new_rate():
    t = np.arange(5000) / 500
    x = np.stack([np.sin(2 * np.pi * 7 * t), np.cos(2 * np.pi * 3 * t)])
    y = bench_rate.resampled(x, 500, 300)
    assert y.shape == (2, 3000)
    t300 = np.arange(3000) / 300
    inner = slice(100, -100)  # away from the filter's edges
    assert y[0, inner] == pytest.approx(np.sin(2 * np.pi * 7 * t300)[inner], abs=1e-2)
    assert y[1, inner] == pytest.approx(np.cos(2 * np.pi * 3 * t300)[inner], abs=1e-2)


def test_resampled_handles_a_1000_hz_record():
    assert bench_rate.resampled(np.zeros((12, 10000)), 1000, 300).shape == (12, 3000)


def test_measure_gives_a_row_per_database_and_one_for_all(tmp_path: Path, untrained_predictor):
    rng = np.random.default_rng(0)
    for name, codes in (("A0001", [synth.AF]), ("A0002", [synth.NSR]), ("E00001", [synth.NSR])):
        x, _ = synth.synthesize(rng, codes, 500, 10.0)
        synth.write_record(tmp_path, name, x, 500, codes, 60, "Male")
    recordings = [records.load_record(tmp_path / n) for n in records.find_records(tmp_path)]
    predictor = untrained_predictor(signal.Preprocess(window_seconds=10.0))
    rows = bench_rate.measure(predictor, recordings, 300)
    assert [(r["database"], r["records"]) for r in rows] == [
        ("CPSC", 2),
        ("Georgia", 1),
        ("all", 3),
    ]
    for r in rows:
        assert np.isfinite(r["native"]) and np.isfinite(r["resampled"])
        assert 0 <= r["mean change"] <= r["largest change"] <= 1
    # at its own rate a record is read exactly; resampled, the untrained network moves a little
    assert rows[-1]["largest change"] > 0
