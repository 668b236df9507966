"""bench/bench_rate.py: the rows it measures."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from bench import bench_rate
from ecg_gcn import records, signal, synth


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
