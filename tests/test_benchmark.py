"""`python -m bench.benchmark`: every row measured, and the re-reading baseline reads right."""

from __future__ import annotations

import re

import numpy as np
import torch

from bench import benchmark
from ecg_gcn import dataset, synth
from ecg_gcn.cache import build_cache


def test_the_table_has_every_measure_with_a_positive_value():
    rows = benchmark.run(
        n_records=24, profile="smoke", steps=1, log=lambda _: None, scorer_recordings=50
    )
    measures = [row.measure for row in rows]
    for wanted in (
        "scorer, 50 recordings",
        "cache build",
        "cache / re-reading, 10 s, 500 Hz",
        "cache / re-reading, Challenge-like mix",
        "training",
        "matrix product 2048^2",
        "driver, 10 s record (1 window)",
        "driver, 16-window record",
        "measured rules on: driver, 10 s record",
        "peak resident memory",
    ):
        assert wanted in measures, measures
    for row in rows:
        number = float(re.match(r"[\d,.]+", row.value)[0].replace(",", ""))
        assert number > 0, row
    shares = [row.note for row in rows if row.measure.startswith("driver")]
    assert all(re.search(r"\d+% of matmul rate", note) for note in shares)
    table = benchmark.format_table(rows)
    assert len(table.splitlines()) == len(rows)


def test_the_rereading_baseline_gives_what_the_cache_gives(tmp_path):
    names = synth.generate(tmp_path / "data", 3, seed=2, fs=257, seconds=4.0)
    cache = build_cache(tmp_path / "data", tmp_path / "cache", n_jobs=1, progress=False)
    reread = benchmark.RereadDataset(tmp_path / "data", names, 2500)
    cached = dataset.CropDataset(cache, np.arange(3), 2500, random_crop=False)
    for i in range(3):
        x, y = reread[i]  # 4 s at 257 Hz: 2000 samples at 500 Hz, padded, so no random crop
        expected_x, expected_y = cached[i]
        torch.testing.assert_close(x, expected_x.float(), atol=2e-3, rtol=1e-3)
        torch.testing.assert_close(y, expected_y)
